//! One test per verification rule: each mints a chain with the software device that breaks
//! exactly that rule, and expects exactly its reason code. A baseline proves the unbroken chain
//! verifies, so every failure below is caused by the one thing each test changes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use attest_android::der::write;
use attest_android::{
    AuthValue, ChainLimits, SecurityLevel, StatusList, TrustAnchors, VerifiedBootState, Verifier,
    oids,
};
use attest_core::{ReasonCode, UnixTime};
use attest_device::keydesc::{SOFTWARE, STRONGBOX, TEE, UPDATER_PACKAGE};
use attest_device::{
    CertSpec, ExtensionSpec, KeyDescriptionSpec, KeyKind, SigningKey, TestPki, name, value,
};

/// 2026-11-01T00:00:00Z: the fixed instant every test verifies at.
const AT: UnixTime = UnixTime::from_secs(1_793_491_200);
const BOOT_KEY: [u8; 32] = [0xb0; 32];
const CHALLENGE: &[u8] = b"enigm test challenge";

fn verifier_for(pki: &TestPki) -> Verifier {
    let mut anchors = TrustAnchors::empty();
    anchors.add_certificate(pki.root_cert.clone()).unwrap();
    Verifier::new(anchors)
}

fn kd() -> KeyDescriptionSpec {
    KeyDescriptionSpec::typical(&BOOT_KEY, CHALLENGE)
}

/// A chain `[leaf, intermediate, root]` whose leaf carries `spec`.
fn mint(pki: &TestPki, spec: &KeyDescriptionSpec) -> Vec<Vec<u8>> {
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    pki.chain(&pki.leaf_spec(key.spki(), &spec.encode()))
        .unwrap()
}

fn factory() -> TestPki {
    TestPki::new(KeyKind::EcP256, false).unwrap()
}

fn outcome(v: &Verifier, chain: Vec<Vec<u8>>) -> Result<(), (ReasonCode, String)> {
    v.appraise_der(chain, AT, Some(CHALLENGE))
        .outcome
        .map(|_| ())
        .map_err(|r| (r.reason, r.detail))
}

#[track_caller]
fn assert_reason(v: &Verifier, chain: Vec<Vec<u8>>, want: ReasonCode) -> String {
    match outcome(v, chain) {
        Ok(()) => panic!("chain verified, expected {want}"),
        Err((got, detail)) => {
            assert_eq!(got, want, "detail: {detail}");
            detail
        }
    }
}

#[track_caller]
fn assert_valid(v: &Verifier, chain: Vec<Vec<u8>>) {
    if let Err((r, d)) = outcome(v, chain) {
        panic!("expected valid, got {r}: {d}");
    }
}

// Baseline and positive shapes.

#[test]
fn baseline_chain_verifies_with_hardware_claims_only() {
    let pki = factory();
    let v = verifier_for(&pki);
    let a = v.appraise_der(mint(&pki, &kd()), AT, Some(CHALLENGE));
    let ev = a.outcome.expect("baseline verifies");
    assert_eq!(ev.provisioning().as_str(), "factory");
    assert!(ev.anchor().name().starts_with("configured:"));
    let c = ev.claims();
    assert_eq!(c.security_level, SecurityLevel::TrustedEnvironment);
    let rot = c.root_of_trust.as_ref().unwrap();
    assert_eq!(rot.verified_boot_key, BOOT_KEY);
    assert!(rot.device_locked);
    assert_eq!(rot.verified_boot_state, VerifiedBootState::Verified);
    assert_eq!(c.os_patch_level.unwrap().raw(), 202_609);
    assert_eq!(c.vendor_patch_level.unwrap().year_month_day(), 20_260_905);
    let aaid = c
        .software_enforced
        .attestation_application_id
        .as_ref()
        .unwrap();
    assert_eq!(aaid.packages[0].name, UPDATER_PACKAGE);
}

#[test]
fn chain_without_its_root_certificate_verifies_against_the_pinned_key() {
    let pki = factory();
    let mut chain = mint(&pki, &kd());
    chain.pop();
    assert_valid(&verifier_for(&pki), chain);
}

#[test]
fn rsa_and_p384_issuers_verify() {
    for kind in [KeyKind::Rsa2048, KeyKind::EcP384] {
        let pki = TestPki::new(kind, false).unwrap();
        assert_valid(&verifier_for(&pki), mint(&pki, &kd()));
    }
}

#[test]
fn leaf_dates_set_by_the_device_are_ignored() {
    let pki = factory();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(key.spki(), &kd().encode());
    // As on emulators: notAfter 1969-12-31 before notBefore 1970-01-01.
    leaf.not_after = UnixTime::from_secs(-1);
    assert_valid(&verifier_for(&pki), pki.chain(&leaf).unwrap());
}

// Rule 1: limits before parsing.

#[test]
fn rule1_too_many_certificates() {
    let pki = factory();
    let mut chain = mint(&pki, &kd());
    while chain.len() <= ChainLimits::default().max_certificates {
        chain.push(pki.root_cert.clone());
    }
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::MalformedEvidence);
    assert!(d.contains("limit"), "{d}");
}

#[test]
fn rule1_oversized_certificate() {
    let pki = factory();
    let mut chain = mint(&pki, &kd());
    chain[1] = vec![0x30; ChainLimits::default().max_certificate_bytes + 1];
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::MalformedEvidence);
    assert!(d.contains("certificate 1"), "{d}");
}

#[test]
fn rule1_empty_chain() {
    let pki = factory();
    assert_reason(
        &verifier_for(&pki),
        Vec::new(),
        ReasonCode::MalformedEvidence,
    );
}

// Rule 2: every certificate parses, strictly except for device quirks.

#[test]
fn rule2_truncated_certificate() {
    let pki = factory();
    let mut chain = mint(&pki, &kd());
    let len = chain[0].len();
    chain[0].truncate(len - 10);
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::MalformedEvidence);
    assert!(d.contains("certificate 0") && d.contains("at byte"), "{d}");
}

#[test]
fn rule2_trailing_bytes_after_certificate() {
    let pki = factory();
    let mut chain = mint(&pki, &kd());
    chain[1].push(0);
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::MalformedEvidence);
    assert!(d.contains("trailing bytes"), "{d}");
}

#[test]
fn rule2_non_minimal_length() {
    let pki = factory();
    let mut chain = mint(&pki, &kd());
    // Re-encode the outer SEQUENCE length with one more length octet than needed.
    let der = &chain[0];
    assert_eq!(der[1], 0x82);
    let mut bad = vec![0x30, 0x83, 0x00];
    bad.extend_from_slice(&der[2..]);
    chain[0] = bad;
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::MalformedEvidence);
    assert!(d.contains("Certificate at byte 1: non-minimal"), "{d}");
}

#[test]
fn rule2_duplicate_extension() {
    let pki = factory();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(key.spki(), &kd().encode());
    let again = leaf.extensions[0].clone();
    leaf.extensions.push(again);
    let d = assert_reason(
        &verifier_for(&pki),
        pki.chain(&leaf).unwrap(),
        ReasonCode::MalformedEvidence,
    );
    assert!(
        d.contains("duplicate extension 1.3.6.1.4.1.11129.2.1.17"),
        "{d}"
    );
}

#[test]
fn rule2_malformed_key_description_names_field_and_offset() {
    let pki = factory();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut record = kd().encode();
    record.push(0x00); // trailing byte after the KeyDescription SEQUENCE
    let leaf = pki.leaf_spec(key.spki(), &record);
    let chain = pki.chain(&leaf).unwrap();
    let v = verifier_for(&pki);
    let a = v.appraise_der(chain, AT, Some(CHALLENGE));
    assert!(a.key_description.is_none());
    let r = a.outcome.unwrap_err();
    assert_eq!(r.reason, ReasonCode::MalformedEvidence);
    assert!(
        r.detail.contains("KeyDescription at byte") && r.detail.contains("trailing bytes"),
        "{}",
        r.detail
    );
}

#[test]
fn rule2_tags_in_any_order_and_exact_duplicates_are_accepted() {
    let pki = factory();
    let v = verifier_for(&pki);
    // A Motorola edge (2022) lists its ID attestation tags descending (717, 716, 712, 711, 710).
    let mut descending = kd();
    for (t, id) in [
        (717, "edge 2022"),
        (716, "motorola"),
        (712, "rhode"),
        (711, "rhode"),
        (710, "motorola"),
    ] {
        descending.hardware.push((t, value::octets(id.as_bytes())));
    }
    descending.hardware.swap(0, 1);
    assert_valid(&v, mint(&pki, &descending));
    let a = v.appraise_der(mint(&pki, &descending), AT, Some(CHALLENGE));
    assert_eq!(
        a.key_description
            .unwrap()
            .hardware_enforced
            .attestation_ids()
            .model
            .as_deref(),
        Some("edge 2022")
    );

    // The same tag twice with the same value is one entry (google/android-key-attestation#79).
    let mut exact = kd();
    exact.hardware.push((719, value::int(20_260_905)));
    assert_valid(&v, mint(&pki, &exact));
}

#[test]
fn rule2_conflicting_duplicate_tags_are_rejected() {
    let pki = factory();
    let v = verifier_for(&pki);
    let mut dup = kd();
    dup.hardware.push((719, value::int(20_990_101)));
    let d = assert_reason(&v, mint(&pki, &dup), ReasonCode::MalformedEvidence);
    assert!(d.contains("tag 719") && d.contains("conflicting"), "{d}");
    let mut sets = kd();
    sets.hardware.push((1, value::int_set(&[2, 7])));
    let d = assert_reason(&v, mint(&pki, &sets), ReasonCode::MalformedEvidence);
    assert!(d.contains("tag 1 ") && d.contains("conflicting"), "{d}");
}

#[test]
fn rule2_wrong_tag_types_are_rejected() {
    let pki = factory();
    let v = verifier_for(&pki);
    let mut wrong_type = kd();
    wrong_type.set_hw(705, value::octets(b"15"));
    let d = assert_reason(&v, mint(&pki, &wrong_type), ReasonCode::MalformedEvidence);
    assert!(
        d.contains("hardwareEnforced.[705]") && d.contains("expected INTEGER"),
        "{d}"
    );
}

#[test]
fn rule2_device_quirks_are_accepted() {
    let pki = factory();
    let v = verifier_for(&pki);
    let mut quirky = kd();
    // Unsorted SET OF, 6-digit vendor patch level, day-00 boot patch level, an unknown tag.
    quirky.set_hw(1, value::int_set(&[3, 2]));
    quirky.set_hw(718, value::int(202_609));
    quirky.set_hw(719, value::int(20_260_900));
    quirky.set_hw(9999, value::octets(b"future"));
    // BER boolean: deviceLocked encoded as 0x01.
    let rot = write::sequence(&[
        &write::octet_string(&BOOT_KEY),
        &write::tlv(0x01, &[0x01]),
        &write::enumerated(0),
        &write::octet_string(&[0x11; 32]),
    ]);
    quirky.set_hw(704, rot);
    let a = v.appraise_der(mint(&pki, &quirky), AT, Some(CHALLENGE));
    let ev = a.outcome.expect("quirks accepted");
    assert!(ev.claims().root_of_trust.as_ref().unwrap().device_locked);
    assert_eq!(ev.claims().purposes, vec![3, 2]);
    assert_eq!(
        ev.claims().vendor_patch_level.unwrap().year_month_day(),
        20_260_900
    );
    let kd = a.key_description.unwrap();
    assert!(matches!(
        kd.hardware_enforced.get(9999),
        Some(AuthValue::Unknown(_))
    ));
}

// Rule 3: the anchor.

#[test]
fn rule3_unknown_root() {
    let pki = factory();
    let other = factory();
    assert_reason(
        &verifier_for(&other),
        mint(&pki, &kd()),
        ReasonCode::InvalidTrustChain,
    );
    let d = assert_reason(
        &Verifier::new(TrustAnchors::google()),
        mint(&pki, &kd()),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("does not end at a trusted root"), "{d}");
}

#[test]
fn rule3_an_attested_key_is_never_an_anchor() {
    let pki = factory();
    let chain = mint(&pki, &kd());
    let err = TrustAnchors::empty()
        .add_certificate(chain[0].clone())
        .unwrap_err();
    assert!(
        matches!(err, attest_android::AnchorError::AttestedKey),
        "{err}"
    );
}

#[test]
fn rule3_root_omitted_and_last_certificate_not_signed_by_the_anchor() {
    let pki = factory();
    let impostor = factory();
    // The impostor's intermediate claims the trusted root as issuer, but the trusted root never
    // signed it.
    let mut spec = impostor.intermediate_spec.clone();
    spec.issuer = pki.root_name.clone();
    let forged = spec.sign(&impostor.root_key).unwrap();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let leaf = impostor
        .leaf_spec(key.spki(), &kd().encode())
        .sign(&impostor.intermediate_key)
        .unwrap();
    let d = assert_reason(
        &verifier_for(&pki),
        vec![leaf, forged],
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("not signed by it"), "{d}");
}

// Rule 4: name chaining and signatures over the received bytes.

#[test]
fn rule4_broken_name_chaining() {
    let pki = factory();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(key.spki(), &kd().encode());
    leaf.issuer = name("someone else");
    let d = assert_reason(
        &verifier_for(&pki),
        pki.chain(&leaf).unwrap(),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("issuer is not the subject"), "{d}");
}

#[test]
fn rule4_tampered_signature() {
    let pki = factory();
    let mut chain = mint(&pki, &kd());
    let last = chain[0].len() - 1;
    chain[0][last] ^= 0x01;
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::InvalidTrustChain);
    assert!(
        d.contains("certificate 0 is not signed by certificate 1"),
        "{d}"
    );
}

#[test]
fn rule4_tampered_tbs_byte() {
    let pki = factory();
    let mut chain = mint(&pki, &kd());
    // Flip one byte of the challenge inside the signed KeyDescription.
    let pos = chain[0]
        .windows(CHALLENGE.len())
        .position(|w| w == CHALLENGE)
        .unwrap();
    chain[0][pos] ^= 0x20;
    assert_reason(&verifier_for(&pki), chain, ReasonCode::InvalidTrustChain);
}

#[test]
fn rule4_leaf_signed_by_the_wrong_key() {
    let pki = factory();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let leaf = pki
        .leaf_spec(key.spki(), &kd().encode())
        .sign(&pki.root_key)
        .unwrap();
    let chain = vec![leaf, pki.intermediate_cert.clone(), pki.root_cert.clone()];
    assert_reason(&verifier_for(&pki), chain, ReasonCode::InvalidTrustChain);
}

#[test]
fn rule4_unsupported_signature_algorithm() {
    // A leaf labelled sha1WithRSAEncryption (never accepted), whatever its signature bytes.
    let pki = factory();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let spec = pki.leaf_spec(key.spki(), &kd().encode());
    let sha1_rsa = write::sequence(&[
        &write::oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]),
        &write::null(),
    ]);
    let tbs = spec.tbs(&sha1_rsa);
    let sig = pki.intermediate_key.sign(&tbs).unwrap();
    let leaf = write::sequence(&[&tbs, &sha1_rsa, &write::bit_string(&sig)]);
    let chain = vec![leaf, pki.intermediate_cert.clone(), pki.root_cert.clone()];
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::InvalidTrustChain);
    assert!(d.contains("unsupported"), "{d}");
}

#[test]
fn rule2_inner_and_outer_signature_algorithms_must_match() {
    let pki = factory();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let spec = pki.leaf_spec(key.spki(), &kd().encode());
    let alg = pki.intermediate_key.signature_algorithm();
    let tbs = spec.tbs(&alg);
    let sig = pki.intermediate_key.sign(&tbs).unwrap();
    let other = write::sequence(&[&write::oid(&[
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
    ])]);
    let leaf = write::sequence(&[&tbs, &other, &write::bit_string(&sig)]);
    let chain = vec![leaf, pki.intermediate_cert.clone(), pki.root_cert.clone()];
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::MalformedEvidence);
    assert!(
        d.contains("differs from Certificate.signatureAlgorithm"),
        "{d}"
    );
}

// Rule 5: validity of CA certificates (docs/decisions/0003-certificate-validity.md).

fn with_intermediate_dates(
    remote: bool,
    not_before: UnixTime,
    not_after: UnixTime,
) -> (TestPki, Vec<Vec<u8>>) {
    let mut pki = TestPki::new(KeyKind::EcP256, remote).unwrap();
    pki.intermediate_spec.not_before = not_before;
    pki.intermediate_spec.not_after = not_after;
    pki.intermediate_cert = pki.intermediate_spec.sign(&pki.root_key).unwrap();
    let chain = mint(&pki, &kd());
    (pki, chain)
}

#[test]
fn rule5_intermediate_not_yet_valid() {
    let (pki, chain) = with_intermediate_dates(
        false,
        AT.saturating_add_secs(3600),
        AT.saturating_add_secs(86_400),
    );
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::InvalidTrustChain);
    assert!(d.contains("not valid before"), "{d}");
}

#[test]
fn rule5_expired_factory_intermediate_is_accepted() {
    let (pki, chain) = with_intermediate_dates(
        false,
        UnixTime::from_secs(1_600_000_000),
        AT.saturating_add_secs(-1),
    );
    assert_valid(&verifier_for(&pki), chain);
}

#[test]
fn rule5_expired_remotely_provisioned_intermediate() {
    let (pki, chain) = with_intermediate_dates(
        true,
        UnixTime::from_secs(1_600_000_000),
        AT.saturating_add_secs(-1),
    );
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::InvalidTrustChain);
    assert!(d.contains("expired"), "{d}");
    // The same chain inside its validity window verifies, and is classed as remote.
    let (pki, chain) = with_intermediate_dates(
        true,
        UnixTime::from_secs(1_600_000_000),
        AT.saturating_add_secs(1),
    );
    let a = verifier_for(&pki).appraise_der(chain, AT, Some(CHALLENGE));
    assert_eq!(a.outcome.unwrap().provisioning().as_str(), "remote");
}

// Rule 6: revocation of every serial.

fn status_list(serial_hex: &str, status: &str) -> StatusList {
    StatusList::from_json(
        format!(r#"{{"entries": {{"{serial_hex}": {{"status": "{status}"}}}}}}"#).as_bytes(),
    )
    .unwrap()
}

#[test]
fn rule6_revoked_and_suspended_serials() {
    let pki = factory();
    // The intermediate's serial is 0x2002, the leaf's 1, the root's 0x1001.
    for (serial, status) in [
        ("2002", "REVOKED"),
        ("2002", "SUSPENDED"),
        ("1", "REVOKED"),
        ("1001", "SUSPENDED"),
    ] {
        let v = verifier_for(&pki).with_status_list(status_list(serial, status));
        let d = assert_reason(&v, mint(&pki, &kd()), ReasonCode::Revoked);
        assert!(d.contains(status), "{d}");
    }
    let v = verifier_for(&pki).with_status_list(status_list("2003", "REVOKED"));
    assert_valid(&v, mint(&pki, &kd()));
}

#[test]
fn rule7_negative_serials_match_as_javas_biginteger_writes_them() {
    // Serial 0x8f123456 is negative in DER; Google's verifier keys it "-70edcbaa".
    let pki = TestPki::with_serials(
        KeyKind::EcP256,
        false,
        &[0x10, 0x01],
        &[0x8f, 0x12, 0x34, 0x56],
    )
    .unwrap();
    let v = verifier_for(&pki).with_status_list(status_list("-70edcbaa", "REVOKED"));
    let d = assert_reason(&v, mint(&pki, &kd()), ReasonCode::Revoked);
    assert!(d.contains("certificate 1"), "{d}");
    // The unsigned reading of the same bytes is another serial.
    let v = verifier_for(&pki).with_status_list(status_list("8f123456", "REVOKED"));
    assert_valid(&v, mint(&pki, &kd()));
}

#[test]
fn rule7_googles_list_applies_to_google_chains_only() {
    // A list given for Google's anchors does not touch an operator chain...
    let pki = factory();
    let mut anchors = TrustAnchors::google();
    anchors.add_certificate(pki.root_cert.clone()).unwrap();
    let v = Verifier::new(anchors).with_google_status_list(status_list("2002", "REVOKED"));
    assert_valid(&v, mint(&pki, &kd()));
    // ...while the list for every chain does.
    let v = verifier_for(&pki).with_status_list(status_list("2002", "REVOKED"));
    assert_reason(&v, mint(&pki, &kd()), ReasonCode::Revoked);
}

// Rule 7: where KeyDescription records may be.

#[test]
fn rule7_leaf_without_key_description() {
    let pki = factory();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(key.spki(), &[]);
    leaf.extensions.clear();
    let d = assert_reason(
        &verifier_for(&pki),
        pki.chain(&leaf).unwrap(),
        ReasonCode::MalformedEvidence,
    );
    assert!(d.contains("no KeyDescription"), "{d}");
}

#[test]
fn rule7_key_description_in_a_ca_certificate() {
    let mut pki = factory();
    pki.intermediate_spec.extensions.push(ExtensionSpec {
        oid: oids::KEY_DESCRIPTION.to_vec(),
        critical: false,
        value: kd().encode(),
    });
    pki.intermediate_cert = pki.intermediate_spec.sign(&pki.root_key).unwrap();
    // The intermediate now looks like a device record: no CA certificate is left below the
    // root, which is not a shape any device emits.
    let d = assert_reason(
        &verifier_for(&pki),
        mint(&pki, &kd()),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("no CA certificate"), "{d}");

    // A record above a plain CA certificate is an extended chain, whatever it says:
    // [leaf, plain CA, CA with an ATTEST_KEY record, root].
    let pki = factory();
    let mut attest = kd();
    attest.set_hw(1, value::int_set(&[7]));
    let upper_key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut upper = pki.intermediate_spec.clone();
    upper.subject = name("upper CA");
    upper.spki = upper_key.spki().to_vec();
    upper.extensions.push(ExtensionSpec {
        oid: oids::KEY_DESCRIPTION.to_vec(),
        critical: false,
        value: attest.encode(),
    });
    let upper = upper.sign(&pki.root_key).unwrap();
    let mut lower = pki.intermediate_spec.clone();
    lower.issuer = name("upper CA");
    let lower = lower.sign(&upper_key).unwrap();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let leaf = pki
        .leaf_spec(key.spki(), &kd().encode())
        .sign(&pki.intermediate_key)
        .unwrap();
    let chain = vec![leaf, lower, upper, pki.root_cert.clone()];
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::InvalidTrustChain);
    assert!(d.contains("certificate 2") && d.contains("extended"), "{d}");

    // The anchor's own certificate never carries a record: a copy of the root (same key, so
    // the anchor still matches) with a KeyDescription.
    let pki = factory();
    let root_spec = CertSpec {
        serial: vec![0x10, 0x01],
        issuer: pki.root_name.clone(),
        subject: pki.root_name.clone(),
        not_before: attest_device::PKI_NOT_BEFORE,
        not_after: attest_device::PKI_NOT_AFTER,
        spki: pki.root_key.spki().to_vec(),
        extensions: vec![ExtensionSpec {
            oid: oids::KEY_DESCRIPTION.to_vec(),
            critical: false,
            value: kd().encode(),
        }],
    };
    let mut chain = mint(&pki, &kd());
    chain[2] = root_spec.sign(&pki.root_key).unwrap();
    let d = assert_reason(&verifier_for(&pki), chain, ReasonCode::InvalidTrustChain);
    assert!(d.contains("certificate 2") && d.contains("extended"), "{d}");
}

/// `[leaf, attest-key cert, intermediate, root]`, the attest key's record built by `attest`.
fn attest_key_chain(pki: &TestPki, attest: &KeyDescriptionSpec) -> Vec<Vec<u8>> {
    let attest_key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut attest_spec = pki.leaf_spec(attest_key.spki(), &attest.encode());
    attest_spec.subject = name("attest key");
    let attest_cert = attest_spec.sign(&pki.intermediate_key).unwrap();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(key.spki(), &kd().encode());
    leaf.issuer = name("attest key");
    vec![
        leaf.sign(&attest_key).unwrap(),
        attest_cert,
        pki.intermediate_cert.clone(),
        pki.root_cert.clone(),
    ]
}

#[test]
fn rule7_attest_key_records() {
    let pki = factory();
    let v = verifier_for(&pki);
    let mut good = kd();
    good.set_hw(1, value::int_set(&[7]));
    assert_valid(&v, attest_key_chain(&pki, &good));

    // A signing key used to sign a fake leaf: the "fake attest key" chain.
    let d = assert_reason(
        &v,
        attest_key_chain(&pki, &kd()),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("ATTEST_KEY"), "{d}");

    let mut other_device = good.clone();
    other_device.set_hw(704, value::root_of_trust(&[0xee; 32], true, 0, &[0x11; 32]));
    let d = assert_reason(
        &v,
        attest_key_chain(&pki, &other_device),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("root of trust"), "{d}");

    let mut other_level = good.clone();
    other_level.attestation_security_level = STRONGBOX;
    other_level.keymint_security_level = STRONGBOX;
    let d = assert_reason(
        &v,
        attest_key_chain(&pki, &other_level),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("security levels"), "{d}");
}

#[test]
fn rule7_provisioning_info_in_the_wrong_place() {
    let pki = TestPki::new(KeyKind::EcP256, true).unwrap();
    let v = verifier_for(&pki);
    assert_valid(&v, mint(&pki, &kd()));
    let mut good = kd();
    good.set_hw(1, value::int_set(&[7]));
    // An attest key between the leaf and the RKP certificate is the Auditor layout: fine.
    assert_valid(&v, attest_key_chain(&pki, &good));
    // A plain CA certificate between them is not: the record must sit directly below the
    // provisioning-info certificate.
    let extra_key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut extra = pki.intermediate_spec.clone();
    extra.issuer = pki.intermediate_name.clone();
    extra.subject = name("extra CA");
    extra.spki = extra_key.spki().to_vec();
    extra.extensions.truncate(1);
    let extra = extra.sign(&pki.intermediate_key).unwrap();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(key.spki(), &kd().encode());
    leaf.issuer = name("extra CA");
    let chain = vec![
        leaf.sign(&extra_key).unwrap(),
        extra,
        pki.intermediate_cert.clone(),
        pki.root_cert.clone(),
    ];
    // The extra certificate fits the optional-intermediate shape of operator chains, but the
    // provisioning-info certificate must sit directly above the records.
    let d = assert_reason(&v, chain, ReasonCode::InvalidTrustChain);
    assert!(
        d.contains("certificate 2 carries the provisioning-info"),
        "{d}"
    );

    // On the leaf itself (a device cannot vouch for its own provisioning).
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(key.spki(), &kd().encode());
    leaf.extensions.push(ExtensionSpec {
        oid: oids::PROVISIONING_INFO.to_vec(),
        critical: false,
        value: attest_device::PROVISIONING_INFO_VALUE.to_vec(),
    });
    let d = assert_reason(&v, pki.chain(&leaf).unwrap(), ReasonCode::InvalidTrustChain);
    assert!(
        d.contains("certificate 0") && d.contains("provisioning-info"),
        "{d}"
    );
}

// Rule 8: hardware security levels and the challenge.

#[test]
fn rule8_software_security_level() {
    let pki = factory();
    let v = verifier_for(&pki);
    for (att, km) in [(SOFTWARE, SOFTWARE), (SOFTWARE, TEE), (TEE, SOFTWARE)] {
        let mut spec = kd();
        spec.attestation_security_level = att;
        spec.keymint_security_level = km;
        assert_reason(&v, mint(&pki, &spec), ReasonCode::SoftwareAttestation);
    }
}

#[test]
fn rule8_challenge_mismatch() {
    let pki = factory();
    let v = verifier_for(&pki);
    let chain = mint(&pki, &kd());
    let r = v
        .appraise_der(chain.clone(), AT, Some(b"enigm test challengf"))
        .outcome
        .unwrap_err();
    assert_eq!(r.reason, ReasonCode::ReplayAttempt);
    let r = v
        .appraise_der(chain.clone(), AT, Some(b""))
        .outcome
        .unwrap_err();
    assert_eq!(r.reason, ReasonCode::ReplayAttempt);
    assert!(
        v.appraise_der(chain, AT, None).outcome.is_ok(),
        "no expected challenge, no check"
    );
}

#[test]
fn rule8_software_enforced_root_of_trust_is_not_a_claim() {
    let pki = factory();
    let mut spec = kd();
    let rot = spec
        .hardware
        .iter()
        .find(|(t, _)| *t == 704)
        .unwrap()
        .1
        .clone();
    spec.remove_hw(704);
    spec.set_sw(704, rot);
    let ev = verifier_for(&pki)
        .appraise_der(mint(&pki, &spec), AT, Some(CHALLENGE))
        .outcome
        .unwrap();
    assert_eq!(ev.claims().root_of_trust, None);
}

#[test]
fn strongbox_level_is_claimed_when_the_chain_certifies_it() {
    let mut spec = kd();
    spec.attestation_security_level = STRONGBOX;
    spec.keymint_security_level = STRONGBOX;
    let certified = TestPki::strongbox().unwrap();
    let ev = verifier_for(&certified)
        .appraise_der(mint(&certified, &spec), AT, Some(CHALLENGE))
        .outcome
        .unwrap();
    assert_eq!(ev.claims().security_level, SecurityLevel::StrongBox);
}

#[test]
fn rule8_strongbox_claim_under_a_tee_chain_is_capped_at_tee() {
    // A record claiming StrongBox, signed by an attestation key whose certificates never say
    // StrongBox (a leaked TEE key, say): valid evidence, but only TEE.
    let mut spec = kd();
    spec.attestation_security_level = STRONGBOX;
    spec.keymint_security_level = STRONGBOX;
    let pki = factory();
    let a = verifier_for(&pki).appraise_der(mint(&pki, &spec), AT, Some(CHALLENGE));
    assert_eq!(
        a.key_description.unwrap().attestation_security_level,
        SecurityLevel::StrongBox
    );
    assert_eq!(
        a.outcome.unwrap().claims().security_level,
        SecurityLevel::TrustedEnvironment
    );
}

#[test]
fn the_link_cache_gives_the_same_answers() {
    let pki = factory();
    let mut anchors = TrustAnchors::empty();
    anchors.add_certificate(pki.root_cert.clone()).unwrap();
    let v = Verifier::new(anchors).with_link_cache(16);
    assert_valid(&v, mint(&pki, &kd()));
    assert_eq!(
        v.link_cache().unwrap().len(),
        1,
        "the intermediate's link is cached, the leaf's is not"
    );
    assert_valid(&v, mint(&pki, &kd()));
    // A cached intermediate does not excuse a bad leaf.
    let mut chain = mint(&pki, &kd());
    let last = chain[0].len() - 1;
    chain[0][last] ^= 1;
    assert_reason(&v, chain, ReasonCode::InvalidTrustChain);
}

// Hardening: forgeries anyone can make with public keys, and chains no device emits.

/// A certificate that carries `spki` (an anchor's public key: public keys are public) and a
/// fabricated KeyDescription claiming everything a policy wants, signed by a throw-away key.
fn anchor_keyed_forgery(spki: &[u8], subject: &[u8]) -> Vec<u8> {
    let forger = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut spec = kd();
    spec.set_hw(706, value::int(209_912));
    CertSpec {
        serial: vec![1],
        issuer: subject.to_vec(),
        subject: subject.to_vec(),
        not_before: attest_device::PKI_NOT_BEFORE,
        not_after: attest_device::PKI_NOT_AFTER,
        spki: spki.to_vec(),
        extensions: vec![ExtensionSpec {
            oid: oids::KEY_DESCRIPTION.to_vec(),
            critical: false,
            value: spec.encode(),
        }],
    }
    .sign(&forger)
    .unwrap()
}

#[test]
fn rule4_a_single_certificate_with_an_anchor_key_is_not_a_chain() {
    let pki = factory();
    let mut anchors = TrustAnchors::google();
    anchors.add_certificate(pki.root_cert.clone()).unwrap();
    let v = Verifier::new(anchors.clone());
    assert_eq!(anchors.iter().count(), 3);
    for anchor in anchors.iter() {
        let forged = anchor_keyed_forgery(anchor.spki(), &name("Android Keystore Key"));
        let d = assert_reason(&v, vec![forged.clone()], ReasonCode::InvalidTrustChain);
        assert!(
            d.contains("only the anchor's certificate"),
            "{}: {d}",
            anchor.id().name()
        );
        // Nor a pair: an attested-looking leaf with the anchor-keyed forgery above it.
        let key = SigningKey::generate(KeyKind::EcP256).unwrap();
        let leaf = pki.leaf_spec(key.spki(), &kd().encode());
        let chain = vec![leaf.sign(&key).unwrap(), forged];
        assert_reason(&v, chain, ReasonCode::InvalidTrustChain);
    }
}

#[test]
fn rule4_a_leaf_signed_by_the_root_itself_is_refused() {
    // [leaf, root] with a genuine signature by the operator root: no attestation key
    // certificate, a shape no device emits.
    let pki = factory();
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(key.spki(), &kd().encode());
    leaf.issuer = pki.root_name.clone();
    let leaf = leaf.sign(&pki.root_key).unwrap();
    let v = verifier_for(&pki);
    let d = assert_reason(
        &v,
        vec![leaf.clone(), pki.root_cert.clone()],
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("no CA certificate"), "{d}");
    let d = assert_reason(&v, vec![leaf], ReasonCode::InvalidTrustChain);
    assert!(d.contains("no CA certificate"), "{d}");
}

/// A CA certificate named `subject`, signed by `issuer_key` as `issuer`, with a fresh key.
fn extra_ca(issuer: &[u8], issuer_key: &SigningKey, subject: &[u8]) -> (Vec<u8>, SigningKey) {
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let cert = CertSpec {
        serial: vec![0x33],
        issuer: issuer.to_vec(),
        subject: subject.to_vec(),
        not_before: attest_device::PKI_NOT_BEFORE,
        not_after: attest_device::PKI_NOT_AFTER,
        spki: key.spki().to_vec(),
        extensions: vec![],
    }
    .sign(issuer_key)
    .unwrap();
    (cert, key)
}

#[test]
fn rule4_extra_ca_certificates_are_refused() {
    let pki = factory();
    let v = verifier_for(&pki);
    // Seven extra CA certificates between the attestation key and the leaf.
    let mut chain = vec![pki.root_cert.clone(), pki.intermediate_cert.clone()];
    let mut issuer = pki.intermediate_name.clone();
    let mut key = None::<SigningKey>;
    for i in 0..7 {
        let subject = name(&format!("extra CA {i}"));
        let signer = key.as_ref().unwrap_or(&pki.intermediate_key);
        let (cert, k) = extra_ca(&issuer, signer, &subject);
        chain.push(cert);
        issuer = subject;
        key = Some(k);
    }
    let leaf_key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(leaf_key.spki(), &kd().encode());
    leaf.issuer = issuer;
    chain.push(leaf.sign(key.as_ref().unwrap()).unwrap());
    chain.reverse();
    assert_eq!(chain.len(), 10);
    let d = assert_reason(&v, chain, ReasonCode::InvalidTrustChain);
    assert!(d.contains("8 CA certificates"), "{d}");
}

#[test]
fn rule9_a_strongbox_titled_ca_under_a_leaked_tee_key_does_not_lift_the_level() {
    // Whoever holds a leaked TEE attestation key signs a CA certificate titled StrongBox and
    // mints StrongBox records under it. Under an operator root the extra certificate fits the
    // optional-intermediate shape, but only the certificate the root signed is read: TEE.
    let pki = factory();
    let (extra, extra_key) = extra_ca(
        &pki.intermediate_name,
        &pki.intermediate_key,
        &name("StrongBox attestation key"),
    );
    let mut spec = kd();
    spec.attestation_security_level = STRONGBOX;
    spec.keymint_security_level = STRONGBOX;
    let key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(key.spki(), &spec.encode());
    leaf.issuer = name("StrongBox attestation key");
    let chain = vec![
        leaf.sign(&extra_key).unwrap(),
        extra,
        pki.intermediate_cert.clone(),
        pki.root_cert.clone(),
    ];
    let ev = verifier_for(&pki)
        .appraise_der(chain.clone(), AT, Some(CHALLENGE))
        .outcome
        .unwrap();
    assert_eq!(
        ev.claims().security_level,
        SecurityLevel::TrustedEnvironment
    );
    // One level more is a shape no device emits.
    let (upper, upper_key) = extra_ca(
        &name("StrongBox attestation key"),
        &extra_key,
        &name("StrongBox attestation key 2"),
    );
    let mut leaf = pki.leaf_spec(key.spki(), &spec.encode());
    leaf.issuer = name("StrongBox attestation key 2");
    let mut longer = vec![leaf.sign(&upper_key).unwrap(), upper];
    longer.extend(chain.into_iter().skip(1));
    let d = assert_reason(&verifier_for(&pki), longer, ReasonCode::InvalidTrustChain);
    assert!(d.contains("3 CA certificates"), "{d}");
}

#[test]
fn rule4_repeated_certificates_are_refused() {
    let pki = factory();
    let v = verifier_for(&pki);
    // The leaf twice: a well-shaped chain (leaf, "record", CA) but a repeat.
    let mut chain = mint(&pki, &kd());
    chain.insert(1, chain[0].clone());
    let d = assert_reason(&v, chain, ReasonCode::InvalidTrustChain);
    assert!(d.contains("certificate 1 repeats"), "{d}");
    // The root repeated.
    let mut chain = mint(&pki, &kd());
    chain.push(pki.root_cert.clone());
    assert_reason(&v, chain, ReasonCode::InvalidTrustChain);
}

#[test]
fn rule4_at_most_one_attest_key_record_under_an_operator_root() {
    let pki = factory();
    let v = verifier_for(&pki);
    let mut attest = kd();
    attest.set_hw(1, value::int_set(&[7]));
    // leaf <- record 1 <- record 2 <- record 3 <- intermediate
    let mut issuer_name = pki.intermediate_name.clone();
    let mut issuer_key: Option<SigningKey> = None;
    let mut certs = Vec::new();
    for i in 0..3 {
        let k = SigningKey::generate(KeyKind::EcP256).unwrap();
        let mut spec = pki.leaf_spec(k.spki(), &attest.encode());
        spec.issuer = issuer_name.clone();
        spec.subject = name(&format!("attest key {i}"));
        certs.push(
            spec.sign(issuer_key.as_ref().unwrap_or(&pki.intermediate_key))
                .unwrap(),
        );
        issuer_name = spec.subject.clone();
        issuer_key = Some(k);
        // One record verifies; the second is one too many (Google's anchors take two, which
        // the corpus test shows on `cert_chain_with_attest_keys`).
        let leaf_key = SigningKey::generate(KeyKind::EcP256).unwrap();
        let mut leaf = pki.leaf_spec(leaf_key.spki(), &kd().encode());
        leaf.issuer = issuer_name.clone();
        let mut chain = vec![leaf.sign(issuer_key.as_ref().unwrap()).unwrap()];
        chain.extend(certs.iter().rev().cloned());
        chain.push(pki.intermediate_cert.clone());
        chain.push(pki.root_cert.clone());
        if i < 1 {
            assert_valid(&v, chain);
        } else {
            let d = assert_reason(&v, chain, ReasonCode::InvalidTrustChain);
            assert!(d.contains(&format!("{} ATTEST_KEY records", i + 1)), "{d}");
        }
    }
}

/// A Name with a commonName and an organizationName, both UTF8String.
fn name_with_organization(common_name: &str, organization: &str) -> Vec<u8> {
    let atv =
        |oid: &[u8], v: &str| write::sequence(&[&write::oid(oid), &write::tlv(0x0c, v.as_bytes())]);
    write::sequence(&[
        &write::set(&[&atv(&[0x55, 0x04, 0x0a], organization)]),
        &write::set(&[&atv(&[0x55, 0x04, 0x03], common_name)]),
    ])
}

/// `pki` with its intermediate renamed to `subject` and re-signed.
fn renamed(mut pki: TestPki, subject: Vec<u8>) -> TestPki {
    pki.intermediate_spec.subject = subject.clone();
    pki.intermediate_name = subject;
    pki.intermediate_cert = pki.intermediate_spec.sign(&pki.root_key).unwrap();
    pki
}

fn strongbox_level(pki: &TestPki) -> SecurityLevel {
    let mut spec = kd();
    spec.attestation_security_level = STRONGBOX;
    spec.keymint_security_level = STRONGBOX;
    verifier_for(pki)
        .appraise_der(mint(pki, &spec), AT, Some(CHALLENGE))
        .outcome
        .unwrap()
        .claims()
        .security_level
}

#[test]
fn rule9_strongbox_certification_is_read_in_any_letter_case() {
    for subject in [
        "Strongbox attestation key",
        "STRONGBOX attestation key",
        "title strongbox",
    ] {
        let pki = renamed(factory(), name(subject));
        assert_eq!(strongbox_level(&pki), SecurityLevel::StrongBox, "{subject}");
    }
}

#[test]
fn rule9_remote_operator_chains_read_strongbox_from_the_root_signed_certificate() {
    // Under an operator root the certificate the root signed says StrongBox (as Google's RKP
    // servers write it, in O) or not; Google's own RKP rule (O of the attestation key
    // certificate) is checked on real chains by the corpus test.
    let pki = renamed(
        TestPki::new(KeyKind::EcP256, true).unwrap(),
        name_with_organization("a1b2c3", "StrongBox"),
    );
    assert_eq!(strongbox_level(&pki), SecurityLevel::StrongBox);
    let pki = renamed(
        TestPki::new(KeyKind::EcP256, true).unwrap(),
        name_with_organization("a1b2c3", "TEE"),
    );
    assert_eq!(strongbox_level(&pki), SecurityLevel::TrustedEnvironment);
}

#[test]
fn rule9_the_attested_key_must_be_generated_in_hardware() {
    let pki = factory();
    let v = verifier_for(&pki);
    for origin in [1, 2, 4] {
        let mut imported = kd();
        imported.set_hw(702, value::int(origin));
        let d = assert_reason(&v, mint(&pki, &imported), ReasonCode::KeyNotGenerated);
        assert!(d.contains("not GENERATED"), "{d}");
    }
    let mut missing = kd();
    missing.remove_hw(702);
    let d = assert_reason(&v, mint(&pki, &missing), ReasonCode::KeyNotGenerated);
    assert!(d.contains("no hardware-enforced origin"), "{d}");
    // Claimed only by Android (software-enforced), not by the hardware.
    let mut software_only = kd();
    software_only.remove_hw(702);
    software_only.set_sw(702, value::int(0));
    assert_reason(&v, mint(&pki, &software_only), ReasonCode::KeyNotGenerated);
    assert_eq!(
        ReasonCode::KeyNotGenerated.seed_class(),
        Some(ReasonCode::InvalidTrustChain)
    );
}

#[test]
fn rule8_attest_key_records_meet_grapheneos_rules() {
    let pki = factory();
    let v = verifier_for(&pki);
    let mut good = kd();
    good.set_hw(1, value::int_set(&[7]));
    // Purposes must be exactly {ATTEST_KEY}: a signing key that may also attest is refused.
    let mut sign_too = good.clone();
    sign_too.set_hw(1, value::int_set(&[2, 7]));
    let d = assert_reason(
        &v,
        attest_key_chain(&pki, &sign_too),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("exactly {ATTEST_KEY}"), "{d}");
    // Imported attest key: its holder could mint leaves off the device.
    let mut imported = good.clone();
    imported.set_hw(702, value::int(2));
    let d = assert_reason(
        &v,
        attest_key_chain(&pki, &imported),
        ReasonCode::KeyNotGenerated,
    );
    assert!(d.contains("certificate 1"), "{d}");
    let mut no_origin = good.clone();
    no_origin.remove_hw(702);
    assert_reason(
        &v,
        attest_key_chain(&pki, &no_origin),
        ReasonCode::KeyNotGenerated,
    );
    // allApplications, in either list.
    for hardware in [true, false] {
        let mut all_apps = good.clone();
        if hardware {
            all_apps.set_hw(600, value::null());
        } else {
            all_apps.set_sw(600, value::null());
        }
        let d = assert_reason(
            &v,
            attest_key_chain(&pki, &all_apps),
            ReasonCode::InvalidTrustChain,
        );
        assert!(d.contains("all applications"), "{d}");
    }
}

/// An RSA SubjectPublicKeyInfo with a made-up modulus of `bits` bits and exponent `e`: never
/// used to sign, only to be refused before any arithmetic.
fn fake_rsa_spki(bits: usize, e: &[u8]) -> Vec<u8> {
    let mut modulus = vec![0xc5u8; bits / 8];
    modulus[bits / 8 - 1] |= 1;
    let key = write::sequence(&[
        &write::unsigned_integer(&modulus),
        &write::unsigned_integer(e),
    ]);
    write::sequence(&[
        &write::sequence(&[
            &write::oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]),
            &write::null(),
        ]),
        &write::bit_string(&key),
    ])
}

#[test]
fn rule5_rsa_keys_beyond_real_chains_are_refused() {
    let pki = factory();
    let v = verifier_for(&pki);
    for (bits, e, want) in [
        (8192, &[0x01, 0x00, 0x01][..], "8192 bits"),
        (4608, &[0x01, 0x00, 0x01][..], "4608 bits"),
        (2048, &[0x03][..], "exponent Some(3)"),
        (
            2048,
            &[0x01, 0x00, 0x00, 0x00, 0x01][..],
            "exponent Some(4294967297)",
        ),
    ] {
        let mut pki2 = renamed(factory(), pki.intermediate_name.clone());
        pki2.intermediate_spec.spki = fake_rsa_spki(bits, e);
        pki2.intermediate_cert = pki2.intermediate_spec.sign(&pki2.root_key).unwrap();
        let mut chain = mint(&pki2, &kd());
        chain[2] = pki2.root_cert.clone();
        let d = assert_reason(&verifier_for(&pki2), chain, ReasonCode::InvalidTrustChain);
        assert!(d.contains("certificate 0") && d.contains(want), "{d}");
    }
    assert_valid(&v, mint(&pki, &kd()));
}

#[test]
fn rule6_unknown_critical_extensions_in_ca_certificates_are_refused() {
    let mut pki = factory();
    pki.intermediate_spec.extensions.push(ExtensionSpec {
        oid: vec![0x55, 0x1d, 0x1e], // nameConstraints: not processed here
        critical: true,
        value: write::sequence(&[]),
    });
    pki.intermediate_cert = pki.intermediate_spec.sign(&pki.root_key).unwrap();
    let d = assert_reason(
        &verifier_for(&pki),
        mint(&pki, &kd()),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("critical extension 2.5.29.30"), "{d}");
    // The same extension, not critical, is ignored.
    let mut pki = factory();
    pki.intermediate_spec.extensions.push(ExtensionSpec {
        oid: vec![0x55, 0x1d, 0x1e],
        critical: false,
        value: write::sequence(&[]),
    });
    pki.intermediate_cert = pki.intermediate_spec.sign(&pki.root_key).unwrap();
    assert_valid(&verifier_for(&pki), mint(&pki, &kd()));
}

#[test]
fn operator_roots_with_unverifiable_keys_are_refused_at_load() {
    let forger = SigningKey::generate(KeyKind::EcP256).unwrap();
    let root = CertSpec {
        serial: vec![7],
        issuer: name("big root"),
        subject: name("big root"),
        not_before: attest_device::PKI_NOT_BEFORE,
        not_after: attest_device::PKI_NOT_AFTER,
        spki: fake_rsa_spki(8192, &[0x01, 0x00, 0x01]),
        extensions: vec![],
    }
    .sign(&forger)
    .unwrap();
    let err = TrustAnchors::empty().add_certificate(root).unwrap_err();
    assert!(err.to_string().contains("4096"), "{err}");
}

#[test]
fn rule9_a_self_made_rkp_style_certificate_under_a_leaked_operator_key_does_not_lift_the_level() {
    // Found by review: leaf <- X (made by the holder of a leaked TEE attestation key: O=StrongBox
    // and a provisioning-info extension) <- the real attestation key certificate <- root.
    let pki = factory();
    let mut spec = kd();
    spec.attestation_security_level = STRONGBOX;
    spec.keymint_security_level = STRONGBOX;
    let x_key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let x_name = name_with_organization("a1b2c3", "StrongBox");
    let x = CertSpec {
        serial: vec![0x44],
        issuer: pki.intermediate_name.clone(),
        subject: x_name.clone(),
        not_before: attest_device::PKI_NOT_BEFORE,
        not_after: attest_device::PKI_NOT_AFTER,
        spki: x_key.spki().to_vec(),
        extensions: vec![ExtensionSpec {
            oid: oids::PROVISIONING_INFO.to_vec(),
            critical: false,
            value: attest_device::PROVISIONING_INFO_VALUE.to_vec(),
        }],
    }
    .sign(&pki.intermediate_key)
    .unwrap();
    let leaf_key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(leaf_key.spki(), &spec.encode());
    leaf.issuer = x_name;
    let chain = vec![
        leaf.sign(&x_key).unwrap(),
        x,
        pki.intermediate_cert.clone(),
        pki.root_cert.clone(),
    ];
    let ev = verifier_for(&pki)
        .appraise_der(chain, AT, Some(CHALLENGE))
        .outcome
        .unwrap();
    assert_eq!(
        ev.claims().security_level,
        SecurityLevel::TrustedEnvironment
    );
}

#[test]
fn rule9_security_levels_must_be_equal() {
    let pki = factory();
    let mut spec = kd();
    spec.attestation_security_level = STRONGBOX;
    let d = assert_reason(
        &verifier_for(&pki),
        mint(&pki, &spec),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("differs from KeyMint security level"), "{d}");
}

#[test]
fn rule8_attest_key_records_need_a_root_of_trust() {
    let pki = factory();
    let mut record = kd();
    record.set_hw(1, value::int_set(&[7]));
    record.remove_hw(704);
    let d = assert_reason(
        &verifier_for(&pki),
        attest_key_chain(&pki, &record),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("no hardware-enforced root of trust"), "{d}");
}

#[test]
fn rule6_operator_chains_that_are_not_positively_factory_expire() {
    // Without a serialNumber in the attestation key's subject (Google's factory marker), an
    // operator chain's expiry is enforced, as for RKP.
    let mut pki = renamed(factory(), name("no serial number here"));
    pki.intermediate_spec.not_after = UnixTime::from_secs(1_700_000_000);
    pki.intermediate_cert = pki.intermediate_spec.sign(&pki.root_key).unwrap();
    let d = assert_reason(
        &verifier_for(&pki),
        mint(&pki, &kd()),
        ReasonCode::InvalidTrustChain,
    );
    assert!(d.contains("expired"), "{d}");
}
