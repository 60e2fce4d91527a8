//! What a relying party checks on a gated request, with nothing but the service's JWK Set: the
//! eligibility token (signature, `typ: at+jwt`, expiry, issuer, audience), the DPoP proof
//! (RFC 9449), that the proof key is the token's `cnf.jkt`, and the token's scope. The service's
//! own gate runs exactly this, then adds what needs state: the server nonce, single use of the
//! proof's `jti`, and the device's current status. A relying party elsewhere (the "passport"
//! model) keeps a `jti` cache of its own and relies on the token's short life for revocation.
//! `examples/relying_party.rs` is a runnable one.

use attest_core::UnixTime;
use serde_json::Value;

use crate::{DpopError, DpopExpectations, DpopProof, TokenError, check_dpop, verify_typed};

/// Audience of eligibility tokens.
pub const TOKEN_AUDIENCE: &str = "enigm-ota";
/// `typ` of eligibility tokens.
pub const TOKEN_TYP: &str = "at+jwt";

/// One gated request as a relying party sees it.
#[derive(Clone, Copy, Debug)]
pub struct GatedRequest<'a> {
    /// The `Authorization` header (`DPoP <token>`).
    pub authorization: Option<&'a str>,
    /// The `DPoP` header.
    pub dpop: Option<&'a str>,
    /// The method.
    pub method: &'a str,
    /// The request URI without query.
    pub url: &'a str,
    /// The connection's TLS exporter, when the relying party terminates TLS and binds to it.
    pub tls_exporter: Option<&'a [u8; 32]>,
    /// The relying party's time.
    pub now: UnixTime,
    /// How far the proof's `iat` may be from `now`.
    pub window_secs: i64,
    /// The token issuer to accept (`iss`).
    pub issuer: &'a str,
    /// The workflow the resource needs.
    pub workflow: &'a str,
    /// The resource asked for.
    pub resource: &'a str,
}

/// Why a gated request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateFailure {
    /// No token, or not a valid eligibility token of this issuer and audience.
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// No proof, or a proof that does not hold (see [`DpopError`]).
    #[error("invalid_dpop_proof: {0}")]
    InvalidProof(DpopError),
    /// The proof is valid but signed by another key than the token is bound to.
    #[error("invalid_dpop_proof: the proof is not signed by the token's key")]
    WrongKey,
    /// The token is for another workflow or resource.
    #[error("insufficient_scope")]
    InsufficientScope,
}

/// A request that passed.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The token's claims.
    pub claims: Value,
    /// The device handle (`sub`).
    pub subject: String,
    /// The token's `cnf.jkt`.
    pub jkt: String,
    /// The checked proof (`jti`, `iat`, `nonce`).
    pub proof: DpopProof,
}

fn invalid_token(e: impl std::fmt::Display) -> GateFailure {
    GateFailure::InvalidToken(e.to_string())
}

/// Checks a gated request against the JWK Set of the issuing service.
pub fn check_gated(jwks: &Value, r: &GatedRequest<'_>) -> Result<Admitted, GateFailure> {
    let token = r
        .authorization
        // The scheme name is case-insensitive (RFC 9110 11.1).
        .and_then(|a| {
            a.get(..5)
                .filter(|p| p.eq_ignore_ascii_case("dpop "))
                .and_then(|_| a.get(5..))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid_token("expected Authorization: DPoP <token>"))?;
    let claims =
        verify_typed(token, jwks, r.now, TOKEN_TYP).map_err(|e: TokenError| invalid_token(e))?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("aud") != Some(TOKEN_AUDIENCE) || text("iss") != Some(r.issuer) {
        return Err(invalid_token("token for another issuer or audience"));
    }
    let (Some(subject), Some(jkt)) = (
        text("sub"),
        claims.pointer("/cnf/jkt").and_then(Value::as_str),
    ) else {
        return Err(invalid_token("not an eligibility token"));
    };
    let (subject, jkt) = (subject.to_owned(), jkt.to_owned());
    let proof = r
        .dpop
        .ok_or(GateFailure::InvalidProof(DpopError::Malformed(
            "missing DPoP proof",
        )))?;
    let proof = check_dpop(
        proof,
        &DpopExpectations {
            method: r.method,
            url: r.url,
            access_token: token,
            tls_exporter: r.tls_exporter,
            now: r.now,
            window_secs: r.window_secs,
        },
    )
    .map_err(GateFailure::InvalidProof)?;
    if aws_lc_rs::constant_time::verify_slices_are_equal(proof.jkt.as_bytes(), jkt.as_bytes())
        .is_err()
    {
        return Err(GateFailure::WrongKey);
    }
    if text("workflow") != Some(r.workflow) || text("resource") != Some(r.resource) {
        return Err(GateFailure::InsufficientScope);
    }
    Ok(Admitted {
        claims,
        subject,
        jkt,
        proof,
    })
}
