//! What a device's OTA client does for a gated request, shared by the gate and TLS tests: the
//! DPoP proof of `attest_device::client`, with every claim chosen by the test.

#![allow(dead_code, clippy::unwrap_used)]

use attest_core::UnixTime;
use attest_device::SigningKey;
use attest_device::client::{DpopClaims, dpop_proof as make};

/// A DPoP proof (RFC 9449) by `key`.
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
    make(
        key,
        &DpopClaims {
            method,
            url,
            token,
            nonce,
            jti,
            iat,
            tls_exporter,
        },
    )
    .unwrap()
}
