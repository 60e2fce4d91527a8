//! Several `serve` processes on one PostgreSQL database, as operators run them: challenges and
//! DPoP proofs are redeemed at most once across all replicas, and device state (enrollment,
//! registration, revocation) written through one replica acts at once on the others.
//!
//! Needs a PostgreSQL server (`ENIGM_ATTEST_TEST_DATABASE_URL`, started by `.ci/run` or
//! `scripts/test-postgres start`); skipped without one outside CI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use attest_device::SoftwareDevice;
use attest_device::client::{Connection, DeviceClient, DpopClaims, dpop_proof};
use serde_json::json;

mod common;

use common::*;

/// Opens one connection to each replica.
async fn connections(replicas: &[Replica]) -> Vec<Connection> {
    let mut out = Vec::new();
    for r in replicas {
        out.push(r.endpoint().connect().await.unwrap());
    }
    out
}

/// Every enrollment challenge is answered at once on all three replicas: exactly one answer is
/// a decision, the other two are `replay_attempt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_raced_on_three_replicas_is_evaluated_once() {
    let Some((replicas, root)) = three("race").await else {
        return;
    };
    let replicas = Arc::new(replicas);
    let device = Arc::new(SoftwareDevice::simulated().unwrap());
    const CHALLENGES: usize = 2000;
    const WORKERS: usize = 16;
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (replicas, device) = (Arc::clone(&replicas), Arc::clone(&device));
        tasks.push(tokio::spawn(async move {
            let mut conns = connections(&replicas).await;
            let (mut decided, mut replays, mut other) = (0usize, 0usize, Vec::new());
            for i in (w..CHALLENGES).step_by(WORKERS) {
                let c = conns[i % 3]
                    .post_json("/v1/challenges", &json!({"workflow": "enrollment"}))
                    .await
                    .unwrap()
                    .json();
                let nonce =
                    attest_token::b64url_decode(c["nonce"].as_str().unwrap()).unwrap();
                let a = device.attest(&nonce).unwrap();
                let body = json!({"challenge_id": c["challenge_id"], "certificate_chain": chain_json(&a.chain)});
                let [c0, c1, c2] = &mut conns[..] else {
                    unreachable!()
                };
                let (r0, r1, r2) = tokio::join!(
                    c0.post_json("/v1/attestations", &body),
                    c1.post_json("/v1/attestations", &body),
                    c2.post_json("/v1/attestations", &body)
                );
                let mut won = 0;
                for r in [r0, r1, r2] {
                    let r = r.unwrap();
                    let v = r.json();
                    if r.status == 200 && v["decision"] == "eligible" {
                        won += 1;
                    } else if r.code().as_deref() == Some("replay_attempt") {
                        replays += 1;
                    } else {
                        other.push(format!("{} {v}", r.status));
                    }
                }
                assert_eq!(won, 1, "challenge {i}: {won} replicas evaluated it");
                decided += won;
            }
            (decided, replays, other)
        }));
    }
    let (mut decided, mut replays) = (0, 0);
    for t in tasks {
        let (d, r, other) = t.await.unwrap();
        assert!(other.is_empty(), "unexpected answers: {other:?}");
        decided += d;
        replays += r;
    }
    assert_eq!((decided, replays), (CHALLENGES, 2 * CHALLENGES));
    // A challenge id PostgreSQL could not even store (a NUL) is an unknown challenge, not a
    // storage failure.
    let r = replicas[0]
        .endpoint()
        .connect()
        .await
        .unwrap()
        .post_json(
            "/v1/attestations",
            &json!({"challenge_id": "ch_\u{0}x", "certificate_chain": ["AAAA"]}),
        )
        .await
        .unwrap();
    assert_eq!(r.code().as_deref(), Some("replay_attempt"), "{}", r.json());
    eprintln!(
        "raced {CHALLENGES} challenges on 3 replicas: {decided} evaluated once, {replays} replay_attempt, 0 double redemptions"
    );
    // Every replica enforces the same policy, and says so.
    let mut hashes = Vec::new();
    for r in replicas.iter() {
        let ready = r
            .endpoint()
            .connect()
            .await
            .unwrap()
            .send("GET", "/readyz", &[], b"", 1 << 20)
            .await
            .unwrap()
            .json();
        assert_eq!(ready["database_engine"], "postgres");
        hashes.push(ready["policy_hash"].as_str().unwrap().to_owned());
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    drop(replicas);
    let _ = std::fs::remove_dir_all(root);
}

/// One DPoP proof sent at once to all three replicas is accepted by one; a device enrolled on
/// A registers on B, is revoked on C, and is refused on A at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_and_device_state_are_shared_by_the_replicas() {
    let Some((replicas, root)) = three("shared").await else {
        return;
    };
    let [a, b, c] = &replicas[..] else {
        unreachable!()
    };
    let mut client = DeviceClient::new(a.endpoint(), SoftwareDevice::simulated().unwrap());
    assert!(client.enroll().await.unwrap().is_eligible());
    let handle = client.handle().unwrap().to_owned();
    // Registered through B.
    client.set_endpoint(b.endpoint());
    let reg = client.register("enigm-os").await.unwrap();
    assert_eq!(reg["device_handle"], json!(handle));
    let joined = client.join("open", "release_channel").await.unwrap();
    assert_eq!(joined["channels"], json!(["open"]));

    // The same proof on three replicas at once: one serves, two see a replayed jti.
    let token = client.token("private_artifact", "build-1").await.unwrap();
    let path = "/v1/ota/artifacts/build-1";
    let first = client.gated("GET", path, &token, b"", &[]).await.unwrap();
    assert_eq!(first.status, 200);
    let mut nonce = first.header("dpop-nonce").unwrap().to_owned();
    let mut conns = connections(&replicas).await;
    let mut served = 0;
    const PROOFS: usize = 200;
    for i in 0..PROOFS {
        let now = attest_core::UnixTime::from_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        );
        // One proof, byte for byte, to every replica at once (a replay racing the original).
        let url = format!("{PUBLIC_URL}{path}");
        let proof = dpop_proof(
            client.device_key().unwrap(),
            &DpopClaims {
                method: "GET",
                url: &url,
                token: &token,
                nonce: Some(&nonce),
                jti: &format!("race-{i}"),
                iat: now,
                tls_exporter: None,
            },
        )
        .unwrap();
        let headers = vec![("authorization", format!("DPoP {token}")), ("dpop", proof)];
        let sends = conns
            .iter_mut()
            .map(|conn| conn.send("GET", path, &headers, b"", 1 << 20));
        let answers: Vec<_> = futures_util::future::join_all(sends)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let ok = answers.iter().filter(|r| r.status == 200).count();
        let replayed = answers
            .iter()
            .filter(|r| r.status == 401 && r.code().as_deref() == Some("invalid_dpop_proof"))
            .count();
        assert_eq!(
            (ok, replayed),
            (1, 2),
            "proof {i}: {:?}",
            answers
                .iter()
                .map(|r| (r.status, r.code()))
                .collect::<Vec<_>>()
        );
        served += ok;
        if let Some(n) = answers.iter().find_map(|r| r.header("dpop-nonce")) {
            nonce = n.to_owned();
        }
    }
    assert_eq!(served, PROOFS);
    eprintln!(
        "raced {PROOFS} DPoP proof ids on 3 replicas: each served once, 0 double redemptions"
    );

    // Revoked on C: refused on A at once (gated request and attestation).
    let revoke = c
        .endpoint()
        .connect()
        .await
        .unwrap()
        .send(
            "POST",
            &format!("/admin/v1/devices/{handle}/revoke"),
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            b"",
            1 << 20,
        )
        .await
        .unwrap();
    assert!(revoke.status < 300, "{} {}", revoke.status, revoke.json());
    client.set_endpoint(a.endpoint());
    let r = client.gated("GET", path, &token, b"", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("device_revoked"))
    );
    let d = client.attest("registration", "enigm-os").await;
    let refused = match d {
        Ok(d) => d.reasons.contains(&"device_revoked".to_owned()),
        Err(attest_device::client::ClientError::Refused { code, .. }) => code == "device_revoked",
        Err(e) => panic!("{e}"),
    };
    assert!(refused);
    drop(replicas);
    let _ = std::fs::remove_dir_all(root);
}

/// Each replica reports the policy it enforces into the shared database; a replica started on
/// another policy (a reload or rollout that has not reached every replica) is visible from any
/// replica's `/readyz` and `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_on_another_policy_is_visible_from_every_replica() {
    let Some((replicas, root, url)) = three_with_url("fleet").await else {
        return;
    };
    let ready = |r: &Replica| {
        let e = r.endpoint();
        async move {
            e.connect()
                .await
                .unwrap()
                .send("GET", "/readyz", &[], b"", 1 << 20)
                .await
                .unwrap()
                .json()
        }
    };
    // Each replica reads the fleet at most once a second.
    let mut r = ready(&replicas[0]).await;
    for _ in 0..50 {
        if r["fleet"]["replicas"] == json!(3) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        r = ready(&replicas[0]).await;
    }
    assert_eq!(
        (&r["fleet"]["replicas"], &r["fleet"]["consistent"]),
        (&json!(3), &json!(true)),
        "{r}"
    );
    // A fourth replica with another policy.
    let policy = root.join("other-policy.toml");
    std::fs::write(
        &policy,
        format!("{}\n# another revision\n", attest_policy::BUILTIN_POLICY),
    )
    .unwrap();
    common::share_secrets(&root.join("a"), &root.join("d"));
    let d = common::start_args(
        common::free_port(),
        Some(&url),
        &root.join("d"),
        &root.join("ota"),
        &["--policy", policy.to_str().unwrap()],
    )
    .await;
    for r in replicas.iter().chain(std::iter::once(&d)) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut v = ready(r).await;
        while v["fleet"]["replicas"] != json!(4) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            v = ready(r).await;
        }
        assert_eq!(v["fleet"]["replicas"], json!(4), "{v}");
        assert_eq!(v["fleet"]["consistent"], json!(false), "{v}");
        assert_eq!(
            v["fleet"]["policy_hashes"].as_object().unwrap().len(),
            2,
            "{v}"
        );
    }
    let metrics = replicas[1]
        .endpoint()
        .connect()
        .await
        .unwrap()
        .send("GET", "/metrics", &[], b"", 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("enigm_attest_fleet_policy_hashes 2"),
        "{text}"
    );
    drop(d);
    drop(replicas);
    let _ = std::fs::remove_dir_all(root);
}
