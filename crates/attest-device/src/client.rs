//! The device side of the whole protocol (docs/protocol.md), over real HTTP/1.1 or TLS 1.3:
//! challenge, attestation (enrollment, then fresh evidence with a proof by K_dev, version 2 on
//! TLS), eligibility tokens, DPoP proofs with the server nonce (one retry on `use_dpop_nonce`)
//! and the OTA gate's resources. The tests, `enigm-attest sim` and the load generator use it.
//!
//! A [`DeviceClient`] keeps one connection open (keep-alive) and binds every proof to the
//! exporter value of the connection that carries it; when the server closes the connection
//! (idle timeout), the next request opens a new one and the proofs follow it. Why this is hyper's
//! connection API rather than a pooling client: docs/decisions/0016-device-client-owns-its-connection.md.
//!
//! The lower pieces ([`Endpoint`], [`Connection`], [`dpop_proof`]) are public so that tests can
//! misbehave on purpose: replay a proof, carry it on another connection, sign with another key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use attest_core::{Clock, SystemClock, UnixTime};
use attest_token::{b64url, b64url_decode, jwk_from_spki, proof_message, proof_message_v2};
use aws_lc_rs::digest;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use crate::{DeviceError, KeyKind, SigningKey, SoftwareDevice};

/// Label of the RFC 9266 exporter (`tls-exporter` channel binding).
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// The largest JSON answer read into memory.
const MAX_JSON_BYTES: usize = 1024 * 1024;
/// Connect and TLS handshake limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for one request and its whole answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A bad base URL or CA file.
    #[error("configuration: {0}")]
    Config(String),
    /// Connecting, TLS, or the HTTP exchange failed (no answer to act on).
    #[error("transport: {0}")]
    Transport(String),
    /// The service answered with an error envelope.
    #[error("refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The stable error code (`error.code`).
        code: String,
        /// The human-readable message.
        message: String,
    },
    /// An attestation the flow needed to be eligible was not.
    #[error("ineligible for {workflow}: {reasons:?}")]
    Ineligible {
        /// The workflow attested for.
        workflow: String,
        /// The reason codes of the decision.
        reasons: Vec<String>,
    },
    /// An answer that is not what the protocol says.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The simulated device failed (key generation, signing).
    #[error("device: {0}")]
    Device(#[from] DeviceError),
}

/// Where the service is: scheme, authority, and for `https` the TLS 1.3 client configuration.
#[derive(Clone)]
pub struct Endpoint {
    /// `host[:port]` exactly as in the URL: the `Host` header and the authority of DPoP `htu`.
    authority: String,
    /// What to connect to.
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// The TLS configuration the connector was made from (to offer HTTP/2 as well).
    tls_config: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Endpoint {
    /// `base_url` is `http://host:port` or `https://host[:port]` (no path). For `https`, the
    /// server certificate must chain to a certificate of `ca_pem` (PEM, one or more), or, when
    /// none is given, to the system's roots. TLS 1.3 only.
    pub fn new(base_url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, ClientError> {
        let bad = |why: &str| ClientError::Config(format!("server URL {base_url:?}: {why}"));
        let (https, rest) = if let Some(r) = base_url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = base_url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(bad("give scheme, host and port only"));
        }
        let (host, port) = split_authority(authority).ok_or_else(|| bad("bad host or port"))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let (tls, tls_config) = if https {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| bad("host is not a DNS name or IP address"))?;
            let config = Arc::new(tls_client_config(ca_pem)?);
            (
                Some((tokio_rustls::TlsConnector::from(Arc::clone(&config)), name)),
                Some(config),
            )
        } else {
            if ca_pem.is_some() {
                return Err(bad("a TLS CA was given for a plain http:// URL"));
            }
            (None, None)
        };
        Ok(Endpoint {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            tls,
            tls_config,
        })
    }

    /// Offers HTTP/2 in the TLS handshake (ALPN `h2`, then `http/1.1`): when the server takes
    /// it, every request of a connection travels as a stream of that one connection (whose
    /// exporter they all carry). Plain `http://` stays HTTP/1.1.
    pub fn with_http2(mut self) -> Endpoint {
        if let (Some((_, name)), Some(config)) = (&self.tls, &self.tls_config) {
            let mut c = (**config).clone();
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let c = Arc::new(c);
            self.tls = Some((
                tokio_rustls::TlsConnector::from(Arc::clone(&c)),
                name.clone(),
            ));
            self.tls_config = Some(c);
        }
        self
    }

    /// Connects to `host:port` while still naming the URL's authority in `Host` and DPoP `htu`
    /// (one replica behind a load balancer, or `curl --resolve`).
    pub fn connecting_to(mut self, host: &str, port: u16) -> Endpoint {
        host.clone_into(&mut self.host);
        self.port = port;
        self
    }

    /// Whether HTTP/2 is offered in the TLS handshake.
    pub fn offers_http2(&self) -> bool {
        self.tls_config
            .as_ref()
            .is_some_and(|c| c.alpn_protocols.first().is_some_and(|p| p == b"h2"))
    }

    /// Whether connections are TLS (and proofs therefore bound to them).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The absolute URL of `path` (what a DPoP proof's `htu` names).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority)
    }

    /// Opens a new connection (TCP, then TLS 1.3 for `https`).
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let transport =
            |e: &dyn std::fmt::Display| ClientError::Transport(format!("{}: {e}", self.authority));
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| transport(&"connect timed out"))?
        .map_err(|e| transport(&e))?;
        // Requests are small and answered at once: do not wait to coalesce them.
        tcp.set_nodelay(true).map_err(|e| transport(&e))?;
        match &self.tls {
            None => Connection::handshake(tcp, None, self.authority.clone()).await,
            Some((connector, name)) => {
                let tls =
                    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| transport(&"TLS handshake timed out"))?
                        .map_err(|e| {
                            // A certificate we do not trust will not become trusted by retrying.
                            let rustls_error =
                                e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
                            match rustls_error {
                                Some(rustls::Error::InvalidCertificate(why)) => {
                                    ClientError::Config(format!(
                                        "{}: the server's TLS certificate is not trusted ({why:?}); give its CA",
                                        self.authority
                                    ))
                                }
                                _ => transport(&e),
                            }
                        })?;
                let mut exporter = [0u8; 32];
                tls.get_ref()
                    .1
                    .export_keying_material(&mut exporter, EXPORTER_LABEL, None)
                    .map_err(|e| transport(&e))?;
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    Connection::handshake_h2(tls, exporter, self.authority.clone()).await
                } else {
                    Connection::handshake(tls, Some(exporter), self.authority.clone()).await
                }
            }
        }
    }
}

/// `host[:port]`, with `[v6]` hosts; `None` when malformed.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = port.map(str::parse::<u16>).transpose().ok()?;
    Some((host, port))
}

fn tls_client_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientError::Config(format!("TLS CA: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Config(format!("TLS CA: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ClientError::Config(
                    "TLS CA: no certificate in the PEM".into(),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ClientError::Config(
                    "no system TLS roots found; give the server's CA".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// One connection, kept alive (HTTP/1.1, or HTTP/2 when the server chose it in the TLS
/// handshake), with its TLS exporter value when it is TLS.
pub struct Connection {
    sender: Sender,
    exporter: Option<[u8; 32]>,
    authority: String,
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("authority", &self.authority)
            .field("tls", &self.exporter.is_some())
            .finish()
    }
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The stable error code of an error envelope.
    pub fn code(&self) -> Option<String> {
        self.json()
            .get("error")
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The reply when its status is 2xx or 304; the error envelope as
    /// [`ClientError::Refused`] otherwise.
    pub fn success(self) -> Result<Reply, ClientError> {
        if (200..300).contains(&self.status) || self.status == 304 {
            return Ok(self);
        }
        let v = self.json();
        let text = |k: &str| {
            v.get("error")
                .and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Err(ClientError::Refused {
            status: self.status,
            code: text("code"),
            message: text("message"),
        })
    }
}

impl Connection {
    async fn handshake<T>(
        io: T,
        exporter: Option<[u8; 32]>,
        authority: String,
    ) -> Result<Connection, ClientError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ClientError::Transport(format!("{authority}: {e}")))?;
        // The connection task ends when the server closes the connection or the sender drops.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection {
            sender: Sender::H1(sender),
            exporter,
            authority,
        })
    }

    async fn handshake_h2<T>(
        io: T,
        exporter: [u8; 32],
        authority: String,
    ) -> Result<Connection, ClientError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(io),
        )
        .await
        .map_err(|e| ClientError::Transport(format!("{authority}: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection {
            sender: Sender::H2(sender),
            exporter: Some(exporter),
            authority,
        })
    }

    /// Whether this connection speaks HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// The RFC 9266 exporter value of this TLS connection (`None` on plain HTTP).
    pub fn exporter(&self) -> Option<&[u8; 32]> {
        self.exporter.as_ref()
    }

    /// Whether the server closed it (a new one is needed).
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// Sends one request and reads the whole answer (at most `max_body` bytes). A non-empty
    /// body is sent as JSON unless `headers` name another `Content-Type`.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
        max_body: usize,
    ) -> Result<Reply, ClientError> {
        let transport = |e: &dyn std::fmt::Display| {
            ClientError::Transport(format!("{} {method} {path}: {e}", self.authority))
        };
        // HTTP/2 carries the authority in the request's URI (`:authority`); the Host header is
        // sent too, for servers that read it.
        let uri = match self.sender {
            Sender::H1(_) => path.to_owned(),
            Sender::H2(_) => format!("https://{}{path}", self.authority),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", &self.authority);
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| transport(&e))?;
        let exchange = async {
            let resp = match &mut self.sender {
                Sender::H1(s) => {
                    s.ready().await.map_err(|e| transport(&e))?;
                    s.send_request(req).await.map_err(|e| transport(&e))?
                }
                Sender::H2(s) => {
                    s.ready().await.map_err(|e| transport(&e))?;
                    s.send_request(req).await.map_err(|e| transport(&e))?
                }
            };
            let (parts, mut incoming) = resp.into_parts();
            let mut body = Vec::new();
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| transport(&e))?;
                if let Ok(data) = frame.into_data() {
                    if body.len() + data.len() > max_body {
                        return Err(transport(&format!("answer larger than {max_body} bytes")));
                    }
                    body.extend_from_slice(&data);
                }
            }
            Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: Bytes::from(body),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| transport(&"no answer in time"))?
    }

    /// POSTs `body` as JSON; the answer.
    pub async fn post_json(&mut self, path: &str, body: &Value) -> Result<Reply, ClientError> {
        self.send(
            "POST",
            path,
            &[],
            body.to_string().as_bytes(),
            MAX_JSON_BYTES,
        )
        .await
    }
}

/// The claims of one DPoP proof (RFC 9449), before signing.
#[derive(Debug, Clone, Copy)]
pub struct DpopClaims<'a> {
    /// `htm`: the request method.
    pub method: &'a str,
    /// `htu`: the absolute request URL, without query.
    pub url: &'a str,
    /// The access token the proof goes with (`ath` is its SHA-256).
    pub token: &'a str,
    /// The server's `DPoP-Nonce`, when one is known.
    pub nonce: Option<&'a str>,
    /// The proof's single-use id.
    pub jti: &'a str,
    /// Issued-at.
    pub iat: UnixTime,
    /// The exporter value of the TLS connection that carries the request.
    pub tls_exporter: Option<&'a [u8; 32]>,
}

/// A DPoP proof JWT (`typ: dpop+jwt`, `jwk` = the public half of `key`), ES256 for a P-256 key
/// and RS256 for an RSA key.
pub fn dpop_proof(key: &SigningKey, c: &DpopClaims<'_>) -> Result<String, DeviceError> {
    let alg = match key.kind() {
        KeyKind::EcP256 => "ES256",
        KeyKind::Rsa2048 | KeyKind::Rsa4096 => "RS256",
        KeyKind::EcP384 => return Err(DeviceError("DPoP proofs take P-256 or RSA keys")),
    };
    let jwk = jwk_from_spki(key.spki()).ok_or(DeviceError("key has no JWK form"))?;
    let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
    let mut claims = json!({
        "jti": c.jti, "htm": c.method, "htu": c.url, "iat": c.iat.as_secs(),
        "ath": b64url(digest::digest(&digest::SHA256, c.token.as_bytes()).as_ref()),
    });
    if let Some(n) = c.nonce {
        put(&mut claims, "nonce", json!(n));
    }
    if let Some(e) = c.tls_exporter {
        put(&mut claims, "tls_exporter", json!(b64url(e)));
    }
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes())?;
    let sig = if key.kind() == KeyKind::EcP256 {
        ecdsa_fixed(&sig, 32)?
    } else {
        sig
    };
    Ok(format!("{input}.{}", b64url(&sig)))
}

/// An ECDSA signature in ASN.1 DER turned into the JWS form r || s, each `n` bytes.
fn ecdsa_fixed(der: &[u8], n: usize) -> Result<Vec<u8>, DeviceError> {
    use attest_android::der::{Tag, parse_single};
    let bad = || DeviceError("malformed ECDSA signature");
    let seq = parse_single(der, 0, Tag::SEQUENCE, "SEQUENCE", "signature").map_err(|_| bad())?;
    let mut r = seq.reader();
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..2 {
        let v = r
            .read(Tag::INTEGER, "INTEGER", "signature")
            .map_err(|_| bad())?
            .value;
        let v: &[u8] = v
            .iter()
            .position(|b| *b != 0)
            .and_then(|i| v.get(i..))
            .unwrap_or_default();
        let pad = n.checked_sub(v.len()).ok_or_else(bad)?;
        out.extend(std::iter::repeat_n(0u8, pad));
        out.extend_from_slice(v);
    }
    Ok(out)
}

/// Sets `key` in the JSON object `v`.
fn put(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

fn random_id() -> Result<String, DeviceError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| DeviceError("randomness failed"))?;
    Ok(b64url(&b))
}

fn chain_json(chain: &[Vec<u8>]) -> Vec<String> {
    chain
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

/// The answer to an attestation: the decision and, when eligible, the token.
#[derive(Debug, Clone)]
pub struct Decision {
    /// `eligible` or `ineligible`.
    pub decision: String,
    /// Reason codes (empty when eligible).
    pub reasons: Vec<String>,
    /// The eligibility token, when eligible and the workflow has one.
    pub token: Option<String>,
    /// The whole answer.
    pub body: Value,
}

impl Decision {
    /// Whether the device was found eligible.
    pub fn is_eligible(&self) -> bool {
        self.decision == "eligible"
    }

    fn from_reply(reply: Reply) -> Result<Decision, ClientError> {
        let reply = reply.success()?;
        let body = reply.json();
        let decision = body
            .get("decision")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ClientError::Protocol(format!("attestation answer without decision: {body}"))
            })?
            .to_owned();
        let reasons = body
            .get("reasons")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let token = body.get("token").and_then(Value::as_str).map(str::to_owned);
        Ok(Decision {
            decision,
            reasons,
            token,
            body,
        })
    }
}

/// A device that talks to the service: it enrolls once (its first attested key becomes K_dev),
/// then attests for each workflow and resource with fresh evidence and a proof by K_dev, and
/// makes gated requests with the token and DPoP proofs by K_dev.
pub struct DeviceClient {
    endpoint: Endpoint,
    conn: Option<Connection>,
    device: SoftwareDevice,
    enrolled: Option<(String, SigningKey)>,
    dpop_nonce: Option<String>,
    tokens: HashMap<(String, String), String>,
    clock: Arc<dyn Clock>,
    max_body: usize,
    observer: Option<Observer>,
}

/// What [`DeviceClient::with_observer`] calls after each request.
pub type Observer = Arc<dyn Fn(&'static str, Duration, u16) + Send + Sync>;

/// The route template of a request (what metrics and reports group by).
pub fn route_of(method: &str, path: &str) -> &'static str {
    let p = path.split('?').next().unwrap_or_default();
    match (method, p) {
        ("POST", "/v1/challenges") => "POST /v1/challenges",
        ("POST", "/v1/attestations") => "POST /v1/attestations",
        ("POST", "/v1/ota/registrations") => "POST /v1/ota/registrations",
        ("POST", "/v1/ota/authorizations") => "POST /v1/ota/authorizations",
        ("GET", p) if p.starts_with("/v1/ota/artifacts/") => "GET /v1/ota/artifacts/{id}",
        ("GET", p) if p.starts_with("/v1/ota/channels/") && p.ends_with("/metadata") => {
            "GET /v1/ota/channels/{channel}/metadata"
        }
        ("POST", p) if p.starts_with("/v1/ota/channels/") && p.ends_with("/membership") => {
            "POST /v1/ota/channels/{channel}/membership"
        }
        _ => "other",
    }
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("endpoint", &self.endpoint)
            .field("handle", &self.handle())
            .finish_non_exhaustive()
    }
}

impl DeviceClient {
    /// A client for `device` against `endpoint`; no connection is opened yet.
    pub fn new(endpoint: Endpoint, device: SoftwareDevice) -> DeviceClient {
        DeviceClient {
            endpoint,
            conn: None,
            device,
            enrolled: None,
            dpop_nonce: None,
            tokens: HashMap::new(),
            clock: Arc::new(SystemClock),
            max_body: 256 * 1024 * 1024,
            observer: None,
        }
    }

    /// Uses `clock` for DPoP `iat` (tests run the service on a manual clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> DeviceClient {
        self.clock = clock;
        self
    }

    /// The largest resource (metadata, artifact range) read into memory [default: 256 MiB].
    pub fn with_max_body(mut self, bytes: usize) -> DeviceClient {
        self.max_body = bytes;
        self
    }

    /// The device handle, once enrolled.
    pub fn handle(&self) -> Option<&str> {
        self.enrolled.as_ref().map(|(h, _)| h.as_str())
    }

    /// K_dev, once enrolled.
    pub fn device_key(&self) -> Option<&SigningKey> {
        self.enrolled.as_ref().map(|(_, k)| k)
    }

    /// The simulated hardware.
    pub fn device(&self) -> &SoftwareDevice {
        &self.device
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The open connection, opening a new one when there is none or the server closed it.
    pub async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        let fresh = match &self.conn {
            Some(c) if !c.is_closed() => None,
            _ => Some(self.endpoint.connect().await?),
        };
        let conn = match fresh {
            Some(c) => self.conn.insert(c),
            None => self
                .conn
                .as_mut()
                .ok_or_else(|| ClientError::Transport("no connection".into()))?,
        };
        Ok(conn)
    }

    /// Talks to `endpoint` from now on (another replica behind a load balancer); the
    /// enrollment, tokens and server nonce are kept.
    pub fn set_endpoint(&mut self, endpoint: Endpoint) {
        self.endpoint = endpoint;
        self.conn = None;
    }

    /// Drops the connection; the next request opens a new one.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    async fn post(&mut self, path: &str, body: &Value) -> Result<Reply, ClientError> {
        let started = std::time::Instant::now();
        let r = self.connection().await?.post_json(path, body).await;
        self.observe("POST", path, started, &r);
        r
    }

    /// Reports one exchange to the observer (route template, time, status; 0 without answer).
    fn observe(
        &self,
        method: &str,
        path: &str,
        started: std::time::Instant,
        r: &Result<Reply, ClientError>,
    ) {
        if let Some(o) = &self.observer {
            let status = r.as_ref().map_or(0, |r| r.status);
            o(route_of(method, path), started.elapsed(), status);
        }
    }

    /// Calls `observer` after every request with its route (e.g.
    /// `GET /v1/ota/artifacts/{id}`), its duration and its status (0 when no answer came).
    pub fn with_observer(mut self, observer: Observer) -> DeviceClient {
        self.observer = Some(observer);
        self
    }

    /// Asks for a challenge; its id and nonce.
    pub async fn challenge(
        &mut self,
        workflow: &str,
        resource: &str,
    ) -> Result<(String, Vec<u8>), ClientError> {
        let mut body = json!({"workflow": workflow});
        if !resource.is_empty() {
            put(&mut body, "resource", json!(resource));
        }
        if let Some(h) = self.handle() {
            put(&mut body, "device_handle", json!(h));
        }
        let r = self.post("/v1/challenges", &body).await?.success()?.json();
        let id = r.get("challenge_id").and_then(Value::as_str);
        let nonce = r
            .get("nonce")
            .and_then(Value::as_str)
            .and_then(b64url_decode);
        match (id, nonce) {
            (Some(id), Some(nonce)) => Ok((id.to_owned(), nonce)),
            _ => Err(ClientError::Protocol(format!(
                "challenge without id or nonce: {r}"
            ))),
        }
    }

    /// Enrolls: attests a new key, which becomes K_dev when the answer is eligible.
    pub async fn enroll(&mut self) -> Result<Decision, ClientError> {
        self.enrolled = None;
        self.tokens.clear();
        let (id, nonce) = self.challenge("enrollment", "").await?;
        let a = self.device.attest(&nonce)?;
        let reply = self
            .post(
                "/v1/attestations",
                &json!({"challenge_id": id, "certificate_chain": chain_json(&a.chain)}),
            )
            .await?;
        let d = Decision::from_reply(reply)?;
        if d.is_eligible() {
            let handle = d
                .body
                .get("device_handle")
                .and_then(Value::as_str)
                .ok_or_else(|| ClientError::Protocol("enrollment without device_handle".into()))?;
            self.enrolled = Some((handle.to_owned(), a.key));
        }
        Ok(d)
    }

    /// Attests for `workflow` and `resource`: fresh evidence, and a proof by K_dev bound to the
    /// connection that carries it (version 2 on TLS, version 1 on plain HTTP).
    pub async fn attest(
        &mut self,
        workflow: &str,
        resource: &str,
    ) -> Result<Decision, ClientError> {
        let body = self
            .attestation_body_with(workflow, resource, |_| {})
            .await?;
        self.post_attestation(&body).await
    }

    /// The attestation request [`DeviceClient::attest`] would send (a new challenge, fresh
    /// evidence with `change` applied to its KeyDescription, the proof for the current
    /// connection), without sending it: tests and the load generator replay, relay or alter it.
    pub async fn attestation_body_with(
        &mut self,
        workflow: &str,
        resource: &str,
        change: impl FnOnce(&mut crate::keydesc::KeyDescriptionSpec),
    ) -> Result<Value, ClientError> {
        let (id, nonce) = self.challenge(workflow, resource).await?;
        let fresh = self.device.attest_with(&nonce, change)?;
        let handle = self
            .handle()
            .ok_or_else(|| ClientError::Protocol("not enrolled".into()))?
            .to_owned();
        let mut body = json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle});
        // The proof must name the connection the attestation travels on: take it now.
        let exporter = self.connection().await?.exporter().copied();
        let (_, kdev) = self
            .enrolled
            .as_ref()
            .ok_or_else(|| ClientError::Protocol("not enrolled".into()))?;
        let message = match &exporter {
            Some(e) => proof_message_v2(&id, &nonce, workflow, resource, fresh.key.spki(), e),
            None => proof_message(&id, &nonce, workflow, resource, fresh.key.spki()),
        };
        put(&mut body, "proof", json!(b64url(&kdev.sign(&message)?)));
        if let Some(e) = &exporter {
            put(&mut body, "tls_exporter", json!(b64url(e)));
        }
        Ok(body)
    }

    /// Sends an attestation request on the current connection; the decision.
    pub async fn post_attestation(&mut self, body: &Value) -> Result<Decision, ClientError> {
        let reply = self.post("/v1/attestations", body).await?;
        Decision::from_reply(reply)
    }

    /// An eligibility token for `workflow` and `resource`: a cached one, or a new attestation
    /// (which must be eligible).
    pub async fn token(&mut self, workflow: &str, resource: &str) -> Result<String, ClientError> {
        let key = (workflow.to_owned(), resource.to_owned());
        if let Some(t) = self.tokens.get(&key) {
            return Ok(t.clone());
        }
        let d = self.attest(workflow, resource).await?;
        if !d.is_eligible() {
            return Err(ClientError::Ineligible {
                workflow: workflow.to_owned(),
                reasons: d.reasons,
            });
        }
        let t = d
            .token
            .ok_or_else(|| ClientError::Protocol(format!("eligible {workflow} without a token")))?;
        self.tokens.insert(key, t.clone());
        Ok(t)
    }

    /// Forgets the cached tokens (the next gated request attests again).
    pub fn forget_tokens(&mut self) {
        self.tokens.clear();
    }

    /// A gated request with `token`: `Authorization: DPoP`, and a DPoP proof by K_dev with the
    /// last server nonce, a new `jti` and this connection's exporter. When the server asks for
    /// a nonce (`use_dpop_nonce`), it is sent once more with the nonce it gave.
    pub async fn gated(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> Result<Reply, ClientError> {
        let url = self.endpoint.url(path);
        let mut asked = false;
        loop {
            let exporter = self.connection().await?.exporter().copied();
            let (_, kdev) = self
                .enrolled
                .as_ref()
                .ok_or_else(|| ClientError::Protocol("not enrolled".into()))?;
            let jti = random_id()?;
            let proof = dpop_proof(
                kdev,
                &DpopClaims {
                    method,
                    url: &url,
                    token,
                    nonce: self.dpop_nonce.as_deref(),
                    jti: &jti,
                    iat: self.clock.now(),
                    tls_exporter: exporter.as_ref(),
                },
            )?;
            let mut all = vec![("authorization", format!("DPoP {token}")), ("dpop", proof)];
            all.extend(headers.iter().cloned());
            let max_body = self.max_body;
            let started = std::time::Instant::now();
            let reply = self
                .conn
                .as_mut()
                .ok_or_else(|| ClientError::Transport("no connection".into()))?
                .send(method, path, &all, body, max_body)
                .await;
            self.observe(method, path, started, &reply);
            let reply = reply?;
            if let Some(n) = reply.header("dpop-nonce") {
                self.dpop_nonce = Some(n.to_owned());
            }
            if !asked && reply.status == 401 && reply.code().as_deref() == Some("use_dpop_nonce") {
                asked = true;
                continue;
            }
            return Ok(reply);
        }
    }

    /// A gated request whose token is for `workflow` and `resource` (attesting when none is
    /// cached; a token the gate calls `invalid_token`, e.g. expired, is replaced once).
    pub async fn gated_for(
        &mut self,
        workflow: &str,
        resource: &str,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> Result<Reply, ClientError> {
        let token = self.token(workflow, resource).await?;
        let reply = self.gated(method, path, &token, body, headers).await?;
        if reply.status == 401 && reply.code().as_deref() == Some("invalid_token") {
            self.tokens
                .remove(&(workflow.to_owned(), resource.to_owned()));
            let token = self.token(workflow, resource).await?;
            return self.gated(method, path, &token, body, headers).await;
        }
        Ok(reply)
    }

    /// Registers the device for updates of `product`; the registration.
    pub async fn register(&mut self, product: &str) -> Result<Value, ClientError> {
        let body = json!({"product": product}).to_string();
        let r = self
            .gated_for(
                "registration",
                product,
                "POST",
                "/v1/ota/registrations",
                body.as_bytes(),
                &[],
            )
            .await?
            .success()?;
        Ok(r.json())
    }

    /// The protected metadata of `channel` (byte for byte; verifying it is the caller's job).
    /// With `if_none_match` an unchanged document is a 304 with an empty body.
    pub async fn metadata(
        &mut self,
        channel: &str,
        if_none_match: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let path = format!("/v1/ota/channels/{channel}/metadata");
        let headers: Vec<(&str, String)> = if_none_match
            .map(|e| vec![("if-none-match", e.to_owned())])
            .unwrap_or_default();
        self.gated_for("protected_metadata", channel, "GET", &path, b"", &headers)
            .await?
            .success()
    }

    /// Bytes `from..` of artifact `id` (`until`, inclusive, ends the range early); the whole
    /// artifact when `from` is 0 and `until` is `None`.
    pub async fn artifact(
        &mut self,
        id: &str,
        from: u64,
        until: Option<u64>,
    ) -> Result<Reply, ClientError> {
        let path = format!("/v1/ota/artifacts/{id}");
        let headers = match (from, until) {
            (0, None) => vec![],
            (f, None) => vec![("range", format!("bytes={f}-"))],
            (f, Some(u)) => vec![("range", format!("bytes={f}-{u}"))],
        };
        self.gated_for("private_artifact", id, "GET", &path, b"", &headers)
            .await?
            .success()
    }

    /// Asks to join `channel` with a token of `workflow` (`release_channel` or
    /// `sensitive_channel`, as the service's policy says for the channel); the admission.
    pub async fn join(&mut self, channel: &str, workflow: &str) -> Result<Value, ClientError> {
        let path = format!("/v1/ota/channels/{channel}/membership");
        let r = self
            .gated_for(workflow, channel, "POST", &path, b"", &[])
            .await?
            .success()?;
        Ok(r.json())
    }

    /// An update authorization for `build`: the signed statement (a JWT) for the update engine.
    pub async fn authorize(&mut self, build: &str) -> Result<String, ClientError> {
        let body = json!({"build": build}).to_string();
        let r = self
            .gated_for(
                "update_authorization",
                build,
                "POST",
                "/v1/ota/authorizations",
                body.as_bytes(),
                &[],
            )
            .await?
            .success()?
            .json();
        r.get("authorization")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                ClientError::Protocol(format!("authorization answer without authorization: {r}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        for bad in [
            "ftp://h:1",
            "http://",
            "http://h:1/path",
            "http://h:99999",
            "http://user@h:1",
            "http://[::1",
            "h:1",
        ] {
            assert!(
                matches!(Endpoint::new(bad, None), Err(ClientError::Config(_))),
                "{bad}"
            );
        }
        let e = Endpoint::new("http://127.0.0.1:8080/", None).unwrap();
        assert_eq!(e.url("/v1/x"), "http://127.0.0.1:8080/v1/x");
        let e = Endpoint::new("http://[::1]:9", None).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9));
        assert!(matches!(
            Endpoint::new("http://h:1", Some(b"x")),
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            Endpoint::new("https://h:1", Some(b"not pem")),
            Err(ClientError::Config(_))
        ));
    }

    #[test]
    fn ecdsa_signatures_become_fixed_width() {
        let key = SigningKey::generate(KeyKind::EcP256).unwrap();
        for _ in 0..32 {
            let der = key.sign(b"m").unwrap();
            let fixed = ecdsa_fixed(&der, 32).unwrap();
            assert_eq!(fixed.len(), 64);
        }
        assert!(ecdsa_fixed(b"\x30\x00", 32).is_err());
    }
}
