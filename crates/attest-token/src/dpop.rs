//! DPoP proofs (RFC 9449) for gated requests, and the server nonces they must carry.
//!
//! A proof is a compact JWS whose header carries the public key (`jwk`) that signs it: ES256
//! for an EC P-256 key, RS256 for an RSA key (2048-4096 bits, exponent 65537, as decision 0014
//! bounds every RSA key). Its claims bind it to one request (`htm`, `htu`), one access token
//! (`ath`), a moment (`iat`), a server nonce (`nonce`) and, on TLS, the connection (`tls_exporter`,
//! the RFC 9266 exporter value in base64url). Single use (`jti`) is the caller's store's job;
//! whether the key is the one a token is bound to is the caller's check of [`DpopProof::jkt`].

use attest_core::UnixTime;
use aws_lc_rs::{digest, hmac, signature};
use serde_json::Value;

use crate::{b64url, b64url_decode};

/// Longest proof accepted (a proof with an RSA-4096 key is about 1.5 KB).
pub const MAX_DPOP_BYTES: usize = 8 * 1024;
/// Longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 128;

/// Why a DPoP proof is refused. Every variant maps to `invalid_dpop_proof`, except
/// [`DpopError::WrongExporter`] (`transport_binding_failed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Not a compact JWS with the required header and claims.
    #[error("malformed DPoP proof: {0}")]
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt`, or `alg` does not fit the key.
    #[error("DPoP proof header: {0}")]
    Header(&'static str),
    /// The signature does not verify with the header's key.
    #[error("DPoP proof signature does not verify")]
    BadSignature,
    /// `htm` or `htu` is not this request.
    #[error("DPoP proof is for another request ({0})")]
    WrongRequest(&'static str),
    /// `iat` is outside the accepted window.
    #[error("DPoP proof iat is outside the window")]
    Stale,
    /// `ath` is not the hash of the presented access token.
    #[error("DPoP proof ath does not match the access token")]
    WrongToken,
    /// `tls_exporter` is missing or not this connection's.
    #[error("DPoP proof is not bound to this TLS connection")]
    WrongExporter,
}

/// What a request must match.
#[derive(Debug, Clone, Copy)]
pub struct DpopExpectations<'a> {
    /// The request method (`GET`, `POST`).
    pub method: &'a str,
    /// The request URI without query and fragment (`https://host/v1/ota/...`).
    pub url: &'a str,
    /// The access token presented with `Authorization: DPoP`.
    pub access_token: &'a str,
    /// The connection's TLS exporter, when the service terminates TLS.
    pub tls_exporter: Option<&'a [u8; 32]>,
    /// The server's time.
    pub now: UnixTime,
    /// How far `iat` may be from `now`, either way.
    pub window_secs: i64,
}

/// A proof that passed: its key's RFC 7638 thumbprint, its `jti`, `iat` and `nonce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopProof {
    /// Thumbprint of the signing key (compare with the token's `cnf.jkt`).
    pub jkt: String,
    /// The proof's unique id (single use: the caller records it).
    pub jti: String,
    /// When the client says it made the proof.
    pub iat: UnixTime,
    /// The server nonce it carries, if any (the caller checks it).
    pub nonce: Option<String>,
}

fn part(s: Option<&str>) -> Result<&str, DpopError> {
    s.ok_or(DpopError::Malformed("not three dot-separated parts"))
}

fn json_part(s: &str) -> Result<Value, DpopError> {
    b64url_decode(s)
        .and_then(|b| crate::strict_json::object(&b))
        .ok_or(DpopError::Malformed("a part is not base64url JSON"))
}

/// The header key as a verifier, plus its RFC 7638 thumbprint.
fn header_key(
    jwk: &Value,
    alg: &str,
) -> Result<(signature::UnparsedPublicKey<Vec<u8>>, String), DpopError> {
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(b64url_decode)
            .ok_or(DpopError::Header("jwk lacks a member"))
    };
    if jwk.get("d").is_some() || jwk.get("p").is_some() {
        return Err(DpopError::Header("jwk carries a private key"));
    }
    let canonical = |v: Value| {
        let text = v.to_string();
        b64url(digest::digest(&digest::SHA256, text.as_bytes()).as_ref())
    };
    match (jwk.get("kty").and_then(Value::as_str), alg) {
        (Some("EC"), "ES256") => {
            if jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
                return Err(DpopError::Header("ES256 needs a P-256 key"));
            }
            let (x, y) = (member("x")?, member("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(DpopError::Header("P-256 coordinates are 32 bytes"));
            }
            let mut point = vec![0x04];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let jkt = canonical(
                serde_json::json!({"crv": "P-256", "kty": "EC", "x": b64url(&x), "y": b64url(&y)}),
            );
            Ok((
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point),
                jkt,
            ))
        }
        (Some("RSA"), "RS256") => {
            let strip = |v: Vec<u8>| -> Vec<u8> {
                let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
                v.get(start..).unwrap_or_default().to_vec()
            };
            let (n, e) = (strip(member("n")?), strip(member("e")?));
            let bits =
                (n.len() * 8).saturating_sub(n.first().map_or(8, |b| b.leading_zeros() as usize));
            if !(2048..=4096).contains(&bits) || e != [0x01, 0x00, 0x01] {
                return Err(DpopError::Header(
                    "RSA keys are 2048-4096 bits with exponent 65537",
                ));
            }
            use attest_android::der::write;
            let der =
                write::sequence(&[&write::unsigned_integer(&n), &write::unsigned_integer(&e)]);
            let jkt =
                canonical(serde_json::json!({"e": b64url(&e), "kty": "RSA", "n": b64url(&n)}));
            Ok((
                signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der),
                jkt,
            ))
        }
        _ => Err(DpopError::Header(
            "alg must be ES256 (EC P-256) or RS256 (RSA)",
        )),
    }
}

/// Checks a DPoP proof against the request it came with.
pub fn check_dpop(proof: &str, expect: &DpopExpectations<'_>) -> Result<DpopProof, DpopError> {
    if proof.len() > MAX_DPOP_BYTES {
        return Err(DpopError::Malformed("too long"));
    }
    let mut parts = proof.split('.');
    let (h, p, s) = (
        part(parts.next())?,
        part(parts.next())?,
        part(parts.next())?,
    );
    if parts.next().is_some() {
        return Err(DpopError::Malformed("not three dot-separated parts"));
    }
    let header = json_part(h)?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::Header("typ must be dpop+jwt"));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let jwk = header.get("jwk").ok_or(DpopError::Header("no jwk"))?;
    let (key, jkt) = header_key(jwk, alg)?;
    let sig = b64url_decode(s).ok_or(DpopError::Malformed("signature is not base64url"))?;
    key.verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| DpopError::BadSignature)?;

    let claims = json_part(p)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = text("jti")
        // Printable ASCII only: it is stored, and a NUL is not text to PostgreSQL.
        .filter(|j| {
            !j.is_empty() && j.len() <= MAX_JTI_LEN && j.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or(DpopError::Malformed(
            "jti missing, too long or not printable ASCII",
        ))?;
    if text("htm") != Some(expect.method) {
        return Err(DpopError::WrongRequest("htm"));
    }
    // RFC 9449 4.3: htu compared without query and fragment.
    let htu = text("htu").ok_or(DpopError::WrongRequest("htu"))?;
    let htu = htu.split(['?', '#']).next().unwrap_or_default();
    if htu != expect.url {
        return Err(DpopError::WrongRequest("htu"));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(DpopError::Malformed("iat missing"))?;
    // abs_diff: no overflow whatever i64 the client sends.
    if iat.abs_diff(expect.now.as_secs()) > expect.window_secs.unsigned_abs() {
        return Err(DpopError::Stale);
    }
    let ath = b64url(digest::digest(&digest::SHA256, expect.access_token.as_bytes()).as_ref());
    if text("ath") != Some(ath.as_str()) {
        return Err(DpopError::WrongToken);
    }
    if let Some(exporter) = expect.tls_exporter {
        if text("tls_exporter") != Some(b64url(exporter).as_str()) {
            return Err(DpopError::WrongExporter);
        }
    }
    Ok(DpopProof {
        jkt,
        jti: jti.to_owned(),
        iat: UnixTime::from_secs(iat),
        nonce: text("nonce").map(str::to_owned),
    })
}

/// Server nonces for DPoP that every replica can check without shared state: the time window
/// and an HMAC of it under a secret the replicas share. A nonce is good in its window and the
/// next (`window_secs` each).
pub struct DpopNonces {
    key: hmac::Key,
    window_secs: i64,
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopNonces")
            .field("window_secs", &self.window_secs)
            .finish_non_exhaustive()
    }
}

impl DpopNonces {
    /// Nonces under `secret` (at least 32 bytes), changing every `window_secs`.
    pub fn new(secret: &[u8], window_secs: i64) -> DpopNonces {
        DpopNonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            window_secs: window_secs.max(1),
        }
    }

    fn for_window(&self, window: i64) -> String {
        let tag = hmac::sign(
            &self.key,
            &[b"dpop-nonce".as_slice(), &window.to_be_bytes()].concat(),
        );
        let mut bytes = window.to_be_bytes().to_vec();
        bytes.extend_from_slice(tag.as_ref().get(..16).unwrap_or_default());
        b64url(&bytes)
    }

    /// The nonce to hand out at `now`.
    pub fn issue(&self, now: UnixTime) -> String {
        self.for_window(now.as_secs().div_euclid(self.window_secs))
    }

    /// Whether `nonce` was issued in this window or the previous one.
    pub fn is_fresh(&self, nonce: &str, now: UnixTime) -> bool {
        let current = now.as_secs().div_euclid(self.window_secs);
        [current, current - 1].iter().any(|w| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                self.for_window(*w).as_bytes(),
                nonce.as_bytes(),
            )
            .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    const NOW: UnixTime = UnixTime::from_secs(1_793_491_200);
    const URL: &str = "https://ota.example/v1/ota/artifacts/build-42";
    const TOKEN: &str = "eyJ.token.sig";
    const EXPORTER: [u8; 32] = [9; 32];

    enum Key {
        Ec(EcdsaKeyPair),
        Rsa(RsaKeyPair),
    }

    impl Key {
        fn ec() -> Key {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .unwrap();
            Key::Ec(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                )
                .unwrap(),
            )
        }
        fn rsa() -> Key {
            Key::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
        }
        fn spki(&self) -> Vec<u8> {
            use attest_android::der::write;
            match self {
                Key::Ec(k) => crate::ec_spki(k.public_key().as_ref()),
                Key::Rsa(k) => write::sequence(&[
                    &write::sequence(&[
                        &write::oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]),
                        &write::null(),
                    ]),
                    &write::bit_string(k.public_key().as_ref()),
                ]),
            }
        }
        fn alg(&self) -> &'static str {
            match self {
                Key::Ec(_) => "ES256",
                Key::Rsa(_) => "RS256",
            }
        }
        fn sign(&self, msg: &[u8]) -> Vec<u8> {
            match self {
                Key::Ec(k) => k.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
                Key::Rsa(k) => {
                    let mut sig = vec![0u8; k.public_modulus_len()];
                    k.sign(
                        &signature::RSA_PKCS1_SHA256,
                        &SystemRandom::new(),
                        msg,
                        &mut sig,
                    )
                    .unwrap();
                    sig
                }
            }
        }
    }

    fn claims() -> Value {
        json!({
            "jti": "j-1", "htm": "GET", "htu": URL, "iat": NOW.as_secs(),
            "ath": b64url(digest::digest(&digest::SHA256, TOKEN.as_bytes()).as_ref()),
            "nonce": "n", "tls_exporter": b64url(&EXPORTER),
        })
    }

    fn proof(key: &Key, header: Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = key.sign(input.as_bytes());
        format!("{input}.{}", b64url(&sig))
    }

    fn header(key: &Key) -> Value {
        json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": crate::jwk_from_spki(&key.spki()).unwrap()})
    }

    fn expect() -> DpopExpectations<'static> {
        DpopExpectations {
            method: "GET",
            url: URL,
            access_token: TOKEN,
            tls_exporter: Some(&EXPORTER),
            now: NOW,
            window_secs: 60,
        }
    }

    #[test]
    fn good_proofs_verify_with_the_keys_thumbprint() {
        for key in [Key::ec(), Key::rsa()] {
            let p = check_dpop(&proof(&key, header(&key), &claims()), &expect()).unwrap();
            assert_eq!(Some(p.jkt), crate::jwk_thumbprint(&key.spki()));
            assert_eq!((p.jti.as_str(), p.nonce.as_deref()), ("j-1", Some("n")));
        }
        // A query string on htu is not part of the comparison (RFC 9449 4.3).
        let key = Key::ec();
        let mut c = claims();
        c["htu"] = json!(format!("{URL}?x=1"));
        assert!(check_dpop(&proof(&key, header(&key), &c), &expect()).is_ok());
    }

    #[test]
    fn duplicate_members_are_refused() {
        // Signed bytes whose claims name htu twice: we would read the last, another parser the
        // first. Refused, whichever one is ours.
        let key = Key::ec();
        let h = b64url(header(&key).to_string().as_bytes());
        let c = claims().to_string();
        let dup = c.replacen("{", "{\"htu\":\"https://elsewhere.example/x\",", 1);
        let input = format!("{h}.{}", b64url(dup.as_bytes()));
        let p = format!("{input}.{}", b64url(&key.sign(input.as_bytes())));
        assert!(matches!(
            check_dpop(&p, &expect()),
            Err(DpopError::Malformed(_))
        ));
        // The same in the header.
        let hdr = header(&key)
            .to_string()
            .replacen("{", "{\"typ\":\"other\",", 1);
        let input = format!("{}.{}", b64url(hdr.as_bytes()), b64url(c.as_bytes()));
        let p = format!("{input}.{}", b64url(&key.sign(input.as_bytes())));
        assert!(matches!(
            check_dpop(&p, &expect()),
            Err(DpopError::Malformed(_))
        ));
    }

    #[test]
    fn every_rule_has_its_refusal() {
        let key = Key::ec();
        let other = Key::ec();
        let good = claims();
        let with = |name: &str, v: Value| {
            let mut c = good.clone();
            c[name] = v;
            c
        };
        let cases: Vec<(String, DpopError)> = vec![
            (
                proof(
                    &key,
                    json!({"typ": "jwt", "alg": "ES256", "jwk": header(&key)["jwk"]}),
                    &good,
                ),
                DpopError::Header("typ must be dpop+jwt"),
            ),
            (
                proof(
                    &key,
                    json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": header(&key)["jwk"]}),
                    &good,
                ),
                DpopError::Header("alg must be ES256 (EC P-256) or RS256 (RSA)"),
            ),
            (
                proof(
                    &key,
                    json!({"typ": "dpop+jwt", "alg": "none", "jwk": header(&key)["jwk"]}),
                    &good,
                ),
                DpopError::Header("alg must be ES256 (EC P-256) or RS256 (RSA)"),
            ),
            // Signed by one key, claiming another's jwk.
            (proof(&key, header(&other), &good), DpopError::BadSignature),
            (
                proof(&key, header(&key), &with("htm", json!("POST"))),
                DpopError::WrongRequest("htm"),
            ),
            (
                proof(
                    &key,
                    header(&key),
                    &with("htu", json!("https://ota.example/v1/ota/artifacts/other")),
                ),
                DpopError::WrongRequest("htu"),
            ),
            (
                proof(&key, header(&key), &with("iat", json!(NOW.as_secs() - 61))),
                DpopError::Stale,
            ),
            (
                proof(&key, header(&key), &with("iat", json!(NOW.as_secs() + 61))),
                DpopError::Stale,
            ),
            (
                proof(&key, header(&key), &with("ath", json!("AAAA"))),
                DpopError::WrongToken,
            ),
            (
                proof(
                    &key,
                    header(&key),
                    &with("tls_exporter", json!(b64url(&[8; 32]))),
                ),
                DpopError::WrongExporter,
            ),
            (
                proof(&key, header(&key), &with("jti", json!(""))),
                DpopError::Malformed("jti missing, too long or not printable ASCII"),
            ),
            (
                proof(&key, header(&key), &with("jti", json!("a\u{0}b"))),
                DpopError::Malformed("jti missing, too long or not printable ASCII"),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(check_dpop(&p, &expect()), Err(want));
        }
        let mut private = header(&key);
        private["jwk"]["d"] = json!("AAAA");
        assert_eq!(
            check_dpop(&proof(&key, private, &good), &expect()),
            Err(DpopError::Header("jwk carries a private key"))
        );
        assert!(matches!(
            check_dpop("a.b", &expect()),
            Err(DpopError::Malformed(_))
        ));
        assert!(matches!(
            check_dpop(&"a".repeat(MAX_DPOP_BYTES + 1), &expect()),
            Err(DpopError::Malformed(_))
        ));
        // Without TLS there is no exporter to match.
        let plain = DpopExpectations {
            tls_exporter: None,
            ..expect()
        };
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("tls_exporter");
        assert!(check_dpop(&proof(&key, header(&key), &c), &plain).is_ok());
        assert_eq!(
            check_dpop(&proof(&key, header(&key), &c), &expect()),
            Err(DpopError::WrongExporter)
        );
    }

    #[test]
    fn nonces_live_two_windows_and_are_keyed() {
        let n = DpopNonces::new(&[1; 32], 60);
        let issued = n.issue(NOW);
        assert!(n.is_fresh(&issued, NOW));
        assert!(n.is_fresh(&issued, NOW.saturating_add_secs(60)));
        assert!(!n.is_fresh(&issued, NOW.saturating_add_secs(120)));
        assert!(
            !n.is_fresh(&issued, NOW.saturating_add_secs(-60)),
            "not before it was issued"
        );
        assert!(
            !DpopNonces::new(&[2; 32], 60).is_fresh(&issued, NOW),
            "another secret"
        );
        assert!(!n.is_fresh("", NOW));
    }
}
