//! Property: whatever KeyDescription the software device encodes, the parser reads back the same
//! versions, levels, challenge, tags and values, in any SET OF order; and any truncation of a
//! valid record is refused with a position, never a panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use attest_android::{
    AuthValue, KeyDescription, KeyDescriptionLimits, SecurityLevel, VerifiedBootState,
};
use attest_device::{KeyDescriptionSpec, value};
use proptest::prelude::*;

fn level(v: i64) -> SecurityLevel {
    match v {
        0 => SecurityLevel::Software,
        1 => SecurityLevel::TrustedEnvironment,
        _ => SecurityLevel::StrongBox,
    }
}

prop_compose! {
    fn spec()(
        attestation_version in prop::sample::select(vec![1i64, 2, 3, 4, 100, 200, 300, 400, 500]),
        att_level in 0i64..3,
        km_level in 0i64..3,
        challenge in prop::collection::vec(any::<u8>(), 0..128),
        purposes in prop::collection::vec(0i64..8, 0..6),
        os_version in 0i64..200_000,
        os_patch in 201_001i64..203_012,
        vendor_patch in prop::option::of(20_100_101i64..20_301_231),
        boot_key in prop::collection::vec(any::<u8>(), 0..33),
        locked in any::<bool>(),
        state in 0i64..4,
        unknown in prop::option::of((900u32..2000, prop::collection::vec(any::<u8>(), 0..40))),
    ) -> (KeyDescriptionSpec, Vec<i64>, Vec<u8>, bool, i64, Option<i64>, Option<(u32, Vec<u8>)>) {
        let mut s = KeyDescriptionSpec::typical(&boot_key, &challenge);
        s.attestation_version = attestation_version;
        s.attestation_security_level = att_level;
        s.keymint_security_level = km_level;
        s.set_hw(1, value::int_set(&purposes));
        s.set_hw(705, value::int(os_version));
        s.set_hw(706, value::int(os_patch));
        match vendor_patch {
            Some(v) => { s.set_hw(718, value::int(v)); }
            None => { s.remove_hw(718); }
        }
        s.set_hw(704, value::root_of_trust(&boot_key, locked, state, &[0x11; 32]));
        if let Some((tag, bytes)) = &unknown {
            s.set_hw(*tag, value::octets(bytes));
        }
        (s, purposes, boot_key, locked, state, vendor_patch, unknown)
    }
}

proptest! {
    #[test]
    fn encoded_records_parse_back((s, purposes, boot_key, locked, state, vendor_patch, unknown) in spec()) {
        let kd = KeyDescription::parse(&s.encode(), 0, &KeyDescriptionLimits::default()).unwrap();
        prop_assert_eq!(kd.attestation_version, s.attestation_version);
        prop_assert_eq!(kd.attestation_security_level, level(s.attestation_security_level));
        prop_assert_eq!(kd.keymint_security_level, level(s.keymint_security_level));
        prop_assert_eq!(&kd.attestation_challenge, &s.challenge);
        let hw = &kd.hardware_enforced;
        prop_assert_eq!(hw.tags(), s.hardware.iter().map(|(t, _)| *t).collect::<Vec<_>>());
        prop_assert_eq!(hw.int_set(1).unwrap(), purposes.as_slice());
        prop_assert_eq!(hw.vendor_patch_level(), vendor_patch);
        let rot = hw.root_of_trust().unwrap();
        prop_assert_eq!(&rot.verified_boot_key, &boot_key);
        prop_assert_eq!(rot.device_locked, locked);
        let want_state = [VerifiedBootState::Verified, VerifiedBootState::SelfSigned, VerifiedBootState::Unverified, VerifiedBootState::Failed][state as usize];
        prop_assert_eq!(rot.verified_boot_state, want_state);
        if let Some((tag, bytes)) = unknown {
            let raw = match hw.get(tag) { Some(AuthValue::Unknown(raw)) => raw.clone(), other => panic!("{other:?}") };
            prop_assert_eq!(&raw[2..], bytes.as_slice());
        }
    }

    #[test]
    fn truncations_are_refused_with_a_position((s, ..) in spec(), cut in 0usize..2000) {
        let bytes = s.encode();
        let cut = cut % bytes.len();
        let err = KeyDescription::parse(&bytes[..cut], 0, &KeyDescriptionLimits::default()).unwrap_err();
        prop_assert!(err.offset <= bytes.len());
        prop_assert!(!err.field.is_empty());
    }
}
