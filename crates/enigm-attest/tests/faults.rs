//! Faults, with real processes: a replica killed with SIGKILL under load, PostgreSQL stopped
//! under load, `serve` killed during SQLite writes, and SIGTERM. What must hold: every answer a
//! client received stays true in the database, no challenge is redeemed twice, a missing
//! database gives 503 `unavailable` (never a decision), and service resumes by itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use attest_device::SoftwareDevice;
use attest_store::testing::fresh_postgres_database;
use common::*;
use serde_json::{Value, json};

/// What one load worker saw: enrollments acknowledged (handle, the request body), and requests
/// that got no answer (the body), which may or may not have been redeemed.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<(String, Value)>,
    unanswered: Vec<Value>,
}

/// Enrolls devices on `replica` until `stop` or until the replica stops answering.
async fn enroll_load(replica_port: u16, stop: Arc<AtomicBool>) -> Seen {
    let endpoint = attest_device::client::Endpoint::new(PUBLIC_URL, None)
        .unwrap()
        .connecting_to("127.0.0.1", replica_port);
    let device = SoftwareDevice::simulated().unwrap();
    let mut seen = Seen::default();
    let Ok(mut conn) = endpoint.connect().await else {
        return seen;
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok(c) = conn
            .post_json("/v1/challenges", &json!({"workflow": "enrollment"}))
            .await
        else {
            break;
        };
        let c = c.json();
        let nonce = attest_token::b64url_decode(c["nonce"].as_str().unwrap()).unwrap();
        let a = device.attest(&nonce).unwrap();
        let body =
            json!({"challenge_id": c["challenge_id"], "certificate_chain": chain_json(&a.chain)});
        match conn.post_json("/v1/attestations", &body).await {
            Ok(r) => {
                let v = r.json();
                assert_eq!(
                    (r.status, v["decision"].as_str()),
                    (200, Some("eligible")),
                    "{v}"
                );
                seen.acknowledged
                    .push((v["device_handle"].as_str().unwrap().to_owned(), body));
            }
            Err(_) => {
                seen.unanswered.push(body);
                break;
            }
        }
    }
    seen
}

async fn run_load_then_kill(victim: &mut Replica, workers: usize, for_how_long: Duration) -> Seen {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..workers)
        .map(|_| tokio::spawn(enroll_load(victim.port, Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(for_how_long).await;
    // SIGKILL in the middle of the load: no chance to finish anything.
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut all = Seen::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.acknowledged.extend(s.acknowledged);
        all.unanswered.extend(s.unanswered);
    }
    all
}

/// Checks on `survivor` that every acknowledged enrollment is stored and that none of the
/// challenges can be redeemed again; an unanswered one is redeemed at most once more.
async fn check_after_kill(survivor: &Replica, seen: &Seen) -> (usize, usize) {
    let mut conn = survivor.endpoint().connect().await.unwrap();
    for (handle, body) in &seen.acknowledged {
        let (status, d) = admin_get(survivor, &format!("/admin/v1/devices/{handle}")).await;
        assert_eq!(status, 200, "acknowledged enrollment {handle} lost: {d}");
        let r = conn.post_json("/v1/attestations", body).await.unwrap();
        assert_eq!(r.code().as_deref(), Some("replay_attempt"), "{}", r.json());
    }
    let mut redeemed_after = 0;
    for body in &seen.unanswered {
        let r = conn.post_json("/v1/attestations", body).await.unwrap();
        if r.status == 200 {
            redeemed_after += 1;
        } else {
            assert_eq!(r.code().as_deref(), Some("replay_attempt"), "{}", r.json());
        }
        let again = conn.post_json("/v1/attestations", body).await.unwrap();
        assert_eq!(again.code().as_deref(), Some("replay_attempt"));
    }
    (seen.acknowledged.len(), redeemed_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_acknowledged_write() {
    let Some(url) = fresh_postgres_database("kill9").await else {
        return;
    };
    let root = fresh_dir("kill9");
    let ota = ota_dir(&root);
    let mut a = start(Some(&url), &root.join("a"), &ota).await;
    share_secrets(&root.join("a"), &root.join("b"));
    let b = start(Some(&url), &root.join("b"), &ota).await;
    let seen = run_load_then_kill(&mut a, 8, Duration::from_millis(1500)).await;
    assert!(!seen.acknowledged.is_empty(), "the load did not run");
    let (checked, after) = check_after_kill(&b, &seen).await;
    eprintln!(
        "kill -9 of a replica under load: {checked} acknowledged enrollments all stored and not redeemable again; {} in flight, {after} of them redeemed once afterwards",
        seen.unanswered.len()
    );
    drop(b);
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_during_sqlite_writes_keeps_every_acknowledged_write() {
    let root = fresh_dir("kill9-sqlite");
    let ota = ota_dir(&root);
    let data = root.join("data");
    let mut victim = start(None, &data, &ota).await;
    let port = victim.port;
    let seen = run_load_then_kill(&mut victim, 8, Duration::from_millis(1500)).await;
    assert!(!seen.acknowledged.is_empty(), "the load did not run");
    // Restarted on the same files: the database opens cleanly and holds every answer given.
    let again = start_on(port, None, &data, &ota).await;
    let (checked, after) = check_after_kill(&again, &seen).await;
    eprintln!(
        "kill -9 during SQLite writes: reopened cleanly, {checked} acknowledged enrollments all stored; {} in flight, {after} redeemed once afterwards",
        seen.unanswered.len()
    );
    drop(again);
    let _ = std::fs::remove_dir_all(root);
}

/// A PostgreSQL cluster of this test alone (the shared one must not stop under other tests).
struct OwnCluster {
    port: u16,
    dir: std::path::PathBuf,
    url: String,
}

impl OwnCluster {
    fn script(port: u16, dir: &std::path::Path, what: &str) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test-postgres");
        let out = std::process::Command::new(script)
            .arg(what)
            .env("ENIGM_ATTEST_TEST_PG_PORT", port.to_string())
            .env("ENIGM_ATTEST_TEST_PG_DIR", dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "test-postgres {what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn start() -> OwnCluster {
        let (port, dir) = (free_port(), fresh_dir("own-pg"));
        let out = OwnCluster::script(port, &dir, "start");
        let url = out
            .lines()
            .find_map(|l| l.strip_prefix("export ENIGM_ATTEST_TEST_DATABASE_URL="))
            .unwrap()
            .to_owned();
        OwnCluster { port, dir, url }
    }

    fn run(&self, what: &str) {
        OwnCluster::script(self.port, &self.dir, what);
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.run("stop");
    }
}

async fn status_of(replica: &Replica, method: &str, path: &str, body: &Value) -> (u16, Value) {
    match replica.endpoint().connect().await {
        Ok(mut c) => {
            let b = if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            };
            match c.send(method, path, &[], &b, 1 << 20).await {
                Ok(r) => (r.status, r.json()),
                Err(e) => panic!("{method} {path}: no answer ({e})"),
            }
        }
        Err(e) => panic!("the replica stopped serving: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_gives_503_and_service_resumes() {
    // Runs where PostgreSQL is available (as the other PostgreSQL tests do).
    if fresh_postgres_database("pg_stop_probe").await.is_none() {
        return;
    }
    let cluster = OwnCluster::start();
    let root = fresh_dir("pg-stop");
    let ota = ota_dir(&root);
    let url = cluster.url.clone();
    let a = start(Some(&url), &root.join("a"), &ota).await;
    let mut client = attest_device::client::DeviceClient::new(
        a.endpoint(),
        SoftwareDevice::simulated().unwrap(),
    );
    assert!(client.enroll().await.unwrap().is_eligible());
    let handle = client.handle().unwrap().to_owned();

    cluster.run("halt");
    let challenge = json!({"workflow": "enrollment"});
    let started = Instant::now();
    let (status, body) = status_of(&a, "POST", "/v1/challenges", &challenge).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a clear answer in bounded time"
    );
    let (status, ready) = status_of(&a, "GET", "/readyz", &Value::Null).await;
    assert_eq!(
        (status, ready["database"].as_str()),
        (503, Some("unreachable"))
    );
    // A gated attestation: an answer that is not a decision.
    match client.attest("registration", "enigm-os").await {
        Err(attest_device::client::ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (503, "unavailable"));
        }
        other => panic!("{other:?}"),
    }

    cluster.run("resume");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _) = status_of(&a, "GET", "/readyz", &Value::Null).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "service did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let d = client.attest("registration", "enigm-os").await.unwrap();
    assert!(d.is_eligible(), "{:?}", d.reasons);
    let (status, _) = admin_get(&a, &format!("/admin/v1/devices/{handle}")).await;
    assert_eq!(status, 200);
    drop(a);
    drop(cluster);
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_exits_0() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = fresh_dir("sigterm");
    let ota = ota_dir(&root);
    let mut s = start(None, &root.join("data"), &ota).await;
    // A request in flight: headers and half its body sent.
    let body = json!({"workflow": "enrollment"}).to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut inflight = tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap();
    inflight
        .write_all(
            format!(
                "POST /v1/challenges HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    inflight.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = s.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // New connections are refused once the stop began.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", s.port))
            .await
            .is_err(),
        "still accepting after SIGTERM"
    );
    // The request in flight completes with its answer.
    inflight.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    inflight.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    let started = Instant::now();
    let code = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0));
    let _ = std::fs::remove_dir_all(root);
}
