//! Binding fresh evidence to the enrolled device (docs/protocol.md, "Proof").
//!
//! After enrollment, every attestation comes with a fresh key K_eph attested against the new
//! nonce, and a proof: a signature by the enrolled device key K_dev over the bytes of
//! [`proof_message`]. A valid chain relayed from another device fails here, because only the
//! enrolled device holds K_dev; and the fresh evidence must match the pins taken at enrollment
//! and may not go backwards. Why there is no TLS exporter in the proof:
//! docs/decisions/0008-proof-without-tls-exporter.md.

use attest_android::{Claims, verify_with_spki};
use attest_core::ReasonCode;
use attest_store::{ChallengeRecord, DeviceRecord, DeviceStatus};
use attest_token::{proof_message, proof_message_v2};

use crate::{level_number, ymd};

pub(crate) struct Inputs<'a> {
    /// The exporter value of the TLS connection the request came on, when the service
    /// terminates TLS.
    pub tls_exporter: Option<&'a [u8; 32]>,
    /// The exporter value the client says it put in its proof (the request's `tls_exporter`).
    pub claimed_exporter: Option<&'a [u8; 32]>,
    pub challenge: &'a ChallengeRecord,
    pub request_handle: Option<&'a str>,
    pub device: Option<&'a DeviceRecord>,
    pub proof: Option<&'a [u8]>,
    pub claims: &'a Claims,
    pub fresh_key: &'a [u8],
}

pub(crate) struct Bound {
    /// The enrolled device, when the proof bound the evidence to it.
    pub device: Option<DeviceRecord>,
    pub reasons: Vec<ReasonCode>,
}

/// Checks handle, proof, status and pins. Every failing check adds its reason.
pub(crate) fn check(i: Inputs<'_>) -> Bound {
    let mut reasons = Vec::new();
    let fail = |reasons: &mut Vec<ReasonCode>, r| reasons.push(r);
    let Some(handle) = i.request_handle else {
        fail(&mut reasons, ReasonCode::DeviceHandleMismatch);
        return Bound {
            device: None,
            reasons,
        };
    };
    if i.challenge.device_handle.as_deref() != Some(handle) {
        // The challenge was issued to another device (or to none).
        fail(&mut reasons, ReasonCode::DeviceHandleMismatch);
    }
    let Some(device) = i.device else {
        fail(&mut reasons, ReasonCode::DeviceHandleMismatch);
        return Bound {
            device: None,
            reasons,
        };
    };
    let c = i.challenge;
    // On TLS the client names the exporter it signed: another connection's (or none) is a
    // relay, told apart from a bad signature.
    if let Some(exporter) = i.tls_exporter {
        let same = i.claimed_exporter.is_some_and(|claimed| {
            aws_lc_rs::constant_time::verify_slices_are_equal(claimed, exporter).is_ok()
        });
        if !same {
            fail(&mut reasons, ReasonCode::TransportBindingFailed);
            return Bound {
                device: None,
                reasons,
            };
        }
    }
    let message = match i.tls_exporter {
        Some(exporter) => proof_message_v2(
            &c.id,
            &c.nonce,
            &c.workflow,
            &c.resource,
            i.fresh_key,
            exporter,
        ),
        None => proof_message(&c.id, &c.nonce, &c.workflow, &c.resource, i.fresh_key),
    };
    let proven = i
        .proof
        .is_some_and(|p| verify_with_spki(&device.key_spki, &message, p).is_ok());
    if !proven {
        fail(&mut reasons, ReasonCode::RequestBindingFailed);
        return Bound {
            device: None,
            reasons,
        };
    }
    if device.status == DeviceStatus::Revoked {
        fail(&mut reasons, ReasonCode::DeviceRevoked);
    }
    let c = i.claims;
    match &c.root_of_trust {
        Some(rot) if rot.verified_boot_key == device.boot_key => {}
        _ => fail(&mut reasons, ReasonCode::EnrollmentBindingFailed),
    }
    let went_down = level_number(c.security_level) < device.security_level
        || c.os_version.unwrap_or(0) < device.os_version
        || ymd(c.os_patch_level) < device.os_patch_level
        || ymd(c.vendor_patch_level) < device.vendor_patch_level
        || ymd(c.boot_patch_level) < device.boot_patch_level;
    if went_down {
        fail(&mut reasons, ReasonCode::Downgrade);
    }
    Bound {
        device: Some(device.clone()),
        reasons,
    }
}
