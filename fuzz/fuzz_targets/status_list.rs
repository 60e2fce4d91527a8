//! The status list parser on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = attest_android::StatusList::from_json(data) {
        let _ = list.lookup("0");
    }
});
