//! The use cases of enigm-attest: issue a challenge, appraise an attestation, enroll and pin a
//! device, decide with the policy, sign results and tokens; plus the admin operations.
//!
//! This room owns the order of operations and the binding rules (docs/protocol.md). It reads
//! the clock once per request and passes that instant down; it knows nothing of HTTP. The
//! challenge is consumed atomically before anything else, so a nonce is spent even when the
//! evidence then fails.

#![forbid(unsafe_code)]

use std::sync::{Arc, RwLock};

use attest_android::{
    AnchorId, Claims, Rejection, SecurityLevel, StatusList, TrustAnchors, VerifiedEvidence,
    Verifier,
};
use attest_core::{Clock, ReasonCode, UnixTime, Workflow};
use attest_policy::{Decision, Policy};
use attest_store::{
    ChallengeRecord, DeviceRecord, DeviceStatus, HighWater, OutcomeCount, OutcomeRecord, Store,
    StoreError,
};
use attest_token::{Signer, b64url};
use aws_lc_rs::{digest, hmac, rand};
use serde_json::{Value, json};

mod binding;
mod gate;

pub use attest_store::Registration;
pub use gate::{DPOP_WINDOW_SECS, GateCode, GateRequest, Grant};

pub use attest_token::{proof_message, proof_message_v2};

/// Largest status list accepted (also through the admin API).
pub use attest_android::MAX_STATUS_LIST_BYTES;

/// Most certificates accepted in one request (checked before decoding).
pub const MAX_CHAIN_CERTIFICATES: usize = 10;
/// Longest resource name.
pub const MAX_RESOURCE_LEN: usize = 128;
/// Longest challenge id accepted on input (ours are `ch_` and 22 base64url characters).
pub const MAX_CHALLENGE_ID_LEN: usize = 64;

/// Whether `id` has the shape of a challenge id we issue (`[A-Za-z0-9_-]`, at most
/// [`MAX_CHALLENGE_ID_LEN`]).
pub fn is_challenge_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CHALLENGE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so that a crash never
/// leaves a half-written file where a good one was.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // A name of its own per write: two writers never rename each other's half-written file.
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable once the directory is synced.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Whether `s` has the shape of a device handle: `dh_` and 43 base64url characters (an
/// HMAC-SHA-256, unpadded).
pub fn is_device_handle(s: &str) -> bool {
    s.strip_prefix("dh_").is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Whether `s` is an acceptable resource name: 1 to 128 of `A-Z a-z 0-9 . _ -`, and not a path
/// step (`.` or `..`). No control, bidi or other characters a log or a file system could take
/// for something else.
pub fn is_resource_name(s: &str) -> bool {
    (1..=MAX_RESOURCE_LEN).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Tunables of the service.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// How long a challenge may be answered.
    pub challenge_ttl_secs: i64,
    /// Lifetime of eligibility tokens.
    pub token_ttl_secs: i64,
    /// Lifetime of signed results.
    pub result_ttl_secs: i64,
    /// How long outcomes are kept.
    pub outcome_retention_secs: i64,
    /// `iss` of results and tokens.
    pub issuer: String,
    /// How old Google's status list may be before chains ending at Google's anchors are refused
    /// with `revocation_unavailable` (a list never fetched counts as too old).
    pub google_status_max_age_secs: i64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            challenge_ttl_secs: 120,
            token_ttl_secs: 300,
            result_ttl_secs: 300,
            outcome_retention_secs: 30 * 86_400,
            issuer: "enigm-attest".to_owned(),
            google_status_max_age_secs: 86_400,
        }
    }
}

/// What the verifier trusts and how it decides; replaced as a whole on reload.
#[derive(Debug)]
pub struct Trust {
    /// The policy in force.
    pub policy: Policy,
    /// The anchors in force.
    pub anchors: TrustAnchors,
    /// The revocation list for every chain (operator-supplied), when one is configured.
    pub status_list: Option<StatusList>,
    /// Google's status list in this snapshot: the verifier checks it, and its age decides
    /// whether chains at Google's anchors may be decided, from the same snapshot.
    google: Option<Arc<GoogleList>>,
    verifier: Verifier,
}

/// Google's status list and when it was last fetched or confirmed unchanged (an HTTP 304 moves
/// the time without replacing the list, so it is shared by every snapshot holding the list).
#[derive(Debug)]
struct GoogleList {
    list: StatusList,
    fetched_at: std::sync::atomic::AtomicI64,
}

impl Trust {
    /// Bundles a policy, anchors and an optional status list for every chain.
    pub fn new(policy: Policy, anchors: TrustAnchors, status_list: Option<StatusList>) -> Trust {
        Trust::build(policy, anchors, status_list, None)
    }

    fn build(
        policy: Policy,
        anchors: TrustAnchors,
        status_list: Option<StatusList>,
        google: Option<Arc<GoogleList>>,
    ) -> Trust {
        let mut verifier = Verifier::new(anchors.clone()).with_link_cache(16_384);
        if let Some(list) = &status_list {
            verifier = verifier.with_status_list(list.clone());
        }
        if let Some(g) = &google {
            verifier = verifier.with_google_status_list(g.list.clone());
        }
        Trust {
            policy,
            anchors,
            status_list,
            google,
            verifier,
        }
    }

    /// Google's list in this snapshot: its entry count and fetch time.
    fn google_state(&self) -> Option<(usize, UnixTime)> {
        self.google.as_ref().map(|g| {
            (
                g.list.len(),
                UnixTime::from_secs(g.fetched_at.load(std::sync::atomic::Ordering::SeqCst)),
            )
        })
    }

    /// Anchor names, for logs and readiness.
    pub fn anchor_names(&self) -> Vec<String> {
        self.anchors.iter().map(|a| a.id().name()).collect()
    }
}

/// What is known of Google's status list: for `/readyz`, metrics and the freshness rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationReport {
    /// Entries of the list in force (`None`: no list yet).
    pub entries: Option<usize>,
    /// When the list in force was last fetched or confirmed unchanged.
    pub fetched_at: Option<UnixTime>,
    /// Seconds since then, at the time of the report.
    pub age_secs: Option<i64>,
    /// Whether chains at Google's anchors are accepted now (the list is younger than the maximum
    /// age).
    pub fresh: bool,
    /// The maximum age in force.
    pub max_age_secs: i64,
    /// When the last fetch was tried, and what came of it (`ok`, `not_modified`, or the error).
    pub last_attempt: Option<(UnixTime, String)>,
}

/// Reloads the trust configuration from wherever it came from (the policy file).
pub type TrustLoader = Box<dyn Fn() -> Result<Trust, String> + Send + Sync>;

/// Why a request could not be appraised. A device found ineligible is not an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request was refused with a stable reason code.
    #[error("{code}: {message}")]
    Refused {
        /// Stable code.
        code: ReasonCode,
        /// Explanation for the client.
        message: String,
    },
    /// A bad request that is not about evidence (unknown workflow, bad field).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No such object (admin API).
    #[error("not found: {0}")]
    NotFound(String),
    /// Storage failed; details go to the log only.
    #[error("storage unavailable")]
    Store(#[from] StoreError),
    /// Something else failed inside the service.
    #[error("internal error: {0}")]
    Internal(String),
    /// A gated request was refused (docs/protocol.md, "The OTA gate").
    #[error("{}: {message}", code.as_str())]
    Gate {
        /// Stable code.
        code: GateCode,
        /// Explanation for the client.
        message: String,
    },
    /// The chain ends at Google's anchors and Google's status list is missing or older than
    /// the maximum age: revocation cannot be checked, so nothing is decided (retry later).
    #[error("revocation unavailable: {0}")]
    RevocationUnavailable(String),
}

fn refused(code: ReasonCode, message: impl Into<String>) -> ServiceError {
    ServiceError::Refused {
        code,
        message: message.into(),
    }
}

/// A challenge request.
#[derive(Clone, Debug, Default)]
pub struct ChallengeRequest {
    /// Workflow name.
    pub workflow: String,
    /// Resource (channel, artifact, build), if the workflow has one.
    pub resource: Option<String>,
    /// The enrolled device asking (required for every workflow but enrollment).
    pub device_handle: Option<String>,
}

/// An issued challenge.
#[derive(Clone, Debug)]
pub struct IssuedChallenge {
    /// Identifier to send back with the evidence.
    pub challenge_id: String,
    /// The 32-byte nonce to attest (base64url).
    pub nonce: String,
    /// When it stops being accepted.
    pub expires_at: UnixTime,
}

/// An attestation request.
#[derive(Clone, Debug, Default)]
pub struct AttestationRequest {
    /// The challenge being answered.
    pub challenge_id: String,
    /// DER certificates, leaf first.
    pub certificate_chain: Vec<Vec<u8>>,
    /// The enrolled device's handle (every workflow but enrollment).
    pub device_handle: Option<String>,
    /// Signature by the enrolled device key over [`proof_message`] (or, on a TLS connection
    /// the service terminates, [`proof_message_v2`]).
    pub proof: Option<Vec<u8>>,
    /// The TLS exporter value of the connection the request came on (RFC 9266), when the
    /// service terminates TLS.
    pub tls_exporter: Option<[u8; 32]>,
    /// The exporter value the client put in its proof v2 (the request body's `tls_exporter`).
    pub claimed_exporter: Option<[u8; 32]>,
}

/// The answer to an attestation.
#[derive(Clone, Debug)]
pub struct AttestationResponse {
    /// The workflow decided for.
    pub workflow: Workflow,
    /// Eligible or not.
    pub eligible: bool,
    /// Every reason (empty when eligible).
    pub reasons: Vec<ReasonCode>,
    /// The device's handle (new at enrollment), when the device is bound.
    pub device_handle: Option<String>,
    /// Eligibility token (eligible only).
    pub token: Option<String>,
    /// Signed result (always).
    pub result: String,
}

/// The service.
pub struct Service {
    store: Store,
    trust: RwLock<Arc<Trust>>,
    /// When Google's list was last fetched, and what came of it.
    google_last_attempt: RwLock<Option<(UnixTime, String)>>,
    /// Held by every read-modify-write of the trust snapshot (reload, Google's list, the admin
    /// list), so that none undoes another.
    trust_writes: std::sync::Mutex<()>,
    loader: Option<TrustLoader>,
    /// The status list an operator put through the admin API: it outlives policy reloads and,
    /// with a file, restarts.
    admin_status_list: RwLock<Option<StatusList>>,
    admin_status_list_file: Option<std::path::PathBuf>,
    signer: Signer,
    handle_key: hmac::Key,
    dpop_nonces: attest_token::DpopNonces,
    config: ServiceConfig,
    clock: Arc<dyn Clock>,
    /// Random per process: how this replica names itself in the fleet table.
    replica_id: String,
    started_at: UnixTime,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], ServiceError> {
    let mut b = [0u8; N];
    rand::fill(&mut b).map_err(|_| ServiceError::Internal("randomness unavailable".into()))?;
    Ok(b)
}

/// One attestation being decided: what every step needs, read once.
struct Ctx<'a> {
    challenge: &'a ChallengeRecord,
    workflow: Workflow,
    trust: &'a Trust,
    now: UnixTime,
    /// The TLS exporter of the request's connection, when the service terminates TLS.
    tls_exporter: Option<[u8; 32]>,
    /// The exporter the client says it signed.
    claimed_exporter: Option<[u8; 32]>,
}

fn decision_name(reasons: &[ReasonCode]) -> &'static str {
    if reasons.is_empty() {
        "eligible"
    } else {
        "ineligible"
    }
}

fn outcome(cx: &Ctx<'_>, handle: Option<&str>, reasons: &[ReasonCode]) -> OutcomeRecord {
    OutcomeRecord {
        device_handle: handle.map(str::to_owned),
        workflow: cx.workflow.as_str().to_owned(),
        resource: cx.challenge.resource.clone(),
        decision: decision_name(reasons).to_owned(),
        reasons: reasons.iter().map(|r| r.as_str().to_owned()).collect(),
        policy_hash: cx.trust.policy.hash().to_owned(),
        created_at: cx.now,
    }
}

/// Normalised patch level (YYYYMMDD, 0 when absent) for pins.
pub(crate) fn ymd(p: Option<attest_android::PatchLevel>) -> i64 {
    p.map_or(0, |p| p.year_month_day())
}

/// The pin values of fresh claims.
fn high_water(c: &Claims) -> HighWater {
    HighWater {
        os_version: c.os_version.unwrap_or(0),
        os_patch_level: ymd(c.os_patch_level),
        vendor_patch_level: ymd(c.vendor_patch_level),
        boot_patch_level: ymd(c.boot_patch_level),
    }
}

/// Security level as pinned: 0 software, 1 TEE, 2 StrongBox.
pub(crate) fn level_number(l: SecurityLevel) -> i64 {
    match l {
        SecurityLevel::Software => 0,
        SecurityLevel::TrustedEnvironment => 1,
        SecurityLevel::StrongBox => 2,
    }
}

impl Service {
    /// A service over `store`, deciding with `trust`, signing with `signer`, deriving device
    /// handles with `handle_secret` (at least 32 bytes), reading time from `clock`.
    pub fn new(
        store: Store,
        trust: Trust,
        signer: Signer,
        handle_secret: &[u8],
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Service {
        Service {
            store,
            trust: RwLock::new(Arc::new(trust)),
            google_last_attempt: RwLock::new(None),
            trust_writes: std::sync::Mutex::new(()),
            loader: None,
            admin_status_list: RwLock::new(None),
            admin_status_list_file: None,
            signer,
            handle_key: hmac::Key::new(hmac::HMAC_SHA256, handle_secret),
            // Derived from the handle secret, which every replica shares: any replica checks a
            // nonce another one issued.
            dpop_nonces: attest_token::DpopNonces::new(
                hmac::sign(
                    &hmac::Key::new(hmac::HMAC_SHA256, handle_secret),
                    b"enigm-attest dpop nonces",
                )
                .as_ref(),
                gate::DPOP_WINDOW_SECS,
            ),
            config,
            replica_id: {
                let mut b = [0u8; 6];
                // Randomness failing here leaves a fixed id; heartbeats still work, the fleet
                // view merely merges such replicas.
                let _ = rand::fill(&mut b);
                format!("r-{}", attest_core::hex::encode(&b))
            },
            started_at: clock.now(),
            clock,
        }
    }

    /// Keeps the status list put through the admin API in `path` (written atomically before it
    /// takes effect), and puts the one already there in force. A list that no longer parses is
    /// an error: the service must not start believing nothing is revoked.
    pub fn with_status_list_file(
        mut self,
        path: std::path::PathBuf,
    ) -> Result<Service, ServiceError> {
        match std::fs::read(&path) {
            Ok(bytes) => {
                let list = StatusList::from_json(&bytes)
                    .map_err(|e| ServiceError::Internal(format!("{}: {e}", path.display())))?;
                self.put_admin_status_list(list);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ServiceError::Internal(format!("{}: {e}", path.display()))),
        }
        self.admin_status_list_file = Some(path);
        Ok(self)
    }

    fn put_admin_status_list(&self, list: StatusList) {
        let _writing = self.write_lock();
        self.put_admin_status_list_locked(list);
    }

    /// [`Service::put_admin_status_list`] with the write lock already held.
    fn put_admin_status_list_locked(&self, list: StatusList) {
        match self.admin_status_list.write() {
            Ok(mut g) => *g = Some(list.clone()),
            Err(p) => *p.into_inner() = Some(list.clone()),
        }
        let current = self.trust();
        self.set_trust(Trust::build(
            current.policy.clone(),
            current.anchors.clone(),
            Some(list),
            current.google.clone(),
        ));
    }

    fn admin_list(&self) -> Option<StatusList> {
        self.admin_status_list
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Lets `reload_policy` rebuild the trust configuration with `loader`.
    pub fn with_loader(mut self, loader: TrustLoader) -> Service {
        self.loader = Some(loader);
        self
    }

    /// The trust configuration in force.
    pub fn trust(&self) -> Arc<Trust> {
        self.trust
            .read()
            .map(|t| Arc::clone(&t))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    fn set_trust(&self, t: Trust) {
        let new = Arc::new(t);
        match self.trust.write() {
            Ok(mut guard) => *guard = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// The clock.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The published keys.
    pub fn jwks(&self) -> Value {
        self.signer.jwks()
    }

    /// The store (for readiness checks).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The device handle of a device key: HMAC-SHA256 under the deployment secret
    /// (docs/decisions/0006-device-handle.md).
    pub fn device_handle(&self, key_spki: &[u8]) -> String {
        format!(
            "dh_{}",
            b64url(hmac::sign(&self.handle_key, key_spki).as_ref())
        )
    }

    /// Issues a single-use challenge bound to workflow, resource and handle.
    pub async fn create_challenge(
        &self,
        req: ChallengeRequest,
    ) -> Result<IssuedChallenge, ServiceError> {
        let now = self.clock.now();
        let workflow = Workflow::from_name(&req.workflow).ok_or_else(|| {
            ServiceError::InvalidRequest(format!("unknown workflow {:?}", req.workflow))
        })?;
        let resource = req.resource.unwrap_or_default();
        if !resource.is_empty() && !is_resource_name(&resource) {
            return Err(ServiceError::InvalidRequest(format!(
                "resource must be 1 to {MAX_RESOURCE_LEN} characters of A-Z a-z 0-9 . _ - (and not . or ..)"
            )));
        }
        if let Some(h) = &req.device_handle {
            if !is_device_handle(h) {
                return Err(ServiceError::InvalidRequest(
                    "device_handle is not a device handle (dh_ and 43 base64url characters)".into(),
                ));
            }
        }
        if workflow != Workflow::Enrollment && req.device_handle.is_none() {
            return Err(refused(
                ReasonCode::DeviceHandleMismatch,
                format!("workflow {workflow} needs the enrolled device's device_handle"),
            ));
        }
        if workflow == Workflow::Enrollment && req.device_handle.is_some() {
            return Err(ServiceError::InvalidRequest(
                "enrollment challenges carry no device_handle".into(),
            ));
        }
        // Challenges only for enrolled, active devices: nothing is stored for anyone else.
        if let Some(h) = &req.device_handle {
            match self.store.device(h).await? {
                None => {
                    return Err(refused(
                        ReasonCode::DeviceHandleMismatch,
                        "no enrolled device has this device_handle",
                    ));
                }
                Some(d) if d.status == DeviceStatus::Revoked => {
                    return Err(refused(
                        ReasonCode::DeviceRevoked,
                        "this device was revoked",
                    ));
                }
                Some(_) => {}
            }
        }
        let id = format!("ch_{}", b64url(&random_bytes::<16>()?));
        let nonce = random_bytes::<32>()?;
        let expires_at = now.saturating_add_secs(self.config.challenge_ttl_secs);
        self.store
            .insert_challenge(&ChallengeRecord {
                id: id.clone(),
                nonce: nonce.to_vec(),
                workflow: workflow.as_str().to_owned(),
                resource,
                device_handle: req.device_handle,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok(IssuedChallenge {
            challenge_id: id,
            nonce: b64url(&nonce),
            expires_at,
        })
    }

    /// Consumes a challenge (atomically: at most one caller gets it) and reads its workflow.
    async fn spend_challenge(
        &self,
        challenge_id: &str,
    ) -> Result<(ChallengeRecord, Workflow), ServiceError> {
        // Only ids of the shape we issue reach the database: anything else (a NUL, which
        // PostgreSQL refuses in text, or megabytes) is simply unknown.
        if !is_challenge_id(challenge_id) {
            return Err(refused(
                ReasonCode::ReplayAttempt,
                "unknown or already used challenge",
            ));
        }
        let challenge = self
            .store
            .consume_challenge(challenge_id)
            .await?
            .ok_or_else(|| {
                refused(
                    ReasonCode::ReplayAttempt,
                    "unknown or already used challenge",
                )
            })?;
        let workflow = Workflow::from_name(&challenge.workflow).ok_or_else(|| {
            ServiceError::Internal("stored challenge has an unknown workflow".into())
        })?;
        Ok((challenge, workflow))
    }

    /// Refuses an attestation request that could not be read (a certificate that is not base64,
    /// a proof that is not base64url, an unknown field, an oversized body) but whose challenge id
    /// could: the challenge is spent and the refusal recorded, as for any other answer to it
    /// (docs/protocol.md). Returns the error to send.
    pub async fn refuse_unreadable(
        &self,
        challenge_id: &str,
        code: ReasonCode,
        message: impl Into<String>,
    ) -> ServiceError {
        let message = message.into();
        if challenge_id.len() > MAX_CHALLENGE_ID_LEN {
            return refused(code, message);
        }
        let now = self.clock.now();
        let (challenge, workflow) = match self.spend_challenge(challenge_id).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let trust = self.trust();
        let cx = Ctx {
            challenge: &challenge,
            workflow,
            trust: &trust,
            now,
            tls_exporter: None,
            claimed_exporter: None,
        };
        if let Err(e) = self.record(&cx, None, &[code], None).await {
            return e;
        }
        refused(code, message)
    }

    /// Appraises evidence for the challenge it answers. An ineligible device is an `Ok`
    /// response; `Err` means no appraisal happened (docs/decisions/0007-ineligible-is-a-result.md).
    pub async fn attest(
        &self,
        req: AttestationRequest,
    ) -> Result<AttestationResponse, ServiceError> {
        let now = self.clock.now();
        // The challenge is spent first, whatever follows; refusals before any appraisal are
        // recorded as its outcome too.
        let (challenge, workflow) = self.spend_challenge(&req.challenge_id).await?;
        let trust = self.trust();
        let cx = Ctx {
            challenge: &challenge,
            workflow,
            trust: &trust,
            now,
            tls_exporter: req.tls_exporter,
            claimed_exporter: req.claimed_exporter,
        };
        if now >= challenge.expires_at {
            self.record(&cx, None, &[ReasonCode::StaleAttestation], None)
                .await?;
            return Err(refused(
                ReasonCode::StaleAttestation,
                "the challenge expired",
            ));
        }
        // Rule 1 before anything else touches the evidence.
        if req.certificate_chain.len() > MAX_CHAIN_CERTIFICATES {
            self.record(&cx, None, &[ReasonCode::MalformedEvidence], None)
                .await?;
            return Err(refused(
                ReasonCode::MalformedEvidence,
                format!("more than {MAX_CHAIN_CERTIFICATES} certificates"),
            ));
        }

        let appraisal =
            trust
                .verifier
                .appraise_der(req.certificate_chain, now, Some(&challenge.nonce));
        // Revocation fails closed: a chain at Google's anchors is not decided without a fresh
        // list of Google's (docs/decisions/0015-revocation-list-freshness.md).
        if appraisal
            .chain
            .anchor
            .as_ref()
            .is_some_and(AnchorId::is_google)
        {
            // The same snapshot the chain was appraised with: a list arriving meanwhile does
            // not vouch for an appraisal made without it.
            let report = self.report_for(&trust, now);
            if !report.fresh {
                tracing::warn!(workflow = %workflow, age_secs = ?report.age_secs, "Google status list unavailable or too old; chain not decided");
                return Err(ServiceError::RevocationUnavailable(match report.age_secs {
                    Some(age) => format!(
                        "Google's attestation status list is {age} s old (the limit is {} s); retry later",
                        report.max_age_secs
                    ),
                    None => {
                        "Google's attestation status list has not been fetched yet; retry later"
                            .to_owned()
                    }
                }));
            }
        }
        let evidence = match appraisal.outcome {
            Ok(ev) => ev,
            Err(Rejection {
                reason: ReasonCode::MalformedEvidence,
                detail,
            }) => {
                self.record(&cx, None, &[ReasonCode::MalformedEvidence], None)
                    .await?;
                return Err(refused(ReasonCode::MalformedEvidence, detail));
            }
            Err(r) => {
                tracing::info!(workflow = %workflow, reason = %r.reason, detail = %r.detail, "evidence rejected");
                // A specific code stands beside its seed class, as policy reasons do.
                let reasons = r
                    .reason
                    .seed_class()
                    .into_iter()
                    .chain([r.reason])
                    .collect();
                return self.conclude(&cx, None, reasons, None, None).await;
            }
        };
        let decision = trust
            .policy
            .evaluate_for(evidence.claims(), workflow, &challenge.resource);
        if workflow == Workflow::Enrollment {
            self.enroll(&cx, &evidence, decision).await
        } else {
            self.gated(
                &cx,
                req.device_handle.as_deref(),
                req.proof.as_deref(),
                &evidence,
                decision,
            )
            .await
        }
    }

    async fn enroll(
        &self,
        cx: &Ctx<'_>,
        evidence: &VerifiedEvidence,
        decision: Decision,
    ) -> Result<AttestationResponse, ServiceError> {
        if !decision.eligible {
            return self.conclude(cx, None, decision.reasons, None, None).await;
        }
        let claims = evidence.claims();
        let Some(rot) = &claims.root_of_trust else {
            // The policy refuses a missing root of trust; this is only a safety net.
            return self
                .conclude(cx, None, vec![ReasonCode::BootStateUnverified], None, None)
                .await;
        };
        let key = evidence.leaf_spki();
        let handle = self.device_handle(key);
        let marks = high_water(claims);
        let record = DeviceRecord {
            handle: handle.clone(),
            key_spki: key.to_vec(),
            boot_key: rot.verified_boot_key.clone(),
            security_level: level_number(claims.security_level),
            os_version: marks.os_version,
            os_patch_level: marks.os_patch_level,
            vendor_patch_level: marks.vendor_patch_level,
            boot_patch_level: marks.boot_patch_level,
            model: decision.device_model.clone(),
            status: DeviceStatus::Active,
            enrolled_at: cx.now,
            updated_at: cx.now,
        };
        let refusal = [ReasonCode::EnrollmentBindingFailed];
        if self
            .store
            .enroll(
                &record,
                &outcome(cx, Some(&handle), &[]),
                &outcome(cx, None, &refusal),
            )
            .await?
        {
            self.respond(cx, Some(handle), vec![], Some(key))
        } else {
            // Re-enrolling a key that is already enrolled is refused: a key enrolls once. The
            // store recorded only the refusal.
            self.respond(cx, None, refusal.to_vec(), None)
        }
    }

    async fn gated(
        &self,
        cx: &Ctx<'_>,
        handle: Option<&str>,
        proof: Option<&[u8]>,
        evidence: &VerifiedEvidence,
        decision: Decision,
    ) -> Result<AttestationResponse, ServiceError> {
        let device = match handle {
            None => None,
            Some(h) => self.store.device(h).await?,
        };
        let bound = binding::check(binding::Inputs {
            tls_exporter: cx.tls_exporter.as_ref(),
            claimed_exporter: cx.claimed_exporter.as_ref(),
            challenge: cx.challenge,
            request_handle: handle,
            device: device.as_ref(),
            proof,
            claims: evidence.claims(),
            fresh_key: evidence.leaf_spki(),
        });
        let mut reasons = decision.reasons;
        reasons.extend(bound.reasons);
        reasons.sort();
        reasons.dedup();
        let Some(device) = bound.device else {
            return self.conclude(cx, None, reasons, None, None).await;
        };
        // Only an eligible attestation moves the high-water marks (and only upwards).
        let raise = reasons.is_empty().then(|| high_water(evidence.claims()));
        self.conclude(
            cx,
            Some(device.handle),
            reasons,
            raise,
            Some(&device.key_spki),
        )
        .await
    }

    /// Stores the outcome (raising the device's marks with it when given), then answers.
    async fn conclude(
        &self,
        cx: &Ctx<'_>,
        handle: Option<String>,
        reasons: Vec<ReasonCode>,
        raise: Option<HighWater>,
        key_for_token: Option<&[u8]>,
    ) -> Result<AttestationResponse, ServiceError> {
        if !self.record(cx, handle.as_deref(), &reasons, raise).await? {
            // Revoked while this attestation was being decided: no token, and the refusal is
            // what is recorded.
            let reasons = vec![ReasonCode::DeviceRevoked];
            self.record(cx, handle.as_deref(), &reasons, None).await?;
            return self.respond(cx, handle, reasons, None);
        }
        self.respond(cx, handle, reasons, key_for_token)
    }

    async fn record(
        &self,
        cx: &Ctx<'_>,
        handle: Option<&str>,
        reasons: &[ReasonCode],
        raise: Option<HighWater>,
    ) -> Result<bool, ServiceError> {
        let raise = handle.zip(raise);
        Ok(self
            .store
            .record(&outcome(cx, handle, reasons), raise)
            .await?)
    }

    fn respond(
        &self,
        cx: &Ctx<'_>,
        handle: Option<String>,
        reasons: Vec<ReasonCode>,
        key_for_token: Option<&[u8]>,
    ) -> Result<AttestationResponse, ServiceError> {
        let eligible = reasons.is_empty();
        let result = self.result(cx, handle.as_deref(), &reasons)?;
        let token = match (eligible, key_for_token) {
            (true, Some(k)) => Some(self.token(cx, handle.as_deref(), k)?),
            _ => None,
        };
        Ok(AttestationResponse {
            workflow: cx.workflow,
            eligible,
            reasons,
            device_handle: handle,
            token,
            result,
        })
    }

    /// The signed result: an EAR-style appraisal (docs/protocol.md).
    fn result(
        &self,
        cx: &Ctx<'_>,
        handle: Option<&str>,
        reasons: &[ReasonCode],
    ) -> Result<String, ServiceError> {
        let now = cx.now;
        let claims = json!({
            "iss": self.config.issuer,
            "iat": now.as_secs(),
            "exp": now.saturating_add_secs(self.config.result_ttl_secs).as_secs(),
            "eat_profile": "tag:github.com,2023:veraison/ear",
            "eat_nonce": b64url(&cx.challenge.nonce),
            "ear.verifier_id": {"developer": "enigm-attest", "build": env!("CARGO_PKG_VERSION")},
            "submods": {
                "android-key-attestation": {
                    "ear.status": if reasons.is_empty() { "affirming" } else { "contraindicated" },
                    "ear.trustworthiness-vector": trust_vector(reasons),
                    "ear.appraisal-policy-id": format!("sha256:{}", cx.trust.policy.hash()),
                }
            },
            "enigm.workflow": cx.workflow.as_str(),
            "enigm.resource": cx.challenge.resource,
            "enigm.device_handle": handle,
            "enigm.decision": decision_name(reasons),
            "enigm.reasons": reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        });
        self.signer
            .sign(&claims, "ear+jwt")
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// The eligibility token: bound to the device key (`cnf.jkt`), one workflow and resource.
    fn token(
        &self,
        cx: &Ctx<'_>,
        handle: Option<&str>,
        device_key: &[u8],
    ) -> Result<String, ServiceError> {
        let jkt = attest_token::jwk_thumbprint(device_key)
            .ok_or_else(|| ServiceError::Internal("device key has no JWK form".into()))?;
        let claims = json!({
            "iss": self.config.issuer,
            "sub": handle,
            "aud": "enigm-ota",
            "iat": cx.now.as_secs(),
            "exp": cx.now.saturating_add_secs(self.config.token_ttl_secs).as_secs(),
            "jti": b64url(&random_bytes::<16>()?),
            "workflow": cx.workflow.as_str(),
            "resource": cx.challenge.resource,
            "cnf": {"jkt": jkt},
            "policy_hash": cx.trust.policy.hash(),
        });
        self.signer
            .sign(&claims, "at+jwt")
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    // Admin operations.

    /// An enrolled device.
    pub async fn device(&self, handle: &str) -> Result<DeviceRecord, ServiceError> {
        self.store
            .device(handle)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("device {handle}")))
    }

    /// Revokes a device: its next attestation fails with `device_revoked`.
    pub async fn revoke_device(&self, handle: &str) -> Result<(), ServiceError> {
        if self
            .store
            .set_device_status(handle, DeviceStatus::Revoked, self.clock.now())
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("device {handle}")))
        }
    }

    /// Outcome counts over `[from, to)`.
    pub async fn outcome_counts(
        &self,
        from: UnixTime,
        to: UnixTime,
    ) -> Result<Vec<OutcomeCount>, ServiceError> {
        if to <= from {
            return Err(ServiceError::InvalidRequest(
                "`to` must be after `from`".into(),
            ));
        }
        Ok(self.store.outcome_counts(from, to).await?)
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.trust_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reloads the policy (and with it the anchors and status list) through the loader. On
    /// failure the old configuration stays in force.
    pub fn reload_policy(&self) -> Result<String, ServiceError> {
        let loader = self.loader.as_ref().ok_or_else(|| {
            ServiceError::InvalidRequest("this service has no policy file to reload".into())
        })?;
        let _writing = self.write_lock();
        let trust = loader().map_err(ServiceError::InvalidRequest)?;
        let hash = trust.policy.hash().to_owned();
        // A list put through the admin API stays in force over the policy's own, and Google's
        // list over whatever the loader has.
        let list = self.admin_list().or(trust.status_list);
        let google = self.trust().google.clone();
        self.set_trust(Trust::build(trust.policy, trust.anchors, list, google));
        Ok(hash)
    }

    /// Puts a freshly fetched (or loaded from the data directory) Google status list in force;
    /// `fetched_at` is when it was fetched, which its age counts from.
    pub fn set_google_status_list(&self, list: StatusList, fetched_at: UnixTime) {
        let google = Arc::new(GoogleList {
            list,
            fetched_at: std::sync::atomic::AtomicI64::new(fetched_at.as_secs()),
        });
        let _writing = self.write_lock();
        let current = self.trust();
        self.set_trust(Trust::build(
            current.policy.clone(),
            current.anchors.clone(),
            current.status_list.clone(),
            Some(google),
        ));
    }

    /// Google's server said the list in force is unchanged (HTTP 304) at `at`: it is fresh again.
    /// Only the fetcher puts Google's list in force, so the list confirmed is the one it has.
    pub fn confirm_google_status_list(&self, at: UnixTime) {
        if let Some(g) = &self.trust().google {
            g.fetched_at
                .store(at.as_secs(), std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Records the outcome of a fetch attempt (for `/readyz` and metrics).
    pub fn note_google_status_fetch(&self, at: UnixTime, result: impl Into<String>) {
        let attempt = Some((at, result.into()));
        match self.google_last_attempt.write() {
            Ok(mut g) => *g = attempt,
            Err(p) => *p.into_inner() = attempt,
        }
    }

    /// The state of Google's status list now.
    pub fn revocation_report(&self) -> RevocationReport {
        self.report_for(&self.trust(), self.clock.now())
    }

    fn report_for(&self, trust: &Trust, now: UnixTime) -> RevocationReport {
        let max_age_secs = self.config.google_status_max_age_secs;
        let state = trust.google_state();
        let age_secs = state.map(|(_, t)| now.as_secs().saturating_sub(t.as_secs()));
        RevocationReport {
            entries: state.map(|(n, _)| n),
            fetched_at: state.map(|(_, t)| t),
            age_secs,
            // A fetch time in the future (a clock step back) is not trusted as fresh.
            fresh: age_secs.is_some_and(|a| (0..=max_age_secs).contains(&a)),
            max_age_secs,
            last_attempt: self
                .google_last_attempt
                .read()
                .map(|g| g.clone())
                .unwrap_or_else(|p| p.into_inner().clone()),
        }
    }

    /// Replaces the status list for every chain (Google's JSON format), over the policy's own,
    /// until the next replacement; kept in the status-list file when there is one. On failure
    /// nothing changes.
    pub fn replace_status_list(&self, json: &[u8]) -> Result<usize, ServiceError> {
        let list =
            StatusList::from_json(json).map_err(|e| ServiceError::InvalidRequest(e.to_string()))?;
        let n = list.len();
        // File and memory change together: a concurrent PUT waits.
        let _writing = self.write_lock();
        if let Some(path) = &self.admin_status_list_file {
            write_atomically(path, json)
                .map_err(|e| ServiceError::Internal(format!("{}: {e}", path.display())))?;
        }
        self.put_admin_status_list_locked(list);
        Ok(n)
    }

    /// Purges outcomes older than the retention period, expired challenges and DPoP proof ids
    /// past their window, in batches of [`PURGE_BATCH`] rows (each batch a short statement, so
    /// requests are not held behind one long delete). Returns (outcomes, challenges + proof ids).
    pub async fn purge(&self) -> Result<(u64, u64), ServiceError> {
        let now = self.clock.now();
        let mut jtis = 0;
        loop {
            let n = self.store.purge_jtis(now, PURGE_BATCH).await?;
            jtis += n;
            if n < PURGE_BATCH.unsigned_abs() {
                break;
            }
        }
        let (mut outcomes, mut challenges) = (0, 0);
        loop {
            let (o, c) = self
                .store
                .purge(
                    now.saturating_add_secs(-self.config.outcome_retention_secs),
                    now,
                    PURGE_BATCH,
                )
                .await?;
            outcomes += o;
            challenges += c;
            if o < PURGE_BATCH.unsigned_abs() && c < PURGE_BATCH.unsigned_abs() {
                break;
            }
        }
        Ok((outcomes, challenges + jtis))
    }

    /// This process's replica id (random per start).
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Records in the database that this replica is alive and which policy it enforces.
    pub async fn heartbeat(&self) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let hash = self.trust().policy.hash().to_owned();
        self.store
            .heartbeat(
                &self.replica_id,
                &hash,
                self.started_at,
                now,
                now.saturating_add_secs(-86_400),
            )
            .await?;
        Ok(())
    }

    /// The replicas that said they were alive in the last [`FLEET_WINDOW_SECS`], with the
    /// policy hash each enforces (this one included once it has sent a heartbeat).
    pub async fn fleet(&self) -> Result<Vec<(String, String)>, ServiceError> {
        let since = self.clock.now().saturating_add_secs(-FLEET_WINDOW_SECS);
        Ok(self.store.replicas(since).await?)
    }
}

/// Rows deleted per purge statement.
pub const PURGE_BATCH: i64 = 5_000;
/// Seconds between heartbeats of a replica.
pub const HEARTBEAT_SECS: u64 = 10;
/// A replica not heard from for this long is not counted in the fleet.
pub const FLEET_WINDOW_SECS: i64 = 30;

/// AR4SI trustworthiness claims for a set of reasons (2 affirming, 96/97 contraindicated).
fn trust_vector(reasons: &[ReasonCode]) -> Value {
    use ReasonCode as R;
    let has = |codes: &[ReasonCode]| reasons.iter().any(|r| codes.contains(r));
    let claim = |bad: bool, contraindicated: u8| if bad { contraindicated } else { 2 };
    json!({
        "hardware": claim(has(&[R::InvalidTrustChain, R::SoftwareAttestation, R::Revoked]), 97),
        "instance-identity": claim(
            has(&[R::EnrollmentBindingFailed, R::DeviceHandleMismatch, R::RequestBindingFailed, R::DeviceRevoked, R::ReplayAttempt]),
            96,
        ),
        "executables": claim(has(&[R::BootloaderUnlocked, R::BootStateUnverified, R::UnknownBootKey, R::UnsupportedDevice, R::IneligibleBuild, R::Downgrade]), 96),
        "configuration": claim(has(&[R::PatchLevelTooOld, R::WrongApplication, R::EligibilityFailure]), 96),
    })
}

/// SHA-256 of a key, hex: how logs refer to keys without printing them.
pub fn key_fingerprint(spki: &[u8]) -> String {
    attest_android::hex(digest::digest(&digest::SHA256, spki).as_ref())
}
