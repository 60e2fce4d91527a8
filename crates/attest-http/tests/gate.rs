//! The OTA gate over real HTTP on loopback: eligibility tokens bound to K_dev, DPoP proofs
//! with server nonces, single use, scope, registration, revocation at once, and the resources
//! themselves (metadata with ETag, artifacts with ranges, update authorizations). Time is a
//! manual clock.

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
use attest_device::testing::TempDir;
use attest_device::{SigningKey, SoftwareDevice};
use attest_http::{AppState, router};
use attest_policy::Policy;
use attest_service::{Service, ServiceConfig, Trust, proof_message};
use attest_store::Store;
use attest_token::{Signer, b64url, b64url_decode};
use aws_lc_rs::digest;
use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const START: UnixTime = UnixTime::from_secs(1_793_491_200);

/// The tests of this file run one at a time: the large-artifact test measures the process's
/// peak memory, which concurrent tests would raise.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const ADMIN_TOKEN: &str = "eat_gate-admin";

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> Option<String> {
        self.json()["error"]["code"].as_str().map(str::to_owned)
    }
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + n]);
            rest = &rest[line_end + 4 + n..];
        }
        body = out;
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply { status, head, body }
}

struct Gate {
    addr: SocketAddr,
    service: Arc<Service>,
    _dir: TempDir,
    artifact: Vec<u8>,
    metadata: Vec<u8>,
}

async fn start(device: &SoftwareDevice) -> Gate {
    let dir = TempDir::new("gate").unwrap();
    let ota = dir.path().join("ota");
    std::fs::create_dir_all(ota.join("channels/stable")).unwrap();
    std::fs::create_dir_all(ota.join("artifacts")).unwrap();
    let metadata = b"signed metadata bytes, never parsed by the gate\n".to_vec();
    std::fs::write(ota.join("channels/stable/metadata"), &metadata).unwrap();
    let artifact: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(ota.join("artifacts/build-42"), &artifact).unwrap();
    std::fs::write(dir.path().join("secret-outside"), b"never served").unwrap();
    std::fs::create_dir_all(ota.join("channels/beta")).unwrap();
    std::fs::write(ota.join("channels/beta/metadata"), b"beta metadata").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        dir.path().join("secret-outside"),
        ota.join("artifacts/link"),
    )
    .unwrap();

    let store = Store::open_sqlite_dir(&dir.path().join("data"))
        .await
        .unwrap();
    let mut anchors = TrustAnchors::empty();
    anchors
        .add_certificate(device.root_cert().to_vec())
        .unwrap();
    let policy_text = format!(
        "[devices.\"{}\"]\nmodel = \"Enigm Phone 1\"\nboot_states = [\"verified\"]\n\n[application]\npackages = [\"os.enigm.updater\"]\nsignature_digests = [\"{}\"]\n\n[channels.stable]\nrollout_percent = 100\n\n[channels.beta]\nrollout_percent = 100\nmodels = [\"Enigm Phone 1\"]\n\n[channels.closed]\nrollout_percent = 0\n\n[channels.vault]\nworkflow = \"sensitive_channel\"\nmin_security_level = \"strongbox\"\n",
        hex(&device.boot_key()),
        hex(&attest_device::keydesc::UPDATER_DIGEST),
    );
    let policy = Policy::from_toml(&policy_text).unwrap();
    // Reloads read this file (tests rewrite it to change the policy in force).
    let policy_file = dir.path().join("policy.toml");
    std::fs::write(&policy_file, &policy_text).unwrap();
    // What each channel offers: what no channel lists is served to nobody.
    std::fs::write(
        ota.join("channels/stable/releases"),
        "build-42\nlink\nbig\n",
    )
    .unwrap();
    std::fs::write(
        ota.join("channels/beta/releases"),
        "build-42 # also on beta\n\nbeta-build\n",
    )
    .unwrap();
    std::fs::create_dir_all(ota.join("channels/closed")).unwrap();
    std::fs::write(ota.join("channels/closed/releases"), "closed-build\n").unwrap();
    for id in ["beta-build", "closed-build", "unlisted"] {
        std::fs::write(ota.join("artifacts").join(id), format!("bytes of {id}")).unwrap();
    }
    let root = device.root_cert().to_vec();
    let service = Arc::new(
        Service::new(
            store,
            Trust::new(policy, anchors, None),
            Signer::new(vec![attest_token::SigningKey::generate().unwrap().0]).unwrap(),
            &[7u8; 32],
            ServiceConfig::default(),
            Arc::new(ManualClock::new(START)),
        )
        .with_loader(Box::new(move || {
            let text = std::fs::read_to_string(&policy_file).map_err(|e| e.to_string())?;
            let policy = Policy::from_toml(&text).map_err(|e| e.to_string())?;
            let mut anchors = TrustAnchors::empty();
            anchors
                .add_certificate(root.clone())
                .map_err(|e| e.to_string())?;
            Ok(Trust::new(policy, anchors, None))
        })),
    );
    let digest = digest::digest(&digest::SHA256, ADMIN_TOKEN.as_bytes());
    let state = AppState::new(
        Arc::clone(&service),
        vec![digest.as_ref().try_into().unwrap()],
        vec![],
    )
    .with_ota_dir(ota);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    Gate {
        addr,
        service,
        _dir: dir,
        artifact,
        metadata,
    }
}

fn chain_json(chain: &[Vec<u8>]) -> Vec<String> {
    chain
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

/// A DPoP proof by `key` for `method` on `path`, for `token`, with `nonce`.
fn dpop(
    g: &Gate,
    key: &SigningKey,
    method: &str,
    path: &str,
    token: &str,
    nonce: Option<&str>,
    jti: &str,
) -> String {
    common::dpop_proof(
        key,
        method,
        &format!("http://{}{path}", g.addr),
        token,
        nonce,
        jti,
        START,
        None,
    )
}

impl Gate {
    /// Registers `handle` for `enigm-phone` and makes it a member of `channel` directly in the
    /// store: setup for tests of other routes (the registration and membership routes have
    /// their own tests).
    async fn member_of(&self, handle: &str, channel: &str) {
        let store = self.service.store();
        store.register(handle, "enigm-phone", START).await.unwrap();
        assert!(
            store
                .join_channel(handle, "enigm-phone", channel, START)
                .await
                .unwrap()
        );
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        http(
            self.addr,
            "POST",
            path,
            &[],
            Some(body.to_string().as_bytes()),
        )
        .await
        .json()
    }

    /// Enrolls `device`: its handle and K_dev.
    async fn enroll(&self, device: &SoftwareDevice) -> (String, SigningKey) {
        let c = self
            .post("/v1/challenges", &json!({"workflow": "enrollment"}))
            .await;
        let nonce = b64url_decode(c["nonce"].as_str().unwrap()).unwrap();
        let a = device.attest(&nonce).unwrap();
        let r = self
            .post("/v1/attestations", &json!({"challenge_id": c["challenge_id"], "certificate_chain": chain_json(&a.chain)}))
            .await;
        assert_eq!(r["decision"], "eligible", "{r}");
        (r["device_handle"].as_str().unwrap().to_owned(), a.key)
    }

    /// An eligibility token for `workflow` and `resource`.
    /// An eligibility token for `workflow` and `resource` (the attestation must be eligible).
    async fn token(
        &self,
        device: &SoftwareDevice,
        kdev: &SigningKey,
        handle: &str,
        workflow: &str,
        resource: &str,
    ) -> String {
        let r = self.attest(device, kdev, handle, workflow, resource).await;
        assert_eq!(r["decision"], "eligible", "{r}");
        r["token"].as_str().unwrap().to_owned()
    }

    /// A gated attestation (fresh key, proof by K_dev); the answer.
    async fn attest(
        &self,
        device: &SoftwareDevice,
        kdev: &SigningKey,
        handle: &str,
        workflow: &str,
        resource: &str,
    ) -> Value {
        let c = self
            .post(
                "/v1/challenges",
                &json!({"workflow": workflow, "resource": resource, "device_handle": handle}),
            )
            .await;
        let id = c["challenge_id"].as_str().unwrap();
        let nonce = b64url_decode(c["nonce"].as_str().unwrap()).unwrap();
        let fresh = device.attest(&nonce).unwrap();
        let proof = kdev
            .sign(&proof_message(
                id,
                &nonce,
                workflow,
                resource,
                fresh.key.spki(),
            ))
            .unwrap();
        self.post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle, "proof": b64url(&proof)}),
        )
        .await
    }

    /// A gated request with a fresh nonce and a new jti.
    async fn gated(
        &self,
        key: &SigningKey,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&[u8]>,
        extra: &[(&str, String)],
    ) -> Reply {
        let nonce = self.service.dpop_nonce();
        let jti = b64url(&rand16());
        let mut headers = vec![
            ("Authorization", format!("DPoP {token}")),
            (
                "DPoP",
                dpop(self, key, method, path, token, Some(&nonce), &jti),
            ),
        ];
        headers.extend(extra.iter().cloned());
        http(self.addr, method, path, &headers, body).await
    }
}

fn rand16() -> [u8; 16] {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_admits_only_bound_fresh_scoped_requests() {
    let _serial = SERIAL.lock().await;
    let device = SoftwareDevice::new().unwrap();
    let g = start(&device).await;
    let (handle, kdev) = g.enroll(&device).await;
    g.member_of(&handle, "stable").await;
    let path = "/v1/ota/artifacts/build-42";
    let token = g
        .token(&device, &kdev, &handle, "private_artifact", "build-42")
        .await;

    // No nonce yet: 401 use_dpop_nonce, with one to use.
    let proof = dpop(&g, &kdev, "GET", path, &token, None, "j0");
    let r = http(
        g.addr,
        "GET",
        path,
        &[("Authorization", format!("DPoP {token}")), ("DPoP", proof)],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("use_dpop_nonce"))
    );
    let nonce = r.header("dpop-nonce").expect("a DPoP-Nonce to retry with");
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("error=\"use_dpop_nonce\"")
    );
    // With it: the artifact, whole.
    let proof = dpop(&g, &kdev, "GET", path, &token, Some(&nonce), "j1");
    let headers = [("Authorization", format!("DPoP {token}")), ("DPoP", proof)];
    let r = http(g.addr, "GET", path, &headers, None).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.body, g.artifact);
    assert_eq!(r.header("content-length").as_deref(), Some("300000"));
    assert!(r.header("etag").is_some() && r.header("dpop-nonce").is_some());
    // The scheme name in any case (RFC 9110); but never two DPoP or Authorization headers.
    let proof = dpop(&g, &kdev, "GET", path, &token, Some(&nonce), "j-case");
    let r = http(
        g.addr,
        "GET",
        path,
        &[("Authorization", format!("dpop {token}")), ("DPoP", proof)],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let p1 = dpop(&g, &kdev, "GET", path, &token, Some(&nonce), "j-two-a");
    let p2 = dpop(&g, &kdev, "GET", path, &token, Some(&nonce), "j-two-b");
    let r = http(
        g.addr,
        "GET",
        path,
        &[
            ("Authorization", format!("DPoP {token}")),
            ("DPoP", p1.clone()),
            ("DPoP", p2),
        ],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("invalid_dpop_proof"))
    );
    let r = http(
        g.addr,
        "GET",
        path,
        &[
            ("Authorization", format!("DPoP {token}")),
            ("Authorization", "DPoP x".to_owned()),
            ("DPoP", p1),
        ],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("invalid_token"))
    );
    // The same proof again: a replay.
    let r = http(g.addr, "GET", path, &headers, None).await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("invalid_dpop_proof"))
    );
    assert!(
        !String::from_utf8_lossy(&r.body).contains("build"),
        "nothing of the resource in a refusal"
    );

    // Ranges.
    let r = g
        .gated(
            &kdev,
            "GET",
            path,
            &token,
            None,
            &[("Range", "bytes=10-19".into())],
        )
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, g.artifact[10..20]);
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("bytes 10-19/300000")
    );
    let r = g
        .gated(
            &kdev,
            "GET",
            path,
            &token,
            None,
            &[("Range", "bytes=-5".into())],
        )
        .await;
    assert_eq!((r.status, r.body.as_slice()), (206, &g.artifact[299_995..]));
    for bad in ["bytes=300000-", "bytes=5-2", "bytes=0-1,4-5", "items=0-1"] {
        let r = g
            .gated(&kdev, "GET", path, &token, None, &[("Range", bad.into())])
            .await;
        assert_eq!(r.status, 416, "{bad}");
        assert_eq!(r.header("content-range").as_deref(), Some("bytes */300000"));
    }

    // The token of one resource does not open another; another key cannot use a stolen token;
    // no token, no entry; a proof for another URL or method fails.
    let r = g
        .gated(
            &kdev,
            "GET",
            "/v1/ota/artifacts/build-43",
            &token,
            None,
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("insufficient_scope"))
    );
    let thief = SigningKey::generate(attest_device::KeyKind::EcP256).unwrap();
    let r = g.gated(&thief, "GET", path, &token, None, &[]).await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("invalid_dpop_proof"))
    );
    let r = http(g.addr, "GET", path, &[], None).await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("invalid_token"))
    );
    let r = http(
        g.addr,
        "GET",
        path,
        &[("Authorization", format!("Bearer {token}"))],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("invalid_token"))
    );
    let wrong_url = dpop(
        &g,
        &kdev,
        "GET",
        "/v1/ota/artifacts/other",
        &token,
        Some(&g.service.dpop_nonce()),
        "j9",
    );
    let r = http(
        g.addr,
        "GET",
        path,
        &[
            ("Authorization", format!("DPoP {token}")),
            ("DPoP", wrong_url),
        ],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("invalid_dpop_proof"))
    );

    // Bodies: exactly one name, of the safe characters.
    for bad in [
        json!({"product": "enigm-phone", "extra": 1}),
        json!({"product": 5}),
        json!({}),
        json!({"product": "../etc"}),
    ] {
        let b = bad.to_string();
        let r = g
            .gated(
                &kdev,
                "POST",
                "/v1/ota/registrations",
                &token,
                Some(b.as_bytes()),
                &[],
            )
            .await;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some("invalid_request")),
            "{b}"
        );
    }

    // Traversal never reaches the file system: 400 before the gate.
    for bad in [
        "/v1/ota/artifacts/..",
        "/v1/ota/artifacts/..%2Fsecret-outside",
        "/v1/ota/artifacts/%2e%2e",
        "/v1/ota/channels/..%2F..%2Fsecret-outside/metadata",
        "/v1/ota/artifacts/a%00b",
    ] {
        let r = g.gated(&kdev, "GET", bad, &token, None, &[]).await;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }

    // Metadata, byte for byte, with ETag and If-None-Match.
    let meta_token = g
        .token(&device, &kdev, &handle, "protected_metadata", "stable")
        .await;
    let meta = "/v1/ota/channels/stable/metadata";
    let r = g.gated(&kdev, "GET", meta, &meta_token, None, &[]).await;
    assert_eq!((r.status, &r.body), (200, &g.metadata));
    let etag = r.header("etag").unwrap();
    let r = g
        .gated(
            &kdev,
            "GET",
            meta,
            &meta_token,
            None,
            &[("If-None-Match", etag)],
        )
        .await;
    assert_eq!(r.status, 304);
    let r = g
        .gated(
            &kdev,
            "GET",
            "/v1/ota/channels/beta/metadata",
            &meta_token,
            None,
            &[],
        )
        .await;
    assert_eq!(r.code().as_deref(), Some("insufficient_scope"));

    // Update authorization needs a registration: a second enrollment (a new key, a new
    // handle) of this hardware is not registered.
    let (new_handle, new_kdev) = g.enroll(&device).await;
    let new_token = g
        .token(
            &device,
            &new_kdev,
            &new_handle,
            "update_authorization",
            "build-42",
        )
        .await;
    let body = json!({"build": "build-42"}).to_string();
    let r = g
        .gated(
            &new_kdev,
            "POST",
            "/v1/ota/authorizations",
            &new_token,
            Some(body.as_bytes()),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("not_registered"))
    );
    let auth_token = g
        .token(&device, &kdev, &handle, "update_authorization", "build-42")
        .await;
    let reg_token = g
        .token(&device, &kdev, &handle, "registration", "enigm-phone")
        .await;
    let reg = json!({"product": "enigm-phone"}).to_string();
    let r = g
        .gated(
            &kdev,
            "POST",
            "/v1/ota/registrations",
            &reg_token,
            Some(reg.as_bytes()),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["device_handle"], json!(handle));
    assert_eq!(r.json()["product"], "enigm-phone");
    let r = g
        .gated(
            &kdev,
            "POST",
            "/v1/ota/authorizations",
            &auth_token,
            Some(body.as_bytes()),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let jwt = r.json()["authorization"].as_str().unwrap().to_owned();
    let claims = attest_token::verify(&jwt, &g.service.jwks(), START).unwrap();
    assert_eq!(
        (claims["build"].as_str(), claims["sub"].as_str()),
        (Some("build-42"), Some(handle.as_str()))
    );
    let typ =
        serde_json::from_slice::<Value>(&b64url_decode(jwt.split('.').next().unwrap()).unwrap())
            .unwrap();
    assert_eq!(typ["typ"], "update-authorization+jwt");
    assert_eq!(
        claims["cnf"]["jkt"],
        json!(attest_token::jwk_thumbprint(kdev.spki()).unwrap())
    );

    // Channels: inside the rollout the device is admitted; at 0% it is not; an unknown channel
    // is not found; a channel whose own rules ask for StrongBox refuses this TEE device at
    // attestation.
    // A staged channel's metadata is for members only.
    let beta_meta = g
        .token(&device, &kdev, &handle, "protected_metadata", "beta")
        .await;
    let meta_path = "/v1/ota/channels/beta/metadata";
    let r = g
        .gated(&kdev, "GET", meta_path, &beta_meta, None, &[])
        .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("not_in_rollout"))
    );
    let beta = g
        .token(&device, &kdev, &handle, "release_channel", "beta")
        .await;
    let r = g
        .gated(
            &kdev,
            "POST",
            "/v1/ota/channels/beta/membership",
            &beta,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["channels"], json!(["beta", "stable"]));
    let r = g
        .gated(&kdev, "GET", meta_path, &beta_meta, None, &[])
        .await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"beta metadata"[..]));
    let closed = g
        .token(&device, &kdev, &handle, "release_channel", "closed")
        .await;
    let r = g
        .gated(
            &kdev,
            "POST",
            "/v1/ota/channels/closed/membership",
            &closed,
            None,
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("not_in_rollout"))
    );
    // An unknown channel: only a caller the gate admits learns it does not exist.
    let nowhere_path = "/v1/ota/channels/nowhere/membership";
    let r = g
        .gated(&kdev, "POST", nowhere_path, &closed, None, &[])
        .await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("insufficient_scope"))
    );
    let nowhere = g
        .token(&device, &kdev, &handle, "release_channel", "nowhere")
        .await;
    let r = g
        .gated(&kdev, "POST", nowhere_path, &nowhere, None, &[])
        .await;
    assert_eq!(r.status, 404);
    let r = g
        .attest(&device, &kdev, &handle, "sensitive_channel", "vault")
        .await;
    assert_eq!(
        (r["decision"].as_str(), &r["reasons"]),
        (Some("ineligible"), &json!(["eligibility_failure"])),
        "{r}"
    );
    // The update authorization now names the channel.
    let r = g
        .gated(
            &kdev,
            "POST",
            "/v1/ota/authorizations",
            &auth_token,
            Some(body.as_bytes()),
            &[],
        )
        .await;
    let claims = attest_token::verify(
        r.json()["authorization"].as_str().unwrap(),
        &g.service.jwks(),
        START,
    )
    .unwrap();
    assert_eq!(claims["channels"], json!(["beta", "stable"]));

    // Registering for another product leaves the old product's channels behind.
    let other = g
        .token(&device, &kdev, &handle, "registration", "other-product")
        .await;
    let reg = json!({"product": "other-product"}).to_string();
    let r = g
        .gated(
            &kdev,
            "POST",
            "/v1/ota/registrations",
            &other,
            Some(reg.as_bytes()),
            &[],
        )
        .await;
    assert_eq!((r.status, &r.json()["channels"]), (201, &json!([])));

    // A link planted in the OTA directory is not followed.
    let link = g
        .token(&device, &kdev, &handle, "private_artifact", "link")
        .await;
    let r = g
        .gated(&kdev, "GET", "/v1/ota/artifacts/link", &link, None, &[])
        .await;
    assert_eq!(r.status, 404);
    assert!(!String::from_utf8_lossy(&r.body).contains("never served"));

    // A signed result is not an eligibility token, though signed by the same key.
    let res = g
        .attest(&device, &kdev, &handle, "private_artifact", "build-42")
        .await;
    let result_jwt = res["result"].as_str().unwrap().to_owned();
    let r = g.gated(&kdev, "GET", path, &result_jwt, None, &[]).await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (401, Some("invalid_token"))
    );

    // Revocation acts at once, on a token that is still valid.
    let r = http(
        g.addr,
        "POST",
        &format!("/admin/v1/devices/{handle}/revoke"),
        &[("Authorization", format!("Bearer {ADMIN_TOKEN}"))],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = g.gated(&kdev, "GET", path, &token, None, &[]).await;
    assert_eq!(
        (r.status, r.code().as_deref()),
        (403, Some("device_revoked"))
    );
}

#[tokio::test]
async fn rollout_buckets_are_fixed_by_the_secret_channel_and_handle() {
    let _serial = SERIAL.lock().await;
    // Golden values: the bucket must not move across releases or toolchains (threats.md 26).
    let device = SoftwareDevice::new().unwrap();
    let g = start(&device).await;
    let s = &g.service;
    let got: Vec<u8> = ["dh_a", "dh_b", "dh_c"]
        .iter()
        .map(|h| s.rollout_bucket("beta", h))
        .collect();
    assert_eq!(got, GOLDEN);
    assert_ne!(
        s.rollout_bucket("beta", "dh_a"),
        s.rollout_bucket("gamma", "dh_a") + 100,
        "in range"
    );
    assert!((0..100).contains(&s.rollout_bucket("x", "dh_a")));
}

/// Computed independently of this code (Python's hmac over the documented construction) for
/// the test secret of 32 bytes of 7.
const GOLDEN: [u8; 3] = [11, 1, 73];

#[tokio::test]
async fn no_gated_route_is_reachable_without_the_gate() {
    let _serial = SERIAL.lock().await;
    let device = SoftwareDevice::new().unwrap();
    let g = start(&device).await;
    let gated: Vec<_> = attest_http::ROUTES
        .iter()
        .filter(|(_, path, _)| path.starts_with("/v1/ota/"))
        .collect();
    assert_eq!(gated.len(), 5, "every OTA route is in this test");
    for (method, template, admin) in gated {
        assert!(!admin);
        let path = template
            .replace("{channel}", "beta")
            .replace("{id}", "build-42");
        let body = match path.as_str() {
            "/v1/ota/registrations" => Some(json!({"product": "enigm-phone"}).to_string()),
            "/v1/ota/authorizations" => Some(json!({"build": "build-42"}).to_string()),
            _ => None,
        };
        for headers in [
            vec![],
            vec![("Authorization", "DPoP not-a-token".to_owned())],
        ] {
            let r = http(
                g.addr,
                method,
                &path,
                &headers,
                body.as_deref().map(str::as_bytes),
            )
            .await;
            assert_eq!(
                (r.status, r.code().as_deref()),
                (401, Some("invalid_token")),
                "{method} {path}"
            );
            assert!(
                r.header("dpop-nonce").is_some(),
                "{method} {path}: a nonce to start with"
            );
        }
    }
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_artifact_streams_with_flat_memory_and_resumes() {
    let _serial = SERIAL.lock().await;
    let device = SoftwareDevice::new().unwrap();
    let g = start(&device).await;
    // A sparse 1 GiB file: nothing to write, everything to read.
    let big = g._dir.path().join("ota/artifacts/big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (handle, kdev) = g.enroll(&device).await;
    g.member_of(&handle, "stable").await;
    let token = g
        .token(&device, &kdev, &handle, "private_artifact", "big")
        .await;
    let before = peak_rss_kib();
    for (range, want) in [
        (None, 1u64 << 30),
        (Some("bytes=1000000000-"), (1u64 << 30) - 1_000_000_000),
    ] {
        let path = "/v1/ota/artifacts/big";
        let proof = dpop(
            &g,
            &kdev,
            "GET",
            path,
            &token,
            Some(&g.service.dpop_nonce()),
            &b64url(&rand16()),
        );
        let mut s = tokio::net::TcpStream::connect(g.addr).await.unwrap();
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: DPoP {token}\r\nDPoP: {proof}\r\n",
            g.addr
        );
        if let Some(r) = range {
            req.push_str(&format!("Range: {r}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        // Read and discard: the client keeps nothing either.
        let mut buf = vec![0u8; 256 * 1024];
        let mut head = Vec::new();
        let mut body = 0u64;
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                body += n as u64;
            } else {
                head.extend_from_slice(&buf[..n]);
                if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    body += (head.len() - at - 4) as u64;
                    head.truncate(at + 4);
                }
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        assert!(
            head.starts_with(if range.is_some() {
                "HTTP/1.1 206"
            } else {
                "HTTP/1.1 200"
            }),
            "{head}"
        );
        assert_eq!(body, want);
    }
    if let (Some(b), Some(a)) = (before, peak_rss_kib()) {
        // Two downloads of a gibibyte: the peak may not grow by more than 64 MiB.
        assert!(
            a.saturating_sub(b) < 64 * 1024,
            "peak RSS grew from {b} to {a} KiB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relying_party_elsewhere_admits_with_the_jwks_alone() {
    // What examples/relying_party.rs runs: the same checks with only the published JWK Set.
    let _serial = SERIAL.lock().await;
    use attest_token::relying_party::{GateFailure, GatedRequest, check_gated};
    let device = SoftwareDevice::new().unwrap();
    let g = start(&device).await;
    let (handle, kdev) = g.enroll(&device).await;
    let token = g
        .token(&device, &kdev, &handle, "private_artifact", "build-42")
        .await;
    let jwks: Value = http(g.addr, "GET", "/v1/jwks", &[], None).await.json();
    let url = "https://ota.example/artifacts/build-42";
    let proof = common::dpop_proof(&kdev, "GET", url, &token, None, "rp-1", START, None);
    let authorization = format!("DPoP {token}");
    let request = GatedRequest {
        authorization: Some(&authorization),
        dpop: Some(&proof),
        method: "GET",
        url,
        tls_exporter: None,
        now: START,
        window_secs: 60,
        issuer: "enigm-attest",
        workflow: "private_artifact",
        resource: "build-42",
    };
    let admitted = check_gated(&jwks, &request).unwrap();
    assert_eq!(admitted.subject, handle);
    assert_eq!(admitted.proof.jti, "rp-1");
    // Another resource, another issuer, another key, an expired token.
    let other = GatedRequest {
        resource: "build-43",
        ..request
    };
    assert_eq!(
        check_gated(&jwks, &other).unwrap_err(),
        GateFailure::InsufficientScope
    );
    let other = GatedRequest {
        issuer: "someone-else",
        ..request
    };
    assert!(matches!(
        check_gated(&jwks, &other),
        Err(GateFailure::InvalidToken(_))
    ));
    let thief = SigningKey::generate(attest_device::KeyKind::EcP256).unwrap();
    let stolen = common::dpop_proof(&thief, "GET", url, &token, None, "rp-2", START, None);
    let other = GatedRequest {
        dpop: Some(&stolen),
        ..request
    };
    assert_eq!(
        check_gated(&jwks, &other).unwrap_err(),
        GateFailure::WrongKey
    );
    let late = GatedRequest {
        now: START.saturating_add_secs(3600),
        ..request
    };
    assert!(matches!(
        check_gated(&jwks, &late),
        Err(GateFailure::InvalidToken(_))
    ));
}

/// Artifacts and builds are served or authorized only through a channel that lists them
/// (`channels/<name>/releases`) and that the device may read now: a configured channel's
/// members inside its current rollout and models. Narrowing a rollout acts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_and_builds_follow_the_channels_that_offer_them() {
    let _serial = SERIAL.lock().await;
    let device = SoftwareDevice::new().unwrap();
    let g = start(&device).await;
    let (handle, kdev) = g.enroll(&device).await;
    let get = |id: &'static str| {
        let (g, device, kdev, handle) = (&g, &device, &kdev, handle.clone());
        async move {
            let t = g.token(device, kdev, &handle, "private_artifact", id).await;
            let path = format!("/v1/ota/artifacts/{id}");
            g.gated(kdev, "GET", &path, &t, None, &[]).await
        }
    };
    let authorize = |build: &'static str| {
        let (g, device, kdev, handle) = (&g, &device, &kdev, handle.clone());
        async move {
            let t = g
                .token(device, kdev, &handle, "update_authorization", build)
                .await;
            let body = json!({"build": build}).to_string();
            g.gated(
                kdev,
                "POST",
                "/v1/ota/authorizations",
                &t,
                Some(body.as_bytes()),
                &[],
            )
            .await
        }
    };
    let code = |r: &Reply| (r.status, r.code());
    // Listed by a configured channel: not for an unregistered device, nor a non-member.
    assert_eq!(
        code(&get("closed-build").await),
        (404, Some("not_found".into()))
    );
    // Listed by no channel: nobody gets it, though the file exists.
    let r = get("unlisted").await;
    assert_eq!(code(&r), (404, Some("not_found".into())));
    assert!(!String::from_utf8_lossy(&r.body).contains("bytes of"));
    // Every channel is for its members: build-42 (on stable) too.
    assert_eq!(
        code(&get("build-42").await),
        (404, Some("not_found".into()))
    );
    // A folder the policy does not configure is served to nobody, whatever it lists.
    let ota = g._dir.path().join("ota");
    std::fs::create_dir_all(ota.join("channels/beta-old")).unwrap();
    std::fs::write(ota.join("channels/beta-old/releases"), "unlisted\n").unwrap();
    std::fs::write(ota.join("channels/beta-old/metadata"), "old").unwrap();
    assert_eq!(
        code(&get("unlisted").await),
        (404, Some("not_found".into()))
    );

    let reg = g
        .token(&device, &kdev, &handle, "registration", "enigm-phone")
        .await;
    let body = json!({"product": "enigm-phone"}).to_string();
    let r = g
        .gated(
            &kdev,
            "POST",
            "/v1/ota/registrations",
            &reg,
            Some(body.as_bytes()),
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    // Not a member of beta yet; and what no channel lists is not authorized either.
    for r in [
        get("beta-build").await,
        authorize("beta-build").await,
        authorize("unlisted").await,
    ] {
        assert_eq!(code(&r), (404, Some("not_found".into())));
    }
    let join = g
        .token(&device, &kdev, &handle, "release_channel", "beta")
        .await;
    let r = g
        .gated(
            &kdev,
            "POST",
            "/v1/ota/channels/beta/membership",
            &join,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = get("beta-build").await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"bytes of beta-build"[..])
    );
    let r = authorize("beta-build").await;
    let claims = attest_token::verify(
        r.json()["authorization"].as_str().unwrap(),
        &g.service.jwks(),
        START,
    )
    .unwrap();
    assert_eq!(claims["channels"], json!(["beta"]));
    // Members of a 0% channel do not exist, and the closed channel's build stays closed.
    assert_eq!(
        code(&get("closed-build").await),
        (404, Some("not_found".into()))
    );

    // The operator narrows beta to 0%: members that joined before lose it at once.
    let policy_file = g._dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&policy_file).unwrap().replace(
        "[channels.beta]\nrollout_percent = 100",
        "[channels.beta]\nrollout_percent = 0",
    );
    std::fs::write(&policy_file, text).unwrap();
    g.service.reload_policy().unwrap();
    assert_eq!(
        code(&get("beta-build").await),
        (404, Some("not_found".into()))
    );
    assert_eq!(
        code(&authorize("beta-build").await),
        (404, Some("not_found".into()))
    );
    let meta = g
        .token(&device, &kdev, &handle, "protected_metadata", "beta")
        .await;
    let r = g
        .gated(
            &kdev,
            "GET",
            "/v1/ota/channels/beta/metadata",
            &meta,
            None,
            &[],
        )
        .await;
    assert_eq!(code(&r), (403, Some("not_in_rollout".into())));
    // build-42 is also offered by stable: a member of stable still gets it.
    g.member_of(&handle, "stable").await;
    assert_eq!(get("build-42").await.status, 200);

    // A FIFO planted in the OTA directory is not opened for reading (which would block).
    #[cfg(unix)]
    {
        let ota = g._dir.path().join("ota");
        let fifo = ota.join("artifacts/fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        std::fs::write(ota.join("channels/stable/releases"), "build-42\nfifo\n").unwrap();
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), get("fifo"))
            .await
            .expect("a FIFO blocked the request");
        assert_eq!(r.status, 404);
    }
}
