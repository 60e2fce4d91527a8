//! `enigm-attest sim --duration S` / `--requests N`: the fleet load generator. Simulated devices
//! (the one device client, `attest_device::client`, keep-alive, TLS when the URL is `https`)
//! run a weighted mix of workflows against a service, concurrently; a share of them misbehave
//! (replays, relays, unlocked and downgraded devices, stolen tokens) and their refusals are
//! counted as expected. The report gives throughput, latency percentiles per endpoint, decisions
//! by reason, unexpected outcomes (any makes the exit status 1) and, when the server's process
//! is known (`--spawn-server` or `--server-pid`), its CPU time per attestation against the
//! signature work the same operations need (the bound, measured in the same run).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attest_core::Workflow;
use attest_device::SoftwareDevice;
use attest_device::client::{ClientError, DeviceClient, Endpoint, Observer};
use attest_device::keydesc::value;
use serde_json::{Value, json};

use crate::trust::CliError;

/// One kind of operation of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// A new device enrolls.
    Enrollment,
    /// An enrolled device attests for this workflow (a fresh token) and, when the service
    /// gates OTA resources, makes the workflow's gated request with it.
    Workflow(Workflow),
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Enrollment => "enrollment",
            Op::Workflow(w) => w.as_str(),
        }
    }
}

/// Parses `enrollment=1,private_artifact=5,...` (weights are whole numbers; 0 leaves it out).
pub fn parse_mix(text: &str) -> Result<Vec<(Op, u32)>, CliError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| CliError(format!("--mix: {part:?} is not name=weight")))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| CliError(format!("--mix: {weight:?} is not a whole number")))?;
        let op = match name.trim() {
            "enrollment" => Op::Enrollment,
            n => Op::Workflow(Workflow::from_name(n).ok_or_else(|| {
                CliError(format!(
                    "--mix: unknown workflow {n:?} (enrollment, registration, protected_metadata, private_artifact, release_channel, sensitive_channel, update_authorization)"
                ))
            })?),
        };
        if weight > 0 {
            out.push((op, weight));
        }
    }
    if out.is_empty() {
        return Err(CliError("--mix: nothing with a weight above 0".into()));
    }
    Ok(out)
}

/// What the load run needs besides the endpoint.
pub struct LoadPlan {
    pub devices: u32,
    pub concurrency: u32,
    /// Operations started a second at most (open loop), when set.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub mix: Vec<(Op, u32)>,
    /// Percent of operations replaced by a misbehaviour.
    pub misbehave_percent: u32,
    pub gate: Option<GateNames>,
    /// Fallback resource of attestations when the service has no OTA gate.
    pub resource: String,
    pub server_pid: Option<u32>,
    pub json: bool,
    /// What was seeded into the server's database before it started, if anything.
    pub seeded: Option<Value>,
}

/// The names of the gated resources the devices use.
#[derive(Clone)]
pub struct GateNames {
    pub product: String,
    pub channel: String,
    pub channel_workflow: String,
    pub artifact: String,
    pub build: String,
}

impl GateNames {
    fn resource(&self, w: Workflow) -> &str {
        match w {
            Workflow::Registration => &self.product,
            Workflow::ProtectedMetadata | Workflow::ReleaseChannel | Workflow::SensitiveChannel => {
                &self.channel
            }
            Workflow::PrivateArtifact => &self.artifact,
            Workflow::UpdateAuthorization => &self.build,
            Workflow::Enrollment => "",
        }
    }
}

/// Latencies (µs) per route, as the client saw them.
#[derive(Default)]
struct Latencies(Mutex<BTreeMap<&'static str, Vec<u32>>>);

impl Latencies {
    fn observer(self: &Arc<Self>) -> Observer {
        let me = Arc::clone(self);
        Arc::new(move |route, took, _status| {
            if let Ok(mut m) = me.0.lock() {
                m.entry(route)
                    .or_default()
                    .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
        })
    }

    fn take(&self) -> BTreeMap<&'static str, Vec<u32>> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

/// Counts of the run.
#[derive(Default)]
struct Tally {
    ops: BTreeMap<&'static str, u64>,
    /// `eligible`, or the reason codes of refusals that were not expected.
    decisions: BTreeMap<String, u64>,
    /// Misbehaviour -> (expected refusals, unexpected outcomes).
    misbehaviours: BTreeMap<&'static str, (u64, u64)>,
    unexpected: Vec<String>,
    attestations: u64,
    gated: u64,
    enrollments: u64,
}

/// The misbehaviours, in the order they are taken.
const MISBEHAVIOURS: [&str; 5] = ["replay", "relay", "unlocked", "downgrade", "stolen_token"];

/// A small, fast generator for choosing operations (not for anything secret).
struct Pick(u64);

impl Pick {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn choose(mix: &[(Op, u32)], r: u64) -> Op {
    let total: u64 = mix.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut at = r % total.max(1);
    for (op, w) in mix {
        if at < u64::from(*w) {
            return *op;
        }
        at -= u64::from(*w);
    }
    mix.first().map_or(Op::Enrollment, |(op, _)| *op)
}

fn error_code(e: &ClientError) -> String {
    match e {
        ClientError::Refused { code, .. } => code.clone(),
        ClientError::Ineligible { reasons, .. } => reasons.join("+"),
        ClientError::Transport(_) => "transport".into(),
        ClientError::Protocol(_) => "protocol".into(),
        ClientError::Config(_) => "config".into(),
        ClientError::Device(_) => "device".into(),
    }
}

/// CPU time (user, system) of process `pid`, from `/proc`.
fn process_cpu(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (u, s) = (ticks(11)?, ticks(12)?);
    let hz = clock_ticks_per_sec();
    let d = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000) / hz);
    Some((d(u), d(s)))
}

/// `CLK_TCK`, the unit of `/proc/<pid>/stat` times (asked of `getconf` once; Linux's usual 100
/// when that fails).
fn clock_ticks_per_sec() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|v: &u64| *v > 0)
            .unwrap_or(100)
    })
}

/// Resident and peak resident memory (MiB) of process `pid`, from `/proc`.
fn process_memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// The signature work, per operation, measured here on one core (see [`bound`]).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// ECDSA P-256 verification of an ASN.1 signature (the leaf certificate, the K_dev proof).
    pub verify_asn1: Duration,
    /// ECDSA P-256 verification of a JWS signature (a token, a DPoP proof).
    pub verify_fixed: Duration,
    /// ES256 signing (a result, a token, an update authorization).
    pub sign: Duration,
}

impl Bound {
    /// One attestation after enrollment: leaf and proof verified, result and token signed
    /// (the CA links come from the verifier's cache).
    pub fn attestation(&self) -> Duration {
        2 * self.verify_asn1 + 2 * self.sign
    }
    /// One enrollment: the leaf verified, result and token signed.
    pub fn enrollment(&self) -> Duration {
        self.verify_asn1 + 2 * self.sign
    }
    /// One gated request: token and DPoP proof verified (an update authorization also signs).
    pub fn gated(&self) -> Duration {
        2 * self.verify_fixed
    }
}

/// Measures the signature work with the same key types the service uses, on this thread.
pub fn bound(iterations: u32) -> Result<Bound, CliError> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
    fn e<E>(_: E) -> CliError {
        CliError("crypto failure while measuring the bound".into())
    }
    let rng = SystemRandom::new();
    let asn1_pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(e)?;
    let asn1 = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        asn1_pkcs8.as_ref(),
    )
    .map_err(e)?;
    let fixed_pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(e)?;
    let fixed = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        fixed_pkcs8.as_ref(),
    )
    .map_err(e)?;
    let message = [0x42u8; 600];
    let asn1_sig = asn1.sign(&rng, &message).map_err(e)?;
    let fixed_sig = fixed.sign(&rng, &message).map_err(e)?;
    let asn1_pub = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        asn1.public_key().as_ref().to_vec(),
    );
    let fixed_pub = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        fixed.public_key().as_ref().to_vec(),
    );
    let time = |f: &mut dyn FnMut() -> bool| -> Result<Duration, CliError> {
        let started = thread_cpu();
        for _ in 0..iterations {
            if !f() {
                return Err(CliError("crypto failure while measuring the bound".into()));
            }
        }
        Ok((thread_cpu().saturating_sub(started)) / iterations.max(1))
    };
    Ok(Bound {
        verify_asn1: time(&mut || asn1_pub.verify(&message, asn1_sig.as_ref()).is_ok())?,
        verify_fixed: time(&mut || fixed_pub.verify(&message, fixed_sig.as_ref()).is_ok())?,
        sign: time(&mut || fixed.sign(&rng, &message).is_ok())?,
    })
}

/// This thread's CPU time (user + system), from `/proc/thread-self/stat`; wall time where
/// that is not available.
fn thread_cpu() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let read = || -> Option<Duration> {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    };
    read().unwrap_or_else(|| START.get_or_init(Instant::now).elapsed())
}

/// A device of the pool: its client, behind a lock (one operation at a time).
type Device = Arc<tokio::sync::Mutex<DeviceClient>>;

async fn new_device(
    endpoint: &Endpoint,
    latencies: &Arc<Latencies>,
) -> Result<DeviceClient, CliError> {
    let device =
        SoftwareDevice::simulated().map_err(|e| CliError(format!("simulated device: {e}")))?;
    Ok(DeviceClient::new(endpoint.clone(), device).with_observer(latencies.observer()))
}

/// Enrolls (and, with a gate, registers and joins the channel) one device.
async fn set_up(c: &mut DeviceClient, gate: Option<&GateNames>) -> Result<(), ClientError> {
    let d = c.enroll().await?;
    if !d.is_eligible() {
        return Err(ClientError::Ineligible {
            workflow: "enrollment".into(),
            reasons: d.reasons,
        });
    }
    if let Some(g) = gate {
        c.register(&g.product).await?;
        c.join(&g.channel, &g.channel_workflow).await?;
    }
    Ok(())
}

/// One normal operation; `Ok(())` when it did what an eligible device expects.
async fn run_op(
    op: Op,
    c: &mut DeviceClient,
    endpoint: &Endpoint,
    latencies: &Arc<Latencies>,
    plan: &LoadPlan,
) -> Result<(), ClientError> {
    match op {
        Op::Enrollment => {
            let mut fresh = new_device(endpoint, latencies)
                .await
                .map_err(|e| ClientError::Protocol(e.0))?;
            let d = fresh.enroll().await?;
            if d.is_eligible() {
                Ok(())
            } else {
                Err(ClientError::Ineligible {
                    workflow: "enrollment".into(),
                    reasons: d.reasons,
                })
            }
        }
        Op::Workflow(w) => {
            // A fresh attestation every time: the token cache would hide the work under test.
            c.forget_tokens();
            let Some(g) = &plan.gate else {
                let d = c.attest(w.as_str(), &plan.resource).await?;
                return if d.is_eligible() {
                    Ok(())
                } else {
                    Err(ClientError::Ineligible {
                        workflow: w.as_str().into(),
                        reasons: d.reasons,
                    })
                };
            };
            match w {
                Workflow::Registration => c.register(&g.product).await.map(drop),
                Workflow::ProtectedMetadata => c.metadata(&g.channel, None).await.map(drop),
                Workflow::PrivateArtifact => c.artifact(&g.artifact, 0, None).await.map(drop),
                Workflow::ReleaseChannel | Workflow::SensitiveChannel => {
                    c.join(&g.channel, w.as_str()).await.map(drop)
                }
                Workflow::UpdateAuthorization => c.authorize(&g.build).await.map(drop),
                Workflow::Enrollment => Ok(()),
            }
        }
    }
}

/// One misbehaviour; `Ok(code)` with the refusal it drew (expected when it is `want`).
async fn misbehave(
    kind: &'static str,
    c: &mut DeviceClient,
    other_token: Option<String>,
    plan: &LoadPlan,
) -> Result<(String, &'static str), ClientError> {
    let w = Workflow::Registration;
    let resource = plan
        .gate
        .as_ref()
        .map_or(plan.resource.as_str(), |g| g.resource(w))
        .to_owned();
    let decided = |d: attest_device::client::Decision| d.reasons.join("+");
    match kind {
        "replay" => {
            let body = c
                .attestation_body_with(w.as_str(), &resource, |_| {})
                .await?;
            c.post_attestation(&body).await?;
            let again = c.post_attestation(&body).await;
            Ok((
                again.map_or_else(|e| error_code(&e), decided),
                "replay_attempt",
            ))
        }
        "relay" => {
            // Evidence and proof made for one connection, carried on another.
            let body = c
                .attestation_body_with(w.as_str(), &resource, |_| {})
                .await?;
            c.disconnect();
            let d = c.post_attestation(&body).await;
            Ok((
                d.map_or_else(|e| error_code(&e), decided),
                "transport_binding_failed",
            ))
        }
        "unlocked" => {
            let boot_key = c.device().boot_key();
            let body = c
                .attestation_body_with(w.as_str(), &resource, |kd| {
                    kd.set_hw(704, value::root_of_trust(&boot_key, false, 0, &[0x11; 32]));
                })
                .await?;
            let d = c.post_attestation(&body).await;
            Ok((
                d.map_or_else(|e| error_code(&e), decided),
                "bootloader_unlocked",
            ))
        }
        "downgrade" => {
            let body = c
                .attestation_body_with(w.as_str(), &resource, |kd| {
                    kd.set_hw(706, value::int(202_512));
                })
                .await?;
            let d = c.post_attestation(&body).await;
            Ok((d.map_or_else(|e| error_code(&e), decided), "downgrade"))
        }
        _ => {
            // Another device's token with this device's DPoP key.
            let (Some(g), Some(token)) = (&plan.gate, other_token) else {
                return Ok(("skipped".into(), "skipped"));
            };
            let path = format!("/v1/ota/artifacts/{}", g.artifact);
            let r = c.gated("GET", &path, &token, b"", &[]).await?;
            Ok((
                r.code().unwrap_or_else(|| r.status.to_string()),
                "invalid_dpop_proof",
            ))
        }
    }
}

/// Runs the plan against `endpoint`; the report (JSON) and whether nothing unexpected happened.
pub async fn run(endpoint: Endpoint, plan: LoadPlan) -> Result<(Value, bool), CliError> {
    let plan = Arc::new(plan);
    let latencies = Arc::new(Latencies::default());
    let setup_started = Instant::now();
    let n = plan.devices.max(1) as usize;
    let progress = progress_bar(&plan);
    progress.set_message("enrolling devices");

    // Set-up: every device enrolled (registered and a channel member with a gate), C at once.
    let mut devices: Vec<Device> = Vec::with_capacity(n);
    let mut setup_errors = Vec::new();
    for chunk_start in (0..n).step_by(plan.concurrency.max(1) as usize) {
        let chunk_end = (chunk_start + plan.concurrency.max(1) as usize).min(n);
        let mut tasks = Vec::new();
        for _ in chunk_start..chunk_end {
            let (endpoint, latencies, plan) =
                (endpoint.clone(), Arc::clone(&latencies), Arc::clone(&plan));
            tasks.push(tokio::spawn(async move {
                let mut c = new_device(&endpoint, &latencies).await?;
                set_up(&mut c, plan.gate.as_ref())
                    .await
                    .map_err(|e| CliError(format!("setting up a device: {e}")))?;
                Ok::<_, CliError>(c)
            }));
        }
        for t in tasks {
            match t.await {
                Ok(Ok(c)) => devices.push(Arc::new(tokio::sync::Mutex::new(c))),
                Ok(Err(e)) => setup_errors.push(e.0),
                Err(e) => setup_errors.push(e.to_string()),
            }
        }
    }
    if let Some(first) = setup_errors.first() {
        return Err(CliError(format!(
            "{} of {n} devices could not be set up; first: {first}",
            setup_errors.len()
        )));
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let _ = latencies.take();

    // The load.
    progress.set_message("load");
    let cpu_before = plan.server_pid.and_then(process_cpu);
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let counter = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let devices = Arc::new(devices);
    let mut workers = Vec::new();
    for w in 0..plan.concurrency.max(1) {
        let (plan, devices, counter, tally, latencies, endpoint, progress) = (
            Arc::clone(&plan),
            Arc::clone(&devices),
            Arc::clone(&counter),
            Arc::clone(&tally),
            Arc::clone(&latencies),
            endpoint.clone(),
            progress.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut pick = Pick(
                0x9e37_79b9_7f4a_7c15 ^ (u64::from(w) + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
            );
            loop {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if let Some(rate) = plan.rate {
                    // Operation i is due at i / rate seconds after the start.
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                if plan.requests.is_some_and(|r| i >= r)
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                let r = pick.next();
                let misbehaving = plan.misbehave_percent > 0
                    && (r >> 32) % 100 < u64::from(plan.misbehave_percent);
                let slot = usize::try_from(i).unwrap_or(0) % devices.len().max(1);
                let Some(dev) = devices.get(slot) else { break };
                if misbehaving {
                    let kind = MISBEHAVIOURS
                        .get(usize::try_from((r >> 8) % MISBEHAVIOURS.len() as u64).unwrap_or(0))
                        .copied()
                        .unwrap_or("replay");
                    let kind = if kind == "relay" && !endpoint.is_tls() {
                        "replay"
                    } else {
                        kind
                    };
                    let kind = if kind == "stolen_token" && plan.gate.is_none() {
                        "unlocked"
                    } else {
                        kind
                    };
                    // The stolen token: another device's, taken before this one is locked.
                    let other_token = if kind == "stolen_token" {
                        let other = devices.get((slot + 1) % devices.len().max(1));
                        match (other, &plan.gate) {
                            (Some(o), Some(g)) if devices.len() > 1 => o
                                .lock()
                                .await
                                .token("private_artifact", &g.artifact)
                                .await
                                .ok(),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    let mut c = dev.lock().await;
                    let out = misbehave(kind, &mut c, other_token, &plan).await;
                    drop(c);
                    if let Ok(mut t) = tally.lock() {
                        let entry = t.misbehaviours.entry(kind).or_default();
                        match &out {
                            Ok((code, want))
                                if code.split('+').any(|c| c == *want) || *want == "skipped" =>
                            {
                                entry.0 += 1
                            }
                            Ok((code, want)) => {
                                entry.1 += 1;
                                t.unexpected
                                    .push(format!("{kind}: expected {want}, got {code}"));
                            }
                            Err(e) => {
                                entry.1 += 1;
                                t.unexpected.push(format!("{kind}: {e}"));
                            }
                        }
                    }
                } else {
                    let op = choose(&plan.mix, r);
                    let mut c = dev.lock().await;
                    let out = run_op(op, &mut c, &endpoint, &latencies, &plan).await;
                    drop(c);
                    if let Ok(mut t) = tally.lock() {
                        *t.ops.entry(op.name()).or_default() += 1;
                        match op {
                            Op::Enrollment => t.enrollments += 1,
                            Op::Workflow(_) => {
                                t.attestations += 1;
                                if plan.gate.is_some() {
                                    t.gated += 1;
                                }
                            }
                        }
                        match out {
                            Ok(()) => *t.decisions.entry("eligible".into()).or_default() += 1,
                            Err(e) => {
                                *t.decisions.entry(error_code(&e)).or_default() += 1;
                                if t.unexpected.len() < 1000 {
                                    t.unexpected.push(format!("{}: {e}", op.name()));
                                }
                            }
                        }
                    }
                }
                progress.inc(1);
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| CliError(format!("load worker: {e}")))?;
    }
    let wall = started.elapsed();
    let cpu_after = plan.server_pid.and_then(process_cpu);
    let memory = plan.server_pid.and_then(process_memory);
    progress.finish_and_clear();

    let tally = std::mem::take(&mut *tally.lock().map_err(|_| CliError("tally lock".into()))?);
    let mut routes = serde_json::Map::new();
    for (route, mut v) in latencies.take() {
        v.sort_unstable();
        let q = |p: f64| {
            let i = ((v.len() as f64 * p).ceil() as usize).saturating_sub(1);
            v.get(i.min(v.len().saturating_sub(1)))
                .map_or(0.0, |us| f64::from(*us) / 1000.0)
        };
        routes.insert(
            route.to_owned(),
            json!({"count": v.len(), "per_sec": v.len() as f64 / wall.as_secs_f64(),
                   "p50_ms": q(0.50), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": q(1.0)}),
        );
    }
    let attestations = routes
        .get("POST /v1/attestations")
        .and_then(|r| r.get("count"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let ops_total: u64 = tally.ops.values().sum::<u64>()
        + tally
            .misbehaviours
            .values()
            .map(|(a, b)| a + b)
            .sum::<u64>();
    let bound = bound(2000)?;
    let server = match (cpu_before, cpu_after) {
        (Some((u0, s0)), Some((u1, s1))) => {
            let (user, sys) = (u1.saturating_sub(u0), s1.saturating_sub(s0));
            let cpu = user + sys;
            let bound_total = bound.attestation()
                * u32::try_from(tally.attestations).unwrap_or(u32::MAX)
                + bound.enrollment() * u32::try_from(tally.enrollments).unwrap_or(u32::MAX)
                + bound.gated() * u32::try_from(tally.gated).unwrap_or(u32::MAX);
            let per_att = if attestations > 0 {
                cpu.as_secs_f64() * 1000.0 / attestations as f64
            } else {
                0.0
            };
            json!({
                "cpu_user_s": user.as_secs_f64(), "cpu_system_s": sys.as_secs_f64(),
                "cpu_ms_per_attestation_request": per_att,
                "bound_s": bound_total.as_secs_f64(),
                "ratio_to_bound": if bound_total.is_zero() { 0.0 } else { cpu.as_secs_f64() / bound_total.as_secs_f64() },
                "rss_mib": memory.map(|m| m.0), "peak_rss_mib": memory.map(|m| m.1),
            })
        }
        _ => Value::Null,
    };
    let report = json!({
        "devices": n, "concurrency": plan.concurrency, "rate": plan.rate, "tls": endpoint.is_tls(), "http2_offered": endpoint.offers_http2(),
        "gate": plan.gate.is_some(), "setup_s": setup_secs,
        "duration_s": wall.as_secs_f64(), "operations": ops_total,
        "operations_per_sec": ops_total as f64 / wall.as_secs_f64(),
        "attestations": attestations,
        "attestations_per_sec": attestations as f64 / wall.as_secs_f64(),
        "mix": tally.ops, "outcomes": tally.decisions,
        "misbehaviours": tally.misbehaviours.iter().map(|(k, (e, u))| (k.to_string(), json!({"expected_refusals": e, "unexpected": u}))).collect::<serde_json::Map<_, _>>(),
        "unexpected": tally.unexpected.len(),
        "unexpected_examples": tally.unexpected.iter().take(5).collect::<Vec<_>>(),
        "routes": routes,
        "bound_us": {"verify_asn1": bound.verify_asn1.as_secs_f64() * 1e6, "verify_jws": bound.verify_fixed.as_secs_f64() * 1e6, "sign_es256": bound.sign.as_secs_f64() * 1e6,
                     "per_attestation": bound.attestation().as_secs_f64() * 1e6, "per_gated_request": bound.gated().as_secs_f64() * 1e6},
        "server": server,
        "seeded": plan.seeded,
    });
    let ok = tally.unexpected.is_empty();
    Ok((report, ok))
}

fn progress_bar(plan: &LoadPlan) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if plan.json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match plan.requests {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {msg} {pos} operations [{elapsed_precise}] {per_sec}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The report for people.
pub fn render(report: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let f = |k: &str| report.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let u = |k: &str| report.get(k).and_then(Value::as_u64).unwrap_or(0);
    let _ = writeln!(
        out,
        "{} operations in {:.1} s ({:.0}/s), {} attestations ({:.0}/s); {} devices, concurrency {}, {}{}",
        u("operations"),
        f("duration_s"),
        f("operations_per_sec"),
        u("attestations"),
        f("attestations_per_sec"),
        u("devices"),
        u("concurrency"),
        match (report["tls"] == true, report["http2_offered"] == true) {
            (true, true) => "TLS, HTTP/2 offered",
            (true, false) => "TLS",
            _ => "plain HTTP",
        },
        if report["gate"] == true {
            ", OTA gate"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "{:<44} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "route", "count", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    if let Some(routes) = report["routes"].as_object() {
        for (route, r) in routes {
            let g = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            let _ = writeln!(
                out,
                "{route:<44} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                r["count"],
                g("p50_ms"),
                g("p95_ms"),
                g("p99_ms"),
                g("max_ms")
            );
        }
    }
    let _ = writeln!(out, "outcomes: {}", report["outcomes"]);
    let _ = writeln!(out, "misbehaviours: {}", report["misbehaviours"]);
    let _ = writeln!(
        out,
        "unexpected: {} {}",
        report["unexpected"], report["unexpected_examples"]
    );
    let b = &report["bound_us"];
    let _ = writeln!(
        out,
        "bound (this machine, one core): {:.0} µs per attestation, {:.0} µs per gated request",
        b["per_attestation"].as_f64().unwrap_or(0.0),
        b["per_gated_request"].as_f64().unwrap_or(0.0)
    );
    if let Some(s) = report["server"].as_object() {
        let g = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let _ = writeln!(
            out,
            "server CPU: {:.2} s user + {:.2} s system; {:.3} ms per attestation request; {:.2}x the signature bound of the same operations; RSS {:.1} MiB (peak {:.1})",
            g("cpu_user_s"),
            g("cpu_system_s"),
            g("cpu_ms_per_attestation_request"),
            g("ratio_to_bound"),
            g("rss_mib"),
            g("peak_rss_mib"),
        );
    }
    if let Some(s) = report["seeded"].as_object() {
        let _ = writeln!(
            out,
            "seeded: {} devices, {:.0} bytes each in the database",
            s.get("devices").unwrap_or(&Value::Null),
            s.get("bytes_per_device")
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        );
    }
    out
}
