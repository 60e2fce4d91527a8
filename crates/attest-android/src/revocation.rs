//! Google's attestation status list (`https://android.googleapis.com/attestation/status`).
//!
//! Format: `{"entries": {"<serial>": {"status": "REVOKED"|"SUSPENDED", "expires"?, "reason"?,
//! "comment"?}}}`, where the serial is lowercase hex without leading zeros (Java's
//! `BigInteger.toString(16)`, so a negative serial is `-` and the hex of its magnitude). Both
//! statuses reject: a suspended batch key is as untrustworthy today as a revoked one, and so
//! does a status this code does not know yet (fail closed).
//!
//! Reading is forgiving where Google's list may grow: unknown fields are ignored, and a key that
//! is not a serial is skipped and reported (`skipped`) rather than voiding the whole list.

use std::collections::HashMap;

use serde::Deserialize;

/// Largest status list accepted (Google's list is well under a megabyte).
pub const MAX_STATUS_LIST_BYTES: usize = 16 * 1024 * 1024;

/// The status of a listed certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateStatus {
    /// Permanently revoked.
    Revoked,
    /// Temporarily suspended.
    Suspended,
    /// A status this code does not know: treated as revoked.
    Unrecognised,
}

impl CertificateStatus {
    /// `REVOKED`, `SUSPENDED` or `UNRECOGNISED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Revoked => "REVOKED",
            CertificateStatus::Suspended => "SUSPENDED",
            CertificateStatus::Unrecognised => "UNRECOGNISED",
        }
    }

    fn from_name(name: &str) -> CertificateStatus {
        match name {
            "REVOKED" => CertificateStatus::Revoked,
            "SUSPENDED" => CertificateStatus::Suspended,
            _ => CertificateStatus::Unrecognised,
        }
    }
}

#[derive(Deserialize)]
struct Entry {
    status: String,
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
}

/// Most skipped keys remembered (for the operator's log), however many there were.
const MAX_SKIPPED_REMEMBERED: usize = 16;

/// A loaded status list, keyed by normalised serial.
#[derive(Clone, Debug, Default)]
pub struct StatusList {
    entries: HashMap<String, Listing>,
    skipped: Vec<String>,
    skipped_count: usize,
}

/// Lowercase, without leading zeros, keeping a leading `-`, as the list keys serials. `None`
/// when the key is not a (possibly negative) hexadecimal number.
fn normalise(serial: &str) -> Option<String> {
    let (sign, digits) = match serial.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", serial),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let lower = digits.to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('0');
    Some(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        format!("{sign}{trimmed}")
    })
}

impl StatusList {
    /// Parses a list in Google's JSON format. A document without `entries`, or an entry
    /// without a `status` string, is an error (the caller keeps its last good list); unknown
    /// fields are ignored and keys that are not serials are skipped (see [`StatusList::skipped`]).
    pub fn from_json(bytes: &[u8]) -> Result<StatusList, StatusListError> {
        if bytes.len() > MAX_STATUS_LIST_BYTES {
            return Err(StatusListError::TooLarge);
        }
        let doc: Document = serde_json::from_slice(bytes)?;
        let mut list = StatusList {
            entries: HashMap::with_capacity(doc.entries.len()),
            ..StatusList::default()
        };
        for (serial, e) in doc.entries {
            let Some(key) = normalise(&serial) else {
                list.skipped_count += 1;
                if list.skipped.len() < MAX_SKIPPED_REMEMBERED {
                    list.skipped.push(serial.chars().take(64).collect());
                }
                continue;
            };
            list.entries.insert(
                key,
                Listing {
                    status: CertificateStatus::from_name(&e.status),
                    reason: e.reason,
                },
            );
        }
        Ok(list)
    }

    /// Keys that were skipped because they are not serials (at most 16 remembered, each cut to
    /// 64 characters), and how many there were in all.
    pub fn skipped(&self) -> (&[String], usize) {
        (&self.skipped, self.skipped_count)
    }

    /// How many serials are listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The listing of a serial given as hex (any case, leading zeros allowed, `-` for a
    /// negative serial as [`crate::Certificate::serial_hex`] writes it).
    pub fn lookup(&self, serial_hex: &str) -> Option<&Listing> {
        self.entries.get(&normalise(serial_hex)?)
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
    fn tolerates_growth_and_odd_keys_but_fails_closed_on_statuses() {
        let list = StatusList::from_json(
            br#"{"entries": {
                "01": {"status": "REVOKED", "extra": 1, "new_field": {"x": [1]}},
                "xyz": {"status": "REVOKED"},
                "": {"status": "REVOKED"},
                "-70EDCBAA": {"status": "SUSPENDED"},
                "2a": {"status": "QUARANTINED"}},
              "generated": "2026-12-01"}"#,
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list.lookup("1").unwrap().status, CertificateStatus::Revoked);
        assert_eq!(
            list.lookup("-70edcbaa").unwrap().status,
            CertificateStatus::Suspended
        );
        assert_eq!(list.lookup("70edcbaa"), None, "the sign matters");
        assert_eq!(
            list.lookup("2A").unwrap().status,
            CertificateStatus::Unrecognised
        );
        let (skipped, count) = list.skipped();
        assert_eq!(count, 2);
        assert!(skipped.contains(&"xyz".to_owned()) && skipped.contains(&String::new()));
    }

    #[test]
    fn rejects_what_it_cannot_understand() {
        for bad in [
            &br#"{"entries": {"01": {"status": 3}}}"#[..],
            br#"{"entries": {"01": {"reason": "KEY_COMPROMISE"}}}"#,
            br#"{"entry": {}}"#,
            br#"[]"#,
            b"<html>oops</html>",
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
