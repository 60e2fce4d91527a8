//! `enigm-attest demo init DIR`: everything a first run over TLS needs, in one folder, so that
//! `serve --config DIR/serve.toml` and `sim --server https://localhost:8443 --tls-ca
//! DIR/tls/ca.pem` show the whole gated flow on one machine. TEST ONLY: the configuration
//! trusts the simulator root, whose private key is public.
//!
//! What it writes (never over an existing setup):
//! - `tls/ca.pem`, `tls/server.pem`, `tls/server.key`: a throw-away CA and a server certificate
//!   for `localhost`, `127.0.0.1` and `::1`;
//! - `ota/channels/stable/metadata`, `ota/channels/stable/releases` and
//!   `ota/artifacts/demo-build-1`: a channel, what it offers, and an artifact;
//!   the metadata is a JSON stand-in for a signed OTA manifest (`build`, `artifact`, `size`,
//!   `sha256`), which `sim` reads to know what to download and check;
//! - `policy.toml`: the built-in policy plus `[channels.stable]` (everyone, `release_channel`);
//! - `serve.toml`: listen on 127.0.0.1:8443, data in `data/`, the files above.

use std::path::{Path, PathBuf};

use aws_lc_rs::digest;

use crate::trust::CliError;

/// The demo's artifact size: large enough that a resumed download crosses many TLS records.
const ARTIFACT_BYTES: usize = 4 * 1024 * 1024;
/// Where the demo service listens.
pub const DEMO_LISTEN: &str = "127.0.0.1:8443";

fn io(path: &Path) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |e| CliError(format!("{}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(path, bytes).map_err(io(path))
}

/// A quoted TOML basic string of a path.
fn toml_path(p: &Path) -> Result<String, CliError> {
    let s = p
        .to_str()
        .ok_or_else(|| CliError(format!("{}: not valid UTF-8", p.display())))?;
    // A JSON string literal is a valid TOML basic string (same escapes, `\uXXXX` included).
    serde_json::to_string(s).map_err(|e| CliError(e.to_string()))
}

fn tls_files(dir: &Path) -> Result<(), CliError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let e = |e: rcgen::Error| CliError(format!("minting the demo TLS certificates: {e}"));
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "enigm-attest demo CA (test only)");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(e)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);

    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let mut server = CertificateParams::new(names).map_err(e)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(e)?;
    let cert = server.signed_by(&key, &issuer).map_err(e)?;

    write(&dir.join("tls/ca.pem"), ca_cert.pem().as_bytes())?;
    write(&dir.join("tls/server.pem"), cert.pem().as_bytes())?;
    // Owner-only from its creation, like the service's own secrets.
    crate::serve::write_secret(&dir.join("tls/server.key"), key.serialize_pem().as_bytes())
}

fn ota_files(dir: &Path) -> Result<(), CliError> {
    let mut artifact = vec![0u8; ARTIFACT_BYTES];
    aws_lc_rs::rand::fill(&mut artifact).map_err(|_| CliError("randomness unavailable".into()))?;
    let id = "demo-build-1";
    write(&dir.join("ota/artifacts").join(id), &artifact)?;
    let metadata = serde_json::json!({
        "build": id,
        "artifact": id,
        "size": artifact.len(),
        "sha256": attest_android::hex(digest::digest(&digest::SHA256, &artifact).as_ref()),
    });
    write(
        &dir.join("ota/channels/stable/metadata"),
        format!("{metadata:#}\n").as_bytes(),
    )?;
    // What the channel offers: the gate serves and authorizes only what a channel lists.
    write(
        &dir.join("ota/channels/stable/releases"),
        format!("# artifact ids and builds of the stable channel, one per line\n{id}\n").as_bytes(),
    )
}

/// Writes the demo setup into `dir` (created; refused when it is not empty).
pub fn init(dir: &Path) -> Result<PathBuf, CliError> {
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(CliError(format!(
            "{}: not empty; the demo setup is written only into a new or empty folder",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let dir = dir.canonicalize().map_err(io(dir))?;
    tls_files(&dir)?;
    ota_files(&dir)?;
    let policy = format!(
        "{}\n# The demo's rollout channel: every registered, eligible device may join.\n[channels.stable]\nworkflow = \"release_channel\"\nrollout_percent = 100\n",
        attest_policy::BUILTIN_POLICY
    );
    // Validate what we wrote, as `serve` will.
    attest_policy::Policy::from_toml(&policy).map_err(|e| CliError(format!("demo policy: {e}")))?;
    write(&dir.join("policy.toml"), policy.as_bytes())?;
    let config = format!(
        "# enigm-attest demo (TEST ONLY: trusts the simulator root, whose private key is public).\nlisten = \"{DEMO_LISTEN}\"\ndata_dir = {}\npolicy = {}\ntls_cert = {}\ntls_key = {}\nota_dir = {}\ntest_trust_simulator = true\n",
        toml_path(&dir.join("data"))?,
        toml_path(&dir.join("policy.toml"))?,
        toml_path(&dir.join("tls/server.pem"))?,
        toml_path(&dir.join("tls/server.key"))?,
        toml_path(&dir.join("ota"))?,
    );
    write(&dir.join("serve.toml"), config.as_bytes())?;
    Ok(dir)
}
