//! The KeyDescription parser on arbitrary bytes: it must return a value or an error, never panic,
//! and an accepted record must describe itself consistently.
#![no_main]

use attest_android::{KeyDescription, KeyDescriptionLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kd) = KeyDescription::parse(data, 0, &KeyDescriptionLimits::default()) {
        let tags = kd.hardware_enforced.tags();
        assert!(tags.windows(2).all(|w| w[0] < w[1]), "accepted tags are strictly ascending");
        let _ = kd.creation_date_time();
    }
});
