//! The public JSON shape of one appraisal, as `enigm-attest verify --json` prints it.
//!
//! The field names are a public interface. Unique identifiers (serial, IMEI, MEID, unique id)
//! never appear, at most as `{"present": true}`.

use attest_android::{Appraisal, AuthorizationList, KeyDescription, hex};
use attest_core::UnixTime;
use serde_json::{Map, Value, json};

/// The JSON object for one appraisal.
pub fn appraisal_json(a: &Appraisal) -> Value {
    let (verdict, reason, detail) = match &a.outcome {
        Ok(_) => ("valid", Value::Null, Value::Null),
        Err(r) => ("invalid", json!(r.reason.as_str()), json!(r.detail)),
    };
    json!({
        "verdict": verdict,
        "reason": reason,
        "detail": detail,
        "chain": {
            "length": a.chain.length,
            "anchor": a.chain.anchor.as_ref().map(|id| id.name()),
            "provisioning": a.chain.provisioning.as_str(),
        },
        "key_description": a.key_description.as_ref().map(key_description_json),
    })
}

fn int_either(hw: &AuthorizationList, sw: &AuthorizationList, tag: u32) -> Value {
    hw.int(tag)
        .or_else(|| sw.int(tag))
        .map_or(Value::Null, |v| json!(v))
}

/// The `key_description` object.
pub fn key_description_json(kd: &KeyDescription) -> Value {
    use attest_android::tag;
    let hw = &kd.hardware_enforced;
    let sw = &kd.software_enforced;
    let root_of_trust = hw
        .root_of_trust()
        .map(|r| (r, "hardware"))
        .or_else(|| sw.root_of_trust().map(|r| (r, "software")))
        .map(|(r, by)| {
            json!({
                "verified_boot_key": hex(&r.verified_boot_key),
                "device_locked": r.device_locked,
                "verified_boot_state": r.verified_boot_state.as_str(),
                "verified_boot_hash": r.verified_boot_hash.as_deref().map(hex),
                "enforced_by": by,
            })
        });
    let creation_time = kd
        .creation_date_time()
        .and_then(|ms| UnixTime::from_millis(ms).to_rfc3339());
    let aaid = sw
        .attestation_application_id()
        .or_else(|| hw.attestation_application_id())
        .map(|a| {
            json!({
                "packages": a.packages.iter().map(|p| json!({"name": p.name, "version": p.version})).collect::<Vec<_>>(),
                "signature_digests": a.signature_digests.iter().map(|d| hex(d)).collect::<Vec<_>>(),
            })
        });
    // ID attestation is meaningful only from the hardware list; software chains have none.
    let ids = hw.attestation_ids();
    let mut id_map = Map::new();
    for (k, v) in [
        ("brand", &ids.brand),
        ("device", &ids.device),
        ("product", &ids.product),
        ("manufacturer", &ids.manufacturer),
        ("model", &ids.model),
    ] {
        id_map.insert(k.to_owned(), v.as_ref().map_or(Value::Null, |s| json!(s)));
    }
    for (k, present) in [
        ("serial", ids.serial_present),
        ("imei", ids.imei_present),
        ("meid", ids.meid_present),
        ("second_imei", ids.second_imei_present),
    ] {
        if present {
            id_map.insert(k.to_owned(), json!({"present": true}));
        }
    }
    json!({
        "attestation_version": kd.attestation_version,
        "attestation_security_level": kd.attestation_security_level.as_str(),
        "keymint_version": kd.keymint_version,
        "keymint_security_level": kd.keymint_security_level.as_str(),
        "attestation_challenge": hex(&kd.attestation_challenge),
        "unique_id": if kd.unique_id_present { json!({"present": true}) } else { Value::Null },
        "root_of_trust": root_of_trust,
        "os_version": int_either(hw, sw, tag::OS_VERSION),
        "os_patch_level": int_either(hw, sw, tag::OS_PATCH_LEVEL),
        "vendor_patch_level": int_either(hw, sw, tag::VENDOR_PATCH_LEVEL),
        "boot_patch_level": int_either(hw, sw, tag::BOOT_PATCH_LEVEL),
        "creation_time": creation_time,
        "attestation_application_id": aaid,
        "attestation_ids": Value::Object(id_map),
        "hardware_enforced_tags": hw.tags(),
        "software_enforced_tags": sw.tags(),
    })
}

/// A short human-readable summary of one appraisal.
pub fn appraisal_text(file: &str, a: &Appraisal) -> String {
    let mut s = match &a.outcome {
        Ok(ev) => format!(
            "{file}: valid ({} chain of {}, anchor {})",
            a.chain.provisioning.as_str(),
            a.chain.length,
            ev.anchor().name()
        ),
        Err(r) => format!("{file}: invalid: {} ({})", r.reason, r.detail),
    };
    if let Some(kd) = &a.key_description {
        s.push_str(&format!(
            "\n  attestation v{} {} / KeyMint v{} {}",
            kd.attestation_version,
            kd.attestation_security_level.as_str(),
            kd.keymint_version,
            kd.keymint_security_level.as_str()
        ));
        if let Some(r) = kd.hardware_enforced.root_of_trust() {
            s.push_str(&format!(
                "\n  boot {} locked={} key {}",
                r.verified_boot_state.as_str(),
                r.device_locked,
                hex(&r.verified_boot_key)
            ));
        }
        let hw = &kd.hardware_enforced;
        let show = |v: Option<i64>| v.map_or("-".to_owned(), |x| x.to_string());
        s.push_str(&format!(
            "\n  os {} patch {} vendor {} boot {}",
            show(hw.os_version()),
            show(hw.os_patch_level()),
            show(hw.vendor_patch_level()),
            show(hw.boot_patch_level())
        ));
    }
    s
}

/// Adds `decision`, `reasons` and `policy_hash` to a verify object.
pub fn add_decision(obj: &mut Map<String, Value>, d: &attest_policy::Decision) {
    obj.insert(
        "decision".to_owned(),
        json!(if d.eligible { "eligible" } else { "ineligible" }),
    );
    obj.insert(
        "reasons".to_owned(),
        json!(d.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
    );
    obj.insert("policy_hash".to_owned(), json!(d.policy_hash));
    if let Some(m) = &d.device_model {
        obj.insert("device_model".to_owned(), json!(m));
    }
}

/// The decision as a text line.
pub fn decision_text(d: &attest_policy::Decision) -> String {
    if d.eligible {
        "\n  decision: eligible".to_owned()
    } else {
        let reasons: Vec<&str> = d.reasons.iter().map(|r| r.as_str()).collect();
        format!("\n  decision: ineligible ({})", reasons.join(", "))
    }
}
