//! Assertions the reference verifiers make about particular real chains (MANIFEST.md), and the
//! provenance of the pinned anchors. Skipped, with a message, when the shared corpus is absent
//! (and failing under `CI=true`), like the corpus test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::corpus_dir;

use attest_android::{
    AnchorError, GOOGLE_ECP384_SPKI_SHA256, GOOGLE_RSA4096_SPKI_SHA256, SecurityLevel, StatusList,
    TrustAnchors, VerifiedBootState, Verifier, hex, pem,
};
use attest_core::{ReasonCode, UnixTime};

fn chain(dir: &std::path::Path, file: &str) -> Vec<Vec<u8>> {
    pem::parse_certificates(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
}

fn at(s: &str) -> UnixTime {
    UnixTime::parse_rfc3339(s).unwrap()
}

#[test]
fn pinned_keys_match_googles_published_roots() {
    let Some(dir) = corpus_dir() else { return };
    let roots = dir.join("roots");
    for (file, want) in [
        (
            "google_root_rsa4096_2016_serial_e8fa196314d2fa18.pem",
            GOOGLE_RSA4096_SPKI_SHA256,
        ),
        (
            "google_root_rsa4096_2019_serial_d50ff25ba3f2d6b3.pem",
            GOOGLE_RSA4096_SPKI_SHA256,
        ),
        (
            "google_root_rsa4096_2021_serial_c36b7c44b9ae1831.pem",
            GOOGLE_RSA4096_SPKI_SHA256,
        ),
        (
            "google_root_rsa4096_2022_serial_f1c172a699eaf51d.pem",
            GOOGLE_RSA4096_SPKI_SHA256,
        ),
        (
            "google_root_ecp384_2025_key_attestation_ca1.pem",
            GOOGLE_ECP384_SPKI_SHA256,
        ),
    ] {
        let der = chain(&roots, file).remove(0);
        let cert = attest_android::Certificate::from_der(der).unwrap();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.spki());
        assert_eq!(hex(digest.as_ref()), want, "{file}");
        let pinned: Vec<_> = TrustAnchors::google()
            .iter()
            .map(|a| a.id().name())
            .collect();
        assert_eq!(pinned, ["google-rsa4096", "google-ecp384"]);
    }
    for file in [
        "aosp_software_attestation_root_ec_p256.pem",
        "aosp_software_attestation_root_rsa1024.pem",
    ] {
        let der = chain(&roots, file).remove(0);
        let err = TrustAnchors::empty().add_certificate(der).unwrap_err();
        assert!(matches!(err, AnchorError::SoftwareRoot), "{file}: {err}");
    }
}

#[test]
fn factory_expiry_is_ignored_and_rkp_expiry_enforced() {
    let Some(dir) = corpus_dir() else { return };
    let v = Verifier::new(TrustAnchors::google());
    // Google's verifier tests: blueline (factory) validates at 2030-01-01, caiman (RKP) fails.
    let a = v.appraise_der(
        chain(
            &dir,
            "android-keyattestation/blueline_sdk28_TEE_EC_NONE.pem",
        ),
        at("2030-01-01T00:00:00Z"),
        None,
    );
    assert_eq!(a.outcome.unwrap().provisioning().as_str(), "factory");
    let a = v.appraise_der(
        chain(&dir, "android-keyattestation/caiman_sdk36_TEE_EC_RKP.pem"),
        at("2030-01-01T00:00:00Z"),
        None,
    );
    assert_eq!(a.chain.provisioning.as_str(), "remote");
    let r = a.outcome.unwrap_err();
    assert_eq!(r.reason, ReasonCode::InvalidTrustChain);
    assert!(r.detail.contains("expired"), "{}", r.detail);
    // Before its intermediates existed, a factory chain is refused too.
    let a = v.appraise_der(
        chain(
            &dir,
            "android-keyattestation/blueline_sdk28_TEE_EC_NONE.pem",
        ),
        at("2010-01-01T00:00:00Z"),
        None,
    );
    assert_eq!(a.outcome.unwrap_err().reason, ReasonCode::InvalidTrustChain);
}

#[test]
fn reference_facts_about_particular_chains() {
    let Some(dir) = corpus_dir() else { return };
    let v = Verifier::new(TrustAnchors::google());
    let when = at("2026-03-01T00:00:00Z");

    // New ECDSA P-384 root.
    let a = v.appraise_der(
        chain(
            &dir,
            "android-keyattestation/tegu_sdk36_TEE_EC_2026_ROOT.pem",
        ),
        when,
        Some(b"6417f92c-daef-4cc1-8828-5bb39338ffd5"),
    );
    let ev = a.outcome.unwrap();
    assert_eq!(ev.anchor().name(), "google-ecp384");
    assert_eq!(
        ev.claims().security_level,
        SecurityLevel::TrustedEnvironment
    );
    assert_eq!(
        ev.claims()
            .root_of_trust
            .as_ref()
            .unwrap()
            .verified_boot_state,
        VerifiedBootState::Verified
    );

    // Root omitted (Auditor sample): verifies against the pinned key.
    let a = v.appraise_der(
        chain(&dir, "grapheneos-auditor/samples0_taimen.pem"),
        at("2018-03-01T00:00:00Z"),
        None,
    );
    assert_eq!(a.chain.length, 3);
    assert_eq!(a.outcome.unwrap().anchor().name(), "google-rsa4096");

    // GrapheneOS ATTEST_KEY chain, SelfSigned and locked.
    let a = v.appraise_der(
        chain(&dir, "grapheneos-auditor/samples5_0.pem"),
        at("2025-11-09T02:06:21Z"),
        None,
    );
    let rot = a.outcome.unwrap().claims().root_of_trust.clone().unwrap();
    assert_eq!(rot.verified_boot_state, VerifiedBootState::SelfSigned);
    assert!(rot.device_locked);
    assert!(hex(&rot.verified_boot_key).starts_with("9e6a8f3e"));

    // BER boolean deviceLocked parses as true.
    let a = v.appraise_der(
        chain(
            &dir,
            "android-keyattestation/invalid_malformed_rot_device_locked.pem",
        ),
        when,
        None,
    );
    let kd = a.key_description.unwrap();
    assert!(kd.hardware_enforced.root_of_trust().unwrap().device_locked);

    // ID attestation: non-unique ids kept, IMEIs only as presence.
    let a = v.appraise_der(
        chain(
            &dir,
            "android-keyattestation/akita_sdk34_TEE_RSA_BASE+IMEI.pem",
        ),
        at("2024-09-27T00:00:00Z"),
        Some(b"challenge"),
    );
    let ids = a.outcome.unwrap().claims().attestation_ids.clone();
    assert_eq!(ids.model.as_deref(), Some("Pixel 8a"));
    assert!(ids.imei_present && ids.second_imei_present);
    assert!(
        !format!("{ids:?}").contains("351163520096208"),
        "IMEI value must not be kept"
    );

    // Software (KM1 hybrid) chain: AOSP root, refused whatever it claims.
    let a = v.appraise_der(
        chain(&dir, "webauthn-rs/km1_tee_with_software_attestation.pem"),
        when,
        None,
    );
    let r = a.outcome.unwrap_err();
    assert_eq!(r.reason, ReasonCode::InvalidTrustChain);
    assert!(
        r.detail.contains("AOSP software attestation root"),
        "{}",
        r.detail
    );

    // P-256 key signing with SHA-384 (synthetic Test Root): the chain verifies once its root is
    // trusted; its dummy KeyDescription does not parse.
    let ders = chain(&dir, "android-keyattestation/p256_sha384_intermediate.pem");
    let mut anchors = TrustAnchors::empty();
    anchors.add_certificate(ders[2].clone()).unwrap();
    let a = Verifier::new(anchors).appraise_der(ders, at("2025-06-01T00:00:00Z"), None);
    assert_eq!(a.outcome.unwrap_err().reason, ReasonCode::MalformedEvidence);
}

#[test]
fn status_list_keys_are_hex_serials_without_leading_zeros() {
    let Some(dir) = corpus_dir() else { return };
    // Google's own test fixture loads (it mixes decimal-looking and hex keys; both are hex text).
    let fixture = StatusList::from_json(
        &std::fs::read(dir.join("revocation/google_android_key_attestation_test_status.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(fixture.len(), 5);
    // Certificate 2 of this TestDPC chain has serial 06:96:97:60:44:37:44:80:81:a1; the list keys
    // it as "69697604437448081a1" (BigInteger.toString(16)).
    let ders = chain(
        &dir,
        "google-android-key-attestation/algorithm_RSA_SecurityLevel_StrongBox.pem",
    );
    let mut anchors = TrustAnchors::empty();
    anchors
        .add_certificate(ders.last().unwrap().clone())
        .unwrap();
    let when = at("2019-07-16T00:00:00Z");
    let v = Verifier::new(anchors.clone()).with_status_list(fixture);
    assert!(
        v.appraise_der(ders.clone(), when, None).outcome.is_ok(),
        "not listed in the fixture"
    );
    let list = StatusList::from_json(br#"{"entries": {"69697604437448081a1": {"status": "SUSPENDED", "reason": "KEY_COMPROMISE"}}}"#).unwrap();
    let r = Verifier::new(anchors)
        .with_status_list(list)
        .appraise_der(ders, when, None)
        .outcome
        .unwrap_err();
    assert_eq!(r.reason, ReasonCode::Revoked);
    assert!(
        r.detail.contains("certificate 2 is SUSPENDED"),
        "{}",
        r.detail
    );
}

#[test]
fn googles_root_given_as_a_file_stays_googles_anchor() {
    // Found by review: a policy that turns the built-in roots off and lists Google's root file
    // must not turn Google's chains into operator chains (which skip Google's status list).
    let Some(dir) = corpus_dir() else { return };
    let ders = chain(
        &dir,
        "android-keyattestation/blueline_sdk28_TEE_EC_NONE.pem",
    );
    let root = chain(
        &dir,
        "roots/google_root_rsa4096_2016_serial_e8fa196314d2fa18.pem",
    );
    let mut anchors = TrustAnchors::empty();
    let id = anchors.add_certificate(root[0].clone()).unwrap();
    assert_eq!(id.name(), "google-rsa4096");
    let batch = attest_android::Certificate::from_der(ders[1].clone()).unwrap();
    let list = StatusList::from_json(
        format!(
            r#"{{"entries": {{"{}": {{"status": "REVOKED"}}}}}}"#,
            batch.serial_hex()
        )
        .as_bytes(),
    )
    .unwrap();
    let a = Verifier::new(anchors)
        .with_google_status_list(list)
        .appraise_der(ders, at("2018-09-29T00:00:00Z"), None);
    assert_eq!(a.outcome.unwrap_err().reason, ReasonCode::Revoked);
}
