//! `enigm-attest`: the command of the Enigm OS attestation service.
//!
//! - `verify` appraises Android Key Attestation chains offline (exit 0 valid, 1 invalid or
//!   ineligible, 2 usage or I/O error);
//! - `policy check` validates a policy file and prints its hash.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod load;
mod report;
mod revocation;
mod serve;
mod sim;
mod trust;
mod verify;

use trust::CliError;

/// The allocator: docs/decisions/0019-mimalloc.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "enigm-attest",
    version,
    about = "Remote attestation for Enigm OS OTA updates"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify Android Key Attestation certificate chains offline.
    ///
    /// Exit status: 0 when every chain is valid (and eligible, with --policy), 1 when any is
    /// not, 2 on usage or I/O errors.
    Verify(verify::VerifyArgs),
    /// Policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the attestation service (no configuration needed: ./data, SQLite, 127.0.0.1:8080).
    Serve(serve::ServeArgs),
    /// Keys and secrets.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Simulated devices enroll and walk the gated OTA flow (or attest for every workflow)
    /// against a running service (which must run with --test-trust-simulator). Exit 0 when
    /// every step succeeded.
    Sim(sim::SimArgs),
    /// TEST ONLY: a demo setup (TLS CA and certificate, OTA directory, policy, serve.toml).
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new result/token signing key to the data directory; it signs from the next start,
    /// and the old keys stay published in /v1/jwks.
    Rotate {
        /// Data directory [default: as `serve` finds it: --config, then
        /// ENIGM_ATTEST_DATA_DIR, then ./data].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The configuration file `serve` uses (for its `data_dir`).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Generate an admin bearer token; prints the token (give it to the operator) and the
    /// SHA-256 to put in `admin_token_sha256` (the service stores only the digest).
    AdminToken,
}

#[derive(Subcommand)]
enum DemoCommand {
    /// Write everything `serve --config DIR/serve.toml` and `sim --tls-ca DIR/tls/ca.pem` need
    /// into DIR (new or empty): the whole gated flow over TLS on one machine.
    Init {
        /// The folder [default: ./demo].
        #[arg(default_value = "demo")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file and print its SHA-256 (exit 0 valid, 2 invalid).
    Check {
        /// The policy (TOML).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Verify(args) => verify::run(&args).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
        Command::Policy(PolicyCommand::Check { file }) => policy_check(&file),
        Command::Serve(args) => serve::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Keys(KeysCommand::Rotate { data_dir, config }) => {
            serve::data_dir_of(config, data_dir)
                .and_then(|dir| serve::rotate_key(&dir.join("signing-keys")).map(|kid| (dir, kid)))
                .map(|(dir, kid)| {
                    println!(
                        "new signing key {kid} in {}; restart the service to sign with it",
                        dir.display()
                    );
                    ExitCode::SUCCESS
                })
        }
        Command::Keys(KeysCommand::AdminToken) => admin_token(),
        Command::Demo(DemoCommand::Init { dir }) => demo::init(&dir).map(|dir| {
            println!(
                "demo setup in {} (TEST ONLY: it trusts the simulator root)",
                dir.display()
            );
            println!(
                "run:  enigm-attest serve --config {}",
                dir.join("serve.toml").display()
            );
            println!(
                "then: enigm-attest sim --server https://localhost:{} --tls-ca {}",
                demo::DEMO_LISTEN.rsplit(':').next().unwrap_or("8443"),
                dir.join("tls/ca.pem").display()
            );
            ExitCode::SUCCESS
        }),
        Command::Sim(args) => sim::run(&args).map(|ok| {
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }),
    };
    result.unwrap_or_else(|CliError(msg)| {
        eprintln!("enigm-attest: {msg}");
        ExitCode::from(2)
    })
}

fn policy_check(file: &std::path::Path) -> Result<ExitCode, CliError> {
    let loaded = trust::load_policy(file)?;
    // The trust files must load too: a policy whose anchors are missing is not usable.
    let (_, anchors) = trust::build_verifier(Some(&loaded), &[], None)?;
    println!("policy ok: sha256 {}", loaded.policy.hash());
    println!("anchors: {}", anchors.join(", "));
    println!("devices: {}", loaded.policy.devices().len());
    Ok(ExitCode::SUCCESS)
}

fn admin_token() -> Result<ExitCode, CliError> {
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| CliError("randomness unavailable".into()))?;
    let token = format!("eat_{}", attest_token::b64url(&raw));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    println!("token:  {token}");
    println!("sha256: {}", attest_android::hex(digest.as_ref()));
    Ok(ExitCode::SUCCESS)
}
