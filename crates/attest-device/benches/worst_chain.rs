//! The worst chain within the verifier's limits against the median real chain (issue: bound the
//! work). Both cold (no link cache): what an attacker's fresh chain costs.
//!
//! - `median_real`: the real-device chain of median cost in the corpus (found by timing every
//!   Google-rooted chain that verifies, then picking the middle one);
//! - `worst_p384` / `worst_rsa4096`: the longest shape an operator root accepts (the leaf, one
//!   ATTEST_KEY record, two CA certificates, the root omitted so the anchor's signature is
//!   checked too: four signature checks), every key of the costliest kind the verifier accepts,
//!   each record padded with 11 KB of unknown tags. (Under Google's anchors an attacker chooses
//!   fewer keys: the certificates above the records are Google's.)
//!
//! The ratio worst / median is the figure BENCHMARKS.md reports (target: at most 3).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../../attest-android/tests/common/mod.rs"]
mod common;

use std::time::Instant;

use attest_android::{TrustAnchors, Verifier, pem};
use attest_core::UnixTime;
use attest_device::{KeyDescriptionSpec, KeyKind, SigningKey, TestPki, name, value};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;

const AT: UnixTime = UnixTime::from_secs(1_793_491_200);
const CHALLENGE: &[u8] = b"worst case";

fn median_real_chain() -> Option<(Vec<Vec<u8>>, UnixTime)> {
    let dir = common::corpus_dir()?;
    let index: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let v = Verifier::new(TrustAnchors::google());
    let mut timed = Vec::new();
    for e in index {
        if e["trustClass"] != "GOOGLE" {
            continue;
        }
        let Some(at) = e["creationDateTime"]
            .as_i64()
            .map(UnixTime::from_millis)
            .filter(|t| (1_420_070_400..4_102_444_800).contains(&t.as_secs()))
        else {
            continue;
        };
        let text = std::fs::read_to_string(dir.join(e["file"].as_str().unwrap())).unwrap();
        let ders = pem::parse_certificates(&text).unwrap();
        if v.appraise_der(ders.clone(), at, None).outcome.is_err() {
            continue;
        }
        let start = Instant::now();
        for _ in 0..20 {
            let _ = v.appraise_der(ders.clone(), at, None);
        }
        timed.push((start.elapsed(), ders, at));
    }
    timed.sort_by_key(|(t, _, _)| *t);
    let mid = timed.len() / 2;
    let (_, ders, at) = timed.swap_remove(mid);
    eprintln!("median real chain: {} certificates", ders.len());
    Some((ders, at))
}

/// leaf <- record <- attestation key <- intermediate <- (root, omitted).
fn worst_chain(kind: KeyKind) -> (Verifier, Vec<Vec<u8>>) {
    let pki = TestPki::new(kind, false).unwrap();
    let v = {
        let mut a = TrustAnchors::empty();
        a.add_certificate(pki.root_cert.clone()).unwrap();
        Verifier::new(a)
    };
    // The attestation key certificate, under one more intermediate below the root.
    let upper_key = SigningKey::generate(kind).unwrap();
    let mut upper = pki.intermediate_spec.clone();
    upper.subject = attest_device::name_with_serial_number("upper", "0f");
    upper.spki = upper_key.spki().to_vec();
    let upper_cert = upper.sign(&pki.root_key).unwrap();
    let att_key = SigningKey::generate(kind).unwrap();
    let mut att = pki.intermediate_spec.clone();
    att.issuer = upper.subject.clone();
    att.subject = name("attestation key");
    att.spki = att_key.spki().to_vec();
    let att_cert = att.sign(&upper_key).unwrap();
    // Records padded towards the KeyDescription limit with an unknown tag.
    let padded = |attest: bool| {
        let mut kd = KeyDescriptionSpec::typical(&[0xb0; 32], CHALLENGE);
        if attest {
            kd.set_hw(1, value::int_set(&[7]));
        }
        for t in 0..11 {
            kd.software.push((9_000 + t, value::octets(&[0x5a; 1_000])));
        }
        kd.encode()
    };
    let mut issuer_key = att_key;
    let mut issuer_name = name("attestation key");
    let mut certs = vec![upper_cert, att_cert];
    for i in 0..1 {
        let k = SigningKey::generate(kind).unwrap();
        let mut spec = pki.leaf_spec(k.spki(), &padded(true));
        spec.issuer = issuer_name.clone();
        spec.subject = name(&format!("attest key {i}"));
        certs.push(spec.sign(&issuer_key).unwrap());
        issuer_name = spec.subject;
        issuer_key = k;
    }
    let leaf_key = SigningKey::generate(KeyKind::EcP256).unwrap();
    let mut leaf = pki.leaf_spec(leaf_key.spki(), &padded(false));
    leaf.issuer = issuer_name;
    certs.push(leaf.sign(&issuer_key).unwrap());
    certs.reverse();
    assert!(
        v.appraise_der(certs.clone(), AT, Some(CHALLENGE))
            .outcome
            .is_ok(),
        "the worst chain is a valid chain"
    );
    (v, certs)
}

fn bench(c: &mut Criterion) {
    let Some((real, real_at)) = median_real_chain() else {
        eprintln!("no corpus: nothing to compare with");
        return;
    };
    let google = Verifier::new(TrustAnchors::google());
    let mut g = c.benchmark_group("worst_chain");
    g.sample_size(30);
    g.bench_function("median_real", |b| {
        b.iter(|| {
            assert!(
                google
                    .appraise_der(real.clone(), real_at, None)
                    .outcome
                    .is_ok()
            );
        })
    });
    for (label, kind) in [
        ("worst_p384", KeyKind::EcP384),
        ("worst_rsa4096", KeyKind::Rsa4096),
    ] {
        let (v, chain) = worst_chain(kind);
        eprintln!(
            "{label}: {} certificates, {} bytes",
            chain.len(),
            chain.iter().map(Vec::len).sum::<usize>()
        );
        g.bench_function(label, |b| {
            b.iter(|| {
                assert!(
                    v.appraise_der(chain.clone(), AT, Some(CHALLENGE))
                        .outcome
                        .is_ok()
                );
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
