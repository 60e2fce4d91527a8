//! The OTA gate: a gated request carries an eligibility token bound to K_dev (`cnf.jkt`) and a
//! DPoP proof by K_dev (RFC 9449) with a server nonce, on TLS bound to the connection. The
//! device is looked up on every request, so a revocation acts at once. See docs/protocol.md,
//! "The OTA gate".

use attest_core::{UnixTime, Workflow};
use attest_store::{DeviceStatus, Registration};
use attest_token::DpopError;

use crate::{Service, ServiceError};

/// How far a DPoP proof's `iat` may be from the server's time, either way.
pub const DPOP_WINDOW_SECS: i64 = 60;

/// Why a gated request is refused: each is a stable code with its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateCode {
    /// 401: no token, a bad signature, expired, another audience, or an unknown device.
    InvalidToken,
    /// 401: no proof, a bad signature, another method or URL, a stale `iat`, a replayed `jti`,
    /// or another key than the token's.
    InvalidDpopProof,
    /// 401: the proof lacks a fresh server nonce; the response carries one (`DPoP-Nonce`).
    UseDpopNonce,
    /// 401: on TLS, the proof is not bound to this connection.
    TransportBindingFailed,
    /// 403: the token is for another workflow or resource.
    InsufficientScope,
    /// 403: the device was revoked.
    DeviceRevoked,
    /// 403: the device is not registered for updates.
    NotRegistered,
    /// 403: the device is outside the channel's staged rollout.
    NotInRollout,
    /// 403: the device's model is not among the channel's `models`.
    ModelNotAllowed,
}

impl GateCode {
    /// The stable wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            GateCode::InvalidToken => "invalid_token",
            GateCode::InvalidDpopProof => "invalid_dpop_proof",
            GateCode::UseDpopNonce => "use_dpop_nonce",
            GateCode::TransportBindingFailed => "transport_binding_failed",
            GateCode::InsufficientScope => "insufficient_scope",
            GateCode::DeviceRevoked => "device_revoked",
            GateCode::NotRegistered => "not_registered",
            GateCode::NotInRollout => "not_in_rollout",
            GateCode::ModelNotAllowed => "model_not_allowed",
        }
    }

    /// 401 for authentication failures, 403 for a valid caller without the right.
    pub const fn is_unauthorized(self) -> bool {
        matches!(
            self,
            GateCode::InvalidToken
                | GateCode::InvalidDpopProof
                | GateCode::UseDpopNonce
                | GateCode::TransportBindingFailed
        )
    }
}

/// One gated request, as the HTTP edge read it.
#[derive(Clone, Copy, Debug)]
pub struct GateRequest<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `DPoP` header.
    pub dpop: Option<&'a str>,
    /// The method.
    pub method: &'a str,
    /// The request URI without query (`https://host/path`).
    pub url: &'a str,
    /// The connection's TLS exporter, when the service terminates TLS.
    pub tls_exporter: Option<&'a [u8; 32]>,
    /// The workflow the resource needs.
    pub workflow: Workflow,
    /// The resource (product, channel, artifact id, build).
    pub resource: &'a str,
    /// Whether the device must be registered for updates.
    pub needs_registration: bool,
}

/// A request that passed the gate.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The device's handle.
    pub handle: String,
    /// Its registration, when it has one.
    pub registration: Option<Registration>,
    /// The token's `cnf.jkt`.
    pub jkt: String,
    /// The model the device enrolled as, when its boot key names one.
    pub model: Option<String>,
    /// The server's time for this request.
    pub now: UnixTime,
}

fn refuse(code: GateCode, message: impl Into<String>) -> ServiceError {
    ServiceError::Gate {
        code,
        message: message.into(),
    }
}

impl Service {
    /// A fresh DPoP server nonce (also sent on every gated response as `DPoP-Nonce`).
    pub fn dpop_nonce(&self) -> String {
        self.dpop_nonces.issue(self.clock.now())
    }

    /// Checks a gated request: token, proof, nonce, key binding, single use, scope, device.
    pub async fn gate(&self, r: GateRequest<'_>) -> Result<Grant, ServiceError> {
        let now = self.clock.now();
        use attest_token::relying_party::{GateFailure, GatedRequest as Rp, check_gated};
        let admitted = check_gated(
            &self.signer.jwks(),
            &Rp {
                authorization: r.authorization,
                dpop: r.dpop,
                method: r.method,
                url: r.url,
                tls_exporter: r.tls_exporter,
                now,
                window_secs: DPOP_WINDOW_SECS,
                issuer: &self.config.issuer,
                workflow: r.workflow.as_str(),
                resource: r.resource,
            },
        )
        .map_err(|e| match e {
            GateFailure::InvalidToken(m) => refuse(GateCode::InvalidToken, m),
            GateFailure::InvalidProof(DpopError::WrongExporter) => refuse(
                GateCode::TransportBindingFailed,
                DpopError::WrongExporter.to_string(),
            ),
            GateFailure::InvalidProof(p) => refuse(GateCode::InvalidDpopProof, p.to_string()),
            GateFailure::WrongKey => refuse(GateCode::InvalidDpopProof, e.to_string()),
            GateFailure::InsufficientScope => refuse(
                GateCode::InsufficientScope,
                "the token is for another workflow or resource",
            ),
        })?;
        let (handle, jkt, checked) = (
            admitted.subject.as_str(),
            admitted.jkt.as_str(),
            &admitted.proof,
        );
        if !checked
            .nonce
            .as_deref()
            .is_some_and(|n| self.dpop_nonces.is_fresh(n, now))
        {
            return Err(refuse(
                GateCode::UseDpopNonce,
                "a fresh DPoP-Nonce is required",
            ));
        }
        // Single use while it could be accepted at all.
        if !self
            .store
            .spend_jti(
                &format!("{jkt}.{}", checked.jti),
                // Kept a window longer than it can be accepted, so replicas whose clocks
                // differ by up to a window never purge an id another still accepts.
                checked.iat.saturating_add_secs(3 * DPOP_WINDOW_SECS),
            )
            .await?
        {
            return Err(refuse(
                GateCode::InvalidDpopProof,
                "replayed DPoP proof (jti)",
            ));
        }
        let device = self
            .store
            .device(handle)
            .await?
            .ok_or_else(|| refuse(GateCode::InvalidToken, "no such device"))?;
        if device.status == DeviceStatus::Revoked {
            return Err(refuse(GateCode::DeviceRevoked, "this device was revoked"));
        }
        let registration = self.store.registration(handle).await?;
        if r.needs_registration && registration.is_none() {
            return Err(refuse(
                GateCode::NotRegistered,
                "the device is not registered for updates",
            ));
        }
        Ok(Grant {
            handle: handle.to_owned(),
            registration,
            jkt: jkt.to_owned(),
            model: device.model.clone(),
            now,
        })
    }

    /// Registers the device of `grant` for updates of `product`.
    pub async fn register(
        &self,
        grant: &Grant,
        product: &str,
    ) -> Result<Registration, ServiceError> {
        Ok(self
            .store
            .register(&grant.handle, product, grant.now)
            .await?)
    }

    /// The device's rollout bucket in `channel`, 0-99: the first two bytes (big-endian) of
    /// HMAC-SHA-256(K_channel, handle) modulo 100, where K_channel = HMAC-SHA-256(handle secret,
    /// "enigm-attest rollout " + channel). Computed here only: a client's hint never moves it.
    pub fn rollout_bucket(&self, channel: &str, handle: &str) -> u8 {
        use aws_lc_rs::hmac;
        let channel_key = hmac::sign(
            &self.handle_key,
            format!("enigm-attest rollout {channel}").as_bytes(),
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, channel_key.as_ref());
        let tag = hmac::sign(&key, handle.as_bytes());
        let b = tag.as_ref();
        let v = u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]);
        (v % 100) as u8
    }

    /// Whether the configured channel `c` (named `channel`) admits the device of `grant` now:
    /// its model is in the channel's `models` (when set) and its rollout bucket is below the
    /// channel's current `rollout_percent`.
    fn admits(
        &self,
        c: &attest_policy::Channel,
        grant: &Grant,
        channel: &str,
    ) -> Result<(), ServiceError> {
        if !c.models.is_empty() && !grant.model.as_ref().is_some_and(|m| c.models.contains(m)) {
            return Err(refuse(
                GateCode::ModelNotAllowed,
                "this device's model is not admitted to this channel",
            ));
        }
        if self.rollout_bucket(channel, &grant.handle) >= c.rollout_percent {
            // Note: a device can re-enroll with new keys to draw other buckets; docs/protocol.md.
            return Err(refuse(
                GateCode::NotInRollout,
                "the device is outside this channel's rollout",
            ));
        }
        Ok(())
    }

    /// Whether the device of `grant` may read what `channel` offers (its metadata, the
    /// artifacts and builds it lists) under `policy`, now: only a channel the policy configures
    /// (a folder the policy does not name is served to nobody, whatever its name or case), and
    /// only to its members still inside its current rollout and models, so narrowing a rollout
    /// or a model list acts at once on devices that joined before.
    pub fn channel_access(
        &self,
        policy: &attest_policy::Policy,
        grant: &Grant,
        channel: &str,
    ) -> Result<(), ServiceError> {
        let Some(c) = policy.channel(channel) else {
            return Err(ServiceError::NotFound(format!("channel {channel}")));
        };
        let Some(registration) = &grant.registration else {
            return Err(refuse(
                GateCode::NotRegistered,
                "the device is not registered for updates",
            ));
        };
        if !registration.channels.iter().any(|m| m == channel) {
            return Err(refuse(
                GateCode::NotInRollout,
                "the device is not a member of this channel",
            ));
        }
        self.admits(c, grant, channel)
    }

    /// Admits the device of `grant` to `channel` when it is inside the staged rollout (its
    /// eligibility under the channel's rules was decided when its token was issued), under
    /// `policy`: the snapshot the request was gated with.
    pub async fn join_channel(
        &self,
        policy: &attest_policy::Policy,
        grant: &Grant,
        channel: &str,
    ) -> Result<Registration, ServiceError> {
        let c = policy
            .channel(channel)
            .ok_or_else(|| ServiceError::NotFound(format!("channel {channel}")))?;
        self.admits(c, grant, channel)?;
        let Some(product) = grant.registration.as_ref().map(|r| r.product.as_str()) else {
            return Err(refuse(
                GateCode::NotRegistered,
                "the device is not registered for updates",
            ));
        };
        if !self
            .store
            .join_channel(&grant.handle, product, channel, grant.now)
            .await?
        {
            return Err(refuse(
                GateCode::NotRegistered,
                "the device is not registered for updates",
            ));
        }
        self.store
            .registration(&grant.handle)
            .await?
            .ok_or_else(|| {
                refuse(
                    GateCode::NotRegistered,
                    "the device is not registered for updates",
                )
            })
    }

    /// A signed, short-lived statement that the device of `grant` may install `build`: what the
    /// OTA client hands to the update engine (`typ: update-authorization+jwt`).
    /// `channels` are the channels offering `build` that the device may read.
    pub fn authorize_update(
        &self,
        grant: &Grant,
        build: &str,
        channels: &[String],
    ) -> Result<String, ServiceError> {
        let claims = serde_json::json!({
            "iss": self.config.issuer,
            "sub": grant.handle,
            "aud": "enigm-update-engine",
            "iat": grant.now.as_secs(),
            "exp": grant.now.saturating_add_secs(self.config.token_ttl_secs).as_secs(),
            "build": build,
            "product": grant.registration.as_ref().map(|r| r.product.clone()),
            "channels": channels,
            "cnf": {"jkt": grant.jkt},
        });
        self.signer
            .sign(&claims, "update-authorization+jwt")
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }
}
