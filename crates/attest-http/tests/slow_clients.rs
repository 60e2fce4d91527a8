//! Hostile clients on real loopback sockets: hundreds of idle connections, headers and bodies
//! trickled a byte at a time, more connections than the cap. The server must close them within
//! its bounds and keep answering everyone else (`/healthz` here).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attest_android::TrustAnchors;
use attest_core::{ManualClock, UnixTime};
use attest_device::testing::TempDir;
use attest_http::{AppState, ServerLimits, router};
use attest_policy::Policy;
use attest_service::{Service, ServiceConfig, Trust};
use attest_store::Store;
use attest_token::Signer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: ServerLimits) -> (SocketAddr, TempDir) {
    let (addr, dir, _) = start_with(limits, attest_http::RateLimit::new(100, 200)).await;
    (addr, dir)
}

async fn start_with(
    limits: ServerLimits,
    rate: attest_http::RateLimit,
) -> (SocketAddr, TempDir, Arc<ManualClock>) {
    let dir = TempDir::new("slow").unwrap();
    let clock = Arc::new(ManualClock::new(UnixTime::from_secs(1_793_491_200)));
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    let policy = Policy::from_toml("[defaults]\nmin_os_patch_level = 202601\n").unwrap();
    let service = Arc::new(Service::new(
        store,
        Trust::new(policy, TrustAnchors::google(), None),
        Signer::new(vec![attest_token::SigningKey::generate().unwrap().0]).unwrap(),
        &[7u8; 32],
        ServiceConfig::default(),
        clock.clone(),
    ));
    let app = router(AppState::new(service, vec![], vec![]).with_challenge_limit(rate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(attest_http::serve(
        listener,
        app,
        limits,
        None,
        std::future::pending(),
    ));
    (addr, dir, clock)
}

/// `GET /healthz` on a new connection; the status, or `None` when refused or closed.
async fn healthz(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1)?.parse().ok()
}

/// Whether the server has closed `s` (a read returns end of file or an error).
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // a 408 or similar before closing: keep reading
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_trickling_clients_are_closed_and_healthz_keeps_answering() {
    let limits = ServerLimits {
        max_connections: 1024,
        max_connections_per_address: 1024,
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(1),
    };
    let (addr, _dir) = start(limits).await;
    // 300 idle connections, 50 that trickle their headers, 20 that trickle a body.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut trickle_heads = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        trickle_heads.push(s);
    }
    let mut trickle_bodies = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /v1/challenges HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"wor")
            .await
            .unwrap();
        trickle_bodies.push(s);
    }
    let feeder = tokio::spawn(async move {
        // One more byte each 300 ms: never enough to finish in time.
        for _ in 0..10 {
            for s in trickle_heads.iter_mut().chain(trickle_bodies.iter_mut()) {
                let _ = s.write_all(b"x").await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        (trickle_heads, trickle_bodies)
    });
    // Everyone else is served meanwhile.
    let started = Instant::now();
    assert_eq!(healthz(addr).await, Some(200));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // The idle ones are closed by the server once the header time is up.
    let mut closed = 0;
    for s in &mut idle {
        if closed_by_server(s, Duration::from_secs(4)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 300);
    let (mut heads, mut bodies) = feeder.await.unwrap();
    for s in heads.iter_mut().chain(bodies.iter_mut()) {
        assert!(
            closed_by_server(s, Duration::from_secs(3)).await,
            "a trickling client was kept"
        );
    }
    assert_eq!(healthz(addr).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let limits = ServerLimits {
        max_connections: 20,
        max_connections_per_address: 20,
        header_read_timeout: Duration::from_secs(2),
        ..ServerLimits::default()
    };
    let (addr, _dir) = start(limits).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The 21st is accepted and closed without an answer.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut extra, Duration::from_secs(1)).await);
    // Once the held ones time out, the server serves again.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        if healthz(addr).await == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(held);
}

/// `POST /v1/challenges` for enrollment; the status and error code.
async fn challenge(addr: SocketAddr) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = r#"{"workflow": "enrollment"}"#;
    s.write_all(
        format!(
            "POST /v1/challenges HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[tokio::test]
async fn challenges_are_limited_per_client_address() {
    let (addr, _dir, clock) =
        start_with(ServerLimits::default(), attest_http::RateLimit::new(2, 4)).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(challenge(addr).await);
    }
    assert_eq!(
        statuses.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [201, 201, 201, 201, 429, 429]
    );
    let (_, refused) = &statuses[4];
    assert!(
        refused.contains("\"rate_limited\"")
            && refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );
    // A second later, two more.
    clock.advance(1);
    assert_eq!(challenge(addr).await.0, 201);
    assert_eq!(challenge(addr).await.0, 201);
    assert_eq!(challenge(addr).await.0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_slot() {
    let limits = ServerLimits {
        max_connections: 100,
        max_connections_per_address: 5,
        header_read_timeout: Duration::from_secs(2),
        ..ServerLimits::default()
    };
    let (addr, _dir) = start(limits).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sixth = TcpStream::connect(addr).await.unwrap();
    assert!(closed_by_server(&mut sixth, Duration::from_secs(1)).await);
    // A slot given back is usable again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(healthz(addr).await, Some(200));
}

/// A body sent one byte just inside each gap the per-frame limit allows still has to arrive
/// within three body timeouts: then 408 `request_timeout`, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_inside_the_gap_limit_is_cut_by_the_deadline() {
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    };
    let (addr, _dir) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v1/challenges HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .await
        .unwrap();
    let started = Instant::now();
    let (mut r, mut w) = s.into_split();
    let feeder = tokio::spawn(async move {
        // A byte every 600 ms: never a gap of a whole second.
        for _ in 0..20 {
            if w.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), r.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    feeder.abort();
}
