//! A relying party elsewhere (the "passport" model): an OTA server that admits a gated request
//! with nothing but enigm-attest's JWK Set, fetched once (`curl https://attest/v1/jwks`) and
//! refreshed now and then, never per request.
//!
//! ```text
//! cargo run -p attest-token --example relying_party -- \
//!     --jwks jwks.json --issuer enigm-attest --workflow private_artifact --resource build-42 \
//!     --method GET --url https://ota.example/artifacts/build-42 \
//!     --authorization "DPoP eyJ..." --dpop "eyJ..." [--now UNIX_SECONDS]
//! ```
//!
//! Prints the admitted device handle and token claims (exit 0), or the refusal code (exit 1).
//! A real server also keeps the `jti` of every admitted proof for two minutes and refuses a
//! repeat, and may ask for its own DPoP nonces (RFC 9449 section 9).

#![allow(missing_docs)]

use std::process::ExitCode;

use attest_core::UnixTime;
use attest_token::relying_party::{GatedRequest, check_gated};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let required = [
        "--jwks",
        "--issuer",
        "--workflow",
        "--resource",
        "--method",
        "--url",
        "--authorization",
        "--dpop",
    ];
    if let Some(missing) = required.iter().find(|n| arg(n).is_none()) {
        eprintln!("relying_party: {missing} is required");
        return ExitCode::from(2);
    }
    let get = |name: &str| arg(name).unwrap_or_default();
    let jwks = match std::fs::read(get("--jwks"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(j) => j,
        None => {
            eprintln!("relying_party: --jwks is not a readable JWK Set");
            return ExitCode::from(2);
        }
    };
    let now = arg("--now")
        .and_then(|s| s.parse().ok())
        .map(UnixTime::from_secs)
        .unwrap_or_else(|| {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            UnixTime::from_secs(i64::try_from(secs).unwrap_or(i64::MAX))
        });
    let (authorization, dpop) = (get("--authorization"), get("--dpop"));
    let (method, url, issuer, workflow, resource) = (
        get("--method"),
        get("--url"),
        get("--issuer"),
        get("--workflow"),
        get("--resource"),
    );
    let request = GatedRequest {
        authorization: Some(&authorization),
        dpop: Some(&dpop),
        method: &method,
        url: &url,
        tls_exporter: None,
        now,
        window_secs: 60,
        issuer: &issuer,
        workflow: &workflow,
        resource: &resource,
    };
    match check_gated(&jwks, &request) {
        Ok(admitted) => {
            println!(
                "{}",
                serde_json::json!({"admitted": admitted.subject, "jti": admitted.proof.jti, "claims": admitted.claims})
            );
            ExitCode::SUCCESS
        }
        Err(refusal) => {
            println!("{}", serde_json::json!({"refused": refusal.to_string()}));
            ExitCode::from(1)
        }
    }
}
