//! Serving the router over TCP with bounds a hostile client cannot stretch: a cap on open
//! connections, a time limit for a request's headers (which also ends idle keep-alive
//! connections), a time limit for reading a body, and a graceful stop.
//!
//! `axum::serve` bounds none of these: idle connections, half-sent headers and slow bodies
//! were held open indefinitely, and a few hundred of them exhausted the file descriptors.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The bounds of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Open connections from one client address (IPv6: one /64) at most, so that one client
    /// cannot take every slot.
    pub max_connections_per_address: usize,
    /// Time for a client to send a request's headers, counted from when the connection starts
    /// waiting for them (so it also ends idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// Time for a client to send a request's body.
    pub body_read_timeout: Duration,
    /// How long a graceful stop waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        let max_connections = default_max_connections();
        ServerLimits {
            max_connections,
            max_connections_per_address: (max_connections / 4).max(1),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// 1024, or three quarters of the process's open-file limit when that is lower (the rest is
/// for the database, the data directory and the listener).
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        });
    match soft {
        Some(n) => (n / 4 * 3).clamp(16, 1024),
        None => 1024,
    }
}

/// Open connections per client address; a slot is given back when its [`AddressSlot`] drops.
#[derive(Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

struct AddressSlot(Arc<PerAddress>, IpAddr);

/// The unit a client is counted by: its IPv4 address, or the /64 of its IPv6 address.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            for b in o.iter_mut().skip(8) {
                *b = 0;
            }
            IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = client_key(ip);
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot(Arc::clone(self), key))
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut m = self
            .0
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// The TLS exporter value of a request's connection (RFC 9266: label
/// `EXPORTER-Channel-Binding`, no context, 32 bytes), put in the request's extensions by
/// [`serve`] on TLS connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsExporter(pub [u8; 32]);

/// A TLS 1.3 server configuration (aws-lc-rs; no 0-RTT, no TLS 1.2) for `cert_chain` and `key`,
/// HTTP/1.1 only.
pub fn tls_config(
    cert_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    tls_config_with(cert_chain, key, false)
}

/// [`tls_config`], offering HTTP/2 too when `http2` (opt-in: docs/operations.md says what an
/// HTTP/2 connection may hold that an HTTP/1.1 one may not).
pub fn tls_config_with(
    cert_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    http2: bool,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    // Early data could be replayed; a bound request must never be.
    config.max_early_data_size = 0;
    // With HTTP/2, for clients that offer it (one TLS connection, several requests at once;
    // every request on it carries the connection's exporter); else HTTP/1.1.
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` within `limits` (over TLS when `tls` is given) until `shutdown`
/// completes, then lets requests in flight finish (at most `shutdown_grace`) and refuses new
/// ones.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    // Two limits on a request's body: the gap between two of its frames, and (since a client
    // can send one byte just inside each gap) the whole request until its answer starts,
    // three body timeouts. A streamed download has started its answer and is not cut.
    let app = app
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_read_timeout,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.body_read_timeout.saturating_mul(3),
        ))
        .layer(axum::middleware::map_response(request_timeout_envelope));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(PerAddress::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Answers are small and complete: send them at once. Without this, an answer written in
        // two parts waits for the client's delayed ACK (about 40 ms) on a kept-alive connection.
        let _ = stream.set_nodelay(true);
        let Some(address_slot) = per_address.take(peer.ip(), limits.max_connections_per_address)
        else {
            tracing::warn!(peer = %peer, max = limits.max_connections_per_address, "per-address connection cap reached; closing a new connection");
            drop(stream);
            continue;
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(peer = %peer, max_connections = limits.max_connections, "connection cap reached; closing a new connection");
            drop(stream);
            continue;
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let served = match acceptor {
                None => serve_connection(stream, peer, None, app, &limits, watcher).await,
                Some(acceptor) => {
                    // The handshake counts against the header time too.
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(tls)) => {
                            let mut exporter = [0u8; 32];
                            match tls.get_ref().1.export_keying_material(
                                &mut exporter,
                                b"EXPORTER-Channel-Binding",
                                None,
                            ) {
                                Ok(_) => {
                                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                                    let exporter = Some(TlsExporter(exporter));
                                    if h2 {
                                        serve_h2(tls, peer, exporter, app, &limits, watcher).await
                                    } else {
                                        serve_connection(tls, peer, exporter, app, &limits, watcher)
                                            .await
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(peer = %peer, error = %e, "no TLS exporter");
                                    Ok(())
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::info!(peer = %peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::info!(peer = %peer, "connection closed: TLS handshake not finished in time");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = served {
                if e.is_timeout() {
                    tracing::info!(peer = %peer, "connection closed: headers not received in time");
                } else {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
            }
            drop(slot);
            drop(address_slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("requests still in flight after the shutdown grace period");
        }
    }
}

/// The timeout layer's bare 408 as the service's error envelope.
async fn request_timeout_envelope(resp: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    if resp.status() == axum::http::StatusCode::REQUEST_TIMEOUT
        && !resp
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
    {
        return crate::ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request was not received in time",
        )
        .into_response();
    }
    resp
}

/// The app with every request tagged with the peer's address and, on TLS, the exporter.
fn tagged(
    app: Router,
    peer: std::net::SocketAddr,
    exporter: Option<TlsExporter>,
) -> hyper_util::service::TowerToHyperService<
    tower::util::MapRequest<
        Router,
        impl FnMut(hyper::Request<hyper::body::Incoming>) -> hyper::Request<hyper::body::Incoming>
        + Clone,
    >,
> {
    let tagged = tower::ServiceExt::map_request(
        app,
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            if let Some(e) = exporter {
                req.extensions_mut().insert(e);
            }
            req
        },
    );
    hyper_util::service::TowerToHyperService::new(tagged)
}

/// Streams one HTTP/2 connection may have open at once.
pub const H2_MAX_STREAMS: u32 = 8;

/// Serves one HTTP/2 connection (negotiated by ALPN on TLS, when enabled). Streams at once are
/// bounded, and a peer that stops answering pings is dropped; the connection caps bound idle
/// ones (there is no header timeout on HTTP/2).
async fn serve_h2<IO>(
    io: IO,
    peer: std::net::SocketAddr,
    exporter: Option<TlsExporter>,
    app: Router,
    limits: &ServerLimits,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Few streams, small windows and header lists: what one connection may hold stays near
    // what a few HTTP/1.1 connections may.
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(16 * 1024)
        .initial_stream_window_size(64 * 1024)
        .initial_connection_window_size(256 * 1024)
        .keep_alive_interval(Some(limits.header_read_timeout))
        .keep_alive_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), tagged(app, peer, exporter));
    watcher.watch(conn).await
}

/// Serves one connection: every request carries the peer's address and, on TLS, the exporter.
async fn serve_connection<IO>(
    io: IO,
    peer: std::net::SocketAddr,
    exporter: Option<TlsExporter>,
    app: Router,
    limits: &ServerLimits,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), tagged(app, peer, exporter));
    watcher.watch(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_is_offered_only_when_enabled() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
        let key = || {
            rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
                cert.signing_key.serialize_der(),
            ))
        };
        let plain = tls_config(vec![der.clone()], key()).unwrap();
        assert_eq!(plain.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(plain.max_early_data_size, 0);
        let h2 = tls_config_with(vec![der], key(), true).unwrap();
        assert_eq!(
            h2.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(
            client_key("2001:db8::1".parse().unwrap()),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
    }
}
