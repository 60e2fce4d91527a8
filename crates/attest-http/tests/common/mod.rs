//! What a device's OTA client does for a gated request, shared by the gate and TLS tests.

#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use attest_core::UnixTime;
use attest_device::SigningKey;
use attest_token::{b64url, jwk_from_spki};
use aws_lc_rs::digest;
use serde_json::json;

/// An ECDSA signature as ASN.1 DER (what the device key makes) turned into JWS r || s.
pub fn fixed(der: &[u8]) -> Vec<u8> {
    use attest_android::der::{Tag, parse_single};
    let seq = parse_single(der, 0, Tag::SEQUENCE, "SEQUENCE", "sig").unwrap();
    let mut r = seq.reader();
    let mut out = Vec::new();
    for _ in 0..2 {
        let v = r.read(Tag::INTEGER, "INTEGER", "sig").unwrap().value;
        let v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        out.extend(std::iter::repeat_n(0u8, 32 - v.len()));
        out.extend_from_slice(&v);
    }
    out
}

/// A DPoP proof (RFC 9449) by the P-256 `key`.
#[allow(clippy::too_many_arguments)]
pub fn dpop_proof(
    key: &SigningKey,
    method: &str,
    url: &str,
    token: &str,
    nonce: Option<&str>,
    jti: &str,
    iat: UnixTime,
    tls_exporter: Option<&[u8; 32]>,
) -> String {
    let header =
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_from_spki(key.spki()).unwrap()});
    let mut claims = json!({
        "jti": jti, "htm": method, "htu": url, "iat": iat.as_secs(),
        "ath": b64url(digest::digest(&digest::SHA256, token.as_bytes()).as_ref()),
    });
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    if let Some(e) = tls_exporter {
        claims["tls_exporter"] = json!(b64url(e));
    }
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    format!(
        "{input}.{}",
        b64url(&fixed(&key.sign(input.as_bytes()).unwrap()))
    )
}
