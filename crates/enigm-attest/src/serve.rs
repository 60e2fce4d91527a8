//! `enigm-attest serve`: configuration, data directory, and the HTTP server.
//!
//! Configuration is one typed struct: defaults, then a TOML file (`--config`), then
//! `ENIGM_ATTEST_*` environment variables, then flags; validated before anything starts.
//! See docs/operations.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use attest_core::SystemClock;
use attest_http::AppState;
use attest_policy::Policy;
use attest_service::{Service, ServiceConfig, Trust, TrustLoader};
use attest_store::Store;
use attest_token::{Signer, SigningKey};
use serde::Deserialize;

use crate::trust::{self, CliError};

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Configuration file (TOML). Environment variables and flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Data directory: database, device-handle secret, signing keys [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Policy file (TOML) [default: the built-in policy].
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Seconds a challenge may be answered [default: 120].
    #[arg(long, value_name = "SECONDS")]
    challenge_ttl: Option<i64>,
    /// TEST ONLY: also trust this root (a simulator's or a test PKI's). Logged loudly and shown
    /// by /readyz. Never use in production.
    #[arg(long = "test-trust-root", value_name = "PEM")]
    test_trust_roots: Vec<PathBuf>,
    /// TLS certificate chain (PEM, leaf first): serve TLS 1.3 and bind proofs to the connection.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM, PKCS#8, SEC1 or PKCS#1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Database URL: `postgres://...` (shared by replicas) or `sqlite:...` [default: SQLite in
    /// the data directory].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// OTA directory: `channels/<name>/metadata` and `artifacts/<id>`, served behind the gate.
    #[arg(long, value_name = "DIR")]
    ota_dir: Option<PathBuf>,
    /// With TLS: offer HTTP/2 too (opt-in; docs/operations.md says what it changes).
    #[arg(long, requires = "tls_cert")]
    http2: bool,
    /// TLS ends in a proxy in front of this service: plain HTTP here, and transport binding is
    /// not claimed (`/readyz` says so).
    #[arg(long)]
    behind_tls_proxy: bool,
    /// TEST ONLY: trust the simulator root of `enigm-attest sim` (its private key is public).
    /// Logged loudly and shown by /readyz. Never use in production.
    #[arg(long)]
    test_trust_simulator: bool,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    policy: Option<PathBuf>,
    challenge_ttl: Option<i64>,
    token_ttl: Option<i64>,
    result_ttl: Option<i64>,
    outcome_retention_days: Option<i64>,
    database_url: Option<String>,
    database_pool_size: Option<i64>,
    database_statement_timeout_secs: Option<i64>,
    admin_token_sha256: Option<Vec<String>>,
    signing_key: Option<PathBuf>,
    test_trust_roots: Option<Vec<PathBuf>>,
    test_trust_simulator: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    behind_tls_proxy: Option<bool>,
    http2: Option<bool>,
    ota_dir: Option<PathBuf>,
    public_url: Option<String>,
    revocation_source: Option<String>,
    revocation_refresh_secs: Option<i64>,
    revocation_max_age_secs: Option<i64>,
    max_connections: Option<i64>,
    max_connections_per_address: Option<i64>,
    challenges_per_sec: Option<i64>,
    header_read_timeout_secs: Option<i64>,
    body_read_timeout_secs: Option<i64>,
}

/// The validated configuration.
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub policy: Option<PathBuf>,
    pub service: ServiceConfig,
    pub database_url: Option<String>,
    pub store: attest_store::StoreOptions,
    pub admin_token_hashes: Vec<[u8; 32]>,
    pub signing_key: Option<PathBuf>,
    pub test_trust_roots: Vec<PathBuf>,
    pub test_trust_simulator: bool,
    pub revocation_source: crate::revocation::Source,
    pub revocation_refresh_secs: u64,
    pub limits: attest_http::ServerLimits,
    pub challenges_per_sec: u32,
    /// Certificate chain and key files, when this service terminates TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub behind_tls_proxy: bool,
    /// Offer HTTP/2 on TLS.
    pub http2: bool,
    pub ota_dir: Option<PathBuf>,
    pub public_url: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("policy", &self.policy)
            .field("service", &self.service)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .field("store", &self.store)
            .field("admin_tokens", &self.admin_token_hashes.len())
            .field("signing_key", &self.signing_key)
            .field("test_trust_roots", &self.test_trust_roots)
            .field("test_trust_simulator", &self.test_trust_simulator)
            .field("revocation_source", &self.revocation_source)
            .field("revocation_refresh_secs", &self.revocation_refresh_secs)
            .field("limits", &self.limits)
            .field("challenges_per_sec", &self.challenges_per_sec)
            .field("tls", &self.tls)
            .field("behind_tls_proxy", &self.behind_tls_proxy)
            .field("http2", &self.http2)
            .field("ota_dir", &self.ota_dir)
            .field("public_url", &self.public_url)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(format!("ENIGM_ATTEST_{name}"))
        .ok()
        .filter(|v| !v.is_empty())
}

fn env_i64(name: &str) -> Result<Option<i64>, CliError> {
    env(name)
        .map(|v| {
            v.parse()
                .map_err(|_| CliError(format!("ENIGM_ATTEST_{name}={v:?} is not a whole number")))
        })
        .transpose()
}

fn digest_hex(name: &str, s: &str) -> Result<[u8; 32], CliError> {
    attest_core::hex::decode(s)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            CliError(format!(
                "{name}: {s:?} is not a SHA-256 digest (64 hex digits)"
            ))
        })
}

impl Config {
    /// Defaults < file < environment < flags.
    pub fn load(args: &ServeArgs) -> Result<Config, CliError> {
        let file: FileConfig = match &args.config {
            None => FileConfig::default(),
            Some(p) => {
                let bytes = trust::read_limited(p, 1024 * 1024)?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| CliError(format!("{}: not UTF-8", p.display())))?;
                toml::from_str(&text).map_err(|e| CliError(format!("{}: {e}", p.display())))?
            }
        };
        let listen = args
            .listen
            .clone()
            .or_else(|| env("LISTEN"))
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| CliError(format!("listen address {listen:?} is not IP:PORT")))?;
        let data_dir = args
            .data_dir
            .clone()
            .or_else(|| env("DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let policy = args
            .policy
            .clone()
            .or_else(|| env("POLICY").map(PathBuf::from))
            .or(file.policy);
        let defaults = ServiceConfig::default();
        let challenge_ttl = match args.challenge_ttl {
            Some(v) => v,
            None => env_i64("CHALLENGE_TTL")?
                .or(file.challenge_ttl)
                .unwrap_or(defaults.challenge_ttl_secs),
        };
        let token_ttl = env_i64("TOKEN_TTL")?
            .or(file.token_ttl)
            .unwrap_or(defaults.token_ttl_secs);
        let result_ttl = env_i64("RESULT_TTL")?
            .or(file.result_ttl)
            .unwrap_or(defaults.result_ttl_secs);
        let retention_days = env_i64("OUTCOME_RETENTION_DAYS")?
            .or(file.outcome_retention_days)
            .unwrap_or(30);
        if !(10..=600).contains(&challenge_ttl) {
            return Err(CliError(format!(
                "challenge_ttl {challenge_ttl} must be 10..=600 seconds"
            )));
        }
        if !(10..=3600).contains(&token_ttl) {
            return Err(CliError(format!(
                "token_ttl {token_ttl} must be 10..=3600 seconds: tokens live minutes"
            )));
        }
        if !(10..=86_400).contains(&result_ttl) {
            return Err(CliError(format!(
                "result_ttl {result_ttl} must be 10..=86400 seconds"
            )));
        }
        if !(1..=3650).contains(&retention_days) {
            return Err(CliError(format!(
                "outcome_retention_days {retention_days} must be 1..=3650"
            )));
        }
        let admin: Vec<String> = match env("ADMIN_TOKEN_SHA256") {
            Some(v) => v.split(',').map(str::to_owned).collect(),
            None => file.admin_token_sha256.unwrap_or_default(),
        };
        let admin_token_hashes = admin
            .iter()
            .map(|h| digest_hex("admin_token_sha256", h))
            .collect::<Result<Vec<_>, _>>()?;
        let revocation_source = crate::revocation::Source::parse(
            &env("REVOCATION_SOURCE")
                .or(file.revocation_source)
                .unwrap_or_else(|| crate::revocation::GOOGLE_STATUS_URL.to_owned()),
        )
        .map_err(CliError)?;
        let refresh = env_i64("REVOCATION_REFRESH_SECS")?
            .or(file.revocation_refresh_secs)
            .unwrap_or(crate::revocation::DEFAULT_REFRESH_SECS as i64);
        let max_age = env_i64("REVOCATION_MAX_AGE_SECS")?
            .or(file.revocation_max_age_secs)
            .unwrap_or(defaults.google_status_max_age_secs);
        if !(60..=86_400).contains(&refresh) {
            return Err(CliError(format!(
                "revocation_refresh_secs {refresh} must be 60..=86400"
            )));
        }
        if !(refresh..=30 * 86_400).contains(&max_age) {
            return Err(CliError(format!(
                "revocation_max_age_secs {max_age} must be at least revocation_refresh_secs ({refresh}) and at most 30 days"
            )));
        }
        let max_connections = env_i64("MAX_CONNECTIONS")?
            .or(file.max_connections)
            .unwrap_or(attest_http::default_max_connections() as i64);
        let per_address = env_i64("MAX_CONNECTIONS_PER_ADDRESS")?
            .or(file.max_connections_per_address)
            .unwrap_or((max_connections / 4).max(1));
        if !(1..=max_connections).contains(&per_address) {
            return Err(CliError(format!(
                "max_connections_per_address {per_address} must be 1..=max_connections ({max_connections})"
            )));
        }
        let header_timeout = env_i64("HEADER_READ_TIMEOUT_SECS")?
            .or(file.header_read_timeout_secs)
            .unwrap_or(10);
        let body_timeout = env_i64("BODY_READ_TIMEOUT_SECS")?
            .or(file.body_read_timeout_secs)
            .unwrap_or(10);
        if !(1..=100_000).contains(&max_connections) {
            return Err(CliError(format!(
                "max_connections {max_connections} must be 1..=100000"
            )));
        }
        for (name, v) in [
            ("header_read_timeout_secs", header_timeout),
            ("body_read_timeout_secs", body_timeout),
        ] {
            if !(1..=300).contains(&v) {
                return Err(CliError(format!("{name} {v} must be 1..=300 seconds")));
            }
        }
        let pool = env_i64("DATABASE_POOL_SIZE")?
            .or(file.database_pool_size)
            .unwrap_or(i64::from(
                attest_store::StoreOptions::default().max_connections,
            ));
        if !(1..=256).contains(&pool) {
            return Err(CliError(format!(
                "database_pool_size {pool} must be 1..=256"
            )));
        }
        let statement_timeout = env_i64("DATABASE_STATEMENT_TIMEOUT_SECS")?
            .or(file.database_statement_timeout_secs)
            .unwrap_or(5);
        if !(1..=60).contains(&statement_timeout) {
            return Err(CliError(format!(
                "database_statement_timeout_secs {statement_timeout} must be 1..=60"
            )));
        }
        let store = attest_store::StoreOptions {
            max_connections: pool.unsigned_abs() as u32,
            acquire_timeout: std::time::Duration::from_secs(statement_timeout.unsigned_abs()),
            statement_timeout: std::time::Duration::from_secs(statement_timeout.unsigned_abs()),
        };
        let challenges_per_sec = env_i64("CHALLENGES_PER_SEC")?
            .or(file.challenges_per_sec)
            .unwrap_or(i64::from(attest_http::DEFAULT_CHALLENGES_PER_SEC));
        let challenges_per_sec = u32::try_from(challenges_per_sec)
            .ok()
            .filter(|v| (1..=1_000_000).contains(v))
            .ok_or_else(|| {
                CliError(format!(
                    "challenges_per_sec {challenges_per_sec} must be 1..=1000000"
                ))
            })?;
        let limits = attest_http::ServerLimits {
            max_connections: max_connections.unsigned_abs() as usize,
            max_connections_per_address: per_address.unsigned_abs() as usize,
            header_read_timeout: std::time::Duration::from_secs(header_timeout.unsigned_abs()),
            body_read_timeout: std::time::Duration::from_secs(body_timeout.unsigned_abs()),
            shutdown_grace: std::time::Duration::from_secs(10),
        };
        let tls_cert = args
            .tls_cert
            .clone()
            .or_else(|| env("TLS_CERT").map(PathBuf::from))
            .or(file.tls_cert);
        let tls_key = args
            .tls_key
            .clone()
            .or_else(|| env("TLS_KEY").map(PathBuf::from))
            .or(file.tls_key);
        let tls = match (tls_cert, tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(CliError(
                    "tls_cert and tls_key go together: give both or neither".into(),
                ));
            }
        };
        let behind_tls_proxy = args.behind_tls_proxy || file.behind_tls_proxy.unwrap_or(false);
        let http2 = args.http2
            || env("HTTP2").is_some_and(|v| v == "true" || v == "1")
            || file.http2.unwrap_or(false);
        if http2 && tls.is_none() {
            return Err(CliError(
                "http2 needs tls_cert and tls_key (HTTP/2 is offered in the TLS handshake)".into(),
            ));
        }
        if behind_tls_proxy && tls.is_some() {
            return Err(CliError(
                "behind_tls_proxy and tls_cert contradict each other: TLS ends here or in front"
                    .into(),
            ));
        }
        let ota_dir = args
            .ota_dir
            .clone()
            .or_else(|| env("OTA_DIR").map(PathBuf::from))
            .or(file.ota_dir);
        let public_url = env("PUBLIC_URL").or(file.public_url);
        if let Some(u) = &public_url {
            let host = u
                .strip_prefix("https://")
                .or_else(|| u.strip_prefix("http://"));
            if host.is_none_or(|h| h.is_empty() || h.contains('/')) {
                return Err(CliError(format!(
                    "public_url {u:?} must be scheme and host only, e.g. https://ota.example"
                )));
            }
        }
        if behind_tls_proxy && ota_dir.is_some() && public_url.is_none() {
            // Behind a proxy the Host header is whatever reached the proxy: DPoP proofs must
            // name the one URL devices use, not one a client picks.
            return Err(CliError(
                "the OTA gate behind a TLS proxy needs public_url (the https:// URL devices use)"
                    .into(),
            ));
        }
        let mut test_trust_roots = file.test_trust_roots.unwrap_or_default();
        test_trust_roots.extend(args.test_trust_roots.iter().cloned());
        Ok(Config {
            listen,
            data_dir,
            policy,
            service: ServiceConfig {
                challenge_ttl_secs: challenge_ttl,
                token_ttl_secs: token_ttl,
                result_ttl_secs: result_ttl,
                outcome_retention_secs: retention_days * 86_400,
                issuer: "enigm-attest".to_owned(),
                google_status_max_age_secs: max_age,
            },
            database_url: args
                .database_url
                .clone()
                .or_else(|| env("DATABASE_URL"))
                .or(file.database_url),
            store,
            admin_token_hashes,
            signing_key: env("SIGNING_KEY").map(PathBuf::from).or(file.signing_key),
            test_trust_roots,
            test_trust_simulator: args.test_trust_simulator
                || file.test_trust_simulator.unwrap_or(false),
            revocation_source,
            revocation_refresh_secs: refresh.unsigned_abs(),
            limits,
            challenges_per_sec,
            tls,
            behind_tls_proxy,
            http2,
            ota_dir,
            public_url,
        })
    }
}

/// Loads the policy (or the built-in one), its anchors, status list and the test-only roots.
fn load_trust(
    policy: Option<&Path>,
    test_roots: &[PathBuf],
    simulator: bool,
) -> Result<Trust, CliError> {
    let loaded = policy.map(trust::load_policy).transpose()?;
    let (mut anchors, status_list) = trust::load_trust_material(loaded.as_ref(), test_roots, None)?;
    if simulator {
        let root = attest_device::simulator_root_cert()
            .map_err(|e| CliError(format!("simulator root: {e}")))?;
        anchors
            .add_certificate(root)
            .map_err(|e| CliError(format!("simulator root: {e}")))?;
    }
    let policy_value = loaded.map_or_else(Policy::builtin, |l| l.policy);
    Ok(Trust::new(policy_value, anchors, status_list))
}

/// Creates a file with owner-only permissions holding `bytes`, unless it exists.
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    f.sync_all()
        .map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// The device-handle secret: 32 random bytes, generated on first start.
fn handle_secret(dir: &Path) -> Result<Vec<u8>, CliError> {
    let path = dir.join("handle-secret");
    if !path.exists() {
        let mut b = [0u8; 32];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| CliError("randomness unavailable".into()))?;
        write_secret(&path, &b)?;
    }
    let s = trust::read_limited(&path, 1024)?;
    if s.len() < 32 {
        return Err(CliError(format!(
            "{}: shorter than 32 bytes",
            path.display()
        )));
    }
    Ok(s)
}

/// Signing keys: the configured PKCS#8 file, or every `*.p8` in `<data>/signing-keys/`
/// (newest name first; one is generated on first start). `enigm-attest keys rotate` adds one.
fn signer(cfg: &Config) -> Result<Signer, CliError> {
    let load = |p: &Path| -> Result<SigningKey, CliError> {
        let bytes = trust::read_limited(p, 64 * 1024)?;
        SigningKey::from_pkcs8(&bytes).map_err(|e| CliError(format!("{}: {e}", p.display())))
    };
    if let Some(p) = &cfg.signing_key {
        return Signer::new(vec![load(p)?]).map_err(|e| CliError(e.to_string()));
    }
    let dir = cfg.data_dir.join("signing-keys");
    std::fs::create_dir_all(&dir).map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
    if key_files(&dir)?.is_empty() {
        rotate_key(&dir)?;
    }
    let keys = key_files(&dir)?
        .iter()
        .map(|p| load(p))
        .collect::<Result<Vec<_>, _>>()?;
    Signer::new(keys).map_err(|e| CliError(e.to_string()))
}

fn key_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CliError(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "p8"))
        .collect();
    files.sort();
    files.reverse();
    Ok(files)
}

/// Reads a PEM certificate chain and private key into a TLS 1.3 configuration.
fn load_tls(cert: &Path, key: &Path, http2: bool) -> Result<Arc<rustls::ServerConfig>, CliError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| CliError(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(CliError(format!("{}: no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| CliError(format!("{}: {e}", key.display())))?;
    attest_http::tls_config_with(chain, key, http2).map_err(|e| CliError(format!("TLS: {e}")))
}

/// The data directory `serve` would use with this configuration file and flag (file, then
/// `ENIGM_ATTEST_DATA_DIR`, then the flag, as for `serve`).
pub fn data_dir_of(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<PathBuf, CliError> {
    let args = ServeArgs {
        config,
        data_dir,
        ..ServeArgs::default()
    };
    Config::load(&args).map(|c| c.data_dir)
}

/// Generates a new signing key in `dir`; it becomes the active one.
pub fn rotate_key(dir: &Path) -> Result<String, CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
    let (key, pkcs8) = SigningKey::generate().map_err(|e| CliError(e.to_string()))?;
    // Nanoseconds, so that two rotations in one second still sort newest first.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = dir.join(format!("{nanos:020}-{}.p8", key.kid()));
    write_secret(&path, &pkcs8)?;
    Ok(key.kid().to_owned())
}

/// Runs the server until Ctrl-C / SIGTERM.
pub fn run(args: &ServeArgs) -> Result<(), CliError> {
    let cfg = Config::load(args)?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> Result<(), CliError> {
    // TLS material and the port first: neither a bad certificate nor a busy port may leave
    // keys and a database behind.
    let tls = cfg
        .tls
        .as_ref()
        .map(|(c, k)| load_tls(c, k, cfg.http2))
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| CliError(format!("cannot listen on {}: {e}", cfg.listen)))?;
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| CliError(format!("{}: {e}", cfg.data_dir.display())))?;
    let trust = load_trust(
        cfg.policy.as_deref(),
        &cfg.test_trust_roots,
        cfg.test_trust_simulator,
    )?;
    let store = match &cfg.database_url {
        Some(url) => Store::connect_with(url, cfg.store).await,
        None => Store::open_sqlite_dir(&cfg.data_dir).await,
    }
    .map_err(|e| CliError(format!("database: {e}")))?;
    let secret = handle_secret(&cfg.data_dir)?;
    let signer = signer(&cfg)?;

    tracing::info!(policy_hash = %trust.policy.hash(), policy = %cfg.policy.as_ref().map_or("built-in".to_owned(), |p| p.display().to_string()), "policy active");
    tracing::info!(anchors = %trust.anchor_names().join(", "), status_list_entries = trust.status_list.as_ref().map_or(0, |l| l.len()), "trust anchors");
    let mut test_trust: Vec<String> = cfg
        .test_trust_roots
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if cfg.test_trust_simulator {
        test_trust.push("simulator root (attest-device)".to_owned());
    }
    if !test_trust.is_empty() {
        tracing::warn!(roots = %test_trust.join(", "), "TEST-ONLY TRUST ROOTS ARE ACTIVE: evidence from test devices is accepted. Never do this in production.");
    }
    tracing::info!(kid = %signer.active_kid(), "signing key");
    if cfg.admin_token_hashes.is_empty() {
        tracing::info!("no admin tokens configured: the admin API refuses every request");
    }

    let policy_path = cfg.policy.clone();
    let test_roots = cfg.test_trust_roots.clone();
    let simulator = cfg.test_trust_simulator;
    let loader: TrustLoader = Box::new(move || {
        load_trust(policy_path.as_deref(), &test_roots, simulator).map_err(|e| e.0)
    });
    let service = Arc::new(
        Service::new(
            store,
            trust,
            signer,
            &secret,
            cfg.service.clone(),
            Arc::new(SystemClock),
        )
        .with_loader(loader)
        .with_status_list_file(cfg.data_dir.join("status-list.json"))
        .map_err(|e| CliError(format!("status list kept from the admin API: {e}")))?,
    );
    let state = AppState::new(
        Arc::clone(&service),
        cfg.admin_token_hashes.clone(),
        test_trust,
    );
    let state = state.with_challenge_limit(attest_http::RateLimit::new(
        cfg.challenges_per_sec,
        cfg.challenges_per_sec.saturating_mul(2),
    ));
    let mut state = state.with_transport_binding(tls.is_some());
    if let Some(dir) = &cfg.ota_dir {
        if !dir.is_dir() {
            return Err(CliError(format!(
                "ota_dir {}: not a directory",
                dir.display()
            )));
        }
        tracing::info!(ota_dir = %dir.display(), "serving gated OTA resources");
        state = state.with_ota_dir(dir.clone());
    }
    if let Some(u) = &cfg.public_url {
        state = state.with_public_url(u.clone());
    }
    match (&tls, cfg.behind_tls_proxy) {
        (Some(_), _) => {
            tracing::info!("TLS 1.3 here: proofs are bound to the connection (proof v2)")
        }
        (None, true) => tracing::info!(
            "TLS ends in a proxy in front: plain HTTP here, transport binding not claimed"
        ),
        (None, false) => tracing::warn!(
            "plain HTTP: for loopback and tests; proofs are not bound to a connection"
        ),
    }
    let app = attest_http::router(state);

    // Google's status list: the copy kept in the data directory first (a restart works
    // offline), then fetched on a schedule.
    let clock: Arc<dyn attest_core::Clock> = Arc::new(SystemClock);
    let mut fetcher = crate::revocation::Fetcher::new(
        cfg.revocation_source.clone(),
        std::time::Duration::from_secs(cfg.revocation_refresh_secs),
        std::time::Duration::from_secs(30),
        &cfg.data_dir,
        Arc::clone(&service) as Arc<dyn crate::revocation::StatusSink>,
        clock,
    )
    .map_err(CliError)?;
    match fetcher.load_cached() {
        Some(n) => tracing::info!(
            entries = n,
            "Google status list loaded from the data directory"
        ),
        None => {
            tracing::info!(source = ?cfg.revocation_source, "no Google status list kept yet: chains at Google's anchors get revocation_unavailable until the first fetch")
        }
    }
    tokio::spawn(fetcher.run());

    // Retention: every minute, expired challenges and DPoP proof ids and outcomes past their
    // retention go, in bounded batches (tables stay about one minute of traffic deep).
    let purger = Arc::clone(&service);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            match purger.purge().await {
                Ok((0, 0)) => {}
                Ok((o, c)) => tracing::info!(
                    outcomes = o,
                    challenges_and_proof_ids = c,
                    "retention purge"
                ),
                Err(e) => tracing::error!(error = %e, "retention purge failed"),
            }
        }
    });
    // The fleet view: this replica and the policy it enforces, in the shared database; the
    // first heartbeat before serving, so a replica that answers /readyz is in the fleet.
    if let Err(e) = service.heartbeat().await {
        tracing::warn!(error = %e, "heartbeat failed");
    }
    let beater = Arc::clone(&service);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(
            attest_service::HEARTBEAT_SECS,
        ));
        loop {
            tick.tick().await;
            if let Err(e) = beater.heartbeat().await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
    });

    let local = listener.local_addr().map_err(|e| CliError(e.to_string()))?;
    tracing::info!(address = %local, data_dir = %cfg.data_dir.display(), max_connections = cfg.limits.max_connections, "listening");
    attest_http::serve(listener, app, cfg.limits, tls, shutdown()).await;
    service.store().close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
