//! Google's attestation status list (`https://android.googleapis.com/attestation/status`).
//!
//! Format: `{"entries": {"<serial>": {"status": "REVOKED"|"SUSPENDED", "expires"?, "reason"?,
//! "comment"?}}}`, where the serial is lowercase hex without leading zeros. Both statuses reject:
//! a suspended batch key is as untrustworthy today as a revoked one.

use std::collections::HashMap;

use serde::Deserialize;

/// Largest status list accepted (Google's list is well under a megabyte).
pub const MAX_STATUS_LIST_BYTES: usize = 16 * 1024 * 1024;

/// The status of a listed certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// Permanently revoked.
    Revoked,
    /// Temporarily suspended.
    Suspended,
}

impl CertificateStatus {
    /// `REVOKED` or `SUSPENDED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Revoked => "REVOKED",
            CertificateStatus::Suspended => "SUSPENDED",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    status: CertificateStatus,
    #[serde(default)]
    #[allow(dead_code)]
    expires: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    entries: HashMap<String, Entry>,
}

/// A listed certificate: its status and Google's stated reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// REVOKED or SUSPENDED.
    pub status: CertificateStatus,
    /// `KEY_COMPROMISE`, `SOFTWARE_FLAW`, ... when given.
    pub reason: Option<String>,
}

/// Errors loading a status list.
#[derive(Debug, thiserror::Error)]
pub enum StatusListError {
    /// Larger than [`MAX_STATUS_LIST_BYTES`].
    #[error("status list is larger than {MAX_STATUS_LIST_BYTES} bytes")]
    TooLarge,
    /// Not the expected JSON shape (unknown status values and unknown fields included).
    #[error("status list is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A serial key that is not hex.
    #[error("status list key {0:?} is not a hexadecimal serial number")]
    BadSerial(String),
}

/// A loaded status list, keyed by normalised serial.
#[derive(Clone, Debug, Default)]
pub struct StatusList {
    entries: HashMap<String, Listing>,
}

/// Lowercase, without leading zeros, as the list keys serials.
fn normalise(serial: &str) -> String {
    let lower = serial.to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

impl StatusList {
    /// Parses a list in Google's JSON format. Unknown statuses or fields are errors: an
    /// unreadable list must fail closed, not silently trust everything.
    pub fn from_json(bytes: &[u8]) -> Result<StatusList, StatusListError> {
        if bytes.len() > MAX_STATUS_LIST_BYTES {
            return Err(StatusListError::TooLarge);
        }
        let doc: Document = serde_json::from_slice(bytes)?;
        let mut entries = HashMap::with_capacity(doc.entries.len());
        for (serial, e) in doc.entries {
            if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(StatusListError::BadSerial(serial));
            }
            entries.insert(
                normalise(&serial),
                Listing {
                    status: e.status,
                    reason: e.reason,
                },
            );
        }
        Ok(StatusList { entries })
    }

    /// How many serials are listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The listing of a serial given as hex (any case, leading zeros allowed).
    pub fn lookup(&self, serial_hex: &str) -> Option<&Listing> {
        self.entries.get(&normalise(serial_hex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_google_format_and_normalises_serials() {
        let list = StatusList::from_json(
            br#"{"entries": {
                "2c8cdddfd5e03bfc": {"status": "REVOKED", "expires": "2030-01-01", "reason": "KEY_COMPROMISE"},
                "00C8966FCB2FBE0D": {"status": "SUSPENDED", "comment": "testing"}}}"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(
            list.lookup("2C8CDDDFD5E03BFC").unwrap().status,
            CertificateStatus::Revoked
        );
        assert_eq!(
            list.lookup("c8966fcb2fbe0d").unwrap().status,
            CertificateStatus::Suspended
        );
        assert_eq!(list.lookup("1"), None);
    }

    #[test]
    fn rejects_what_it_cannot_understand() {
        for bad in [
            &br#"{"entries": {"01": {"status": "GOOD"}}}"#[..],
            br#"{"entries": {"01": {"status": "REVOKED", "extra": 1}}}"#,
            br#"{"entries": {"xyz": {"status": "REVOKED"}}}"#,
            br#"{"entry": {}}"#,
            br#"[]"#,
            b"",
        ] {
            assert!(
                StatusList::from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
