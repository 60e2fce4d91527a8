//! The whole protocol over real HTTP on loopback, with a real SQLite file, real signatures and
//! software devices from `attest-device`. Time is a manual clock: nothing sleeps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;

use std::sync::Arc;

use attest_android::{TrustAnchors, hex};
use attest_core::{Clock, ManualClock, UnixTime};
use attest_device::keydesc::SOFTWARE;
use attest_device::testing::TempDir;
use attest_device::{KeyDescriptionSpec, SigningKey, SoftwareDevice, value};
use attest_http::{AppState, OPENAPI, ROUTES, router};
use attest_policy::Policy;
use attest_service::{Service, ServiceConfig, Trust, proof_message};
use attest_store::Store;
use attest_token::{Signer, b64url, b64url_decode, jwk_thumbprint};
use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const START: UnixTime = UnixTime::from_secs(1_793_491_200); // 2026-11-01T00:00:00Z
const ADMIN_TOKEN: &str = "eat_test-admin-token";

struct Reply {
    status: u16,
    body: Value,
    text: String,
}

/// A minimal HTTP/1.1 client: one request per connection.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&[u8]>,
) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let payload = if chunked {
        let mut out = String::new();
        let mut r = rest;
        loop {
            let (size, after) = r.split_once("\r\n").unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            r = &after[n + 2..];
        }
        out
    } else {
        rest.to_owned()
    };
    Reply {
        status,
        body: serde_json::from_str(&payload).unwrap_or(Value::Null),
        text: payload,
    }
}

struct Server {
    addr: SocketAddr,
    clock: Arc<ManualClock>,
    service: Arc<Service>,
    dir: TempDir,
}

fn policy_for(device: &SoftwareDevice, extra: &str) -> Policy {
    Policy::from_toml(&format!(
        r#"
[devices."{}"]
model = "Enigm Phone 1"
boot_states = ["verified", "self_signed"]

[application]
packages = ["os.enigm.updater"]
signature_digests = ["{}"]

[defaults]
min_os_patch_level = 202601
min_vendor_patch_level = 20260101
min_boot_patch_level = 20260101

[workflows.sensitive_channel]
min_security_level = "strongbox"
{extra}"#,
        hex(&device.boot_key()),
        hex(&attest_device::keydesc::UPDATER_DIGEST),
    ))
    .unwrap()
}

/// A server trusting the roots of `devices`, allow-listing the first device's boot key.
async fn server(devices: &[&SoftwareDevice], extra_policy: &str) -> Server {
    let dir = TempDir::new("srv").unwrap();
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    let mut anchors = TrustAnchors::google();
    for d in devices {
        anchors.add_certificate(d.root_cert().to_vec()).unwrap();
    }
    let trust = Trust::new(policy_for(devices[0], extra_policy), anchors, None);
    let signer = Signer::new(vec![attest_token::SigningKey::generate().unwrap().0]).unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let service = Arc::new(Service::new(
        store,
        trust,
        signer,
        &[7u8; 32],
        ServiceConfig::default(),
        clock.clone(),
    ));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ADMIN_TOKEN.as_bytes());
    let state = AppState::new(
        service.clone(),
        vec![digest.as_ref().try_into().unwrap()],
        vec!["test device roots".into()],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    Server {
        addr,
        clock,
        service,
        dir,
    }
}

fn chain_json(chain: &[Vec<u8>]) -> Vec<String> {
    chain
        .iter()
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

impl Server {
    async fn post(&self, path: &str, body: &Value) -> Reply {
        http(
            self.addr,
            "POST",
            path,
            None,
            Some(body.to_string().as_bytes()),
        )
        .await
    }

    async fn challenge(
        &self,
        workflow: &str,
        resource: Option<&str>,
        handle: Option<&str>,
    ) -> (String, Vec<u8>) {
        let mut body = json!({"workflow": workflow});
        if let Some(r) = resource {
            body["resource"] = json!(r);
        }
        if let Some(h) = handle {
            body["device_handle"] = json!(h);
        }
        let r = self.post("/v1/challenges", &body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        (
            r.body["challenge_id"].as_str().unwrap().to_owned(),
            b64url_decode(r.body["nonce"].as_str().unwrap()).unwrap(),
        )
    }

    /// Enrolls `device`; returns its handle and K_dev.
    async fn enroll(&self, device: &SoftwareDevice) -> (String, SigningKey) {
        let (id, nonce) = self.challenge("enrollment", None, None).await;
        let a = device.attest(&nonce).unwrap();
        let r = self
            .post(
                "/v1/attestations",
                &json!({"challenge_id": id, "certificate_chain": chain_json(&a.chain)}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["decision"], "eligible", "{}", r.text);
        (r.body["device_handle"].as_str().unwrap().to_owned(), a.key)
    }

    /// A gated attestation: fresh key, proof by `kdev` unless `proof` overrides.
    #[allow(clippy::too_many_arguments)]
    async fn gated(
        &self,
        device: &SoftwareDevice,
        kdev: &SigningKey,
        handle: &str,
        workflow: &str,
        resource: &str,
        change: impl FnOnce(&mut KeyDescriptionSpec),
    ) -> Reply {
        let (id, nonce) = self.challenge(workflow, Some(resource), Some(handle)).await;
        let fresh = device.attest_with(&nonce, change).unwrap();
        let proof = kdev
            .sign(&proof_message(
                &id,
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
}

fn reasons(r: &Reply) -> Vec<String> {
    r.body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

const GATED: [&str; 6] = [
    "registration",
    "protected_metadata",
    "private_artifact",
    "sensitive_channel",
    "release_channel",
    "update_authorization",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workflow_eligible_with_bound_tokens_and_signed_results() {
    let device = SoftwareDevice::new().unwrap();
    let mut device_sb = SoftwareDevice::strongbox().unwrap();
    // Same model (allow-listed boot key) as `device`, in its StrongBox variant.
    device_sb.template.set_hw(
        704,
        value::root_of_trust(&device.boot_key(), true, 0, &[0x11; 32]),
    );
    let s = server(&[&device, &device_sb], "").await;
    let jwks = http(s.addr, "GET", "/v1/jwks", None, None).await.body;

    let (handle, kdev) = s.enroll(&device_sb).await;
    assert!(handle.starts_with("dh_"));
    assert_eq!(handle, s.service.device_handle(kdev.spki()));
    for workflow in GATED {
        let resource = format!("{workflow}-resource");
        let r = s
            .gated(&device_sb, &kdev, &handle, workflow, &resource, |_| {})
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["decision"], "eligible", "{workflow}: {}", r.text);
        assert_eq!(r.body["device_handle"], handle.as_str());
        let token =
            attest_token::verify(r.body["token"].as_str().unwrap(), &jwks, s.clock.now()).unwrap();
        assert_eq!(token["sub"], handle.as_str());
        assert_eq!(token["workflow"], workflow);
        assert_eq!(token["resource"], resource.as_str());
        assert_eq!(
            token["cnf"]["jkt"],
            jwk_thumbprint(kdev.spki()).unwrap().as_str(),
            "bound to K_dev"
        );
        assert!(
            token["exp"].as_i64().unwrap() - token["iat"].as_i64().unwrap() <= 600,
            "minutes, not hours"
        );
        let result =
            attest_token::verify(r.body["result"].as_str().unwrap(), &jwks, s.clock.now()).unwrap();
        let sub = &result["submods"]["android-key-attestation"];
        assert_eq!(sub["ear.status"], "affirming");
        assert!(
            sub["ear.appraisal-policy-id"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(result["enigm.workflow"], workflow);
    }
    // Tokens expire in minutes.
    let r = s
        .gated(&device_sb, &kdev, &handle, "registration", "", |_| {})
        .await;
    s.clock.advance(301);
    assert!(attest_token::verify(r.body["token"].as_str().unwrap(), &jwks, s.clock.now()).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workflow_ineligible_when_unlocked_and_strongbox_rules_apply() {
    let device = SoftwareDevice::new().unwrap();
    let s = server(&[&device], "").await;
    let (handle, kdev) = s.enroll(&device).await;
    let boot_key = device.boot_key();
    for workflow in GATED {
        let r = s
            .gated(&device, &kdev, &handle, workflow, "", |kd| {
                kd.set_hw(704, value::root_of_trust(&boot_key, false, 0, &[0x11; 32]));
            })
            .await;
        assert_eq!(r.body["decision"], "ineligible", "{workflow}");
        assert!(
            reasons(&r).contains(&"bootloader_unlocked".to_owned()),
            "{workflow}: {}",
            r.text
        );
        assert_eq!(r.body["token"], Value::Null);
        let jwks = http(s.addr, "GET", "/v1/jwks", None, None).await.body;
        let result =
            attest_token::verify(r.body["result"].as_str().unwrap(), &jwks, s.clock.now()).unwrap();
        assert_eq!(
            result["submods"]["android-key-attestation"]["ear.status"],
            "contraindicated"
        );
    }
    // TEE device on the StrongBox workflow.
    let r = s
        .gated(&device, &kdev, &handle, "sensitive_channel", "beta", |_| {})
        .await;
    assert_eq!(reasons(&r), ["eligibility_failure"]);
    // Enrollment refused: unlocked.
    let other = SoftwareDevice::new().unwrap();
    let (id, nonce) = s.challenge("enrollment", None, None).await;
    let a = other.attest(&nonce).unwrap();
    let r = s
        .post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": chain_json(&a.chain)}),
        )
        .await;
    assert_eq!(r.body["decision"], "ineligible");
    assert_eq!(r.body["device_handle"], Value::Null);
    assert_eq!(
        reasons(&r),
        ["invalid_trust_chain"],
        "its root is not trusted by this server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_rules_at_enrollment() {
    let device = SoftwareDevice::new().unwrap();
    let s = server(&[&device], "").await;
    let boot_key = device.boot_key();
    type Change = Box<dyn Fn(&mut KeyDescriptionSpec)>;
    let cases: Vec<(&str, Change, Vec<&str>)> = vec![
        (
            "unlocked",
            Box::new({
                let k = boot_key.clone();
                move |kd| {
                    kd.set_hw(704, value::root_of_trust(&k, false, 0, &[0x11; 32]));
                }
            }),
            vec!["bootloader_unlocked", "eligibility_failure"],
        ),
        (
            "software level",
            Box::new(|kd| {
                kd.attestation_security_level = SOFTWARE;
                kd.keymint_security_level = SOFTWARE;
            }),
            vec!["software_attestation"],
        ),
        (
            "wrong application",
            Box::new(|kd| {
                kd.set_sw(
                    709,
                    value::application_id(&[("com.evil", 1)], &[&[0x5a; 32]]),
                );
            }),
            vec!["eligibility_failure", "wrong_application"],
        ),
        (
            "unknown boot key",
            Box::new(|kd| {
                kd.set_hw(704, value::root_of_trust(&[0x77; 32], true, 0, &[0x11; 32]));
            }),
            vec!["unknown_boot_key", "unsupported_device"],
        ),
        (
            "old patch",
            Box::new(|kd| {
                kd.set_hw(706, value::int(202_512));
            }),
            vec!["ineligible_build", "patch_level_too_old"],
        ),
    ];
    for (name, change, want) in cases {
        let (id, nonce) = s.challenge("enrollment", None, None).await;
        let a = device.attest_with(&nonce, |kd| change(kd)).unwrap();
        let r = s
            .post(
                "/v1/attestations",
                &json!({"challenge_id": id, "certificate_chain": chain_json(&a.chain)}),
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {}", r.text);
        let mut got = reasons(&r);
        got.sort();
        assert_eq!(got, want, "{name}");
    }
    // The challenge must be the one attested.
    let (id, _) = s.challenge("enrollment", None, None).await;
    let a = device.attest(b"some other nonce").unwrap();
    let r = s
        .post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": chain_json(&a.chain)}),
        )
        .await;
    assert_eq!(reasons(&r), ["replay_attempt"]);
    // Re-enrolling an enrolled key is refused.
    let key = SigningKey::generate(attest_device::KeyKind::EcP256).unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let (id, nonce) = s.challenge("enrollment", None, None).await;
        let mut kd = device.template.clone();
        kd.challenge = nonce;
        let chain = device
            .pki
            .chain(&device.pki.leaf_spec(key.spki(), &kd.encode()))
            .unwrap();
        let r = s
            .post(
                "/v1/attestations",
                &json!({"challenge_id": id, "certificate_chain": chain_json(&chain)}),
            )
            .await;
        got.push(reasons(&r));
    }
    assert_eq!(got, [vec![], vec!["enrollment_binding_failed".to_owned()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_are_single_use_expire_and_are_bound() {
    let device = SoftwareDevice::new().unwrap();
    let s = server(&[&device], "").await;
    let (handle, kdev) = s.enroll(&device).await;

    // Challenge requests are bounded: a handle has one shape and must be enrolled; a resource
    // is a short name of safe characters. Nothing is stored for a refused request.
    let other = format!("dh_{}", "A".repeat(43));
    for (body, status, code) in [
        (
            json!({"workflow": "registration", "device_handle": "x".repeat(260_000)}),
            400,
            "invalid_request",
        ),
        (
            json!({"workflow": "registration", "device_handle": "dh_short"}),
            400,
            "invalid_request",
        ),
        (
            json!({"workflow": "registration", "device_handle": other}),
            403,
            "device_handle_mismatch",
        ),
        (
            json!({"workflow": "release_channel", "resource": "beta\u{202e}1", "device_handle": handle}),
            400,
            "invalid_request",
        ),
        (
            json!({"workflow": "release_channel", "resource": "a\nb", "device_handle": handle}),
            400,
            "invalid_request",
        ),
        (
            json!({"workflow": "release_channel", "resource": "..", "device_handle": handle}),
            400,
            "invalid_request",
        ),
        (
            json!({"workflow": "release_channel", "resource": "x".repeat(129), "device_handle": handle}),
            400,
            "invalid_request",
        ),
    ] {
        let r = s.post("/v1/challenges", &body).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{}",
            r.text
        );
    }
    let ok = s
        .post(
            "/v1/challenges",
            &json!({"workflow": "release_channel", "resource": "beta-1.2_x", "device_handle": handle}),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);

    // Replay of a used challenge.
    let (id, nonce) = s.challenge("enrollment", None, None).await;
    let a = device.attest(&nonce).unwrap();
    let body = json!({"challenge_id": id, "certificate_chain": chain_json(&a.chain)});
    let first = s.post("/v1/attestations", &body).await;
    assert_eq!(
        first.body["decision"], "eligible",
        "a new device key enrolls (factory reset): {}",
        first.text
    );
    let again = s.post("/v1/attestations", &body).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"]["code"], "replay_attempt");
    let unknown = s
        .post(
            "/v1/attestations",
            &json!({"challenge_id": "ch_nope", "certificate_chain": chain_json(&a.chain)}),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body["error"]["code"].as_str()),
        (409, Some("replay_attempt"))
    );

    // Expired (fixed clock moved past the TTL), and spent even so.
    let (id, nonce) = s.challenge("registration", None, Some(&handle)).await;
    s.clock.advance(121);
    let fresh = device.attest(&nonce).unwrap();
    let proof = kdev
        .sign(&proof_message(
            &id,
            &nonce,
            "registration",
            "",
            fresh.key.spki(),
        ))
        .unwrap();
    let body = json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle, "proof": b64url(&proof)});
    let r = s.post("/v1/attestations", &body).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (410, Some("stale_attestation"))
    );
    assert_eq!(s.post("/v1/attestations", &body).await.status, 409);
    // The expired answer is recorded as the challenge's outcome, and both show in /metrics.
    let outcomes = http(
        s.addr,
        "GET",
        "/admin/v1/outcomes?from=2026-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
        Some(&format!("Bearer {ADMIN_TOKEN}")),
        None,
    )
    .await;
    assert!(
        outcomes.text.contains("stale_attestation"),
        "{}",
        outcomes.text
    );
    let m = http(s.addr, "GET", "/metrics", None, None).await;
    for series in [
        r#"enigm_attest_refusals_total{route="/v1/attestations",status="410",code="stale_attestation"} 1"#,
        r#"enigm_attest_refusals_total{route="/v1/attestations",status="409",code="replay_attempt"}"#,
    ] {
        assert!(m.text.contains(series), "{series}\n{}", m.text);
    }

    // A challenge issued for another workflow or resource: the proof names what the device
    // was asked for; a proof for anything else fails.
    for (signed_workflow, signed_resource) in [
        ("private_artifact", "build-42"),
        ("release_channel", "other-build"),
    ] {
        let (id, nonce) = s
            .challenge("release_channel", Some("build-42"), Some(&handle))
            .await;
        let fresh = device.attest(&nonce).unwrap();
        let proof = kdev
            .sign(&proof_message(
                &id,
                &nonce,
                signed_workflow,
                signed_resource,
                fresh.key.spki(),
            ))
            .unwrap();
        let r = s
            .post("/v1/attestations", &json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle, "proof": b64url(&proof)}))
            .await;
        assert_eq!(
            reasons(&r),
            ["request_binding_failed"],
            "{signed_workflow}/{signed_resource}"
        );
    }

    // A challenge issued to another handle.
    let device_b = SoftwareDevice::new().unwrap();
    let s2 = server(&[&device, &device_b], "").await;
    let (handle_a, kdev_a) = s2.enroll(&device).await;
    let mut b = SoftwareDevice::new().unwrap();
    b.pki = device_b.pki;
    b.template = device.template.clone();
    let (handle_b, _) = s2.enroll(&b).await;
    let (id, nonce) = s2.challenge("registration", None, Some(&handle_b)).await;
    let fresh = device.attest(&nonce).unwrap();
    let proof = kdev_a
        .sign(&proof_message(
            &id,
            &nonce,
            "registration",
            "",
            fresh.key.spki(),
        ))
        .unwrap();
    let r = s2
        .post("/v1/attestations", &json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle_a, "proof": b64url(&proof)}))
        .await;
    assert_eq!(reasons(&r), ["device_handle_mismatch"]);

    // Gated challenges need a handle; enrollment challenges take none.
    let r = s
        .post("/v1/challenges", &json!({"workflow": "registration"}))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("device_handle_mismatch"))
    );
    let r = s
        .post("/v1/challenges", &json!({"workflow": "nightly"}))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_evidence_and_pins() {
    let device_a = SoftwareDevice::new().unwrap();
    let mut device_b = SoftwareDevice::new().unwrap();
    device_b.template = device_a.template.clone(); // same model, same build: eligible on its own
    let s = server(&[&device_a, &device_b], "").await;
    let (handle_a, kdev_a) = s.enroll(&device_a).await;
    let (_, kdev_b) = s.enroll(&device_b).await;

    // B's valid chain with A's handle, proof by B's key: relayed evidence.
    let r = s
        .gated(&device_b, &kdev_b, &handle_a, "registration", "", |_| {})
        .await;
    assert_eq!(reasons(&r), ["request_binding_failed"]);
    assert_eq!(r.body["device_handle"], Value::Null);
    // ... and without any proof.
    let (id, nonce) = s.challenge("registration", None, Some(&handle_a)).await;
    let fresh = device_b.attest(&nonce).unwrap();
    let r = s.post("/v1/attestations", &json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle_a})).await;
    assert_eq!(reasons(&r), ["request_binding_failed"]);

    // Pins: patch downgrade, boot key change, security level.
    let r = s
        .gated(&device_a, &kdev_a, &handle_a, "registration", "", |kd| {
            kd.set_hw(718, value::int(20_260_801));
        })
        .await;
    assert_eq!(reasons(&r), ["downgrade"]);
    let r = s
        .gated(&device_a, &kdev_a, &handle_a, "registration", "", |kd| {
            kd.set_hw(704, value::root_of_trust(&[0x99; 32], true, 0, &[0x11; 32]));
        })
        .await;
    let mut got = reasons(&r);
    got.sort();
    assert_eq!(
        got,
        [
            "enrollment_binding_failed",
            "unknown_boot_key",
            "unsupported_device"
        ]
    );
    // An upgrade raises the high-water mark; going back is then a downgrade.
    let r = s
        .gated(&device_a, &kdev_a, &handle_a, "registration", "", |kd| {
            kd.set_hw(706, value::int(202_610));
        })
        .await;
    assert_eq!(r.body["decision"], "eligible", "{}", r.text);
    let r = s
        .gated(&device_a, &kdev_a, &handle_a, "registration", "", |_| {})
        .await;
    assert_eq!(reasons(&r), ["downgrade"]);
    let stored = s.service.device(&handle_a).await.unwrap();
    assert_eq!(stored.os_patch_level, 20_261_000);

    // Revoked device: a challenge issued before the revocation no longer helps, and no new
    // challenge is issued.
    let (id, nonce) = s.challenge("registration", None, Some(&handle_a)).await;
    let r = http(
        s.addr,
        "POST",
        &format!("/admin/v1/devices/{handle_a}/revoke"),
        Some(&format!("Bearer {ADMIN_TOKEN}")),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fresh = device_a
        .attest_with(&nonce, |kd| {
            kd.set_hw(706, value::int(202_610));
        })
        .unwrap();
    let proof = kdev_a
        .sign(&proof_message(
            &id,
            &nonce,
            "registration",
            "",
            fresh.key.spki(),
        ))
        .unwrap();
    let r = s
        .post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle_a, "proof": b64url(&proof)}),
        )
        .await;
    assert_eq!(reasons(&r), ["device_revoked"]);
    let r = s
        .post(
            "/v1/challenges",
            &json!({"workflow": "registration", "device_handle": handle_a}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("device_revoked"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_the_envelope_and_the_service_keeps_serving() {
    let device = SoftwareDevice::new().unwrap();
    let s = server(&[&device], "").await;
    let big = vec![b' '; attest_http::MAX_BODY_BYTES + 10];
    let r = http(s.addr, "POST", "/v1/attestations", None, Some(&big)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.body["error"]["code"], "malformed_evidence");
    let r = http(s.addr, "POST", "/v1/attestations", None, Some(b"{not json")).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("malformed_evidence"))
    );
    // A readable challenge id that is not ours is a replay, whatever else is wrong.
    let r = s
        .post("/v1/attestations", &json!({"challenge_id": "ch_x"}))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("replay_attempt"))
    );
    // Every refusal whose challenge id can be read spends the challenge and records the
    // outcome: missing field, unknown field, bad base64, bad proof encoding, too many
    // certificates, oversized body.
    let mut refused = 0;
    for (make, status, code) in [
        (
            (|id: &str| format!(r#"{{"challenge_id": "{id}"}}"#)) as fn(&str) -> String,
            400,
            "malformed_evidence",
        ),
        (
            |id| format!(r#"{{"challenge_id": "{id}", "certificate_chain": [], "extra": 1}}"#),
            400,
            "malformed_evidence",
        ),
        (
            |id| format!(r#"{{"challenge_id": "{id}", "certificate_chain": ["!!!"]}}"#),
            400,
            "malformed_evidence",
        ),
        (
            |id| {
                format!(
                    r#"{{"challenge_id": "{id}", "certificate_chain": ["AAAA"], "proof": "***"}}"#
                )
            },
            400,
            "request_binding_failed",
        ),
        (
            |id| {
                format!(
                    r#"{{"challenge_id": "{id}", "certificate_chain": [{}]}}"#,
                    ["\"AAAA\""; 11].join(",")
                )
            },
            400,
            "malformed_evidence",
        ),
        (
            |id| {
                format!(
                    r#"{{"challenge_id": "{id}", "certificate_chain": ["{}"]}}"#,
                    "A".repeat(attest_http::MAX_BODY_BYTES)
                )
            },
            413,
            "malformed_evidence",
        ),
    ] {
        let (id, _) = s.challenge("enrollment", None, None).await;
        let body = make(&id);
        let r = http(
            s.addr,
            "POST",
            "/v1/attestations",
            None,
            Some(body.as_bytes()),
        )
        .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{}",
            &body[..body.len().min(120)]
        );
        refused += 1;
        let again = s
            .post(
                "/v1/attestations",
                &json!({"challenge_id": id, "certificate_chain": ["AAAA"]}),
            )
            .await;
        assert_eq!(
            again.status,
            409,
            "the challenge was spent: {}",
            &body[..body.len().min(120)]
        );
    }
    let outcomes = http(
        s.addr,
        "GET",
        "/admin/v1/outcomes?from=2026-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
        Some(&format!("Bearer {ADMIN_TOKEN}")),
        None,
    )
    .await;
    assert!(
        outcomes.text.contains("malformed_evidence"),
        "{}",
        outcomes.text
    );
    let m = http(s.addr, "GET", "/metrics", None, None).await;
    assert!(
        m.text.contains(r#"enigm_attest_refusals_total{route="/v1/attestations",status="409",code="replay_attempt"}"#),
        "{}",
        m.text
    );
    assert!(
        m.text.contains(r#"status="413",code="malformed_evidence""#),
        "{}",
        m.text
    );
    assert_eq!(refused, 6);
    // Undecodable evidence spends the challenge and is malformed_evidence.
    let (id, _) = s.challenge("enrollment", None, None).await;
    let r = s
        .post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": ["AAAA"]}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("malformed_evidence"))
    );
    let r = s
        .post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": ["AAAA"]}),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = http(s.addr, "GET", "/nowhere", None, None).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = http(s.addr, "GET", "/v1/attestations", None, None).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    // Still serving.
    s.enroll(&device).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_submissions_of_one_challenge() {
    let device = SoftwareDevice::new().unwrap();
    let s = server(&[&device], "").await;
    let (id, nonce) = s.challenge("enrollment", None, None).await;
    let a = device.attest(&nonce).unwrap();
    let body = json!({"challenge_id": id, "certificate_chain": chain_json(&a.chain)}).to_string();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let b = body.clone();
            let addr = s.addr;
            tokio::spawn(async move {
                http(addr, "POST", "/v1/attestations", None, Some(b.as_bytes())).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        63,
        "{statuses:?}"
    );
    let counts = s
        .service
        .outcome_counts(START, START.saturating_add_secs(10))
        .await
        .unwrap();
    assert_eq!(
        counts.iter().map(|c| c.count).sum::<i64>(),
        1,
        "exactly one evaluated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_refuses_missing_or_wrong_tokens() {
    let device = SoftwareDevice::new().unwrap();
    let s = server(&[&device], "").await;
    let admin_routes: Vec<_> = ROUTES.iter().filter(|r| r.2).collect();
    assert_eq!(admin_routes.len(), 5);
    for (method, path, _) in admin_routes {
        let path = path.replace("{handle}", "dh_x");
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic ZWF0Og=="),
            Some("Bearer "),
            Some(&format!("Bearer {ADMIN_TOKEN}x")[..]),
        ] {
            let r = http(s.addr, method, &path, auth, Some(b"{}")).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
            assert_eq!(r.body["error"]["code"], "unauthorized");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_with_a_token() {
    let device = SoftwareDevice::new().unwrap();
    let s = server(&[&device], "").await;
    let (handle, _) = s.enroll(&device).await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = http(
        s.addr,
        "GET",
        &format!("/admin/v1/devices/{handle}"),
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["model"], "Enigm Phone 1");
    let unknown = format!("/admin/v1/devices/dh_{}", "B".repeat(43));
    let r = http(s.addr, "GET", &unknown, Some(&auth), None).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // Not a handle, and not even UTF-8: the envelope, not plain text.
    for path in [
        "/admin/v1/devices/dh_unknown",
        "/admin/v1/devices/%ff%fe",
        "/admin/v1/devices/%ff/revoke",
    ] {
        let method = if path.ends_with("revoke") {
            "POST"
        } else {
            "GET"
        };
        let r = http(s.addr, method, path, Some(&auth), None).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{path}: {}",
            r.text
        );
    }
    let r = http(
        s.addr,
        "GET",
        "/admin/v1/outcomes?from=2026-10-31T00:00:00Z&to=2026-11-02T00:00:00Z",
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(
        r.body["counts"],
        json!([{"workflow": "enrollment", "decision": "eligible", "reason": null, "count": 1}])
    );
    let r = http(
        s.addr,
        "GET",
        "/admin/v1/outcomes?from=yesterday",
        Some(&auth),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let r = http(s.addr, "POST", "/admin/v1/policy/reload", Some(&auth), None).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "no policy file here"
    );
    // Replace the status list: the device's intermediate is suspended from now on.
    let serial = attest_android::Certificate::from_der(device.pki.intermediate_cert.clone())
        .unwrap()
        .serial_hex();
    let list = json!({"entries": {serial: {"status": "SUSPENDED"}}}).to_string();
    let r = http(
        s.addr,
        "PUT",
        "/admin/v1/status-list",
        Some(&auth),
        Some(list.as_bytes()),
    )
    .await;
    assert_eq!(r.body["entries"], 1);
    let r = http(
        s.addr,
        "PUT",
        "/admin/v1/status-list",
        Some(&auth),
        Some(b"{\"entries\": 5}"),
    )
    .await;
    assert_eq!(r.status, 400, "a bad list changes nothing");
    let (id, nonce) = s.challenge("enrollment", None, None).await;
    let a = device.attest(&nonce).unwrap();
    let r = s
        .post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": chain_json(&a.chain)}),
        )
        .await;
    assert_eq!(reasons(&r), ["revoked"]);
    // Readiness and metrics.
    let r = http(s.addr, "GET", "/readyz", None, None).await;
    assert_eq!(r.body["status"], "ready");
    assert_eq!(r.body["test_only_trust"], json!(["test device roots"]));
    assert_eq!(r.body["status_list_entries"], 1);
    let m = http(s.addr, "GET", "/metrics", None, None).await;
    assert!(m.text.contains("enigm_attest_decisions_total{workflow=\"enrollment\",decision=\"ineligible\",reason=\"revoked\"} 1"), "{}", m.text);
    assert!(
        m.text
            .contains("enigm_attest_request_duration_seconds_count{route=\"/v1/attestations\"}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_identifying_is_stored() {
    let mut device = SoftwareDevice::new().unwrap();
    // ID attestation with an IMEI and a serial, to prove they are not kept.
    device.template.set_hw(710, value::octets(b"enigm"));
    device
        .template
        .set_hw(713, value::octets(b"SERIAL-8C2F-77AA-1234"));
    device
        .template
        .set_hw(714, value::octets(b"358240051111110"));
    let s = server(&[&device], "").await;
    let mut submitted: Vec<Vec<u8>> = Vec::new();
    let (id, nonce) = s.challenge("enrollment", None, None).await;
    let a = device.attest(&nonce).unwrap();
    submitted.extend(a.chain.iter().cloned());
    let r = s
        .post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": chain_json(&a.chain)}),
        )
        .await;
    let handle = r.body["device_handle"].as_str().unwrap().to_owned();
    let kdev = a.key;
    for workflow in GATED {
        let (id, nonce) = s.challenge(workflow, Some("r"), Some(&handle)).await;
        let fresh = device.attest(&nonce).unwrap();
        submitted.extend(fresh.chain.iter().cloned());
        let proof = kdev
            .sign(&proof_message(&id, &nonce, workflow, "r", fresh.key.spki()))
            .unwrap();
        s.post("/v1/attestations", &json!({"challenge_id": id, "certificate_chain": chain_json(&fresh.chain), "device_handle": handle, "proof": b64url(&proof)})).await;
    }
    let mut needles: Vec<Vec<u8>> = submitted.clone();
    for der in &submitted {
        let cert = attest_android::Certificate::from_der(der.clone()).unwrap();
        assert!(
            cert.serial().len() >= 16,
            "serials long enough to search for"
        );
        needles.push(cert.serial().to_vec());
    }
    needles.push(b"SERIAL-8C2F-77AA-1234".to_vec());
    needles.push(b"358240051111110".to_vec());
    s.service.store().close().await;
    let mut scanned = 0;
    for entry in std::fs::read_dir(s.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        // SQLite may remove its -wal/-shm files as the pool closes.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        scanned += bytes.len();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{} holds submitted bytes ({} bytes long)",
                path.display(),
                n.len()
            );
        }
    }
    assert!(
        scanned > 10_000,
        "the database files were scanned ({scanned} bytes)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route() {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    for (method, path, admin) in ROUTES {
        let op = &doc["paths"][path][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {path} missing from openapi.json");
        assert_eq!(
            op["security"].is_array(),
            *admin,
            "{method} {path} security"
        );
    }
    assert_eq!(
        doc["paths"].as_object().unwrap().len(),
        ROUTES.len(),
        "no undocumented or stale paths"
    );
}

/// A real Google-rooted chain from the shared corpus (`ENIGM_VECTORS` or `../shared/...`);
/// `None` (the test skips) without the corpus, except under `CI=true`.
fn corpus_chain(file: &str) -> Option<Vec<Vec<u8>>> {
    let dir = std::env::var_os("ENIGM_VECTORS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/vectors/android-key-attestation")
        });
    match std::fs::read_to_string(dir.join(file)) {
        Ok(text) => Some(attest_android::pem::parse_certificates(&text).unwrap()),
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "the corpus is required in CI: {e}"
            );
            eprintln!("skipped: no corpus at {}", dir.display());
            None
        }
    }
}

#[tokio::test]
async fn google_chains_wait_for_a_fresh_status_list() {
    // A factory chain at Google's RSA root (expiry ignored, so it verifies at any later time).
    let Some(chain) = corpus_chain("android-keyattestation/blueline_sdk28_TEE_EC_NONE.pem") else {
        return;
    };
    let device = SoftwareDevice::new().unwrap();
    let s = &server(&[&device], "").await;
    let attempt = |chain: Vec<Vec<u8>>| async move {
        let (id, _) = s.challenge("enrollment", None, None).await;
        s.post(
            "/v1/attestations",
            &json!({"challenge_id": id, "certificate_chain": chain_json(&chain)}),
        )
        .await
    };
    // Never fetched: not decided, retryable.
    let r = attempt(chain.clone()).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "revocation_unavailable");
    let ready = http(s.addr, "GET", "/readyz", None, None).await;
    assert_eq!(
        ready.body["google_status_list"]["fresh"], false,
        "{}",
        ready.text
    );

    // Fresh: decided (this captured chain answers another challenge, so it is a replay).
    let list = attest_android::StatusList::from_json(
        br#"{"entries": {"abcdef0123": {"status": "REVOKED"}}}"#,
    )
    .unwrap();
    s.service.set_google_status_list(list, START);
    let r = attempt(chain.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(reasons(&r), ["replay_attempt"]);
    let ready = http(s.addr, "GET", "/readyz", None, None).await;
    assert_eq!(ready.body["google_status_list"]["entries"], 1);
    let metrics = http(s.addr, "GET", "/metrics", None, None).await;
    assert!(
        metrics
            .text
            .contains("enigm_attest_google_status_list_fresh 1"),
        "{}",
        metrics.text
    );

    // The list is Google's: a listed batch serial revokes the chain.
    let batch = attest_android::Certificate::from_der(chain[1].clone()).unwrap();
    let listed = format!(
        r#"{{"entries": {{"{}": {{"status": "REVOKED"}}}}}}"#,
        batch.serial_hex()
    );
    s.service.set_google_status_list(
        attest_android::StatusList::from_json(listed.as_bytes()).unwrap(),
        START,
    );
    let r = attempt(chain.clone()).await;
    assert_eq!(reasons(&r), ["revoked"], "{}", r.text);

    // A day and a second later without a fetch: too old, refused again; operator-anchored
    // devices are unaffected.
    s.clock.advance(86_401);
    let r = attempt(chain).await;
    assert_eq!(r.status, 503, "{}", r.text);
    s.enroll(&device).await;
    // Confirmed unchanged (HTTP 304): fresh again.
    s.service.confirm_google_status_list(s.clock.now());
    assert!(s.service.revocation_report().fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_status_list_survives_reload_and_restart() {
    let device = SoftwareDevice::new().unwrap();
    let dir = TempDir::new("status-keep").unwrap();
    let file = dir.path().join("status-list.json");
    let make = |loader_calls: Arc<std::sync::atomic::AtomicUsize>| {
        let device_root = device.root_cert().to_vec();
        let policy = policy_for(&device, "");
        let file = file.clone();
        let data = dir.path().to_path_buf();
        async move {
            let store = Store::open_sqlite_dir(&data).await.unwrap();
            let anchors = || {
                let mut a = TrustAnchors::empty();
                a.add_certificate(device_root.clone()).unwrap();
                a
            };
            let p2 = policy.clone();
            let a2 = anchors();
            Service::new(
                store,
                Trust::new(policy, anchors(), None),
                Signer::new(vec![attest_token::SigningKey::generate().unwrap().0]).unwrap(),
                &[7u8; 32],
                ServiceConfig::default(),
                Arc::new(ManualClock::new(START)),
            )
            .with_loader(Box::new(move || {
                loader_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Trust::new(p2.clone(), a2.clone(), None))
            }))
            .with_status_list_file(file)
            .unwrap()
        }
    };
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let service = make(Arc::clone(&calls)).await;
    // A big list (well over the 256 KiB request limit), then a reload.
    let mut entries = serde_json::Map::new();
    for i in 0..20_000u32 {
        entries.insert(
            format!("{:x}", 0x1000_0000 + i),
            json!({"status": "REVOKED"}),
        );
    }
    let big = json!({"entries": entries}).to_string();
    assert!(big.len() > attest_http::MAX_BODY_BYTES);
    assert_eq!(service.replace_status_list(big.as_bytes()).unwrap(), 20_000);
    service.reload_policy().unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        service.trust().status_list.as_ref().map(|l| l.len()),
        Some(20_000)
    );
    service.store().close().await;
    drop(service);
    // Restart on the same data directory.
    let service = make(Arc::new(std::sync::atomic::AtomicUsize::new(0))).await;
    assert_eq!(
        service.trust().status_list.as_ref().map(|l| l.len()),
        Some(20_000)
    );
}

#[tokio::test]
async fn status_lists_through_the_admin_api_are_bounded_with_the_envelope() {
    let device = SoftwareDevice::new().unwrap();
    let s = server(&[&device], "").await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let mut entries = serde_json::Map::new();
    for i in 0..20_000u32 {
        entries.insert(
            format!("{:x}", 0x1000_0000 + i),
            json!({"status": "REVOKED"}),
        );
    }
    let big = json!({"entries": entries}).to_string();
    let r = http(
        s.addr,
        "PUT",
        "/admin/v1/status-list",
        Some(&auth),
        Some(big.as_bytes()),
    )
    .await;
    assert_eq!(
        (r.status, &r.body["entries"]),
        (200, &json!(20_000)),
        "{}",
        r.text
    );
    let huge = vec![b' '; attest_service::MAX_STATUS_LIST_BYTES + 1];
    let r = http(
        s.addr,
        "PUT",
        "/admin/v1/status-list",
        Some(&auth),
        Some(&huge),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (413, Some("invalid_request")),
        "{}",
        &r.text[..r.text.len().min(200)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_and_list_updates_never_undo_each_other() {
    // Found by review: the verifier's copy of Google's list and the freshness state lived apart,
    // and concurrent reloads and fetches could leave a fresh-looking service without the list.
    let Some(chain) = corpus_chain("android-keyattestation/blueline_sdk28_TEE_EC_NONE.pem") else {
        return;
    };
    let device = SoftwareDevice::new().unwrap();
    let dir = TempDir::new("races").unwrap();
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    let policy = policy_for(&device, "");
    let p2 = policy.clone();
    let service = Arc::new(
        Service::new(
            store,
            Trust::new(policy, TrustAnchors::google(), None),
            Signer::new(vec![attest_token::SigningKey::generate().unwrap().0]).unwrap(),
            &[7u8; 32],
            ServiceConfig::default(),
            Arc::new(ManualClock::new(START)),
        )
        .with_loader(Box::new(move || {
            Ok(Trust::new(p2.clone(), TrustAnchors::google(), None))
        })),
    );
    let batch = attest_android::Certificate::from_der(chain[1].clone()).unwrap();
    let listing = |extra: u32| {
        let mut entries = serde_json::Map::new();
        entries.insert(batch.serial_hex(), json!({"status": "REVOKED"}));
        for i in 0..extra {
            entries.insert(
                format!("{:x}", 0xabc0_0000u32 + i),
                json!({"status": "REVOKED"}),
            );
        }
        attest_android::StatusList::from_json(json!({"entries": entries}).to_string().as_bytes())
            .unwrap()
    };
    let reloader = {
        let s = Arc::clone(&service);
        std::thread::spawn(move || {
            for _ in 0..200 {
                s.reload_policy().unwrap();
            }
        })
    };
    for i in 0..200 {
        service.set_google_status_list(listing(i % 7), START);
    }
    reloader.join().unwrap();
    service.reload_policy().unwrap();
    let report = service.revocation_report();
    assert!(report.fresh);
    assert_eq!(report.entries, Some(1 + 199 % 7));
    // The list the report speaks of is the one the verifier checks.
    let (id, _) = {
        let c = service
            .create_challenge(attest_service::ChallengeRequest {
                workflow: "enrollment".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        (c.challenge_id, c.nonce)
    };
    let r = service
        .attest(attest_service::AttestationRequest {
            challenge_id: id,
            certificate_chain: chain,
            device_handle: None,
            proof: None,
            tls_exporter: None,
            claimed_exporter: None,
        })
        .await
        .unwrap();
    assert_eq!(r.reasons, [attest_core::ReasonCode::Revoked]);
}
