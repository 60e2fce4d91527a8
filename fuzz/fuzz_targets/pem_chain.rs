//! The PEM reader on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ders) = attest_android::pem::parse_certificates(text) {
            let again = attest_android::pem::encode_certificates(&ders);
            assert_eq!(attest_android::pem::parse_certificates(&again).ok(), Some(ders));
        }
    }
});
