//! The gated OTA resources (docs/protocol.md, "The OTA gate"): registration, protected
//! metadata, private artifacts and update authorization, from the OTA directory. Every route
//! validates its names before anything else (a traversal attempt is 400 and never reaches the
//! file system), then passes the gate; refusals carry nothing of the resource.
//!
//! The gate never parses or vouches for the metadata it serves: verifying the update manifest
//! stays the client's job.

use std::path::{Path, PathBuf};

use attest_core::Workflow;
use attest_service::{GateCode, GateRequest, Grant, ServiceError, is_resource_name};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{ApiError, AppState, TlsExporter};

/// Largest metadata file served (it is read whole to compute its ETag).
pub const MAX_METADATA_BYTES: u64 = 16 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

fn bad_name(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        format!("{what} must be 1 to 128 characters of A-Z a-z 0-9 . _ - (and not . or ..)"),
    )
}

fn name_param(
    p: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
    what: &str,
) -> Result<String, ApiError> {
    match p {
        Ok(UrlPath(n)) if is_resource_name(&n) => Ok(n),
        _ => Err(bad_name(what)),
    }
}

/// The request URI as the client addressed it, without query: scheme (https when TLS ends
/// here or in front, as configured), `Host`, path.
fn request_url(state: &AppState, headers: &HeaderMap, uri: &Uri, tls: bool) -> String {
    if let Some(base) = &state.public_url {
        return format!("{}{}", base.trim_end_matches('/'), uri.path());
    }
    // HTTP/1.1 names the host in `Host`; HTTP/2 in the `:authority` of the request URI.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}{}", uri.path())
}

/// A gate refusal: its status, `WWW-Authenticate: DPoP error="..."` on 401, and a fresh
/// `DPoP-Nonce`.
pub(crate) fn gate_error(state: &AppState, code: GateCode, message: String) -> Response {
    let status = if code.is_unauthorized() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let mut resp = ApiError::new(status, code.as_str(), message).into_response();
    let h = resp.headers_mut();
    if code.is_unauthorized() {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "DPoP algs=\"ES256 RS256\", error=\"{}\"",
            code.as_str()
        )) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&state.service.dpop_nonce()) {
        h.insert("dpop-nonce", v);
    }
    resp
}

struct Gated<'a> {
    workflow: Workflow,
    resource: &'a str,
    needs_registration: bool,
}

async fn pass(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    exporter: Option<&TlsExporter>,
    g: Gated<'_>,
) -> Result<Grant, Box<Response>> {
    // One Authorization and one DPoP header (RFC 9449 4.3): with two, which one was checked
    // would depend on who reads them.
    for (name, code) in [
        ("authorization", GateCode::InvalidToken),
        ("dpop", GateCode::InvalidDpopProof),
    ] {
        if headers.get_all(name).iter().count() > 1 {
            return Err(Box::new(gate_error(
                state,
                code,
                format!("more than one {name} header"),
            )));
        }
    }
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let url = request_url(state, headers, uri, exporter.is_some());
    let r = state
        .service
        .gate(GateRequest {
            authorization: header_text("authorization"),
            dpop: header_text("dpop"),
            method: method.as_str(),
            url: &url,
            tls_exporter: exporter.map(|e| &e.0),
            workflow: g.workflow,
            resource: g.resource,
            needs_registration: g.needs_registration,
        })
        .await;
    r.map_err(|e| {
        Box::new(match e {
            ServiceError::Gate { code, message } => gate_error(state, code, message),
            other => ApiError::from(other).into_response(),
        })
    })
}

/// Adds a fresh `DPoP-Nonce` to a successful response, so clients never need a failed request
/// to learn the next one.
fn with_nonce(state: &AppState, mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&state.service.dpop_nonce()) {
        resp.headers_mut().insert("dpop-nonce", v);
    }
    resp
}

fn ota_dir(state: &AppState) -> Result<&Path, ApiError> {
    state.ota_dir.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no OTA directory is configured",
        )
    })
}

/// A registration as the routes answer it.
fn registration_json(r: &attest_service::Registration) -> serde_json::Value {
    json!({
        "device_handle": r.handle,
        "product": r.product,
        "channels": r.channels,
        "registered_at": r.registered_at.to_rfc3339(),
    })
}

/// The one name of a `{"<field>": "<name>"}` body (registration, authorization), validated
/// like a path parameter.
fn body_name(
    body: Result<
        Json<serde_json::Map<String, serde_json::Value>>,
        axum::extract::rejection::JsonRejection,
    >,
    field: &str,
) -> Result<String, ApiError> {
    let expected = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("expected {{\"{field}\": \"...\"}}"),
        )
    };
    let Ok(Json(map)) = body else {
        return Err(expected());
    };
    let name = match (map.len(), map.get(field).and_then(|v| v.as_str())) {
        (1, Some(n)) => n.to_owned(),
        _ => return Err(expected()),
    };
    if !is_resource_name(&name) {
        return Err(bad_name(field));
    }
    Ok(name)
}

pub(crate) async fn register(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    exporter: Option<Extension<TlsExporter>>,
    body: Result<
        Json<serde_json::Map<String, serde_json::Value>>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Response {
    let product = match body_name(body, "product") {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let g = Gated {
        workflow: Workflow::Registration,
        resource: &product,
        needs_registration: false,
    };
    let grant = match pass(&state, &method, &uri, &headers, exporter.as_deref(), g).await {
        Ok(g) => g,
        Err(resp) => return *resp,
    };
    match state.service.register(&grant, &product).await {
        Ok(r) => with_nonce(
            &state,
            (StatusCode::CREATED, Json(registration_json(&r))).into_response(),
        ),
        Err(e) => ApiError::from(e).into_response(),
    }
}

pub(crate) async fn authorize(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    exporter: Option<Extension<TlsExporter>>,
    body: Result<
        Json<serde_json::Map<String, serde_json::Value>>,
        axum::extract::rejection::JsonRejection,
    >,
) -> Response {
    let build = match body_name(body, "build") {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let g = Gated {
        workflow: Workflow::UpdateAuthorization,
        resource: &build,
        needs_registration: true,
    };
    let dir = match ota_dir(&state) {
        Ok(d) => d.to_path_buf(),
        Err(e) => return e.into_response(),
    };
    let trust = state.service.trust();
    let grant = match pass(&state, &method, &uri, &headers, exporter.as_deref(), g).await {
        Ok(g) => g,
        Err(resp) => return *resp,
    };
    // Only a build a channel this device may read now offers.
    let Some(channels) =
        readable_channels_offering(&state, &dir, &trust.policy, &grant, &build).await
    else {
        return not_found();
    };
    match state.service.authorize_update(&grant, &build, &channels) {
        Ok(jwt) => with_nonce(&state, Json(json!({"authorization": jwt})).into_response()),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Links are not followed out of the OTA directory: a link planted there is not served.
async fn is_symlink(path: &Path) -> bool {
    tokio::fs::symlink_metadata(path)
        .await
        .is_ok_and(|m| m.file_type().is_symlink())
}

/// Opens a regular file of the OTA directory for reading: never through a link in its last
/// component (`O_NOFOLLOW`), never blocking on a FIFO (`O_NONBLOCK`), and only when what was
/// opened is a regular file (checked on the open handle, not the path).
async fn open_regular(path: &Path) -> Option<tokio::fs::File> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let file = opts.open(path).await.ok()?;
    file.metadata().await.ok().filter(|m| m.is_file())?;
    Some(file)
}

/// A whole small file (at most `max` bytes; a longer one counts as missing).
async fn read_small(path: &Path, max: u64) -> Option<Vec<u8>> {
    let file = open_regular(path).await?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).await.ok()?;
    (bytes.len() as u64 <= max).then_some(bytes)
}

/// Largest `releases` file of a channel.
const MAX_RELEASES_BYTES: u64 = 1024 * 1024;

/// The channels that list `name` in `channels/<channel>/releases` (one artifact id or build per
/// line; `#` starts a comment) among those the device of `grant` may read now under `policy`,
/// sorted; `None` when there is none (answered 404, exactly as when no channel lists it: a
/// device outside a channel does not learn what the channel holds). Only the configured
/// channels the device may read are opened: folders the policy does not name serve nothing.
async fn readable_channels_offering(
    state: &AppState,
    dir: &Path,
    policy: &attest_policy::Policy,
    grant: &Grant,
    name: &str,
) -> Option<Vec<String>> {
    let channels = dir.join("channels");
    if is_symlink(&channels).await {
        return None;
    }
    let mut out = Vec::new();
    for channel in policy.channel_names() {
        if state
            .service
            .channel_access(policy, grant, channel)
            .is_err()
        {
            continue;
        }
        let folder = channels.join(channel);
        if is_symlink(&folder).await {
            continue;
        }
        let Some(list) = read_small(&folder.join("releases"), MAX_RELEASES_BYTES).await else {
            continue;
        };
        let listed = String::from_utf8_lossy(&list)
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .any(|l| l == name);
        if listed {
            out.push(channel.to_owned());
        }
    }
    (!out.is_empty()).then_some(out)
}

fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such resource").into_response()
}

pub(crate) async fn metadata(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    exporter: Option<Extension<TlsExporter>>,
    channel: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let channel = match name_param(channel, "channel") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let dir = match ota_dir(&state) {
        Ok(d) => d.to_path_buf(),
        Err(e) => return e.into_response(),
    };
    // One policy snapshot for the whole request. A channel's metadata is for its members
    // inside its current rollout and models only; a channel the policy does not configure is
    // not served.
    let trust = state.service.trust();
    let g = Gated {
        workflow: Workflow::ProtectedMetadata,
        resource: &channel,
        needs_registration: true,
    };
    let grant = match pass(&state, &method, &uri, &headers, exporter.as_deref(), g).await {
        Ok(g) => g,
        Err(resp) => return *resp,
    };
    if let Err(e) = state
        .service
        .channel_access(&trust.policy, &grant, &channel)
    {
        return match e {
            ServiceError::Gate { code, message } => gate_error(&state, code, message),
            _ => not_found(),
        };
    }
    let channel_dir = dir.join("channels").join(&channel);
    if is_symlink(&dir.join("channels")).await || is_symlink(&channel_dir).await {
        return not_found();
    }
    let Some(bytes) = read_small(&channel_dir.join("metadata"), MAX_METADATA_BYTES).await else {
        return not_found();
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let etag = format!(
        "\"{}\"",
        attest_core::hex::encode(digest.as_ref().get(..16).unwrap_or_default())
    );
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    with_nonce(&state, resp)
}

/// A single byte range of a file of `len` bytes: `Ok(None)` without a Range header.
fn byte_range(headers: &HeaderMap, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let spec = v
        .to_str()
        .map_err(|_| ())?
        .strip_prefix("bytes=")
        .ok_or(())?;
    if spec.contains(',') {
        return Err(()); // single ranges only
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.checked_sub(1).ok_or(())?)
        }
        (s, "") => (s.parse().map_err(|_| ())?, len.checked_sub(1).ok_or(())?),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().map_err(|_| ())?, e.parse().map_err(|_| ())?);
            (s, e.min(len.saturating_sub(1)))
        }
    };
    if start > end || start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

pub(crate) async fn artifact(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    exporter: Option<Extension<TlsExporter>>,
    id: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let id = match name_param(id, "artifact id") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let dir: PathBuf = match ota_dir(&state) {
        Ok(d) => d.to_path_buf(),
        Err(e) => return e.into_response(),
    };
    let g = Gated {
        workflow: Workflow::PrivateArtifact,
        resource: &id,
        needs_registration: false,
    };
    let trust = state.service.trust();
    let grant = match pass(&state, &method, &uri, &headers, exporter.as_deref(), g).await {
        Ok(g) => g,
        Err(resp) => return *resp,
    };
    // Served only through a channel that lists it and that this device may read now.
    if readable_channels_offering(&state, &dir, &trust.policy, &grant, &id)
        .await
        .is_none()
    {
        return not_found();
    }
    if is_symlink(&dir.join("artifacts")).await {
        return not_found();
    }
    let Some(mut file) = open_regular(&dir.join("artifacts").join(&id)).await else {
        return not_found();
    };
    let Ok(meta) = file.metadata().await else {
        return not_found();
    };
    let len = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{len:x}-{mtime:x}\"");
    let (status, start, end) = match byte_range(&headers, len) {
        Ok(None) => (StatusCode::OK, 0, len.saturating_sub(1)),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalid_request",
                "the Range is not one satisfiable byte range",
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return with_nonce(&state, resp);
        }
    };
    let count = if len == 0 { 0 } else { end - start + 1 };
    if file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return not_found();
    }
    // Chunk by chunk: a 1 GiB artifact never sits in memory.
    let stream = futures_util::stream::unfold((file, count), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut buf = vec![0u8; want];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                    (file, left - n as u64),
                ))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    let mut resp = Response::new(axum::body::Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&count.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    with_nonce(&state, resp)
}

pub(crate) async fn membership(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    exporter: Option<Extension<TlsExporter>>,
    channel: Result<UrlPath<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let channel = match name_param(channel, "channel") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    // An unknown channel is told only to a caller the gate admits: no listing of channels.
    let trust = state.service.trust();
    let known = trust.policy.channel(&channel).map(|c| c.workflow);
    let g = Gated {
        workflow: known.unwrap_or(Workflow::ReleaseChannel),
        resource: &channel,
        needs_registration: true,
    };
    let grant = match pass(&state, &method, &uri, &headers, exporter.as_deref(), g).await {
        Ok(g) => g,
        Err(resp) => return *resp,
    };
    if known.is_none() {
        return not_found();
    }
    match state
        .service
        .join_channel(&trust.policy, &grant, &channel)
        .await
    {
        Ok(r) => with_nonce(&state, Json(registration_json(&r)).into_response()),
        Err(ServiceError::Gate { code, message }) => gate_error(&state, code, message),
        Err(e) => ApiError::from(e).into_response(),
    }
}
