//! The shared vocabulary of enigm-attest.
//!
//! This room owns the words every other crate speaks: stable [`ReasonCode`]s, the OTA
//! [`Workflow`]s and the server's notion of time ([`UnixTime`]). It has no I/O, no clock and no
//! randomness of its own: those are passed in by the caller, so every decision is reproducible.

#![forbid(unsafe_code)]

pub mod hex;
mod reason;
mod time;

pub use reason::{ReasonCode, UnknownReasonCode};
pub use time::{CivilDate, UnixTime};

/// The server clock, injected so that tests control time (nothing sleeps to test expiry).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> UnixTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        UnixTime::from_secs(secs)
    }
}

/// A clock that only moves when told to: for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: UnixTime) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(t.as_secs()))
    }
    /// Moves the clock to `t`.
    pub fn set(&self, t: UnixTime) {
        self.0
            .store(t.as_secs(), std::sync::atomic::Ordering::SeqCst);
    }
    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_secs(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// The OTA workflows that eligibility is decided for. Each has its own policy section and its own
/// token scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workflow {
    /// First attestation of a device: pins its device key.
    Enrollment,
    /// Registration with the OTA backend.
    Registration,
    /// Reading protected update metadata.
    ProtectedMetadata,
    /// Downloading a private update artifact.
    PrivateArtifact,
    /// Joining a sensitive rollout channel.
    SensitiveChannel,
    /// Joining a release channel.
    ReleaseChannel,
    /// Being authorized for one update.
    UpdateAuthorization,
}

impl Workflow {
    /// Every workflow, in a stable order.
    pub const ALL: [Workflow; 7] = [
        Workflow::Enrollment,
        Workflow::Registration,
        Workflow::ProtectedMetadata,
        Workflow::PrivateArtifact,
        Workflow::SensitiveChannel,
        Workflow::ReleaseChannel,
        Workflow::UpdateAuthorization,
    ];

    /// The stable wire name (`snake_case`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Workflow::Enrollment => "enrollment",
            Workflow::Registration => "registration",
            Workflow::ProtectedMetadata => "protected_metadata",
            Workflow::PrivateArtifact => "private_artifact",
            Workflow::SensitiveChannel => "sensitive_channel",
            Workflow::ReleaseChannel => "release_channel",
            Workflow::UpdateAuthorization => "update_authorization",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Workflow> {
        Workflow::ALL.into_iter().find(|w| w.as_str() == name)
    }
}

impl std::fmt::Display for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_names_round_trip() {
        for w in Workflow::ALL {
            assert_eq!(Workflow::from_name(w.as_str()), Some(w));
        }
        assert_eq!(Workflow::from_name("Enrollment"), None);
        assert_eq!(Workflow::from_name(""), None);
    }
}
