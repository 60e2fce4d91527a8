//! The HTTP edge: extract, call the service, map the result.
//!
//! This room owns the wire format (DTOs, `openapi.json`), the one error envelope
//! `{"error": {"code", "message"}}` used for every failure (malformed JSON, oversized bodies,
//! unknown routes included), admin authentication, request logging and metrics. Internal details
//! go to the log, never to clients.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use attest_core::{ReasonCode, UnixTime};
use attest_service::{AttestationRequest, ChallengeRequest, Service, ServiceError};
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

mod metrics;
mod ota;
mod server;

pub use metrics::Metrics;
pub use server::{
    H2_MAX_STREAMS, ServerLimits, TlsExporter, default_max_connections, serve, tls_config,
    tls_config_with,
};

/// Largest request body accepted (a 10-certificate chain in base64 fits several times over).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The published API description, written by hand and checked against [`ROUTES`] by a test
/// (docs/decisions/0010-hand-written-openapi-and-metrics.md).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route: method, path template, whether it is an admin route.
pub const ROUTES: &[(&str, &str, bool)] = &[
    ("POST", "/v1/challenges", false),
    ("POST", "/v1/attestations", false),
    ("GET", "/v1/jwks", false),
    ("GET", "/healthz", false),
    ("GET", "/readyz", false),
    ("GET", "/metrics", false),
    ("GET", "/openapi.json", false),
    ("GET", "/admin/v1/devices/{handle}", true),
    ("POST", "/admin/v1/devices/{handle}/revoke", true),
    ("GET", "/admin/v1/outcomes", true),
    ("POST", "/admin/v1/policy/reload", true),
    ("PUT", "/admin/v1/status-list", true),
    ("POST", "/v1/ota/registrations", false),
    ("GET", "/v1/ota/channels/{channel}/metadata", false),
    ("GET", "/v1/ota/artifacts/{id}", false),
    ("POST", "/v1/ota/authorizations", false),
    ("POST", "/v1/ota/channels/{channel}/membership", false),
];

/// Shared state of the router.
#[derive(Clone)]
pub struct AppState {
    service: Arc<Service>,
    metrics: Arc<Metrics>,
    admin_token_hashes: Arc<Vec<[u8; 32]>>,
    test_trust: Arc<Vec<String>>,
    challenge_limit: Arc<RateLimit>,
    transport_binding: bool,
    ota_dir: Option<std::path::PathBuf>,
    public_url: Option<String>,
    health: Arc<tokio::sync::Mutex<Option<Health>>>,
}

/// What `/readyz` and `/metrics` read from the database, at most once a second: a flood of
/// probes costs one ping and one fleet query a second, not the pool.
#[derive(Clone)]
struct Health {
    at: std::time::Instant,
    database_ok: bool,
    fleet: Option<Vec<(String, String)>>,
}

async fn health(state: &AppState) -> Health {
    let mut cached = state.health.lock().await;
    if let Some(h) = cached
        .as_ref()
        .filter(|h| h.at.elapsed() < std::time::Duration::from_secs(1))
    {
        return h.clone();
    }
    let database_ok = state.service.store().ping().await.is_ok();
    let fleet = if database_ok {
        state.service.fleet().await.ok()
    } else {
        None
    };
    let h = Health {
        at: std::time::Instant::now(),
        database_ok,
        fleet,
    };
    *cached = Some(h.clone());
    h
}

/// Challenges issued per client address: a token bucket of `burst` challenges refilled at
/// `per_sec` a second, on the service's clock. Addresses are known only when the server tags
/// requests with them ([`serve`]); the table is bounded (when full, it starts over).
#[derive(Debug)]
pub struct RateLimit {
    per_sec: u32,
    burst: u32,
    buckets: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (u32, UnixTime)>>,
}

/// Default per-address challenge rate: 100 a second, bursts of 200.
pub const DEFAULT_CHALLENGES_PER_SEC: u32 = 100;
/// Most addresses tracked at once.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

impl RateLimit {
    /// `per_sec` a second with bursts of `burst` (0 turns the limit off).
    pub fn new(per_sec: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_sec,
            burst,
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Takes one token for `addr` at `now`; `false` when the bucket is empty.
    fn allow(&self, addr: std::net::IpAddr, now: UnixTime) -> bool {
        // One IPv6 /64 is one client here, as for the connection caps.
        let addr = server::client_key(addr);
        if self.per_sec == 0 {
            return true;
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&addr) {
            buckets.clear();
        }
        let (tokens, at) = buckets.entry(addr).or_insert((self.burst, now));
        let elapsed =
            u32::try_from(now.as_secs().saturating_sub(at.as_secs()).max(0)).unwrap_or(u32::MAX);
        if elapsed > 0 {
            *tokens = tokens
                .saturating_add(elapsed.saturating_mul(self.per_sec))
                .min(self.burst);
            *at = now;
        }
        if *tokens == 0 {
            return false;
        }
        *tokens -= 1;
        true
    }
}

impl AppState {
    /// State for `service`; admin bearer tokens are given as SHA-256 digests (never in clear).
    /// `test_trust` names test-only anchors in force (shown by `/readyz`, loudly).
    pub fn new(
        service: Arc<Service>,
        admin_token_hashes: Vec<[u8; 32]>,
        test_trust: Vec<String>,
    ) -> AppState {
        AppState {
            service,
            metrics: Arc::new(Metrics::default()),
            admin_token_hashes: Arc::new(admin_token_hashes),
            test_trust: Arc::new(test_trust),
            challenge_limit: Arc::new(RateLimit::new(
                DEFAULT_CHALLENGES_PER_SEC,
                2 * DEFAULT_CHALLENGES_PER_SEC,
            )),
            transport_binding: false,
            ota_dir: None,
            public_url: None,
            health: Arc::new(tokio::sync::Mutex::new(None)),
        }
    }

    /// Serves the gated OTA resources from `dir` (`channels/<name>/metadata`,
    /// `artifacts/<id>`).
    pub fn with_ota_dir(mut self, dir: std::path::PathBuf) -> AppState {
        self.ota_dir = Some(dir);
        self
    }

    /// The scheme and host clients address (`https://ota.example`), for DPoP `htu`; without it
    /// the `Host` header and the connection's scheme are used.
    pub fn with_public_url(mut self, url: String) -> AppState {
        self.public_url = Some(url);
        self
    }

    /// Says (in `/readyz`) whether proofs are bound to the TLS connection: true only when the
    /// service itself terminates TLS.
    pub fn with_transport_binding(mut self, bound: bool) -> AppState {
        self.transport_binding = bound;
        self
    }

    /// Replaces the per-address challenge limit.
    pub fn with_challenge_limit(mut self, limit: RateLimit) -> AppState {
        self.challenge_limit = Arc::new(limit);
        self
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// An error response with the stable envelope.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

/// The stable code of an error response, attached for the request log and metrics.
#[derive(Clone, Copy, Debug)]
struct ErrorCode(&'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        resp.extensions_mut().insert(ErrorCode(self.code));
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

fn reason_status(code: ReasonCode) -> StatusCode {
    match code {
        ReasonCode::ReplayAttempt => StatusCode::CONFLICT,
        ReasonCode::StaleAttestation => StatusCode::GONE,
        ReasonCode::MalformedEvidence => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::Refused { code, message } => {
                ApiError::new(reason_status(code), code.as_str(), message)
            }
            ServiceError::InvalidRequest(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m)
            }
            ServiceError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            ServiceError::Store(err) => {
                tracing::error!(error = %err, "storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is unavailable; retry later",
                )
            }
            ServiceError::Gate { code, message } => {
                // The routes answer gate refusals themselves (with DPoP headers); this is the
                // plain envelope for any other caller.
                let status = if code.is_unauthorized() {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::FORBIDDEN
                };
                ApiError::new(status, code.as_str(), message)
            }
            ServiceError::RevocationUnavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "revocation_unavailable", m)
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "internal error",
                )
            }
        }
    }
}

/// Maps a JSON extraction failure to the envelope, with `code` for malformed bodies.
fn json_error(rejection: JsonRejection, code: &'static str) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code,
            format!("request body larger than {MAX_BODY_BYTES} bytes"),
        );
    }
    let status = if rejection.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, code, rejection.body_text())
}

/// The router. Tests drive it in memory or over real HTTP.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/admin/v1/devices/{handle}", get(admin_device))
        .route("/admin/v1/devices/{handle}/revoke", post(admin_revoke))
        .route("/admin/v1/outcomes", get(admin_outcomes))
        .route("/admin/v1/policy/reload", post(admin_reload))
        .route(
            "/admin/v1/status-list",
            put(admin_status_list)
                .layer(DefaultBodyLimit::max(attest_service::MAX_STATUS_LIST_BYTES)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/v1/challenges", post(create_challenge))
        .route("/v1/attestations", post(attest))
        .route("/v1/jwks", get(jwks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route("/v1/ota/registrations", post(ota::register))
        .route("/v1/ota/channels/{channel}/metadata", get(ota::metadata))
        .route("/v1/ota/artifacts/{id}", get(ota::artifact))
        .route("/v1/ota/authorizations", post(ota::authorize))
        .route(
            "/v1/ota/channels/{channel}/membership",
            post(ota::membership),
        )
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// One log line and one latency observation per request.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    state.metrics.observe_latency(&route, elapsed.as_secs_f64());
    let outcome = resp.extensions().get::<Outcome>().cloned();
    let code = resp.extensions().get::<ErrorCode>().map_or("", |c| c.0);
    if !code.is_empty() {
        state
            .metrics
            .count_refusal(&route, resp.status().as_u16(), code);
    }
    tracing::info!(
        method = %method,
        route = %route,
        status = resp.status().as_u16(),
        micros = elapsed.as_micros() as u64,
        code,
        workflow = outcome.as_ref().map_or("", |o| o.workflow),
        decision = outcome.as_ref().map_or("", |o| o.decision),
        reasons = %outcome.as_ref().map_or_else(String::new, |o| o.reasons.join(",")),
        "request"
    );
    resp
}

/// What an attestation decided, attached to the response for logs and metrics.
#[derive(Clone, Debug)]
struct Outcome {
    workflow: &'static str,
    decision: &'static str,
    reasons: Vec<&'static str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeBody {
    workflow: String,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    device_handle: Option<String>,
}

async fn create_challenge(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    body: Result<Json<ChallengeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    if let Some(axum::Extension(axum::extract::ConnectInfo(addr))) = peer {
        if !state.challenge_limit.allow(addr.ip(), state.service.now()) {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many challenges from this address; retry in a second",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(resp);
        }
    }
    let Json(body) = body.map_err(|r| json_error(r, "invalid_request"))?;
    let issued = state
        .service
        .create_challenge(ChallengeRequest {
            workflow: body.workflow,
            resource: body.resource,
            device_handle: body.device_handle,
        })
        .await?;
    let expires_at = issued.expires_at.to_rfc3339().unwrap_or_default();
    Ok((
        StatusCode::CREATED,
        Json(json!({"challenge_id": issued.challenge_id, "nonce": issued.nonce, "expires_at": expires_at})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestationBody {
    challenge_id: String,
    certificate_chain: Vec<String>,
    #[serde(default)]
    device_handle: Option<String>,
    #[serde(default)]
    proof: Option<String>,
    #[serde(default)]
    tls_exporter: Option<String>,
}

/// Reads a body of at most `limit` bytes; a longer one gives back what was read so far.
async fn read_body(
    body: axum::body::Body,
    limit: usize,
) -> Result<Vec<u8>, Result<Vec<u8>, ApiError>> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_evidence",
                "the request body could not be read",
            ))
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                let room = limit - out.len();
                out.extend_from_slice(data.get(..room).unwrap_or_default());
                return Err(Ok(out));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// The `challenge_id` of a body that does not parse (truncated, oversized): the first
/// `"challenge_id": "<id>"` whose id has the shape of ours.
fn scan_challenge_id(bytes: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"challenge_id\"";
    let start = bytes.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = bytes.get(start..)?;
    let rest = rest.get(rest.iter().position(|b| !b.is_ascii_whitespace())?..)?;
    let rest = rest.strip_prefix(b":")?;
    let rest = rest.get(rest.iter().position(|b| !b.is_ascii_whitespace())?..)?;
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|b| *b == b'"')?;
    let id = std::str::from_utf8(rest.get(..end)?).ok()?;
    attest_service::is_challenge_id(id).then(|| id.to_owned())
}

async fn attest(
    State(state): State<AppState>,
    exporter: Option<axum::Extension<TlsExporter>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "malformed_evidence",
            "expected Content-Type: application/json",
        ));
    }
    // Whatever can be read of a refused request, its challenge is spent and the refusal
    // recorded (docs/protocol.md, "Errors").
    let service = &state.service;
    let refuse = |id: String, code: ReasonCode, status: StatusCode, message: String| async move {
        match service.refuse_unreadable(&id, code, message).await {
            ServiceError::Refused { code: c, message } if c == code => {
                ApiError::new(status, code.as_str(), message)
            }
            other => other.into(),
        }
    };
    let bytes = match read_body(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(Err(e)) => return Err(e),
        Err(Ok(prefix)) => {
            let message = format!("request body larger than {MAX_BODY_BYTES} bytes");
            return Err(match scan_challenge_id(&prefix) {
                Some(id) => {
                    refuse(
                        id,
                        ReasonCode::MalformedEvidence,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        message,
                    )
                    .await
                }
                None => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "malformed_evidence", message),
            });
        }
    };
    let body: AttestationBody = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            let message = format!("the request body is not a valid attestation request: {e}");
            let id = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("challenge_id")?.as_str().map(str::to_owned))
                .or_else(|| scan_challenge_id(&bytes));
            return Err(match id {
                Some(id) => {
                    refuse(
                        id,
                        ReasonCode::MalformedEvidence,
                        StatusCode::BAD_REQUEST,
                        message,
                    )
                    .await
                }
                None => ApiError::new(StatusCode::BAD_REQUEST, "malformed_evidence", message),
            });
        }
    };
    if body.certificate_chain.len() > attest_service::MAX_CHAIN_CERTIFICATES {
        let message = format!(
            "more than {} certificates",
            attest_service::MAX_CHAIN_CERTIFICATES
        );
        return Err(refuse(
            body.challenge_id,
            ReasonCode::MalformedEvidence,
            StatusCode::BAD_REQUEST,
            message,
        )
        .await);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut chain = Vec::with_capacity(body.certificate_chain.len());
    for (i, c) in body.certificate_chain.iter().enumerate() {
        match b64.decode(c) {
            Ok(der) => chain.push(der),
            Err(_) => {
                let message = format!("certificate_chain[{i}] is not base64");
                return Err(refuse(
                    body.challenge_id,
                    ReasonCode::MalformedEvidence,
                    StatusCode::BAD_REQUEST,
                    message,
                )
                .await);
            }
        }
    }
    let proof = match &body.proof {
        None => None,
        Some(p) => match b64url_decode(p) {
            Some(p) => Some(p),
            None => {
                return Err(refuse(
                    body.challenge_id,
                    ReasonCode::RequestBindingFailed,
                    StatusCode::BAD_REQUEST,
                    "proof is not base64url".to_owned(),
                )
                .await);
            }
        },
    };
    // A value that is not 32 bytes of base64url names no connection: a binding failure, decided
    // (and recorded) like any other.
    let claimed_exporter = body
        .tls_exporter
        .as_deref()
        .and_then(b64url_decode)
        .and_then(|v| <[u8; 32]>::try_from(v).ok());
    let r = state
        .service
        .attest(AttestationRequest {
            challenge_id: body.challenge_id,
            certificate_chain: chain,
            device_handle: body.device_handle,
            proof,
            tls_exporter: exporter.map(|axum::Extension(TlsExporter(e))| e),
            claimed_exporter,
        })
        .await?;
    let decision = if r.eligible { "eligible" } else { "ineligible" };
    let reasons: Vec<&'static str> = r.reasons.iter().map(|c| c.as_str()).collect();
    state
        .metrics
        .count_decision(r.workflow.as_str(), decision, &reasons);
    let mut resp = Json(json!({
        "decision": decision,
        "reasons": reasons,
        "device_handle": r.device_handle,
        "token": r.token,
        "result": r.result,
    }))
    .into_response();
    resp.extensions_mut().insert(Outcome {
        workflow: r.workflow.as_str(),
        decision,
        reasons,
    });
    Ok(resp)
}

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.service.jwks())
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The replicas sharing this database and the policy hashes they enforce; `consistent` when
/// every one enforces `own`.
fn fleet_json(fleet: &[(String, String)], own: &str) -> Value {
    let mut hashes: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, h) in fleet {
        *hashes.entry(h.as_str()).or_default() += 1;
    }
    json!({
        "replicas": fleet.len(),
        "policy_hashes": hashes,
        "consistent": hashes.keys().all(|h| *h == own),
    })
}

async fn readyz(State(state): State<AppState>) -> Response {
    let trust = state.service.trust();
    let h = health(&state).await;
    let (db, fleet): (Result<(), ()>, _) = (if h.database_ok { Ok(()) } else { Err(()) }, h.fleet);
    let body = json!({
        "status": if db.is_ok() { "ready" } else { "unavailable" },
        "database": if db.is_ok() { "ok" } else { "unreachable" },
        "database_engine": state.service.store().backend().as_str(),
        "policy_hash": trust.policy.hash(),
        "anchors": trust.anchor_names(),
        "status_list_entries": trust.status_list.as_ref().map(|l| l.len()),
        "google_status_list": revocation_json(&state.service.revocation_report()),
        "test_only_trust": *state.test_trust,
        "transport_binding": state.transport_binding,
        "ota_gate": state.ota_dir.is_some(),
        "replica": state.service.replica_id(),
        "fleet": fleet.as_deref().map(|f| fleet_json(f, trust.policy.hash())),
    });
    let status = if db.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Google's status list as `/readyz` shows it. A stale list does not make the service unready:
/// operator-anchored chains are still decided, and Google-anchored ones get a retryable 503.
fn revocation_json(r: &attest_service::RevocationReport) -> Value {
    json!({
        "entries": r.entries,
        "fetched_at": r.fetched_at.map(|t| t.to_rfc3339()),
        "age_secs": r.age_secs,
        "max_age_secs": r.max_age_secs,
        "fresh": r.fresh,
        "last_fetch": r.last_attempt.as_ref().map(|(at, result)| json!({"at": at.to_rfc3339(), "result": result})),
    })
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    let r = state.service.revocation_report();
    metrics::render_revocation(&mut text, &r);
    let trust = state.service.trust();
    let fleet = health(&state).await.fleet;
    metrics::render_fleet(
        &mut text,
        state.service.replica_id(),
        trust.policy.hash(),
        fleet.as_deref(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Admin routes need `Authorization: Bearer <token>` whose SHA-256 matches a configured digest
/// (compared in constant time).
async fn require_admin(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = presented.is_some_and(|token| {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        // Check every configured digest so timing does not tell which one matched.
        state.admin_token_hashes.iter().fold(false, |found, h| {
            aws_lc_rs::constant_time::verify_slices_are_equal(h, digest.as_ref()).is_ok() | found
        })
    });
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin routes need a valid bearer token",
        )
        .into_response();
    }
    next.run(req).await
}

/// A device handle from the path, refused with the envelope when it is not UTF-8 or not shaped
/// like a handle.
fn handle_param(
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    match p {
        Ok(Path(h)) if attest_service::is_device_handle(&h) => Ok(h),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "not a device handle (dh_ and 43 base64url characters)",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            e.body_text(),
        )),
    }
}

async fn admin_device(
    State(state): State<AppState>,
    handle: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let handle = handle_param(handle)?;
    let d = state.service.device(&handle).await?;
    Ok(Json(json!({
        "device_handle": d.handle,
        "status": d.status.as_str(),
        "model": d.model,
        "security_level": match d.security_level { 2 => "strongbox", _ => "tee" },
        "verified_boot_key": attest_core::hex::encode(&d.boot_key),
        "key_sha256": attest_service::key_fingerprint(&d.key_spki),
        "os_version": d.os_version,
        "os_patch_level": d.os_patch_level,
        "vendor_patch_level": d.vendor_patch_level,
        "boot_patch_level": d.boot_patch_level,
        "enrolled_at": d.enrolled_at.to_rfc3339(),
        "updated_at": d.updated_at.to_rfc3339(),
    })))
}

async fn admin_revoke(
    State(state): State<AppState>,
    handle: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let handle = handle_param(handle)?;
    state.service.revoke_device(&handle).await?;
    tracing::warn!(device_handle = %handle, "device revoked by operator");
    Ok(Json(json!({"device_handle": handle, "status": "revoked"})))
}

#[derive(Deserialize)]
struct Range {
    from: Option<String>,
    to: Option<String>,
}

async fn admin_outcomes(
    State(state): State<AppState>,
    range: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(range) = range
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let parse = |v: &Option<String>, default: UnixTime, name: &str| -> Result<UnixTime, ApiError> {
        match v {
            None => Ok(default),
            Some(s) => UnixTime::parse_rfc3339(s).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("`{name}` is not an RFC 3339 instant"),
                )
            }),
        }
    };
    let now = state.service.now();
    let from = parse(&range.from, now.saturating_add_secs(-86_400), "from")?;
    let to = parse(&range.to, now.saturating_add_secs(1), "to")?;
    let counts = state.service.outcome_counts(from, to).await?;
    Ok(Json(json!({
        "from": from.to_rfc3339(),
        "to": to.to_rfc3339(),
        "counts": counts.iter().map(|c| json!({
            "workflow": c.workflow, "decision": c.decision,
            "reason": if c.reason.is_empty() { Value::Null } else { json!(c.reason) },
            "count": c.count,
        })).collect::<Vec<_>>(),
    })))
}

async fn admin_reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    // Reading and checking the policy files is blocking work: off the request threads.
    let service = Arc::clone(&state.service);
    let hash = tokio::task::spawn_blocking(move || service.reload_policy())
        .await
        .map_err(|e| ServiceError::Internal(format!("policy reload task: {e}")))?
        .inspect_err(|e| {
            tracing::warn!(error = %e, "policy reload failed; the previous policy stays in force");
        })?;
    tracing::warn!(policy_hash = %hash, "policy reloaded");
    // Tell the fleet at once, not at the next heartbeat.
    if let Err(e) = state.service.heartbeat().await {
        tracing::warn!(error = %e, "heartbeat after reload failed");
    }
    Ok(Json(
        json!({"policy_hash": hash, "replica": state.service.replica_id()}),
    ))
}

async fn admin_status_list(
    State(state): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!(
                    "status list larger than {} bytes",
                    attest_service::MAX_STATUS_LIST_BYTES
                ),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", r.body_text())
        }
    })?;
    let n = state.service.replace_status_list(&body)?;
    tracing::warn!(entries = n, "status list replaced");
    Ok(Json(json!({"entries": n})))
}
