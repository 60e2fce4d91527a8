//! Every chain of the shared real-device corpus: parsed fields against `index.json`, and the
//! verdict (Google-rooted chains with good signatures verify at their creation time; software,
//! FAKE and unknown roots do not). Disagreements with the index are listed, with reasons, in
//! `tests/corpus_exceptions.json`.
//!
//! The corpus lives outside the repository (`../shared/vectors/android-key-attestation`, or the
//! folder named by `ENIGM_VECTORS`). Without it the test says that it was skipped, except under
//! `CI=true`, where a missing corpus fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
mod common;

use common::corpus_dir;

use attest_android::{
    AuthValue, KeyDescription, SecurityLevel, TrustAnchors, VerifiedBootState, Verifier, hex, pem,
    tag,
};
use attest_core::{ReasonCode, UnixTime};
use serde_json::Value;

struct Exception {
    verdict: String,
    reason: Option<String>,
    parse: Option<String>,
}

fn exceptions() -> BTreeMap<String, Exception> {
    let text = include_str!("corpus_exceptions.json");
    let v: Value = serde_json::from_str(text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(
                e["why"].as_str().is_some_and(|w| w.len() > 20),
                "every exception says why: {e}"
            );
            (
                e["file"].as_str().unwrap().to_owned(),
                Exception {
                    verdict: e["verdict"].as_str().unwrap().to_owned(),
                    reason: e["reason"].as_str().map(str::to_owned),
                    parse: e["key_description"].as_str().map(str::to_owned),
                },
            )
        })
        .collect()
}

/// The instant to verify a corpus chain at: its creationDateTime when that is a plausible date,
/// else the capture date its source recorded, else the start of its CA validity window.
fn verification_time(e: &Value) -> UnixTime {
    let plausible = |t: &UnixTime| (1_420_070_400..4_102_444_800).contains(&t.as_secs());
    if let Some(t) = e["creationDateTime"]
        .as_i64()
        .map(UnixTime::from_millis)
        .filter(plausible)
    {
        return t;
    }
    if let Some(t) = e["source"]["date"]
        .as_str()
        .and_then(UnixTime::parse_rfc3339)
    {
        return t;
    }
    let start = e["caValidWindow"][0].as_str().unwrap();
    UnixTime::parse_rfc3339(&format!("{start}T12:00:00Z")).unwrap()
}

fn level(name: &str) -> SecurityLevel {
    match name {
        "Software" => SecurityLevel::Software,
        "TrustedEnvironment" => SecurityLevel::TrustedEnvironment,
        "StrongBox" => SecurityLevel::StrongBox,
        other => panic!("unknown level {other}"),
    }
}

fn state(name: &str) -> VerifiedBootState {
    match name {
        "Verified" => VerifiedBootState::Verified,
        "SelfSigned" => VerifiedBootState::SelfSigned,
        "Unverified" => VerifiedBootState::Unverified,
        "Failed" => VerifiedBootState::Failed,
        other => panic!("unknown state {other}"),
    }
}

fn tags_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// Compares the parsed KeyDescription with the index entry; returns the mismatches.
fn compare(kd: &KeyDescription, e: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: &str, ours: String, theirs: String| {
        if ours != theirs {
            diffs.push(format!("{what}: ours {ours}, index {theirs}"));
        }
    };
    check(
        "attVer",
        kd.attestation_version.to_string(),
        e["attVer"].to_string(),
    );
    check(
        "kmVer",
        kd.keymint_version.to_string(),
        e["kmVer"].to_string(),
    );
    check(
        "attSL",
        format!("{:?}", kd.attestation_security_level),
        format!("{:?}", level(e["attSL"].as_str().unwrap())),
    );
    check(
        "kmSL",
        format!("{:?}", kd.keymint_security_level),
        format!("{:?}", level(e["kmSL"].as_str().unwrap())),
    );
    check(
        "challenge",
        hex(&kd.attestation_challenge),
        e["challengeHex"].as_str().unwrap().to_owned(),
    );
    check(
        "uniqueId present",
        kd.unique_id_present.to_string(),
        (!e["uniqueIdHex"].as_str().unwrap().is_empty()).to_string(),
    );
    let hw = &kd.hardware_enforced;
    let sw = &kd.software_enforced;
    check(
        "hwTags",
        format!("{:?}", hw.tags()),
        format!("{:?}", tags_of(&e["hwTags"])),
    );
    check(
        "swTags",
        format!("{:?}", sw.tags()),
        format!("{:?}", tags_of(&e["swTags"])),
    );

    let rot = match e["rotIn"].as_str() {
        Some("hardwareEnforced") => hw.root_of_trust(),
        Some("softwareEnforced") => sw.root_of_trust(),
        _ => None,
    };
    check(
        "rot present",
        rot.is_some().to_string(),
        (!e["rotIn"].is_null()).to_string(),
    );
    if let Some(rot) = rot {
        check(
            "vbState",
            format!("{:?}", rot.verified_boot_state),
            format!("{:?}", state(e["vbState"].as_str().unwrap())),
        );
        check(
            "deviceLocked",
            rot.device_locked.to_string(),
            e["deviceLocked"].to_string(),
        );
        check(
            "vbKey",
            hex(&rot.verified_boot_key),
            e["vbKey"].as_str().unwrap().to_owned(),
        );
        check(
            "vbHash",
            rot.verified_boot_hash
                .as_deref()
                .map(hex)
                .unwrap_or_default(),
            e["vbHash"].as_str().unwrap_or_default().to_owned(),
        );
    }
    let either = |t: u32| hw.int(t).or_else(|| sw.int(t));
    let opt = |v: Option<i64>| v.map_or("null".to_owned(), |x| x.to_string());
    check(
        "osVersion",
        opt(either(tag::OS_VERSION)),
        e["osVersion"].to_string(),
    );
    check(
        "osPatchLevel",
        opt(either(tag::OS_PATCH_LEVEL)),
        e["osPatchLevel"].to_string(),
    );
    check(
        "vendorPatchLevel",
        opt(either(tag::VENDOR_PATCH_LEVEL)),
        e["vendorPatchLevel"].to_string(),
    );
    check(
        "bootPatchLevel",
        opt(either(tag::BOOT_PATCH_LEVEL)),
        e["bootPatchLevel"].to_string(),
    );
    check("origin", opt(either(tag::ORIGIN)), e["origin"].to_string());
    check(
        "algorithm",
        opt(either(tag::ALGORITHM)),
        e["algorithm"].to_string(),
    );
    let purposes = hw
        .int_set(tag::PURPOSE)
        .or_else(|| sw.int_set(tag::PURPOSE));
    let mut ours: Vec<i64> = purposes.map(<[i64]>::to_vec).unwrap_or_default();
    let mut theirs: Vec<i64> = e["purpose"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_i64().unwrap()).collect())
        .unwrap_or_default();
    ours.sort_unstable();
    theirs.sort_unstable();
    check("purpose", format!("{ours:?}"), format!("{theirs:?}"));

    let aaid = sw
        .attestation_application_id()
        .or_else(|| hw.attestation_application_id());
    match (aaid, e["aaid"].as_object()) {
        (Some(a), Some(want)) => {
            let ours: Vec<(String, i64)> = a
                .packages
                .iter()
                .map(|p| (p.name.clone(), p.version))
                .collect();
            let theirs: Vec<(String, i64)> = want["packages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_i64().unwrap()))
                .collect();
            check("aaid packages", format!("{ours:?}"), format!("{theirs:?}"));
            let ours: Vec<String> = a.signature_digests.iter().map(|d| hex(d)).collect();
            let theirs: Vec<String> = want["signatureDigests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap().to_owned())
                .collect();
            check("aaid digests", format!("{ours:?}"), format!("{theirs:?}"));
        }
        (None, None) => {}
        (a, b) => check(
            "aaid present",
            a.is_some().to_string(),
            b.is_some().to_string(),
        ),
    }

    let ids = hw.attestation_ids();
    let want = e["ids"].as_object().cloned().unwrap_or_default();
    let s = |k: &str| want.get(k).and_then(Value::as_str).map(str::to_owned);
    check(
        "brand",
        format!("{:?}", ids.brand),
        format!("{:?}", s("attestationIdBrand")),
    );
    check(
        "device",
        format!("{:?}", ids.device),
        format!("{:?}", s("attestationIdDevice")),
    );
    check(
        "product",
        format!("{:?}", ids.product),
        format!("{:?}", s("attestationIdProduct")),
    );
    check(
        "manufacturer",
        format!("{:?}", ids.manufacturer),
        format!("{:?}", s("attestationIdManufacturer")),
    );
    check(
        "model",
        format!("{:?}", ids.model),
        format!("{:?}", s("attestationIdModel")),
    );
    check(
        "imei present",
        ids.imei_present.to_string(),
        want.contains_key("attestationIdImei").to_string(),
    );
    check(
        "second imei present",
        ids.second_imei_present.to_string(),
        want.contains_key("attestationIdSecondImei").to_string(),
    );
    check(
        "serial present",
        ids.serial_present.to_string(),
        want.contains_key("attestationIdSerial").to_string(),
    );
    // The privacy promise: unique ids are never kept, even inside the raw entries.
    for (t, v) in hw.entries().iter().chain(sw.entries()) {
        if [713, 714, 715, 723].contains(t) {
            assert_eq!(v, &AuthValue::Redacted);
        }
    }
    diffs
}

#[test]
fn every_corpus_chain_parses_and_verifies_as_documented() {
    let Some(dir) = corpus_dir() else { return };
    let index: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index.len(), 277, "the corpus has 277 chains");
    let exceptions = exceptions();
    let verifier = Verifier::new(TrustAnchors::google());
    let mut failures = Vec::new();
    let mut valid = 0;
    let mut used_exceptions = 0;
    for e in &index {
        let file = e["file"].as_str().unwrap();
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let ders = pem::parse_certificates(&text).unwrap();
        assert_eq!(
            ders.len() as u64,
            e["n"].as_u64().unwrap(),
            "{file}: certificate count"
        );
        let droid_ca2 = ders
            .iter()
            .any(|d| d.windows(b"Droid CA2".len()).any(|w| w == b"Droid CA2"));
        let at = verification_time(e);
        let appraisal = verifier.appraise_der(ders, at, None);
        let exception = exceptions.get(file);
        used_exceptions += usize::from(exception.is_some());

        // Parsed fields.
        let parse_expected = exception.and_then(|x| x.parse.clone());
        match (
            &appraisal.key_description,
            e["kdParseError"].is_null(),
            parse_expected.as_deref(),
        ) {
            (Some(kd), _, None) => {
                let diffs = compare(kd, e);
                if !diffs.is_empty() {
                    failures.push(format!("{file}: {}", diffs.join("; ")));
                }
            }
            (None, _, Some("rejected")) => {}
            (None, false, None) => {} // the index could not parse it either
            (kd, _, p) => failures.push(format!(
                "{file}: key_description parsed={} but expected {:?} (index error {})",
                kd.is_some(),
                p,
                e["kdParseError"]
            )),
        }

        // Verdict.
        let trust = e["trustClass"].as_str().unwrap();
        let sigs_ok = e["sigsOK"].as_bool().unwrap();
        let (want_valid, want_reason) = match exception {
            Some(x) => (x.verdict == "valid", x.reason.clone()),
            None if trust == "GOOGLE" && sigs_ok => (true, None),
            None => (
                false,
                Some(ReasonCode::InvalidTrustChain.as_str().to_owned()),
            ),
        };
        match (&appraisal.outcome, want_valid) {
            (Ok(_), true) => valid += 1,
            (Err(r), false) if want_reason.as_deref().is_none_or(|w| w == r.reason.as_str()) => {}
            (outcome, _) => failures.push(format!(
                "{file} ({trust}, at {at}): got {:?}, want valid={want_valid} reason={want_reason:?}",
                outcome.as_ref().map(|_| "valid").map_err(|r| format!("{}: {}", r.reason, r.detail))
            )),
        }
        if let Ok(ev) = &appraisal.outcome {
            let anchor = e["anchor"].as_str().unwrap_or_default();
            let want = if anchor.starts_with("google_root_ecp384") {
                "google-ecp384"
            } else {
                "google-rsa4096"
            };
            assert_eq!(ev.anchor().name(), want, "{file}");
            // No real StrongBox chain is capped: every one certifies its attestation key.
            let want_level =
                level(e["attSL"].as_str().unwrap()).min(level(e["kmSL"].as_str().unwrap()));
            assert_eq!(ev.claims().security_level, want_level, "{file}");
            // Remote: a provisioning-info extension, or Google's RKP intermediate (chains issued
            // before the extension existed, e.g. Pixel 6/7 and Galaxy S23).
            let remote = !e["provIdx"].as_array().unwrap().is_empty() || droid_ca2;
            assert_eq!(
                ev.provisioning().as_str(),
                if remote { "remote" } else { "factory" },
                "{file}"
            );
        }
    }
    assert_eq!(
        used_exceptions,
        exceptions.len(),
        "every documented exception names a corpus file"
    );
    assert!(
        failures.is_empty(),
        "{} corpus mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "corpus: {} chains, {valid} valid, {} rejected as expected",
        index.len(),
        index.len() - valid
    );
}

/// Remotely provisioned chains expire, whether or not they carry the provisioning-info
/// extension: RKP chains issued before the extension existed (Pixel 6/7, Galaxy S23) are told
/// apart by Google's `Droid CA2` intermediate, as Google's verifier does. At a fixed instant
/// long after every RKP certificate in the corpus expired, each of them is refused, and every
/// factory chain that verified at its creation still verifies (factory expiry is ignored).
#[test]
fn remotely_provisioned_chains_expire_with_or_without_the_extension() {
    let Some(dir) = corpus_dir() else { return };
    let index: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let verifier = Verifier::new(TrustAnchors::google());
    // 2026-11-01T00:00:00Z.
    let today = UnixTime::from_secs(1_793_491_200);
    let (mut remote_refused, mut without_extension, mut factory_valid) = (0, 0, 0);
    for e in &index {
        let file = e["file"].as_str().unwrap();
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let ders = pem::parse_certificates(&text).unwrap();
        let valid_at_creation = verifier
            .appraise_der(ders.clone(), verification_time(e), None)
            .outcome
            .is_ok();
        if !valid_at_creation {
            continue;
        }
        let a = verifier.appraise_der(ders, today, None);
        match a.chain.provisioning.as_str() {
            "remote" => {
                let r = a.outcome.as_ref().map(|_| ()).unwrap_err();
                assert_eq!(r.reason, ReasonCode::InvalidTrustChain, "{file}");
                assert!(r.detail.contains("expired"), "{file}: {}", r.detail);
                remote_refused += 1;
                without_extension += usize::from(e["provIdx"].as_array().unwrap().is_empty());
            }
            "factory" => {
                assert!(a.outcome.is_ok(), "{file}: {:?}", a.outcome.err());
                factory_valid += 1;
            }
            other => panic!("{file}: a valid chain with provisioning {other}"),
        }
    }
    let pixel6 = std::fs::read_to_string(dir.join("asitplus-warden/pixel_6.pem")).unwrap();
    let a = verifier.appraise_der(pem::parse_certificates(&pixel6).unwrap(), today, None);
    assert_eq!(a.chain.provisioning.as_str(), "remote");
    assert!(a.outcome.is_err());
    eprintln!(
        "at 2026-11-01: {remote_refused} remotely provisioned chains refused as expired ({without_extension} without the provisioning-info extension), {factory_valid} factory chains valid"
    );
    assert!(without_extension >= 10, "{without_extension}");
    assert!(factory_valid > 100, "{factory_valid}");
}
