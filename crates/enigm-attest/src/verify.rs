//! `enigm-attest verify`.

use std::path::PathBuf;

use attest_android::{
    Appraisal, ChainSummary, Provisioning, Rejection, UnverifiedChain, Verifier, pem,
};
use attest_core::{ReasonCode, UnixTime, Workflow};
use attest_policy::Decision;

use crate::report;
use crate::trust::{self, CliError, MAX_CHAIN_FILE_BYTES};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// PEM file holding one chain, leaf first. Repeat to verify many chains in one run.
    #[arg(long = "chain", value_name = "FILE", required = true)]
    chains: Vec<PathBuf>,
    /// Verification time: an RFC 3339 instant, or `creation` for the attested
    /// creationDateTime. Default: now. `creation` is for studying captured chains only: that
    /// time is written by the device (anyone can set it), and the service never uses it; a chain
    /// without a usable one gets an error line of its own and the batch goes on.
    #[arg(long, value_name = "RFC3339|creation")]
    at: Option<String>,
    /// Expected attestation challenge, hex. A mismatch is `replay_attempt`.
    #[arg(long, value_name = "HEX")]
    challenge: Option<String>,
    /// Extra trust anchor (one PEM certificate). Repeatable. Google's roots are trusted unless
    /// a policy says otherwise.
    #[arg(long = "trust-root", value_name = "PEM")]
    trust_roots: Vec<PathBuf>,
    /// Revocation status list in Google's JSON format (overrides the policy's).
    #[arg(long = "status-list", value_name = "FILE")]
    status_list: Option<PathBuf>,
    /// Also decide eligibility with this policy (TOML); needs --workflow.
    #[arg(long, value_name = "FILE", requires = "workflow")]
    policy: Option<PathBuf>,
    /// The workflow to decide for (enrollment, registration, protected_metadata,
    /// private_artifact, sensitive_channel, release_channel, update_authorization).
    #[arg(long, value_name = "NAME", requires = "policy")]
    workflow: Option<String>,
    /// Print one JSON object per chain (one per line), in the order given.
    #[arg(long)]
    json: bool,
}

enum At {
    Instant(UnixTime),
    Creation,
}

fn now() -> UnixTime {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    UnixTime::from_secs(secs)
}

/// Verifies every chain; `Ok(true)` when all are valid (and eligible).
pub fn run(args: &VerifyArgs) -> Result<bool, CliError> {
    let at = match args.at.as_deref() {
        None => At::Instant(now()),
        Some("creation") => At::Creation,
        Some(s) => At::Instant(UnixTime::parse_rfc3339(s).ok_or_else(|| {
            CliError(format!(
                "--at {s:?} is neither an RFC 3339 instant nor `creation`"
            ))
        })?),
    };
    let challenge = match &args.challenge {
        None => None,
        Some(h) => Some(
            attest_core::hex::decode(h)
                .ok_or_else(|| CliError(format!("--challenge {h:?} is not hex")))?,
        ),
    };
    let workflow = match &args.workflow {
        None => None,
        Some(w) => Some(
            Workflow::from_name(w)
                .ok_or_else(|| CliError(format!("--workflow {w:?} is not a workflow")))?,
        ),
    };
    let policy = args.policy.as_deref().map(trust::load_policy).transpose()?;
    let (verifier, _) = trust::build_verifier(
        policy.as_ref(),
        &args.trust_roots,
        args.status_list.as_deref(),
    )?;
    if args.status_list.is_none()
        && policy
            .as_ref()
            .is_none_or(|p| p.policy.trust().status_list.is_none())
    {
        // Offline, nothing is fetched: say so rather than let "valid" imply "not revoked".
        eprintln!(
            "enigm-attest: revocation not checked (no --status-list); `serve` checks Google's list itself"
        );
    }

    let mut all_ok = true;
    for path in &args.chains {
        let bytes = trust::read_limited(path, MAX_CHAIN_FILE_BYTES)?;
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
                        At::Creation => match creation_time(&verifier, &chain) {
                            Some(t) => t,
                            None => {
                                // One chain without a usable time does not stop a batch.
                                let why = "no usable creationDateTime; pass --at RFC3339";
                                all_ok = false;
                                if args.json {
                                    println!(
                                        "{}",
                                        serde_json::json!({"verdict": "error", "reason": null, "detail": why, "file": name})
                                    );
                                } else {
                                    println!("{name}: error: {why}");
                                }
                                continue;
                            }
                        },
                    };
                    verifier.appraise(&chain, instant, challenge.as_deref())
                }
            },
        };
        let decision = match (&policy, workflow) {
            (Some(p), Some(w)) => Some(decide(&p.policy, &appraisal, w)),
            _ => None,
        };
        all_ok &= appraisal.outcome.is_ok() && decision.as_ref().is_none_or(|d| d.eligible);
        if args.json {
            let mut v = report::appraisal_json(&appraisal);
            if let (Some(d), Some(obj)) = (&decision, v.as_object_mut()) {
                report::add_decision(obj, d);
            }
            println!("{v}");
        } else {
            let mut text = report::appraisal_text(&name, &appraisal);
            if let Some(d) = &decision {
                text.push_str(&report::decision_text(d));
            }
            println!("{text}");
        }
    }
    Ok(all_ok)
}

/// The policy decision: an invalid chain is ineligible for its own reason.
fn decide(policy: &attest_policy::Policy, appraisal: &Appraisal, workflow: Workflow) -> Decision {
    match &appraisal.outcome {
        Ok(ev) => policy.evaluate(ev.claims(), workflow),
        Err(r) => Decision {
            eligible: false,
            reasons: vec![r.reason],
            policy_hash: policy.hash().to_owned(),
            device_model: None,
        },
    }
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
