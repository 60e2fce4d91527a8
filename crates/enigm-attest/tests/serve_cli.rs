//! `enigm-attest serve` as an operator starts it: a real process from an empty folder, no
//! configuration but a test-only root, real HTTP; a software device enrolls and attests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attest_android::pem;
use attest_device::SoftwareDevice;
use attest_service::proof_message;
use attest_token::{b64url, b64url_decode};
use base64::Engine;
use serde_json::{Value, json};

struct Server {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, payload) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(payload).unwrap_or(Value::Null)))
}

fn start(device: &SoftwareDevice) -> Server {
    start_with(device, &["--test-trust-root", "sim-root.pem"])
}

fn start_with(device: &SoftwareDevice, extra: &[&str]) -> Server {
    start_env(device, extra, &[])
}

fn start_env(device: &SoftwareDevice, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("enigm-attest-serve-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("sim-root.pem");
    std::fs::write(
        &root,
        pem::encode_certificates(&[device.root_cert().to_vec()]),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args(["serve", "--listen", &addr.to_string()])
        .args(extra)
        .current_dir(&dir)
        .env_remove("ENIGM_ATTEST_POLICY")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, dir, addr };
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(addr, "GET", "/healthz", None).is_none() {
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn serves_with_no_setup_and_a_device_enrolls_and_attests() {
    let device = SoftwareDevice::new().unwrap();
    let s = start(&device);
    let (status, ready) = request(s.addr, "GET", "/readyz", None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        ready["anchors"].as_array().unwrap().len(),
        3,
        "Google's two keys and the test root"
    );
    assert_eq!(ready["test_only_trust"], json!(["sim-root.pem"]));
    for f in ["attest.db", "handle-secret", "signing-keys"] {
        assert!(
            s.dir.join("data").join(f).exists(),
            "data/{f} created on first start"
        );
    }

    let b64 = |chain: &[Vec<u8>]| -> Vec<String> {
        chain
            .iter()
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
            .collect()
    };
    let (_, ch) = request(
        s.addr,
        "POST",
        "/v1/challenges",
        Some(&json!({"workflow": "enrollment"})),
    )
    .unwrap();
    let nonce = b64url_decode(ch["nonce"].as_str().unwrap()).unwrap();
    let a = device.attest(&nonce).unwrap();
    let (status, r) = request(
        s.addr,
        "POST",
        "/v1/attestations",
        Some(&json!({"challenge_id": ch["challenge_id"], "certificate_chain": b64(&a.chain)})),
    )
    .unwrap();
    assert_eq!(
        (status, r["decision"].as_str()),
        (200, Some("eligible")),
        "{r}"
    );
    let handle = r["device_handle"].as_str().unwrap().to_owned();

    // The built-in policy: TEE is enough everywhere, so this device passes every workflow.
    for workflow in [
        "registration",
        "protected_metadata",
        "private_artifact",
        "sensitive_channel",
        "release_channel",
        "update_authorization",
    ] {
        let (_, ch) = request(
            s.addr,
            "POST",
            "/v1/challenges",
            Some(&json!({"workflow": workflow, "resource": "r1", "device_handle": handle})),
        )
        .unwrap();
        let id = ch["challenge_id"].as_str().unwrap();
        let nonce = b64url_decode(ch["nonce"].as_str().unwrap()).unwrap();
        let fresh = device.attest(&nonce).unwrap();
        let proof = a
            .key
            .sign(&proof_message(id, &nonce, workflow, "r1", fresh.key.spki()))
            .unwrap();
        let (status, r) = request(
            s.addr,
            "POST",
            "/v1/attestations",
            Some(&json!({"challenge_id": id, "certificate_chain": b64(&fresh.chain), "device_handle": handle, "proof": b64url(&proof)})),
        )
        .unwrap();
        assert_eq!(
            (status, r["decision"].as_str()),
            (200, Some("eligible")),
            "{workflow}: {r}"
        );
        assert!(r["token"].is_string());
    }
    let (status, _) = request(s.addr, "GET", "/metrics", None).unwrap();
    assert_eq!(status, 200);
}

#[test]
fn refuses_bad_configuration_before_starting() {
    for args in [
        vec!["serve", "--listen", "not-an-address"],
        vec!["serve", "--challenge-ttl", "5"],
        vec!["serve", "--policy", "/no/such/policy.toml"],
        vec!["serve", "--test-trust-root", "/no/such/root.pem"],
        vec!["serve", "--tls-cert", "/no/such/cert.pem"],
        vec![
            "serve",
            "--tls-cert",
            "/no/such/cert.pem",
            "--tls-key",
            "/no/such/key.pem",
        ],
        vec![
            "serve",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--behind-tls-proxy",
        ],
        // Behind a proxy the gate needs the URL devices use (public_url).
        vec!["serve", "--behind-tls-proxy", "--ota-dir", "."],
        vec!["serve", "--database-url", "mysql://x/y"],
        // HTTP/2 is offered in the TLS handshake: without TLS it is refused.
        vec!["serve", "--http2"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
            .args(&args)
            .env(
                "ENIGM_ATTEST_DATA_DIR",
                std::env::temp_dir().join("enigm-attest-never"),
            )
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.is_empty());
        if args.contains(&"--ota-dir") {
            assert!(err.contains("public_url"), "{err}");
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args(["serve"])
        .env("ENIGM_ATTEST_TOKEN_TTL", "86400")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "tokens live minutes, not a day");
}

#[test]
fn the_simulator_enrolls_and_attests_every_workflow() {
    let device = SoftwareDevice::new().unwrap();
    let s = start_with(&device, &["--test-trust-simulator"]);
    let (_, ready) = request(s.addr, "GET", "/readyz", None).unwrap();
    assert_eq!(
        ready["test_only_trust"],
        json!(["simulator root (attest-device)"])
    );
    let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args([
            "sim",
            "--server",
            &format!("http://{}", s.addr),
            "--devices",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 14, "2 devices x 7 workflows");
    assert!(lines.iter().all(|l| l["decision"] == "eligible"));
    // Without the switch, the same simulator is refused.
    let plain = start(&device);
    let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args(["sim", "--server", &format!("http://{}", plain.addr)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid_trust_chain"));
}

fn get_auth(addr: SocketAddr, path: &str, token: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn admin_tokens_and_key_rotation_as_an_operator_uses_them() {
    let device = SoftwareDevice::new().unwrap();
    // An operator generates a token; the service is given only its digest.
    let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args(["keys", "admin-token"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap()
    };
    let (token, digest) = (field("token:"), field("sha256:"));
    assert!(!text.is_empty() && token.len() > 40 && digest.len() == 64);

    // Two signing keys: the service signs with the newest and publishes both.
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let data = std::env::temp_dir().join(format!("enigm-attest-rotate-{}-{n}", std::process::id()));
    let mut kids = Vec::new();
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
            .args(["keys", "rotate", "--data-dir", data.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let line = String::from_utf8(out.stdout).unwrap();
        kids.push(
            line.split_whitespace()
                .nth(3)
                .unwrap()
                .trim_end_matches(';')
                .to_owned(),
        );
    }
    let s = start_env(
        &device,
        &["--data-dir", data.to_str().unwrap()],
        &[("ENIGM_ATTEST_ADMIN_TOKEN_SHA256", &digest)],
    );
    let jwks = request(s.addr, "GET", "/v1/jwks", None).unwrap().1;
    let published: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        published,
        [kids[1].as_str(), kids[0].as_str()],
        "newest first, both published"
    );

    assert_eq!(get_auth(s.addr, "/admin/v1/outcomes", &token), 200);
    assert_eq!(
        get_auth(s.addr, "/admin/v1/outcomes", &digest),
        401,
        "the digest is not the token"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_busy_port_is_found_before_anything_is_written() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let dir = common::fresh_dir("busy");
    let data = dir.join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args(["serve", "--listen", &addr.to_string(), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
    assert!(
        !data.exists(),
        "no keys, secret or database for a server that never ran"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_rotate_finds_the_data_directory_as_serve_does() {
    let dir = common::fresh_dir("rotate");
    let from_env = dir.join("from-env");
    let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args(["keys", "rotate"])
        .current_dir(&dir)
        .env("ENIGM_ATTEST_DATA_DIR", &from_env)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(from_env.join("signing-keys"))
            .unwrap()
            .count(),
        1
    );
    let from_file = dir.join("from-file");
    std::fs::write(
        dir.join("serve.toml"),
        format!("data_dir = {:?}\n", from_file.display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args(["keys", "rotate", "--config", "serve.toml"])
        .current_dir(&dir)
        .env_remove("ENIGM_ATTEST_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(from_file.join("signing-keys"))
            .unwrap()
            .count(),
        1
    );
    assert!(!dir.join("data").exists(), "nothing written to ./data");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sim_waits_for_the_service_and_stops_quietly_on_a_closed_pipe() {
    // Nothing listens: a bounded wait, then a clear error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args([
            "sim",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--wait",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready"));
    assert!(started.elapsed() < Duration::from_secs(20));

    // `sim | head -1`: the reader goes away after one line; sim must not panic.
    let device = SoftwareDevice::new().unwrap();
    let s = start_with(&device, &["--test-trust-simulator"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args([
            "sim",
            "--server",
            &format!("http://{}", s.addr),
            "--devices",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(101),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

/// The README's TLS walk-through as a user types it: `demo init`, `serve --config`, then `sim
/// --tls-ca`: each device enrolls, registers, joins the channel, reads the metadata, resumes
/// an artifact download on a new connection (checked against the metadata's SHA-256) and gets
/// an update authorization, every proof bound to its TLS connection.
#[test]
fn the_demo_walks_the_whole_gated_flow_over_tls() {
    let dir = common::fresh_dir("demo");
    let bin = env!("CARGO_BIN_EXE_enigm-attest");
    let demo = dir.join("demo");
    let out = Command::new(bin)
        .args(["demo", "init"])
        .arg(&demo)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Never over an existing setup.
    let again = Command::new(bin)
        .args(["demo", "init"])
        .arg(&demo)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(demo.join("serve.toml"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server {
        child,
        dir: dir.clone(),
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    };
    let url = format!("https://localhost:{port}");
    let ca = demo.join("tls/ca.pem");
    let out = Command::new(bin)
        .args(["sim", "--server", &url, "--tls-ca"])
        .arg(&ca)
        .args(["--devices", "2"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&str> = lines.iter().map(|l| l["step"].as_str().unwrap()).collect();
    let one = [
        "attestation",
        "registration",
        "membership",
        "metadata",
        "artifact",
        "authorization",
    ];
    assert_eq!(steps, [one, one].concat());
    assert!(lines.iter().all(|l| l["ok"] == true));
    let artifact = lines.iter().find(|l| l["step"] == "artifact").unwrap();
    assert!(artifact["resumed_at"].as_u64().unwrap() > 0, "{artifact}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS, proofs bound"));

    // A certificate from another CA: a clear error at once, no waiting for it to change.
    let other = dir.join("other");
    assert!(
        Command::new(bin)
            .args(["demo", "init"])
            .arg(&other)
            .output()
            .unwrap()
            .status
            .success()
    );
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["sim", "--server", &url, "--wait", "20", "--tls-ca"])
        .arg(other.join("tls/ca.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not trusted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    // A plain-HTTP client on the TLS port gets nothing it can mistake for an answer.
    let out = Command::new(bin)
        .args([
            "sim",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--wait",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `sim --spawn-server` as the load generator: one command starts a throw-away TLS service,
/// enrolls a fleet, runs the gated mix with misbehaving devices, and reports; every refusal of
/// a misbehaviour is the expected one and nothing else goes wrong.
#[test]
fn the_load_generator_runs_the_whole_system_from_one_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args([
            "sim",
            "--spawn-server",
            "--devices",
            "6",
            "--concurrency",
            "3",
            "--requests",
            "120",
            "--misbehave",
            "25",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("TEST ONLY"),
        "the spawned server is announced loudly: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unexpected"], json!(0), "{report}");
    assert_eq!(report["operations"], json!(120), "{report}");
    assert_eq!(
        (report["tls"].as_bool(), report["gate"].as_bool()),
        (Some(true), Some(true))
    );
    // Misbehaving devices were there, and each was refused as expected.
    let misbehaviours = report["misbehaviours"].as_object().unwrap();
    assert!(misbehaviours.len() >= 3, "{report}");
    for (kind, m) in misbehaviours {
        assert_eq!(m["unexpected"], json!(0), "{kind}: {m}");
    }
    for route in [
        "POST /v1/challenges",
        "POST /v1/attestations",
        "GET /v1/ota/artifacts/{id}",
    ] {
        assert!(
            report["routes"][route]["count"].as_u64().unwrap() > 0,
            "{route}: {report}"
        );
    }
    // The server's CPU is measured against the signature bound of the same work.
    assert!(
        report["server"]["ratio_to_bound"].as_f64().unwrap() > 1.0,
        "{report}"
    );
}
