//! `enigm-attest`: the command of the Enigm OS attestation service.
//!
//! `enigm-attest verify` appraises Android Key Attestation chains offline. Exit status: 0 when
//! every chain is valid, 1 when any is invalid, 2 on usage or I/O errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use attest_android::{
    Appraisal, ChainSummary, MAX_STATUS_LIST_BYTES, Provisioning, Rejection, StatusList,
    TrustAnchors, UnverifiedChain, Verifier, pem,
};
use attest_core::{ReasonCode, UnixTime};
use clap::{Parser, Subcommand};

mod report;

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
    /// Exit status: 0 when every chain is valid, 1 when any chain is invalid, 2 on usage or
    /// I/O errors.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// PEM file holding one chain, leaf first. Repeat to verify many chains in one run.
    #[arg(long = "chain", value_name = "FILE", required = true)]
    chains: Vec<PathBuf>,
    /// Verification time: an RFC 3339 instant, or `creation` for the attested
    /// creationDateTime. Default: now.
    #[arg(long, value_name = "RFC3339|creation")]
    at: Option<String>,
    /// Expected attestation challenge, hex. A mismatch is `replay_attempt`.
    #[arg(long, value_name = "HEX")]
    challenge: Option<String>,
    /// Extra trust anchor (PEM certificate). Repeatable. Google's roots are always trusted.
    #[arg(long = "trust-root", value_name = "PEM")]
    trust_roots: Vec<PathBuf>,
    /// Revocation status list in Google's JSON format.
    #[arg(long = "status-list", value_name = "FILE")]
    status_list: Option<PathBuf>,
    /// Print one JSON object per chain (one per line), in the order given.
    #[arg(long)]
    json: bool,
}

/// A usage or I/O problem: exit status 2.
struct UsageError(String);

/// Largest chain file read (a chain is a few kilobytes).
const MAX_CHAIN_FILE_BYTES: u64 = 1024 * 1024;

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, UsageError> {
    let meta =
        std::fs::metadata(path).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    if meta.len() > limit {
        return Err(UsageError(format!(
            "{}: larger than {limit} bytes",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| UsageError(format!("{}: {e}", path.display())))
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

enum At {
    Instant(UnixTime),
    Creation,
}

fn verifier(args: &VerifyArgs) -> Result<Verifier, UsageError> {
    let mut anchors = TrustAnchors::google();
    for path in &args.trust_roots {
        let text = String::from_utf8(read_limited(path, MAX_CHAIN_FILE_BYTES)?)
            .map_err(|_| UsageError(format!("{}: not a PEM text file", path.display())))?;
        let ders = pem::parse_certificates(&text)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        let [der] = <[Vec<u8>; 1]>::try_from(ders).map_err(|ders| {
            UsageError(format!(
                "{}: holds {} certificates; give one root per --trust-root",
                path.display(),
                ders.len()
            ))
        })?;
        anchors
            .add_certificate(der)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    }
    // Verifying many chains from the same devices repeats the same CA links.
    let mut v = Verifier::new(anchors).with_link_cache(4096);
    if let Some(path) = &args.status_list {
        let bytes = read_limited(path, MAX_STATUS_LIST_BYTES as u64)?;
        let list = StatusList::from_json(&bytes)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        v = v.with_status_list(list);
    }
    Ok(v)
}

fn now() -> UnixTime {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    UnixTime::from_secs(secs)
}

fn run_verify(args: &VerifyArgs) -> Result<bool, UsageError> {
    let at = match args.at.as_deref() {
        None => At::Instant(now()),
        Some("creation") => At::Creation,
        Some(s) => At::Instant(UnixTime::parse_rfc3339(s).ok_or_else(|| {
            UsageError(format!(
                "--at {s:?} is neither an RFC 3339 instant nor `creation`"
            ))
        })?),
    };
    let challenge = match &args.challenge {
        None => None,
        Some(h) => {
            Some(parse_hex(h).ok_or_else(|| UsageError(format!("--challenge {h:?} is not hex")))?)
        }
    };
    let verifier = verifier(args)?;
    let mut all_valid = true;
    for path in &args.chains {
        let bytes = read_limited(path, MAX_CHAIN_FILE_BYTES)?;
        let name = path.display().to_string();
        let ders = std::str::from_utf8(&bytes)
            .map_err(|_| "not UTF-8 text".to_owned())
            .and_then(|t| pem::parse_certificates(t).map_err(|e| e.to_string()));
        let appraisal = match ders.map_err(|why| format!("not a PEM certificate chain: {why}")) {
            Err(detail) => rejected(Rejection {
                reason: ReasonCode::MalformedEvidence,
                detail,
            }),
            Ok(ders) => match UnverifiedChain::from_der(ders, verifier.limits()) {
                Err(r) => rejected(r),
                Ok(chain) => {
                    let instant = match at {
                        At::Instant(t) => t,
                        At::Creation => creation_time(&verifier, &chain).ok_or_else(|| {
                            UsageError(format!(
                                "{name}: no usable creationDateTime; pass --at RFC3339"
                            ))
                        })?,
                    };
                    verifier.appraise(&chain, instant, challenge.as_deref())
                }
            },
        };
        all_valid &= appraisal.outcome.is_ok();
        if args.json {
            println!("{}", report::appraisal_json(&appraisal));
        } else {
            println!("{}", report::appraisal_text(&name, &appraisal));
        }
    }
    Ok(all_valid)
}

/// The attested creation time, when the leaf's record parses and the value is a real date.
fn creation_time(verifier: &Verifier, chain: &UnverifiedChain) -> Option<UnixTime> {
    let kd = chain
        .leaf_key_description(&verifier.limits().key_description)?
        .ok()?;
    let t = UnixTime::from_millis(kd.creation_date_time()?);
    t.to_rfc3339().map(|_| t)
}

/// The appraisal of evidence refused before its chain could be looked at.
fn rejected(rejection: Rejection) -> Appraisal {
    Appraisal {
        chain: ChainSummary {
            length: 0,
            anchor: None,
            provisioning: Provisioning::Unknown,
        },
        key_description: None,
        outcome: Err(rejection),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Verify(args) => match run_verify(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(UsageError(msg)) => {
                eprintln!("enigm-attest verify: {msg}");
                ExitCode::from(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::parse_hex;

    #[test]
    fn hex_parsing() {
        assert_eq!(parse_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(parse_hex("0"), None);
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(""), Some(vec![]));
    }
}
