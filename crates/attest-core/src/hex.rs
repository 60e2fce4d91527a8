//! Lowercase hexadecimal, as boot keys, digests and fingerprints are written everywhere.

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Decodes hex (either case, surrounding whitespace ignored); `None` unless every character
/// is a hex digit and the length is even.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        assert_eq!(encode(&[0, 255, 16]), "00ff10");
        assert_eq!(decode(" 00FF10 "), Some(vec![0, 255, 16]));
        assert_eq!(decode(""), Some(vec![]));
        for bad in ["0", "zz", "+1", "0x00", "é1"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
