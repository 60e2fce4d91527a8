//! Claims: what a verified chain lets us believe about the device.
//!
//! Only the hardware-enforced AuthorizationList becomes claims. The software-enforced list is
//! produced by Android itself, which an attacker with root controls; its fields are kept apart in
//! [`SoftwareEnforced`] so that no policy reads them by accident. The attestation application id
//! is always software-enforced on real devices (Android fills it in), which is why it lives
//! there too.

use crate::keydesc::{
    AttestationApplicationId, AttestationIds, KeyDescription, RootOfTrust, SecurityLevel, tag,
};

/// A patch level as attested: `YYYYMM` or `YYYYMMDD` (day `00` seen on real devices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchLevel {
    raw: i64,
}

impl PatchLevel {
    /// Wraps a raw value; `None` when it is neither `YYYYMM` nor `YYYYMMDD` with a real month.
    pub fn new(raw: i64) -> Option<PatchLevel> {
        let (year, month) = match raw {
            100_000..=999_999 => (raw / 100, raw % 100),
            10_000_000..=99_999_999 => (raw / 10_000, (raw / 100) % 100),
            _ => return None,
        };
        let day_ok = raw < 1_000_000 || (0..=31).contains(&(raw % 100));
        ((1970..=9999).contains(&year) && (1..=12).contains(&month) && day_ok)
            .then_some(PatchLevel { raw })
    }

    /// The value as the device sent it.
    pub fn raw(self) -> i64 {
        self.raw
    }

    /// `YYYYMM`.
    pub fn year_month(self) -> i64 {
        if self.raw < 1_000_000 {
            self.raw
        } else {
            self.raw / 100
        }
    }

    /// `YYYYMMDD`, with a missing day taken as `00` (the earliest day of that month).
    pub fn year_month_day(self) -> i64 {
        if self.raw < 1_000_000 {
            self.raw * 100
        } else {
            self.raw
        }
    }
}

/// Fields enforced only by Android's keystore: informative, never a basis for trust on their
/// own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SoftwareEnforced {
    /// The app that owns the key (package names and signing certificate digests).
    pub attestation_application_id: Option<AttestationApplicationId>,
    /// Key creation time from the device clock, ms since the epoch (garbage on some devices).
    pub creation_date_time: Option<i64>,
}

/// Claims from a verified chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// attestationVersion.
    pub attestation_version: i64,
    /// keymaster/KeyMint version.
    pub keymint_version: i64,
    /// The lowest of the two attested security levels and the level the attestation key's
    /// certificates vouch for (TEE unless a CA certificate's subject says StrongBox; see
    /// docs/decisions/0005-security-levels.md).
    pub security_level: SecurityLevel,
    /// The attested challenge.
    pub challenge: Vec<u8>,
    /// Hardware-enforced root of trust, when the device reports one.
    pub root_of_trust: Option<RootOfTrust>,
    /// osVersion (e.g. 150000).
    pub os_version: Option<i64>,
    /// osPatchLevel.
    pub os_patch_level: Option<PatchLevel>,
    /// vendorPatchLevel.
    pub vendor_patch_level: Option<PatchLevel>,
    /// bootPatchLevel.
    pub boot_patch_level: Option<PatchLevel>,
    /// Key purposes.
    pub purposes: Vec<i64>,
    /// Key origin (0 = generated in the secure hardware).
    pub origin: Option<i64>,
    /// Hardware-attested device ids (only with ID attestation; unique ids as presence only).
    pub attestation_ids: AttestationIds,
    /// Everything Android, not the secure hardware, vouched for.
    pub software_enforced: SoftwareEnforced,
}

impl Claims {
    /// Claims of a record whose chain vouches for at most `certified` (see
    /// docs/decisions/0005-security-levels.md).
    pub(crate) fn from_key_description(kd: &KeyDescription, certified: SecurityLevel) -> Claims {
        let hw = &kd.hardware_enforced;
        let sw = &kd.software_enforced;
        Claims {
            attestation_version: kd.attestation_version,
            keymint_version: kd.keymint_version,
            security_level: kd
                .attestation_security_level
                .min(kd.keymint_security_level)
                .min(certified),
            challenge: kd.attestation_challenge.clone(),
            root_of_trust: hw.root_of_trust().cloned(),
            os_version: hw.os_version(),
            os_patch_level: hw.os_patch_level().and_then(PatchLevel::new),
            vendor_patch_level: hw.vendor_patch_level().and_then(PatchLevel::new),
            boot_patch_level: hw.boot_patch_level().and_then(PatchLevel::new),
            purposes: hw
                .int_set(tag::PURPOSE)
                .map(<[i64]>::to_vec)
                .unwrap_or_default(),
            origin: hw.int(tag::ORIGIN),
            attestation_ids: hw.attestation_ids().clone(),
            software_enforced: SoftwareEnforced {
                attestation_application_id: sw
                    .attestation_application_id()
                    .or_else(|| hw.attestation_application_id())
                    .cloned(),
                creation_date_time: sw.creation_date_time().or_else(|| hw.creation_date_time()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_levels_accept_six_and_eight_digits() {
        let p = PatchLevel::new(202609).unwrap();
        assert_eq!((p.year_month(), p.year_month_day()), (202609, 20260900));
        let p = PatchLevel::new(20220300).unwrap();
        assert_eq!((p.year_month(), p.year_month_day()), (202203, 20220300));
        for bad in [0, 2026, 202613, 20261301, 20260132, 196912, 1_000_000_000] {
            assert_eq!(PatchLevel::new(bad), None, "{bad}");
        }
    }
}
