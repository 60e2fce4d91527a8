//! The KeyDescription parser on arbitrary bytes: it must return a value or an error, never panic,
//! and an accepted record must describe itself consistently.
#![no_main]

use attest_android::{KeyDescription, KeyDescriptionLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kd) = KeyDescription::parse(data, 0, &KeyDescriptionLimits::default()) {
        // Any order is accepted, but each tag stands once (equal repeats collapse, others fail).
        for list in [&kd.hardware_enforced, &kd.software_enforced] {
            let mut tags = list.tags();
            let n = tags.len();
            tags.sort_unstable();
            tags.dedup();
            assert_eq!(tags.len(), n, "accepted tags are unique");
        }
        let _ = kd.creation_date_time();
    }
});
