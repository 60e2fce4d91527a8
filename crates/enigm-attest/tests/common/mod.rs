//! Helpers for the tests that run real `serve` processes: replicas on one database, the
//! secrets they share, an OTA directory.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attest_device::client::Endpoint;
use attest_store::testing::fresh_postgres_database;

pub const ADMIN_TOKEN: &str = "eat_replica-test-admin";
/// The one URL all replicas are reached under (their shared `public_url`).
pub const PUBLIC_URL: &str = "http://ota.replicas.test";

/// A `serve` process; killed when dropped.
pub struct Replica {
    pub child: Child,
    pub port: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// The replica as a device reaches it: the deployment's one public URL, connected to this
    /// replica's address (what a load balancer does).
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(PUBLIC_URL, None)
            .unwrap()
            .connecting_to("127.0.0.1", self.port)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn fresh_dir(tag: &str) -> PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("enigm-attest-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn admin_digest() -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ADMIN_TOKEN.as_bytes());
    attest_android::hex(d.as_ref())
}

/// Starts a replica on `database_url` with its own data directory `dir` (whose secrets the
/// caller may have copied from another replica) and the OTA directory `ota`.
pub async fn start(database_url: Option<&str>, dir: &Path, ota: &Path) -> Replica {
    start_on(free_port(), database_url, dir, ota).await
}

/// [`start`] on a given port (a restart where the last one ran).
pub async fn start_on(port: u16, database_url: Option<&str>, dir: &Path, ota: &Path) -> Replica {
    start_args(port, database_url, dir, ota, &[]).await
}

/// [`start_on`] with more `serve` arguments.
pub async fn start_args(
    port: u16,
    database_url: Option<&str>,
    dir: &Path,
    ota: &Path,
    extra: &[&str],
) -> Replica {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enigm-attest"));
    cmd.args(["serve", "--test-trust-simulator", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--ota-dir")
        .arg(ota)
        .env_remove("ENIGM_ATTEST_POLICY")
        .env("ENIGM_ATTEST_CHALLENGES_PER_SEC", "1000000")
        .env("ENIGM_ATTEST_MAX_CONNECTIONS_PER_ADDRESS", "1000")
        .env("ENIGM_ATTEST_ADMIN_TOKEN_SHA256", admin_digest())
        .env(
            "ENIGM_ATTEST_REVOCATION_SOURCE",
            "file:/nonexistent-status-list",
        )
        .env("ENIGM_ATTEST_PUBLIC_URL", PUBLIC_URL)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    cmd.args(extra);
    // The replicas' shared policy (written by `ota_dir`), unless the caller gives another.
    let policy = ota.parent().map(|p| p.join("policy.toml"));
    if let Some(p) = policy.filter(|p| p.exists() && !extra.contains(&"--policy")) {
        cmd.arg("--policy").arg(p);
    }
    let child = cmd.spawn().unwrap();
    let replica = Replica { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = replica.endpoint().connect().await {
            if let Ok(r) = c.send("GET", "/readyz", &[], b"", 1 << 20).await {
                if r.status == 200 {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "replica on {port} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replica
}

/// Copies the secrets every replica must share (handle secret, signing keys) from `from`.
pub fn share_secrets(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("signing-keys")).unwrap();
    std::fs::copy(from.join("handle-secret"), to.join("handle-secret")).unwrap();
    for e in std::fs::read_dir(from.join("signing-keys")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("signing-keys").join(e.file_name())).unwrap();
    }
}

pub fn ota_dir(dir: &Path) -> PathBuf {
    let ota = dir.join("ota");
    std::fs::create_dir_all(ota.join("artifacts")).unwrap();
    std::fs::write(ota.join("artifacts/build-1"), b"private artifact bytes").unwrap();
    // Offered by the channel `open`, which every registered device may join.
    std::fs::create_dir_all(ota.join("channels/open")).unwrap();
    std::fs::write(ota.join("channels/open/releases"), "build-1\n").unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "{}\n[channels.open]\nrollout_percent = 100\n",
            attest_policy::BUILTIN_POLICY
        ),
    )
    .unwrap();
    ota
}

/// Three replicas on one fresh database; `None` without a PostgreSQL server (outside CI).
pub async fn three(tag: &str) -> Option<(Vec<Replica>, PathBuf)> {
    let (replicas, root, _) = three_with_url(tag).await?;
    Some((replicas, root))
}

/// [`three`], and the database URL they share.
pub async fn three_with_url(tag: &str) -> Option<(Vec<Replica>, PathBuf, String)> {
    let url = fresh_postgres_database(tag).await?;
    let root = fresh_dir(tag);
    let ota = ota_dir(&root);
    let a = start(Some(&url), &root.join("a"), &ota).await;
    share_secrets(&root.join("a"), &root.join("b"));
    share_secrets(&root.join("a"), &root.join("c"));
    let b = start(Some(&url), &root.join("b"), &ota).await;
    let c = start(Some(&url), &root.join("c"), &ota).await;
    Some((vec![a, b, c], root, url))
}

/// DER certificates as the attestation request carries them.
pub fn chain_json(chain: &[Vec<u8>]) -> Vec<String> {
    use base64::Engine;
    chain
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

/// An admin GET on `replica`: status and body.
pub async fn admin_get(replica: &Replica, path: &str) -> (u16, serde_json::Value) {
    let r = replica
        .endpoint()
        .connect()
        .await
        .unwrap()
        .send(
            "GET",
            path,
            &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
            b"",
            1 << 20,
        )
        .await
        .unwrap();
    (r.status, r.json())
}
