//! The device proof (docs/protocol.md, "Proof"): the exact bytes the enrolled device key K_dev
//! signs to bind fresh evidence to itself, the request and, on TLS, the connection. Both sides
//! build them from here: the service to check, `attest-device`'s client to sign.

use aws_lc_rs::digest;

use crate::b64url;

/// The exact bytes K_dev signs: UTF-8 lines joined by `\n`, with a trailing `\n`:
///
/// ```text
/// enigm-attest proof v1
/// <challenge_id>
/// <nonce, base64url as issued>
/// <workflow>
/// <resource, empty line when none>
/// <SHA-256 of K_eph's SubjectPublicKeyInfo, lowercase hex>
/// ```
pub fn proof_message(
    challenge_id: &str,
    nonce: &[u8],
    workflow: &str,
    resource: &str,
    fresh_key_spki: &[u8],
) -> Vec<u8> {
    let key_hash = attest_android::hex(digest::digest(&digest::SHA256, fresh_key_spki).as_ref());
    format!(
        "enigm-attest proof v1\n{challenge_id}\n{}\n{workflow}\n{resource}\n{key_hash}\n",
        b64url(nonce)
    )
    .into_bytes()
}

/// Version 2, on TLS connections: the six lines of version 1 with `v2` in the first, then a
/// seventh, the base64url (no padding) of the 32-byte TLS exporter value of the connection
/// (label `EXPORTER-Channel-Binding`, no context):
///
/// ```text
/// enigm-attest proof v2
/// <challenge_id>
/// <nonce, base64url as issued>
/// <workflow>
/// <resource, empty line when none>
/// <SHA-256 of K_eph's SubjectPublicKeyInfo, lowercase hex>
/// <TLS exporter, base64url>
/// ```
pub fn proof_message_v2(
    challenge_id: &str,
    nonce: &[u8],
    workflow: &str,
    resource: &str,
    fresh_key_spki: &[u8],
    tls_exporter: &[u8; 32],
) -> Vec<u8> {
    let key_hash = attest_android::hex(digest::digest(&digest::SHA256, fresh_key_spki).as_ref());
    format!(
        "enigm-attest proof v2\n{challenge_id}\n{}\n{workflow}\n{resource}\n{key_hash}\n{}\n",
        b64url(nonce),
        b64url(tls_exporter)
    )
    .into_bytes()
}
