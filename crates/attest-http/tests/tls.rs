//! TLS 1.3 in the service and transport binding (RFC 9266) over real loopback TLS: a proof made
//! on the connection that carries it passes; the same evidence and proof carried on another
//! connection (a relay), or a proof that covers no connection, fail with
//! `transport_binding_failed`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use attest_android::{TrustAnchors, hex};
use attest_core::{ManualClock, UnixTime};
use attest_device::SoftwareDevice;
use attest_device::testing::TempDir;
use attest_http::{AppState, ServerLimits, router};
use attest_policy::Policy;
use attest_service::{Service, ServiceConfig, Trust, proof_message, proof_message_v2};
use attest_store::Store;
use attest_token::{Signer, b64url, b64url_decode};
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

const START: UnixTime = UnixTime::from_secs(1_793_491_200);
const METADATA: &[u8] = b"{\"build\": \"build-42\"} (signed by the OTA signer, opaque to the gate)";

struct Tls {
    addr: SocketAddr,
    /// The test CA's certificate (PEM): what a client must trust.
    ca_pem: String,
    clock: Arc<ManualClock>,
    artifact: Vec<u8>,
    connector: tokio_rustls::TlsConnector,
    service: Arc<Service>,
    _dir: TempDir,
}

async fn start(device: &SoftwareDevice) -> Tls {
    start_for(&[device]).await
}

/// A TLS service that trusts and admits every one of `devices`.
async fn start_for(devices: &[&SoftwareDevice]) -> Tls {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    // HTTP/2 on (opt-in in `serve`): the tests use both protocols.
    let tls = attest_http::tls_config_with(vec![cert_der.clone()], key, true).unwrap();

    let dir = TempDir::new("tls").unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let ota = dir.path().join("ota");
    std::fs::create_dir_all(ota.join("artifacts")).unwrap();
    let artifact: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(ota.join("artifacts/build-42"), b"artifact bytes").unwrap();
    std::fs::write(ota.join("artifacts/build-43"), &artifact).unwrap();
    std::fs::create_dir_all(ota.join("channels/stable")).unwrap();
    std::fs::write(ota.join("channels/stable/metadata"), METADATA).unwrap();
    std::fs::write(ota.join("channels/stable/releases"), "build-42\nbuild-43\n").unwrap();
    let store = Store::open_sqlite_dir(&dir.path().join("data"))
        .await
        .unwrap();
    let mut anchors = TrustAnchors::empty();
    let mut policy = String::new();
    for device in devices {
        anchors
            .add_certificate(device.root_cert().to_vec())
            .unwrap();
        policy.push_str(&format!(
            "[devices.\"{}\"]\nmodel = \"Enigm Phone 1\"\nboot_states = [\"verified\"]\n\n",
            hex(&device.boot_key())
        ));
    }
    let policy = Policy::from_toml(&format!(
        "{policy}[application]\npackages = [\"os.enigm.updater\"]\nsignature_digests = [\"{}\"]\n\n[channels.stable]\nrollout_percent = 100\n",
        hex(&attest_device::keydesc::UPDATER_DIGEST),
    ))
    .unwrap();
    let service = Arc::new(Service::new(
        store,
        Trust::new(policy, anchors, None),
        Signer::new(vec![attest_token::SigningKey::generate().unwrap().0]).unwrap(),
        &[7u8; 32],
        ServiceConfig::default(),
        Arc::clone(&clock) as Arc<dyn attest_core::Clock>,
    ));
    let app = router(
        AppState::new(Arc::clone(&service), vec![], vec![])
            .with_transport_binding(true)
            .with_ota_dir(ota),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(attest_http::serve(
        listener,
        app,
        ServerLimits::default(),
        Some(tls),
        std::future::pending(),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Tls {
        addr,
        ca_pem: cert.cert.pem(),
        clock,
        artifact,
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        service,
        _dir: dir,
    }
}

impl Tls {
    async fn connect(&self) -> TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        self.connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }
}

fn exporter(s: &TlsStream<tokio::net::TcpStream>) -> [u8; 32] {
    let mut out = [0u8; 32];
    s.get_ref()
        .1
        .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
        .unwrap();
    out
}

/// One request on `s` (which it closes); status and JSON body.
async fn request(
    s: TlsStream<tokio::net::TcpStream>,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    request_with(s, method, path, body, &[]).await
}

async fn request_with(
    mut s: TlsStream<tokio::net::TcpStream>,
    method: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut extra = String::new();
    for (k, v) in headers {
        extra.push_str(&format!("{k}: {v}\r\n"));
    }
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8(raw).unwrap();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

fn chain_json(chain: &[Vec<u8>]) -> Vec<String> {
    chain
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_are_bound_to_the_tls_connection() {
    let device = SoftwareDevice::new().unwrap();
    let t = start(&device).await;
    let s = t.connect().await;
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let (status, ready) = request(s, "GET", "/readyz", &Value::Null).await;
    assert_eq!((status, &ready["transport_binding"]), (200, &json!(true)));

    // Enrollment (no proof).
    let (_, c) = request(
        t.connect().await,
        "POST",
        "/v1/challenges",
        &json!({"workflow": "enrollment"}),
    )
    .await;
    let nonce = b64url_decode(c["nonce"].as_str().unwrap()).unwrap();
    let enrolled = device.attest(&nonce).unwrap();
    let (status, r) = request(
        t.connect().await,
        "POST",
        "/v1/attestations",
        &json!({"challenge_id": c["challenge_id"], "certificate_chain": chain_json(&enrolled.chain)}),
    )
    .await;
    assert_eq!((status, &r["decision"]), (200, &json!("eligible")), "{r}");
    let handle = r["device_handle"].as_str().unwrap().to_owned();
    // A member of the channel offering the artifact (set up in the store: the registration
    // and membership routes have tests of their own).
    let store = t.service.store();
    store.register(&handle, "enigm-os", START).await.unwrap();
    assert!(
        store
            .join_channel(&handle, "enigm-os", "stable", START)
            .await
            .unwrap()
    );

    // A gated attestation whose proof covers `exporter_of`'s connection, sent on `carrier`.
    let attempt = |version: u8| {
        let t = &t;
        let handle = handle.clone();
        let device = &device;
        let kdev = &enrolled.key;
        async move {
            let (_, c) = request(
                t.connect().await,
                "POST",
                "/v1/challenges",
                &json!({"workflow": "private_artifact", "resource": "build-42", "device_handle": handle}),
            )
            .await;
            let id = c["challenge_id"].as_str().unwrap().to_owned();
            let nonce = b64url_decode(c["nonce"].as_str().unwrap()).unwrap();
            let fresh = device.attest(&nonce).unwrap();
            let carrier = t.connect().await;
            let other = t.connect().await;
            let message = match version {
                1 => proof_message(
                    &id,
                    &nonce,
                    "private_artifact",
                    "build-42",
                    fresh.key.spki(),
                ),
                // 2: bound to the carrying connection; 3: bound to another one (a relay).
                v => {
                    let bound_to = if v == 2 {
                        exporter(&carrier)
                    } else {
                        exporter(&other)
                    };
                    proof_message_v2(
                        &id,
                        &nonce,
                        "private_artifact",
                        "build-42",
                        fresh.key.spki(),
                        &bound_to,
                    )
                }
            };
            let mut proof = kdev.sign(&message).unwrap();
            // The exporter the client says it signed: the one it bound the proof to.
            let claimed = match version {
                1 => None,
                2 | 4 => Some(exporter(&carrier)),
                _ => Some(exporter(&other)),
            };
            if version == 4 {
                // Names this connection, but the signature is broken.
                let last = proof.len() - 1;
                proof[last] ^= 1;
            }
            let mut body = json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle, "proof": b64url(&proof)});
            if let Some(c) = claimed {
                body["tls_exporter"] = json!(b64url(&c));
            }
            request(carrier, "POST", "/v1/attestations", &body).await
        }
    };
    let (status, r) = attempt(2).await;
    assert_eq!((status, &r["decision"]), (200, &json!("eligible")), "{r}");
    let token = r["token"].as_str().unwrap().to_owned();

    // The gated download: the DPoP proof names the connection it travels on.
    let path = "/v1/ota/artifacts/build-42";
    let url = format!("https://localhost{path}");
    let get = |bind: u8| {
        let (t, token, url) = (&t, token.clone(), url.clone());
        let kdev = &enrolled.key;
        async move {
            let carrier = t.connect().await;
            let other = t.connect().await;
            let exporter_claim = match bind {
                0 => Some(exporter(&carrier)),
                1 => Some(exporter(&other)),
                _ => None,
            };
            let jti = format!("jti-{bind}");
            let nonce = t.service.dpop_nonce();
            let proof = common::dpop_proof(
                kdev,
                "GET",
                &url,
                &token,
                Some(&nonce),
                &jti,
                START,
                exporter_claim.as_ref(),
            );
            request_with(
                carrier,
                "GET",
                path,
                &Value::Null,
                &[("Authorization", format!("DPoP {token}")), ("DPoP", proof)],
            )
            .await
        }
    };
    let (status, _) = get(0).await;
    assert_eq!(status, 200);
    for relay in [1, 2] {
        let (status, r) = get(relay).await;
        assert_eq!(
            (status, r["error"]["code"].as_str()),
            (401, Some("transport_binding_failed")),
            "{r}"
        );
    }
    let (_, r) = attempt(3).await;
    assert_eq!(r["reasons"], json!(["transport_binding_failed"]), "{r}");
    let (_, r) = attempt(1).await;
    assert_eq!(r["reasons"], json!(["transport_binding_failed"]), "{r}");
    // This connection named, but a bad signature: a request binding failure.
    let (_, r) = attempt(4).await;
    assert_eq!(r["reasons"], json!(["request_binding_failed"]), "{r}");
}

/// The one device client (`attest_device::client`) over real TLS: enroll, register, metadata
/// (and its 304), a download resumed on a new connection, channel membership and an update
/// authorization, every proof bound to the connection that carried it; a token stolen by
/// another enrolled device is useless to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_client_walks_the_gated_flow_over_tls() {
    walk_the_gated_flow(false).await;
}

/// The same over HTTP/2 (negotiated by ALPN): every request a stream of one TLS connection,
/// every proof bound to that connection's exporter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_client_walks_the_gated_flow_over_http2() {
    walk_the_gated_flow(true).await;
}

async fn walk_the_gated_flow(http2: bool) {
    use attest_device::client::{DeviceClient, Endpoint};
    let device = SoftwareDevice::new().unwrap();
    let thief_device = SoftwareDevice::new().unwrap();
    let t = start_for(&[&device, &thief_device]).await;
    let url = format!("https://localhost:{}", t.addr.port());
    let mut endpoint = Endpoint::new(&url, Some(t.ca_pem.as_bytes())).unwrap();
    if http2 {
        endpoint = endpoint.with_http2();
    }
    assert!(endpoint.is_tls());
    assert_eq!(endpoint.connect().await.unwrap().is_http2(), http2);
    let clock = Arc::clone(&t.clock) as Arc<dyn attest_core::Clock>;
    let mut client = DeviceClient::new(endpoint.clone(), device).with_clock(Arc::clone(&clock));

    let d = client.enroll().await.unwrap();
    assert!(d.is_eligible(), "{:?}", d.reasons);
    let handle = client.handle().unwrap().to_owned();

    // Not registered yet: membership is refused with its code.
    match client.join("stable", "release_channel").await {
        Err(attest_device::client::ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "not_registered"));
        }
        other => panic!("{other:?}"),
    }
    let reg = client.register("enigm-os").await.unwrap();
    assert_eq!(
        (reg["device_handle"].as_str(), reg["product"].as_str()),
        (Some(handle.as_str()), Some("enigm-os"))
    );

    // The channel's metadata is for its members: join first.
    let member = client.join("stable", "release_channel").await.unwrap();
    assert_eq!(member["channels"], json!(["stable"]), "{member}");
    let meta = client.metadata("stable", None).await.unwrap();
    assert_eq!((meta.status, &meta.body[..]), (200, METADATA));
    let etag = meta.header("etag").unwrap().to_owned();
    let again = client.metadata("stable", Some(&etag)).await.unwrap();
    assert_eq!((again.status, again.body.len()), (304, 0));

    // A download cut after the first part, resumed on a new connection (new exporter).
    let half = (t.artifact.len() / 2) as u64;
    let first = client
        .artifact("build-43", 0, Some(half - 1))
        .await
        .unwrap();
    assert_eq!(first.status, 206);
    client.disconnect();
    let rest = client.artifact("build-43", half, None).await.unwrap();
    assert_eq!(rest.status, 206);
    assert_eq!(
        rest.header("content-range"),
        Some(format!("bytes {half}-{}/{}", t.artifact.len() - 1, t.artifact.len()).as_str())
    );
    assert_eq!(first.header("etag"), rest.header("etag"));
    let whole: Vec<u8> = [&first.body[..], &rest.body[..]].concat();
    assert!(whole == t.artifact, "resumed bytes differ");

    let jwt = client.authorize("build-43").await.unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let header: Value = serde_json::from_slice(&b64url_decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&b64url_decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["typ"], "update-authorization+jwt");
    assert_eq!(
        (
            claims["build"].as_str(),
            claims["sub"].as_str().or(claims["device_handle"].as_str())
        ),
        (Some("build-43"), Some(handle.as_str())),
        "{claims}"
    );

    // Another enrolled device with this device's artifact token: the proof key is not the
    // token's key.
    let token = client.token("private_artifact", "build-43").await.unwrap();
    let mut thief = DeviceClient::new(endpoint, thief_device).with_clock(clock);
    assert!(thief.enroll().await.unwrap().is_eligible());
    let r = thief
        .gated("GET", "/v1/ota/artifacts/build-43", &token, b"", &[])
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("invalid_dpop_proof"))
    );
    assert!(r.body.len() < 1000, "nothing of the artifact in a refusal");
}
