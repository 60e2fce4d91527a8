//! Results and tokens: compact JWS (JWT) signed with ES256, the JWKS that verifies them, and
//! RFC 7638 JWK thumbprints for key binding (`cnf.jkt`).
//!
//! This room owns the token formats (see `docs/protocol.md`). It is pure: keys are generated
//! from the crypto library's randomness or loaded from bytes the caller read; time is an
//! argument.

#![forbid(unsafe_code)]

mod dpop;
mod proof;
pub mod relying_party;
mod strict_json;

pub use proof::{proof_message, proof_message_v2};

pub use dpop::{
    DpopError, DpopExpectations, DpopNonces, DpopProof, MAX_DPOP_BYTES, MAX_JTI_LEN, check_dpop,
};

use attest_android::{KeyAlgorithm, split_spki};
use attest_core::UnixTime;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A private key that is not a P-256 PKCS#8 document.
    #[error("signing key is not an ECDSA P-256 PKCS#8 key")]
    BadKey,
    /// Key generation or signing failed in the crypto library.
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
    /// A token that is not a well-formed compact JWS.
    #[error("malformed token")]
    Malformed,
    /// A token whose signature does not verify, or whose key is unknown.
    #[error("token signature does not verify")]
    BadSignature,
    /// A token outside its validity.
    #[error("token expired or not yet valid")]
    Expired,
}

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes base64url without padding.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    B64.decode(s).ok()
}

/// The public JWK of a SubjectPublicKeyInfo, with members in RFC 7638 order: EC P-256/P-384
/// (`crv`, `kty`, `x`, `y`) or RSA (`e`, `kty`, `n`). `None` for other keys.
pub fn jwk_from_spki(spki: &[u8]) -> Option<Value> {
    let (alg, key) = split_spki(spki)?;
    match alg {
        KeyAlgorithm::Ec(curve) => {
            let (crv, len) = match curve {
                attest_android::Curve::P256 => ("P-256", 32),
                attest_android::Curve::P384 => ("P-384", 48),
                attest_android::Curve::P521 => ("P-521", 66),
            };
            let (&tag, point) = key.split_first()?;
            if tag != 0x04 || point.len() != 2 * len {
                return None;
            }
            let (x, y) = point.split_at(len);
            Some(json!({"crv": crv, "kty": "EC", "x": b64url(x), "y": b64url(y)}))
        }
        KeyAlgorithm::Rsa => {
            let (n, e) = rsa_public_key(&key)?;
            Some(json!({"e": b64url(e), "kty": "RSA", "n": b64url(n)}))
        }
        KeyAlgorithm::Other => None,
    }
}

/// Modulus and exponent of an RSAPublicKey, without sign octets.
fn rsa_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    use attest_android::der::{Tag, parse_single};
    let seq = parse_single(der, 0, Tag::SEQUENCE, "SEQUENCE", "RSAPublicKey").ok()?;
    let mut r = seq.reader();
    let n = r.read(Tag::INTEGER, "INTEGER", "n").ok()?;
    let e = r.read(Tag::INTEGER, "INTEGER", "e").ok()?;
    Some((strip_sign(n.value), strip_sign(e.value)))
}

fn strip_sign(v: &[u8]) -> &[u8] {
    match v {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => v,
    }
}

/// RFC 7638 thumbprint (SHA-256, base64url) of a key given as SubjectPublicKeyInfo.
pub fn jwk_thumbprint(spki: &[u8]) -> Option<String> {
    let jwk = jwk_from_spki(spki)?;
    // serde_json keeps insertion order (preserve_order), which is the lexicographic order
    // RFC 7638 requires; no whitespace.
    let canonical = serde_json::to_string(&jwk).ok()?;
    Some(b64url(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
    ))
}

/// One ES256 signing key with its key id (its JWK thumbprint).
pub struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn ec_spki(point: &[u8]) -> Vec<u8> {
    use attest_android::der::write;
    write::sequence(&[
        &write::sequence(&[
            &write::oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            &write::oid(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        ]),
        &write::bit_string(point),
    ])
}

impl SigningKey {
    /// A new random key; returns it with its PKCS#8 document for storage.
    pub fn generate() -> Result<(SigningKey, Vec<u8>), TokenError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|_| TokenError::Crypto("key generation"))?;
        let bytes = pkcs8.as_ref().to_vec();
        Ok((SigningKey::from_pkcs8(&bytes)?, bytes))
    }

    /// Loads a P-256 PKCS#8 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, TokenError> {
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| TokenError::BadKey)?;
        let spki = ec_spki(pair.public_key().as_ref());
        let mut jwk = jwk_from_spki(&spki).ok_or(TokenError::BadKey)?;
        let kid = jwk_thumbprint(&spki).ok_or(TokenError::BadKey)?;
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), json!(kid));
            obj.insert("alg".into(), json!("ES256"));
            obj.insert("use".into(), json!("sig"));
        }
        Ok(SigningKey { kid, pair, jwk })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The keys that sign results and tokens: the first signs, all are published (rotation: add a
/// new key in front, keep the old one published until its tokens expired).
#[derive(Debug)]
pub struct Signer {
    keys: Vec<SigningKey>,
}

impl Signer {
    /// A signer from keys, newest (active) first. At least one key is required.
    pub fn new(keys: Vec<SigningKey>) -> Result<Signer, TokenError> {
        if keys.is_empty() {
            return Err(TokenError::BadKey);
        }
        Ok(Signer { keys })
    }

    /// The active key id.
    pub fn active_kid(&self) -> &str {
        self.keys.first().map_or("", |k| k.kid.as_str())
    }

    /// Signs `claims` as a compact JWS with the active key.
    pub fn sign(&self, claims: &Value, typ: &str) -> Result<String, TokenError> {
        let key = self.keys.first().ok_or(TokenError::BadKey)?;
        let header = json!({"alg": "ES256", "typ": typ, "kid": key.kid});
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = key
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| TokenError::Crypto("signing"))?;
        Ok(format!("{signing_input}.{}", b64url(sig.as_ref())))
    }

    /// The JWK Set publishing every key.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }
}

/// Like [`verify`], and the header's `typ` must be `typ` and the claims must carry an integer
/// `exp`: what the gate accepts as an eligibility token (`at+jwt`).
pub fn verify_typed(
    token: &str,
    jwks: &Value,
    now: UnixTime,
    typ: &str,
) -> Result<Value, TokenError> {
    let header: Value = token
        .split('.')
        .next()
        .and_then(b64url_decode)
        .and_then(|b| strict_json::object(&b))
        .ok_or(TokenError::Malformed)?;
    if header.get("typ").and_then(Value::as_str) != Some(typ) {
        return Err(TokenError::Malformed);
    }
    let claims = verify(token, jwks, now)?;
    if claims.get("exp").and_then(Value::as_i64).is_none() {
        return Err(TokenError::Malformed);
    }
    Ok(claims)
}

/// Verifies a compact JWS against a JWK Set (ES256 only) and returns its claims. Checks `exp`
/// and `nbf`/`iat` against `now` when present. This is what a relying party does; the gate and
/// the tests use it.
pub fn verify(token: &str, jwks: &Value, now: UnixTime) -> Result<Value, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Value = b64url_decode(h)
        .and_then(|b| strict_json::object(&b))
        .ok_or(TokenError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(TokenError::BadSignature);
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(TokenError::Malformed)?;
    let jwk = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
        .ok_or(TokenError::BadSignature)?;
    let coord = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(b64url_decode)
            .filter(|v| v.len() == 32)
    };
    let (Some(x), Some(y)) = (coord("x"), coord("y")) else {
        return Err(TokenError::BadSignature);
    };
    let mut point = vec![0x04];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let sig = b64url_decode(s).ok_or(TokenError::Malformed)?;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: Value = b64url_decode(p)
        .and_then(|b| strict_json::object(&b))
        .ok_or(TokenError::Malformed)?;
    let t = now.as_secs();
    let int = |name: &str| claims.get(name).and_then(Value::as_i64);
    if int("exp").is_some_and(|exp| t >= exp) || int("nbf").is_some_and(|nbf| t < nbf) {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_rotate() {
        let (old, _) = SigningKey::generate().unwrap();
        let old_kid = old.kid().to_owned();
        let signer_old = Signer::new(vec![old]).unwrap();
        let token_old = signer_old
            .sign(&json!({"sub": "a", "exp": 100}), "JWT")
            .unwrap();

        let (new, pkcs8) = SigningKey::generate().unwrap();
        let reloaded = SigningKey::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(reloaded.kid(), new.kid());
        let (old_again, _) = (SigningKey::from_pkcs8(&[]).err(), ());
        assert!(old_again.is_some());
        let signer = Signer::new(vec![new, SigningKey::generate().unwrap().0]).unwrap();
        let jwks = signer.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        let t = signer
            .sign(&json!({"sub": "b", "exp": 100}), "JWT")
            .unwrap();
        assert_eq!(
            verify(&t, &jwks, UnixTime::from_secs(99)).unwrap()["sub"],
            "b"
        );
        assert!(matches!(
            verify(&t, &jwks, UnixTime::from_secs(100)),
            Err(TokenError::Expired)
        ));
        // A token from a key no longer published does not verify.
        assert!(matches!(
            verify(&token_old, &jwks, UnixTime::from_secs(1)),
            Err(TokenError::BadSignature)
        ));
        assert_eq!(
            verify(&token_old, &signer_old.jwks(), UnixTime::from_secs(1)).unwrap()["sub"],
            "a"
        );
        assert_ne!(old_kid, signer.active_kid());
        // Tampered payload.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64url(br#"{"sub":"admin","exp":100}"#);
        parts[1] = &forged;
        assert!(matches!(
            verify(&parts.join("."), &jwks, UnixTime::from_secs(1)),
            Err(TokenError::BadSignature)
        ));
        assert!(matches!(
            verify("a.b", &jwks, UnixTime::from_secs(1)),
            Err(TokenError::Malformed)
        ));
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // The RSA example key of RFC 7638 section 3.1, as an SPKI.
        use attest_android::der::write;
        let n = b64url_decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw").unwrap();
        let rsa = write::sequence(&[&write::unsigned_integer(&n), &write::integer(65537)]);
        let spki = write::sequence(&[
            &write::sequence(&[
                &write::oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]),
                &write::null(),
            ]),
            &write::bit_string(&rsa),
        ]);
        assert_eq!(
            jwk_thumbprint(&spki).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
