//! The DPoP proof checker on arbitrary text: a value or an error, never a panic.
#![no_main]

use attest_core::UnixTime;
use attest_token::{DpopExpectations, check_dpop};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = std::str::from_utf8(data) {
        let exporter = [7u8; 32];
        for tls in [None, Some(&exporter)] {
            let _ = check_dpop(
                proof,
                &DpopExpectations {
                    method: "GET",
                    url: "https://ota.example/v1/ota/artifacts/a",
                    access_token: "token",
                    tls_exporter: tls,
                    now: UnixTime::from_secs(1_793_491_200),
                    window_secs: 60,
                },
            );
        }
    }
});
