//! Signature verification over the exact bytes received, with one crypto stack (aws-lc-rs).

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use crate::x509::{Curve, KeyAlgorithm, SignatureAlgorithm};

/// Why a signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The key and signature algorithm are a combination we do not verify.
    #[error("unsupported key/signature algorithm combination ({0:?} key, {1:?})")]
    Unsupported(KeyAlgorithm, SignatureAlgorithm),
    /// The signature is wrong.
    #[error("signature does not verify")]
    Invalid,
    /// An RSA key outside the bounds real chains use: more than 4096 bits, or a public exponent
    /// other than 65537 (docs/decisions/0014-bounded-signature-work.md).
    #[error(
        "RSA key of {bits} bits with exponent {exponent:?} is refused: only 2048-4096 bits with exponent 65537 are verified"
    )]
    RsaKeyOutOfBounds {
        /// Modulus size in bits.
        bits: usize,
        /// The public exponent, when it fits in 64 bits.
        exponent: Option<u64>,
    },
}

/// Largest RSA modulus verified: the Google root's size, the largest in real chains.
pub const MAX_RSA_BITS: usize = 4096;
/// The only RSA public exponent verified: every real chain uses it.
pub const RSA_EXPONENT: u64 = 65537;

fn algorithm(
    key: KeyAlgorithm,
    sig: SignatureAlgorithm,
) -> Option<&'static dyn VerificationAlgorithm> {
    use SignatureAlgorithm as S;
    // RSA keys below 2048 bits are refused by these parameter sets; only the AOSP software root
    // uses RSA-1024, and it is never trusted anyway. Above 4096 bits and exponents other than
    // 65537 are refused before this, in `verify`. P-521 is not verified: no real chain uses it
    // and one P-521 check costs several P-256 checks (decision 0014).
    Some(match (key, sig) {
        (KeyAlgorithm::Rsa, S::RsaPkcs1Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (KeyAlgorithm::Rsa, S::RsaPkcs1Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (KeyAlgorithm::Rsa, S::RsaPkcs1Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
        // Real devices sign with a P-384 key and SHA-256 (126 hops in the corpus): every
        // curve/digest pair is allowed, as X9.62 does.
        (KeyAlgorithm::Ec(Curve::P256), S::EcdsaSha256) => &signature::ECDSA_P256_SHA256_ASN1,
        (KeyAlgorithm::Ec(Curve::P256), S::EcdsaSha384) => &signature::ECDSA_P256_SHA384_ASN1,
        (KeyAlgorithm::Ec(Curve::P256), S::EcdsaSha512) => &signature::ECDSA_P256_SHA512_ASN1,
        (KeyAlgorithm::Ec(Curve::P384), S::EcdsaSha256) => &signature::ECDSA_P384_SHA256_ASN1,
        (KeyAlgorithm::Ec(Curve::P384), S::EcdsaSha384) => &signature::ECDSA_P384_SHA384_ASN1,
        (KeyAlgorithm::Ec(Curve::P384), S::EcdsaSha512) => &signature::ECDSA_P384_SHA512_ASN1,
        _ => return None,
    })
}

/// Verifies `signature` over `message` with the issuer's public key octets.
pub fn verify(
    key_algorithm: KeyAlgorithm,
    public_key: &[u8],
    signature_algorithm: SignatureAlgorithm,
    message: &[u8],
    sig: &[u8],
) -> Result<(), SignatureError> {
    if key_algorithm == KeyAlgorithm::Rsa {
        let facts = crate::x509::rsa_key_facts(public_key).ok_or(SignatureError::Invalid)?;
        if facts.modulus_bits > MAX_RSA_BITS || facts.exponent != Some(RSA_EXPONENT) {
            return Err(SignatureError::RsaKeyOutOfBounds {
                bits: facts.modulus_bits,
                exponent: facts.exponent,
            });
        }
    }
    let alg = algorithm(key_algorithm, signature_algorithm).ok_or(SignatureError::Unsupported(
        key_algorithm,
        signature_algorithm,
    ))?;
    UnparsedPublicKey::new(alg, public_key)
        .verify(message, sig)
        .map_err(|_| SignatureError::Invalid)
}

/// Verifies a SHA-256 signature by the key in a SubjectPublicKeyInfo: ECDSA (ASN.1 DER
/// signature) for EC keys, PKCS#1 v1.5 for RSA keys. This is how device proofs are checked
/// against a pinned device key; the algorithm follows from the pinned key, never from the
/// message.
pub fn verify_with_spki(spki: &[u8], message: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
    let Some((key_algorithm, public_key)) = crate::x509::split_spki(spki) else {
        return Err(SignatureError::Unsupported(
            KeyAlgorithm::Other,
            SignatureAlgorithm::Unsupported,
        ));
    };
    let sig_alg = match key_algorithm {
        KeyAlgorithm::Rsa => SignatureAlgorithm::RsaPkcs1Sha256,
        _ => SignatureAlgorithm::EcdsaSha256,
    };
    verify(key_algorithm, &public_key, sig_alg, message, sig)
}
