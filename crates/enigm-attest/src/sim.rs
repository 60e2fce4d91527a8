//! `enigm-attest sim`: software devices (from `attest-device`) that walk the protocol against a
//! running service with the one device client (`attest_device::client`), over real HTTP or TLS
//! 1.3. The service must trust the simulator root (`serve --test-trust-simulator`, test only).
//!
//! Each device enrolls. When the service gates OTA resources (`/readyz` says `ota_gate`), the
//! device then registers, joins the channel, reads its metadata, downloads the artifact in two
//! parts (the second on a new connection, as a resumed download) and checks it against the
//! metadata, and obtains an update authorization. Otherwise it attests for every other workflow.
//! One JSON line per step on standard output; exit 0 when every step succeeded.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use attest_core::Workflow;
use attest_device::SoftwareDevice;
use attest_device::client::{ClientError, DeviceClient, Endpoint};
use aws_lc_rs::digest;
use serde_json::{Value, json};

use crate::trust::CliError;

#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Base URL of the service: http://host:port, or https://host:port (TLS 1.3, proofs bound
    /// to the connection).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The CA certificate(s) (PEM) the server's TLS certificate chains to [default: the
    /// system's roots].
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// Offer HTTP/2 on TLS (ALPN); a service that enables it takes it, and each device's
    /// requests become streams of its one connection. With --spawn-server, that server enables it.
    #[arg(long, conflicts_with = "plain_http")]
    http2: bool,
    /// How many devices to simulate.
    #[arg(long, value_name = "N", default_value_t = 1)]
    devices: u32,
    /// Resource to ask for in every workflow (services without an OTA gate).
    #[arg(long, value_name = "NAME", default_value = "sim")]
    resource: String,
    /// Product to register for (OTA gate).
    #[arg(long, value_name = "NAME", default_value = "enigm-os")]
    product: String,
    /// Channel to join and read metadata from (OTA gate).
    #[arg(long, value_name = "NAME", default_value = "stable")]
    channel: String,
    /// The workflow the policy gives the channel (`release_channel` or `sensitive_channel`).
    #[arg(long, value_name = "WORKFLOW", default_value = "release_channel")]
    channel_workflow: String,
    /// Artifact to download [default: `artifact` of the channel's metadata, when it is JSON].
    #[arg(long, value_name = "ID")]
    artifact: Option<String>,
    /// Build to ask an update authorization for [default: `build` of the metadata].
    #[arg(long, value_name = "NAME")]
    build: Option<String>,
    /// Seconds to wait for the service's /readyz before starting.
    #[arg(long = "wait", value_name = "SECONDS", default_value_t = 30)]
    wait_secs: u64,
    /// Load mode: run the mix for this many seconds (instead of one walk per device).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
    /// Load mode: run this many operations.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Load mode: start at most this many operations a second (an open-loop schedule; the
    /// latencies then show the service at that load, e.g. half of its peak).
    #[arg(long, value_name = "OPS")]
    rate: Option<f64>,
    /// Load mode: operations at once.
    #[arg(long, value_name = "C", default_value_t = 4)]
    concurrency: u32,
    /// Load mode: the weighted mix, e.g. `enrollment=1,private_artifact=5` [default: every
    /// workflow the service serves, weight 1].
    #[arg(long, value_name = "MIX")]
    mix: Option<String>,
    /// Load mode: percent of operations done by misbehaving devices (replays, relays on TLS,
    /// unlocked and downgraded devices, stolen tokens), whose refusals are expected.
    #[arg(long, value_name = "PERCENT", default_value_t = 0)]
    misbehave: u32,
    /// Load mode: the report as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// TEST ONLY: start a local `serve` on a throw-away data directory that trusts the simulator
    /// root (TLS, an OTA directory, a channel), run against it, stop it. Loudly test-only.
    #[arg(long, conflicts_with = "server")]
    spawn_server: bool,
    /// With --spawn-server: plain HTTP instead of TLS.
    #[arg(long, requires = "spawn_server")]
    plain_http: bool,
    /// With --spawn-server: the database of the spawned server (e.g. postgres://...).
    #[arg(long, value_name = "URL", requires = "spawn_server")]
    database_url: Option<String>,
    /// With --spawn-server: enroll this many synthetic devices into its database first (the
    /// fleet size the load runs against); the report gives the bytes they take.
    #[arg(long, value_name = "N", requires = "spawn_server")]
    seed_devices: Option<u64>,
    /// Load mode: the server's process id, to report its CPU time per attestation.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
}

/// Runs the devices; `Ok(true)` when every step succeeded.
pub fn run(args: &SimArgs) -> Result<bool, CliError> {
    let load = args.duration.is_some() || args.requests.is_some();
    let mut rt = if load {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = rt
        .enable_all()
        .build()
        .map_err(|e| CliError(format!("runtime: {e}")))?;
    let spawned = if args.spawn_server {
        Some(Spawned::start(args, &rt)?)
    } else {
        None
    };
    let result = rt.block_on(async {
        if load {
            run_load(args, spawned.as_ref()).await
        } else {
            run_devices(args, spawned.as_ref()).await
        }
    });
    drop(spawned);
    result
}

/// A `serve` started by `--spawn-server`, stopped (and its folder removed) when dropped.
struct Spawned {
    child: std::process::Child,
    dir: PathBuf,
    url: String,
    ca: Option<PathBuf>,
    /// What `--seed-devices` put in the database.
    seeded: Option<Value>,
}

impl Spawned {
    fn start(args: &SimArgs, rt: &tokio::runtime::Runtime) -> Result<Spawned, CliError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("enigm-attest-sim-{}-{nanos}", std::process::id()));
        let dir = crate::demo::init(&dir)?;
        let config = dir.join("serve.toml");
        if args.plain_http {
            let text = std::fs::read_to_string(&config)
                .map_err(|e| CliError(format!("{}: {e}", config.display())))?;
            let kept: String = text
                .lines()
                .filter(|l| !l.starts_with("tls_"))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(&config, kept)
                .map_err(|e| CliError(format!("{}: {e}", config.display())))?;
        }
        let seeded = match args.seed_devices {
            Some(n) => {
                Some(rt.block_on(seed(&dir.join("data"), args.database_url.as_deref(), n))?)
            }
            None => None,
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| CliError(format!("no free port: {e}")))?
            .port();
        let exe = std::env::current_exe().map_err(|e| CliError(format!("this program: {e}")))?;
        let log = std::fs::File::create(dir.join("serve.log"))
            .map_err(|e| CliError(format!("serve.log: {e}")))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["serve", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // One machine drives every device: no per-address limits.
            .env("ENIGM_ATTEST_CHALLENGES_PER_SEC", "1000000")
            .env("ENIGM_ATTEST_MAX_CONNECTIONS_PER_ADDRESS", "1000")
            .env(
                "ENIGM_ATTEST_HTTP2",
                if args.http2 { "true" } else { "false" },
            )
            .env(
                "ENIGM_ATTEST_REVOCATION_SOURCE",
                format!("file:{}", dir.join("no-status-list").display()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(log);
        if let Some(url) = &args.database_url {
            cmd.args(["--database-url", url]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| CliError(format!("starting serve: {e}")))?;
        eprintln!(
            "sim: TEST ONLY: started a local serve (pid {}) on a throw-away folder {} that trusts the simulator root",
            child.id(),
            dir.display()
        );
        let (url, ca) = if args.plain_http {
            (format!("http://127.0.0.1:{port}"), None)
        } else {
            (
                format!("https://localhost:{port}"),
                Some(dir.join("tls/ca.pem")),
            )
        };
        Ok(Spawned {
            child,
            dir,
            url,
            ca,
            seeded,
        })
    }
}

/// Enrolls `n` synthetic devices into the spawned server's database before it starts; their
/// count, the time it took and the bytes per device.
async fn seed(data_dir: &std::path::Path, url: Option<&str>, n: u64) -> Result<Value, CliError> {
    let e = |e: attest_store::StoreError| CliError(format!("seeding devices: {e}"));
    let store = match url {
        Some(u) => attest_store::Store::connect(u).await,
        None => attest_store::Store::open_sqlite_dir(data_dir).await,
    }
    .map_err(e)?;
    let before = store.storage_bytes().await.map_err(e)?;
    let started = std::time::Instant::now();
    let now = attest_core::UnixTime::from_secs(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default(),
    );
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(100_000);
        done += store.seed_devices(chunk, now).await.map_err(e)?;
    }
    let after = store.storage_bytes().await.map_err(e)?;
    store.close().await;
    eprintln!(
        "sim: seeded {done} devices in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(json!({
        "devices": done,
        "seconds": started.elapsed().as_secs_f64(),
        "database_bytes": after,
        "bytes_per_device": if done > 0 { (after - before) as f64 / done as f64 } else { 0.0 },
    }))
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run_load(args: &SimArgs, spawned: Option<&Spawned>) -> Result<bool, CliError> {
    let endpoint = endpoint(args, spawned)?;
    let ready = wait_ready(&endpoint, Duration::from_secs(args.wait_secs)).await?;
    let gate = ready.get("ota_gate").and_then(Value::as_bool) == Some(true);
    let gate_names = if gate {
        Some(gate_names(args, &endpoint).await?)
    } else {
        None
    };
    let mix = match &args.mix {
        Some(m) => crate::load::parse_mix(m)?,
        None => {
            let mut m = vec![(crate::load::Op::Enrollment, 1)];
            for w in Workflow::ALL.iter().skip(1) {
                // The default channel workflow is the one the channel has.
                let skip = gate
                    && ((*w == Workflow::SensitiveChannel
                        && args.channel_workflow != "sensitive_channel")
                        || (*w == Workflow::ReleaseChannel
                            && args.channel_workflow != "release_channel"));
                if !skip {
                    m.push((crate::load::Op::Workflow(*w), 1));
                }
            }
            m
        }
    };
    let plan = crate::load::LoadPlan {
        devices: args.devices,
        concurrency: args.concurrency,
        rate: args.rate.filter(|r| *r > 0.0),
        duration: args.duration.map(Duration::from_secs),
        requests: args.requests,
        mix,
        misbehave_percent: args.misbehave.min(100),
        gate: gate_names,
        resource: args.resource.clone(),
        server_pid: args.server_pid.or_else(|| spawned.map(|s| s.child.id())),
        json: args.json,
        seeded: spawned.and_then(|s| s.seeded.clone()),
    };
    let json_out = plan.json;
    let (report, ok) = crate::load::run(endpoint, plan).await?;
    if json_out {
        let _ = writeln!(std::io::stdout(), "{report}");
    } else {
        let _ = write!(std::io::stdout(), "{}", crate::load::render(&report));
    }
    Ok(ok)
}

/// The resources the gated operations use: flags, else the channel's metadata (the demo's JSON
/// names the artifact and build), fetched once by a set-up device.
async fn gate_names(
    args: &SimArgs,
    endpoint: &Endpoint,
) -> Result<crate::load::GateNames, CliError> {
    let (artifact, build) = match (&args.artifact, &args.build) {
        (Some(a), Some(b)) => (a.clone(), b.clone()),
        _ => {
            let device = SoftwareDevice::simulated()
                .map_err(|e| CliError(format!("simulated device: {e}")))?;
            let mut c = DeviceClient::new(endpoint.clone(), device);
            let e = |e: ClientError| CliError(format!("reading the channel's metadata: {e}"));
            c.enroll().await.map_err(e)?;
            c.register(&args.product).await.map_err(e)?;
            c.join(&args.channel, &args.channel_workflow)
                .await
                .map_err(e)?;
            let m = manifest(&c.metadata(&args.channel, None).await.map_err(e)?.body);
            let artifact = args.artifact.clone().or(m.artifact).ok_or_else(|| {
                CliError(
                    "no artifact: give --artifact or serve metadata with an \"artifact\" field"
                        .into(),
                )
            })?;
            let build = args.build.clone().or(m.build).ok_or_else(|| {
                CliError("no build: give --build or serve metadata with a \"build\" field".into())
            })?;
            (artifact, build)
        }
    };
    Ok(crate::load::GateNames {
        product: args.product.clone(),
        channel: args.channel.clone(),
        channel_workflow: args.channel_workflow.clone(),
        artifact,
        build,
    })
}

fn endpoint(args: &SimArgs, spawned: Option<&Spawned>) -> Result<Endpoint, CliError> {
    let ca_path = spawned.map_or(args.tls_ca.clone(), |s| s.ca.clone());
    let ca = ca_path
        .as_deref()
        .map(|p| crate::trust::read_limited(p, 1024 * 1024))
        .transpose()?;
    let url = spawned.map_or(args.server.as_str(), |s| s.url.as_str());
    let endpoint = Endpoint::new(url, ca.as_deref()).map_err(|e| CliError(e.to_string()))?;
    if args.http2 && !endpoint.is_tls() {
        return Err(CliError(
            "--http2 needs an https:// server (HTTP/2 is negotiated in TLS)".into(),
        ));
    }
    Ok(if args.http2 {
        endpoint.with_http2()
    } else {
        endpoint
    })
}

/// Waits (at most `limit`) until the service answers `/readyz` with 200, so that `sim` started
/// right after `serve` does not race it; the readiness document.
async fn wait_ready(endpoint: &Endpoint, limit: Duration) -> Result<Value, CliError> {
    let started = std::time::Instant::now();
    loop {
        let last = match endpoint.connect().await {
            Ok(mut c) => match c.send("GET", "/readyz", &[], b"", 1024 * 1024).await {
                Ok(r) if r.status == 200 => return Ok(r.json()),
                Ok(r) => format!("/readyz answered {}: {}", r.status, r.json()),
                Err(e) => e.to_string(),
            },
            // A TLS or configuration failure will not go away by waiting.
            Err(e @ ClientError::Config(_)) => return Err(CliError(e.to_string())),
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= limit {
            return Err(CliError(format!(
                "the service at {} is not ready after {} s ({last})",
                endpoint.url(""),
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the run counted.
#[derive(Default)]
struct Tally {
    steps: u32,
    ok: u32,
}

impl Tally {
    /// Prints one line; `false` when standard output is closed (`sim | head`): then the run
    /// stops quietly instead of panicking.
    fn line(&mut self, mut line: Value, ok: bool) -> bool {
        self.steps += 1;
        if ok {
            self.ok += 1;
        }
        if let Some(o) = line.as_object_mut() {
            o.insert("ok".into(), json!(ok));
        }
        writeln!(std::io::stdout(), "{line}").is_ok()
    }

    /// A step's outcome as a line.
    fn step<T>(
        &mut self,
        device: u32,
        step: &str,
        r: &Result<T, ClientError>,
        detail: Value,
    ) -> bool {
        let mut line = json!({"device": device, "step": step});
        match r {
            Ok(_) => {
                if let (Some(o), Some(d)) = (line.as_object_mut(), detail.as_object()) {
                    o.extend(d.clone());
                }
            }
            Err(e) => {
                if let Some(o) = line.as_object_mut() {
                    o.extend(error_json(e));
                }
            }
        }
        self.line(line, r.is_ok())
    }
}

fn error_json(e: &ClientError) -> serde_json::Map<String, Value> {
    let v = match e {
        ClientError::Refused { status, code, .. } => json!({"status": status, "error": code}),
        ClientError::Ineligible { workflow, reasons } => {
            json!({"workflow": workflow, "decision": "ineligible", "reasons": reasons})
        }
        other => json!({"error": other.to_string()}),
    };
    v.as_object().cloned().unwrap_or_default()
}

async fn run_devices(args: &SimArgs, spawned: Option<&Spawned>) -> Result<bool, CliError> {
    let endpoint = endpoint(args, spawned)?;
    let ready = wait_ready(&endpoint, Duration::from_secs(args.wait_secs)).await?;
    let gate = ready.get("ota_gate").and_then(Value::as_bool) == Some(true);
    let mut tally = Tally::default();
    let sim = |e: attest_device::DeviceError| CliError(format!("simulated device: {e}"));
    for n in 0..args.devices {
        let device = SoftwareDevice::simulated().map_err(sim)?;
        let mut client = DeviceClient::new(endpoint.clone(), device);
        let d = client.enroll().await;
        let ok = matches!(&d, Ok(d) if d.is_eligible());
        let line = match &d {
            Ok(d) => {
                json!({"device": n, "step": "attestation", "workflow": "enrollment", "decision": d.decision, "reasons": d.reasons})
            }
            Err(e) => {
                let mut l = json!({"device": n, "step": "attestation", "workflow": "enrollment"});
                if let Some(o) = l.as_object_mut() {
                    o.extend(error_json(e));
                }
                l
            }
        };
        if !tally.line(line, ok) {
            return Ok(false);
        }
        if !ok {
            continue;
        }
        let going = if gate {
            ota_flow(args, n, &mut client, &mut tally).await
        } else {
            every_workflow(args, n, &mut client, &mut tally).await
        };
        if !going {
            return Ok(false);
        }
    }
    eprintln!(
        "sim: {} devices, {} steps, {} succeeded{}",
        args.devices,
        tally.steps,
        tally.ok,
        if endpoint.is_tls() {
            " (TLS, proofs bound to the connection)"
        } else {
            ""
        }
    );
    Ok(tally.steps == tally.ok)
}

/// Attestations for the six gated workflows; `false` when output is closed.
async fn every_workflow(
    args: &SimArgs,
    n: u32,
    client: &mut DeviceClient,
    tally: &mut Tally,
) -> bool {
    for workflow in Workflow::ALL.iter().skip(1) {
        let w = workflow.as_str();
        let (line, ok) = match client.attest(w, &args.resource).await {
            Ok(d) => (
                json!({"device": n, "step": "attestation", "workflow": w, "decision": d.decision, "reasons": d.reasons}),
                d.is_eligible(),
            ),
            Err(e) => {
                let mut l = json!({"device": n, "step": "attestation", "workflow": w});
                if let Some(o) = l.as_object_mut() {
                    o.extend(error_json(&e));
                }
                (l, false)
            }
        };
        if !tally.line(line, ok) {
            return false;
        }
    }
    true
}

/// The demo's metadata: a JSON stand-in for a signed manifest (`build`, `artifact`, `sha256`).
struct Manifest {
    artifact: Option<String>,
    build: Option<String>,
    sha256: Option<String>,
}

fn manifest(bytes: &[u8]) -> Manifest {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    Manifest {
        artifact: text("artifact"),
        build: text("build"),
        sha256: text("sha256"),
    }
}

/// Registration, membership, metadata, a resumed download, an update authorization; `false`
/// when output is closed.
async fn ota_flow(args: &SimArgs, n: u32, client: &mut DeviceClient, tally: &mut Tally) -> bool {
    let r = client.register(&args.product).await;
    if !tally.step(n, "registration", &r, json!({"product": args.product})) {
        return false;
    }
    if r.is_err() {
        return true;
    }
    let r = client.join(&args.channel, &args.channel_workflow).await;
    if !tally.step(n, "membership", &r, json!({"channel": args.channel})) {
        return false;
    }
    if r.is_err() {
        return true;
    }
    let r = client.metadata(&args.channel, None).await;
    let m = r.as_ref().map(|m| manifest(&m.body)).ok();
    let bytes = r.as_ref().map(|m| m.body.len()).unwrap_or_default();
    if !tally.step(
        n,
        "metadata",
        &r,
        json!({"channel": args.channel, "bytes": bytes}),
    ) {
        return false;
    }
    if r.is_err() {
        return true;
    }
    let artifact = args
        .artifact
        .clone()
        .or_else(|| m.as_ref().and_then(|m| m.artifact.clone()));
    let build = args
        .build
        .clone()
        .or_else(|| m.as_ref().and_then(|m| m.build.clone()));
    let expected = m.and_then(|m| m.sha256);
    let Some(artifact) = artifact else {
        let e = Err::<(), _>(ClientError::Protocol(
            "no artifact: give --artifact or serve metadata with an \"artifact\" field".into(),
        ));
        return tally.step(n, "artifact", &e, Value::Null);
    };
    let r = resumed_download(client, &artifact, expected.as_deref()).await;
    let detail = r
        .as_ref()
        .map(|(len, split)| json!({"artifact": artifact, "bytes": len, "resumed_at": split}))
        .unwrap_or(Value::Null);
    if !tally.step(n, "artifact", &r, detail) {
        return false;
    }
    let Some(build) = build else {
        let e = Err::<(), _>(ClientError::Protocol(
            "no build: give --build or serve metadata with a \"build\" field".into(),
        ));
        return tally.step(n, "authorization", &e, Value::Null);
    };
    let r = client.authorize(&build).await;
    tally.step(n, "authorization", &r, json!({"build": build}))
}

/// Downloads `id` in two requests, the second from where the first stopped and on a new
/// connection (so with another TLS exporter); checks the SHA-256 when the metadata gives one.
/// The total length and where it resumed.
async fn resumed_download(
    client: &mut DeviceClient,
    id: &str,
    sha256: Option<&str>,
) -> Result<(u64, u64), ClientError> {
    // The first part: a probe for the length, then the first half.
    let head = client.artifact(id, 0, Some(0)).await?;
    let total = head
        .header("content-range")
        .and_then(|v| v.rsplit_once('/'))
        .and_then(|(_, t)| t.parse::<u64>().ok())
        .ok_or_else(|| ClientError::Protocol("a ranged answer without Content-Range".into()))?;
    let split = total / 2;
    let mut bytes = Vec::new();
    if split > 0 {
        let first = client.artifact(id, 0, Some(split - 1)).await?;
        bytes.extend_from_slice(&first.body);
    }
    // The connection drops; the download resumes on a new one.
    client.disconnect();
    let rest = client.artifact(id, split, None).await?;
    if rest.header("etag") != head.header("etag") {
        return Err(ClientError::Protocol(
            "the artifact changed while downloading".into(),
        ));
    }
    bytes.extend_from_slice(&rest.body);
    if bytes.len() as u64 != total {
        return Err(ClientError::Protocol(format!(
            "got {} bytes of {total}",
            bytes.len()
        )));
    }
    if let Some(want) = sha256 {
        let got = attest_android::hex(digest::digest(&digest::SHA256, &bytes).as_ref());
        if !got.eq_ignore_ascii_case(want) {
            return Err(ClientError::Protocol(
                "the artifact's SHA-256 is not the one in the metadata".into(),
            ));
        }
    }
    Ok((total, split))
}
