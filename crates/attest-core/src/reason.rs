//! Stable, machine-readable reason codes.

/// Why evidence was rejected or a device was found ineligible.
///
/// The wire names (`as_str`) are a public interface: they appear in results, tokens, logs and
/// metrics, and are never renamed. The first six are the seed failure classes; the rest are more
/// specific codes that stand beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonCode {
    /// The chain does not verify: a bad signature, broken name chaining, an untrusted or
    /// software root, a certificate outside its validity, or an attestation record where none
    /// may be.
    InvalidTrustChain,
    /// The device (its verified boot key) is not one the policy supports.
    UnsupportedDevice,
    /// The build (OS version, patch levels, boot hash) is not eligible.
    IneligibleBuild,
    /// The evidence or challenge is too old.
    StaleAttestation,
    /// The attested challenge is not the one issued, or the challenge was already used.
    ReplayAttempt,
    /// A policy rule not covered by a more specific code failed.
    EligibilityFailure,
    /// The evidence could not be parsed or exceeds a size limit.
    MalformedEvidence,
    /// A certificate of the chain is REVOKED or SUSPENDED in the status list.
    Revoked,
    /// The key is not protected by a TEE or StrongBox.
    SoftwareAttestation,
    /// The bootloader is unlocked.
    BootloaderUnlocked,
    /// Verified boot is not in an accepted state.
    BootStateUnverified,
    /// The verified boot key is not allow-listed.
    UnknownBootKey,
    /// A patch level is below the policy minimum.
    PatchLevelTooOld,
    /// A pinned value (patch level, security level) went down since enrollment.
    Downgrade,
    /// The evidence does not match the enrolled device's pins.
    EnrollmentBindingFailed,
    /// The device handle does not belong to the presented key.
    DeviceHandleMismatch,
    /// The transport binding (TLS exporter) does not match.
    TransportBindingFailed,
    /// The request binding (proof over challenge, workflow, resource) does not match.
    RequestBindingFailed,
    /// The attested key does not belong to the expected application.
    WrongApplication,
    /// The enrolled device was revoked by an operator.
    DeviceRevoked,
    /// The attested key (or an ATTEST_KEY record's key) was not generated in the secure
    /// hardware: its hardware-enforced origin is missing or not GENERATED (an imported key).
    /// Seed class: `invalid_trust_chain`.
    KeyNotGenerated,
}

/// A string that is not a known reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason code {0:?}")]
pub struct UnknownReasonCode(pub String);

impl ReasonCode {
    /// Every code, in a stable order.
    pub const ALL: [ReasonCode; 21] = [
        ReasonCode::InvalidTrustChain,
        ReasonCode::UnsupportedDevice,
        ReasonCode::IneligibleBuild,
        ReasonCode::StaleAttestation,
        ReasonCode::ReplayAttempt,
        ReasonCode::EligibilityFailure,
        ReasonCode::MalformedEvidence,
        ReasonCode::Revoked,
        ReasonCode::SoftwareAttestation,
        ReasonCode::BootloaderUnlocked,
        ReasonCode::BootStateUnverified,
        ReasonCode::UnknownBootKey,
        ReasonCode::PatchLevelTooOld,
        ReasonCode::Downgrade,
        ReasonCode::EnrollmentBindingFailed,
        ReasonCode::DeviceHandleMismatch,
        ReasonCode::TransportBindingFailed,
        ReasonCode::RequestBindingFailed,
        ReasonCode::WrongApplication,
        ReasonCode::DeviceRevoked,
        ReasonCode::KeyNotGenerated,
    ];

    /// The stable wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReasonCode::InvalidTrustChain => "invalid_trust_chain",
            ReasonCode::UnsupportedDevice => "unsupported_device",
            ReasonCode::IneligibleBuild => "ineligible_build",
            ReasonCode::StaleAttestation => "stale_attestation",
            ReasonCode::ReplayAttempt => "replay_attempt",
            ReasonCode::EligibilityFailure => "eligibility_failure",
            ReasonCode::MalformedEvidence => "malformed_evidence",
            ReasonCode::Revoked => "revoked",
            ReasonCode::SoftwareAttestation => "software_attestation",
            ReasonCode::BootloaderUnlocked => "bootloader_unlocked",
            ReasonCode::BootStateUnverified => "boot_state_unverified",
            ReasonCode::UnknownBootKey => "unknown_boot_key",
            ReasonCode::PatchLevelTooOld => "patch_level_too_old",
            ReasonCode::Downgrade => "downgrade",
            ReasonCode::EnrollmentBindingFailed => "enrollment_binding_failed",
            ReasonCode::DeviceHandleMismatch => "device_handle_mismatch",
            ReasonCode::TransportBindingFailed => "transport_binding_failed",
            ReasonCode::RequestBindingFailed => "request_binding_failed",
            ReasonCode::WrongApplication => "wrong_application",
            ReasonCode::DeviceRevoked => "device_revoked",
            ReasonCode::KeyNotGenerated => "key_not_generated",
        }
    }

    /// The seed failure class a specific code stands beside (`None` for the seed classes
    /// themselves and for codes that are not failures of the evidence's trust).
    pub const fn seed_class(self) -> Option<ReasonCode> {
        match self {
            ReasonCode::KeyNotGenerated => Some(ReasonCode::InvalidTrustChain),
            _ => None,
        }
    }
}

impl std::str::FromStr for ReasonCode {
    type Err = UnknownReasonCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReasonCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownReasonCode(s.to_owned()))
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn wire_names_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for c in ReasonCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate name {}", c.as_str());
            assert_eq!(c.as_str().parse::<ReasonCode>(), Ok(c));
        }
        assert!("Invalid_Trust_Chain".parse::<ReasonCode>().is_err());
    }
}
