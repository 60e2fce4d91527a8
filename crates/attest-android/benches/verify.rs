//! Verification cost over every Google-rooted chain of the real-device corpus.
//!
//! - `signatures_only`: the baseline, the same signature checks the verifier makes (every link,
//!   plus the anchor's signature on the last certificate when the root is omitted), on
//!   certificates parsed beforehand;
//! - `appraise`: the full verifier from DER bytes (parsing, every rule, claims), no cache;
//! - `appraise_cached`: the same with the link cache warm (steady state of a server that sees
//!   the same intermediates again and again).
//!
//! One iteration verifies the whole set; chains per second = set size / time per iteration.
//! Results and the machine are in BENCHMARKS.md. Needs the shared corpus (ENIGM_VECTORS or
//! ../shared/vectors/android-key-attestation); without it the benchmark says so and does nothing.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../tests/common/mod.rs"]
mod common;

use attest_android::{Certificate, TrustAnchors, Verifier, pem};
use attest_core::UnixTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

struct Case {
    ders: Vec<Vec<u8>>,
    at: UnixTime,
}

fn corpus() -> Vec<Case> {
    let Some(dir) = common::corpus_dir() else {
        return Vec::new();
    };
    let index = std::fs::read(dir.join("index.json")).unwrap();
    let index: Vec<Value> = serde_json::from_slice(&index).unwrap();
    let verifier = Verifier::new(TrustAnchors::google());
    let mut cases = Vec::new();
    for e in index {
        if e["trustClass"] != "GOOGLE" || e["sigsOK"] != true {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(e["file"].as_str().unwrap())).unwrap();
        let ders = pem::parse_certificates(&text).unwrap();
        let plausible = |t: &UnixTime| (1_420_070_400..4_102_444_800).contains(&t.as_secs());
        let at = e["creationDateTime"]
            .as_i64()
            .map(UnixTime::from_millis)
            .filter(plausible)
            .or_else(|| {
                e["source"]["date"]
                    .as_str()
                    .and_then(UnixTime::parse_rfc3339)
            })
            .unwrap();
        // Only chains that verify: the benchmark measures the success path.
        if verifier
            .appraise_der(ders.clone(), at, None)
            .outcome
            .is_ok()
        {
            cases.push(Case { ders, at });
        }
    }
    cases
}

fn bench(c: &mut Criterion) {
    let cases = corpus();
    if cases.is_empty() {
        return;
    }
    let google = TrustAnchors::google();
    let parsed: Vec<Vec<Certificate>> = cases
        .iter()
        .map(|c| {
            c.ders
                .iter()
                .map(|d| Certificate::from_der(d.clone()).unwrap())
                .collect()
        })
        .collect();
    let signatures: usize = parsed
        .iter()
        .map(|chain| {
            chain.len() - 1
                + usize::from(
                    google
                        .iter()
                        .all(|a| a.spki() != chain.last().unwrap().spki()),
                )
        })
        .sum();
    eprintln!(
        "{} chains, {signatures} signature checks per iteration",
        cases.len()
    );

    let mut g = c.benchmark_group("corpus");
    g.throughput(Throughput::Elements(cases.len() as u64));
    g.sample_size(20);
    g.bench_function("signatures_only", |b| {
        b.iter(|| {
            for chain in &parsed {
                for pair in chain.windows(2) {
                    pair[0].verify_signed_by(&pair[1]).unwrap();
                }
                let last = chain.last().unwrap();
                if google.iter().all(|a| a.spki() != last.spki()) {
                    google
                        .iter()
                        .find(|a| a.verify_signature(last).is_ok())
                        .unwrap();
                }
            }
        })
    });
    let plain = Verifier::new(TrustAnchors::google());
    g.bench_function("appraise", |b| {
        b.iter(|| {
            for case in &cases {
                assert!(
                    plain
                        .appraise_der(case.ders.clone(), case.at, None)
                        .outcome
                        .is_ok()
                );
            }
        })
    });
    let cached = Verifier::new(TrustAnchors::google()).with_link_cache(100_000);
    g.bench_function("appraise_cached", |b| {
        b.iter(|| {
            for case in &cases {
                assert!(
                    cached
                        .appraise_der(case.ders.clone(), case.at, None)
                        .outcome
                        .is_ok()
                );
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
