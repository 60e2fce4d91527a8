//! `enigm-attest`: the command of the Enigm OS attestation service.
//!
//! - `verify` appraises Android Key Attestation chains offline (exit 0 valid, 1 invalid or
//!   ineligible, 2 usage or I/O error);
//! - `policy check` validates a policy file and prints its hash.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod report;
mod trust;
mod verify;

use trust::CliError;

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
