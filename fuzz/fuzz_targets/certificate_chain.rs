//! Chain parsing and appraisal on arbitrary bytes. The input is split into certificates by a
//! one-byte count and two-byte lengths, so the fuzzer can build multi-certificate chains; the
//! verifier trusts Google's roots plus, when it parses, the last certificate (so that deeper
//! rules are reached).
#![no_main]

use attest_android::{TrustAnchors, Verifier};
use attest_core::UnixTime;
use libfuzzer_sys::fuzz_target;

fn split(data: &[u8]) -> Vec<Vec<u8>> {
    let Some((&count, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for _ in 0..(count % 8) {
        if rest.len() < 2 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let take = len.min(rest.len());
        out.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let ders = split(data);
    let mut anchors = TrustAnchors::google();
    if let Some(last) = ders.last() {
        let _ = anchors.add_certificate(last.clone());
    }
    let verifier = Verifier::new(anchors).with_link_cache(64);
    let at = UnixTime::from_secs(1_790_000_000);
    let first = verifier.appraise_der(ders.clone(), at, Some(b"challenge"));
    // Deterministic, with and without a warm cache.
    let second = verifier.appraise_der(ders, at, Some(b"challenge"));
    assert_eq!(first.outcome.is_ok(), second.outcome.is_ok());
});
