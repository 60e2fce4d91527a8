//! The parts of one attestation and one gated request, each alone, and one attestation through
//! the in-memory router, with the signature work the same attestation needs (`bound_*`) in the
//! same run, so BENCHMARKS.md can quote ratios rather than bare times.
//!
//! - `chain_cold` / `chain_cached`: a simulated device's chain, without and with the link cache;
//! - `policy_evaluate`: the decision for a verified chain's claims;
//! - `token_sign` / `token_verify`: an eligibility token (ES256);
//! - `dpop_check`: a DPoP proof against its expectations;
//! - `challenge_consume_sqlite` (and `_postgres` with `ENIGM_ATTEST_TEST_DATABASE_URL`);
//! - `attestation_router`: challenge + attestation (fresh evidence, K_dev proof) through the
//!   router, without HTTP on the wire; the device's own minting is not timed;
//! - `bound_attestation`: the leaf and the proof verified, result and token signed.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use attest_android::{TrustAnchors, Verifier, hex};
use attest_core::{SystemClock, UnixTime, Workflow};
use attest_device::SoftwareDevice;
use attest_device::client::{DpopClaims, dpop_proof};
use attest_device::testing::TempDir;
use attest_http::{AppState, router};
use attest_policy::Policy;
use attest_service::{Service, ServiceConfig, Trust, proof_message};
use attest_store::{ChallengeRecord, Store};
use attest_token::{DpopExpectations, Signer, b64url, b64url_decode, check_dpop};
use axum::body::Body;
use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn now() -> UnixTime {
    UnixTime::from_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    )
}

fn policy(device: &SoftwareDevice) -> Policy {
    Policy::from_toml(&format!(
        "[devices.\"{}\"]\nmodel = \"Enigm Phone 1\"\nboot_states = [\"verified\"]\n\n[application]\npackages = [\"os.enigm.updater\"]\nsignature_digests = [\"{}\"]\n",
        hex(&device.boot_key()),
        hex(&attest_device::keydesc::UPDATER_DIGEST),
    ))
    .unwrap()
}

fn anchors(device: &SoftwareDevice) -> TrustAnchors {
    let mut a = TrustAnchors::empty();
    a.add_certificate(device.root_cert().to_vec()).unwrap();
    a
}

fn chain_json(chain: &[Vec<u8>]) -> Vec<String> {
    chain
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

fn parts(c: &mut Criterion) {
    let device = SoftwareDevice::new().unwrap();
    let challenge = b"bench challenge";
    let a = device.attest(challenge).unwrap();
    let at = now();

    let cold = Verifier::new(anchors(&device));
    c.bench_function("chain_cold", |b| {
        b.iter(|| {
            let r = cold.appraise_der(a.chain.clone(), at, Some(challenge));
            assert!(r.outcome.is_ok());
        })
    });
    let cached = Verifier::new(anchors(&device)).with_link_cache(1024);
    c.bench_function("chain_cached", |b| {
        b.iter(|| {
            let r = cached.appraise_der(a.chain.clone(), at, Some(challenge));
            assert!(r.outcome.is_ok());
        })
    });

    let evidence = cold
        .appraise_der(a.chain.clone(), at, Some(challenge))
        .outcome
        .unwrap();
    let p = policy(&device);
    c.bench_function("policy_evaluate", |b| {
        b.iter(|| {
            assert!(
                p.evaluate(evidence.claims(), Workflow::Registration)
                    .eligible
            )
        })
    });

    let signer = Signer::new(vec![attest_token::SigningKey::generate().unwrap().0]).unwrap();
    let claims = json!({"iss": "enigm-attest", "sub": "dh_x", "aud": "enigm-ota", "iat": at.as_secs(),
        "exp": at.as_secs() + 300, "workflow": "private_artifact", "resource": "build-42",
        "cnf": {"jkt": attest_token::jwk_thumbprint(a.key.spki()).unwrap()}});
    c.bench_function("token_sign", |b| {
        b.iter(|| signer.sign(&claims, "at+jwt").unwrap())
    });
    let token = signer.sign(&claims, "at+jwt").unwrap();
    let jwks = signer.jwks();
    c.bench_function("token_verify", |b| {
        b.iter(|| attest_token::verify_typed(&token, &jwks, at, "at+jwt").unwrap())
    });

    let url = "https://ota.example/v1/ota/artifacts/build-42";
    let exporter = [7u8; 32];
    let proof = dpop_proof(
        &a.key,
        &DpopClaims {
            method: "GET",
            url,
            token: &token,
            nonce: Some("n"),
            jti: "j-1",
            iat: at,
            tls_exporter: Some(&exporter),
        },
    )
    .unwrap();
    let expect = DpopExpectations {
        method: "GET",
        url,
        access_token: &token,
        tls_exporter: Some(&exporter),
        now: at,
        window_secs: 60,
    };
    c.bench_function("dpop_check", |b| {
        b.iter(|| check_dpop(&proof, &expect).unwrap())
    });

    // The bound of one attestation, with the same key types: two ECDSA P-256 verifications
    // (leaf, proof), two ES256 signatures (result, token).
    let msg = proof_message("ch_x", b"nonce", "registration", "enigm-os", a.key.spki());
    let sig = a.key.sign(&msg).unwrap();
    let point = attest_android::split_spki(a.key.spki()).unwrap().1;
    let verifier = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        point,
    );
    c.bench_function("bound_attestation", |b| {
        b.iter(|| {
            verifier.verify(&msg, &sig).unwrap();
            verifier.verify(&msg, &sig).unwrap();
            signer.sign(&claims, "eat+jwt").unwrap();
            signer.sign(&claims, "at+jwt").unwrap();
        })
    });
}

fn consume(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, store: &Store) {
    let counter = std::sync::atomic::AtomicU64::new(0);
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let ids: Vec<String> = (0..iters)
                .map(|_| {
                    format!(
                        "ch_{}",
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    )
                })
                .collect();
            rt.block_on(async {
                for id in &ids {
                    store
                        .insert_challenge(&ChallengeRecord {
                            id: id.clone(),
                            nonce: vec![1; 32],
                            workflow: "registration".into(),
                            resource: "enigm-os".into(),
                            device_handle: Some("dh_x".into()),
                            created_at: now(),
                            expires_at: now().saturating_add_secs(120),
                        })
                        .await
                        .unwrap();
                }
                let started = Instant::now();
                for id in &ids {
                    assert!(store.consume_challenge(id).await.unwrap().is_some());
                }
                started.elapsed()
            })
        })
    });
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = TempDir::new("bench-store").unwrap();
    let sqlite = rt.block_on(Store::open_sqlite_dir(dir.path())).unwrap();
    consume(c, "challenge_consume_sqlite", &rt, &sqlite);
    match std::env::var(attest_store::testing::TEST_DATABASE_URL) {
        Ok(_) => {
            let url = rt
                .block_on(attest_store::testing::fresh_postgres_database("bench"))
                .unwrap();
            let pg = rt.block_on(Store::connect(&url)).unwrap();
            consume(c, "challenge_consume_postgres", &rt, &pg);
        }
        Err(_) => eprintln!(
            "SKIPPED challenge_consume_postgres: set {}",
            attest_store::testing::TEST_DATABASE_URL
        ),
    }
}

async fn call(app: &axum::Router, path: &str, body: &Value) -> Value {
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn attestation_router(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let device = SoftwareDevice::new().unwrap();
    let dir = TempDir::new("bench-router").unwrap();
    let store = rt
        .block_on(Store::open_sqlite_dir(&dir.path().join("data")))
        .unwrap();
    let service = Arc::new(Service::new(
        store,
        Trust::new(policy(&device), anchors(&device), None),
        Signer::new(vec![attest_token::SigningKey::generate().unwrap().0]).unwrap(),
        &[7u8; 32],
        ServiceConfig::default(),
        Arc::new(SystemClock),
    ));
    let app = router(AppState::new(service, vec![], vec![]));
    // Enrolled once; every iteration is a gated attestation with a fresh key and a proof.
    let (handle, kdev) = rt.block_on(async {
        let ch = call(&app, "/v1/challenges", &json!({"workflow": "enrollment"})).await;
        let nonce = b64url_decode(ch["nonce"].as_str().unwrap()).unwrap();
        let a = device.attest(&nonce).unwrap();
        let r = call(
            &app,
            "/v1/attestations",
            &json!({"challenge_id": ch["challenge_id"], "certificate_chain": chain_json(&a.chain)}),
        )
        .await;
        assert_eq!(r["decision"], "eligible", "{r}");
        (r["device_handle"].as_str().unwrap().to_owned(), a.key)
    });
    c.bench_function("attestation_router", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let ch = call(
                        &app,
                        "/v1/challenges",
                        &json!({"workflow": "registration", "resource": "enigm-os", "device_handle": handle}),
                    )
                    .await;
                    timed += started.elapsed();
                    let id = ch["challenge_id"].as_str().unwrap().to_owned();
                    let nonce = b64url_decode(ch["nonce"].as_str().unwrap()).unwrap();
                    let fresh = device.attest(&nonce).unwrap();
                    let proof = kdev
                        .sign(&proof_message(
                            &id,
                            &nonce,
                            "registration",
                            "enigm-os",
                            fresh.key.spki(),
                        ))
                        .unwrap();
                    let body = json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle, "proof": b64url(&proof)});
                    let started = Instant::now();
                    let r = call(&app, "/v1/attestations", &body).await;
                    timed += started.elapsed();
                    assert_eq!(r["decision"], "eligible", "{r}");
                }
                timed
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = parts, store, attestation_router
}
criterion_main!(benches);
