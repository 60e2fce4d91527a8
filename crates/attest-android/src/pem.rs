//! PEM certificate chains (`-----BEGIN CERTIFICATE-----` blocks, leaf first).

use base64::Engine;

/// Most certificate blocks read from one PEM text.
pub const MAX_PEM_CERTIFICATES: usize = 32;

/// Errors reading PEM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No certificate block at all.
    #[error("no CERTIFICATE block found")]
    Empty,
    /// A BEGIN without its END.
    #[error("certificate block {0} has no END line")]
    Unterminated(usize),
    /// A block whose body is not base64.
    #[error("certificate block {0} is not valid base64")]
    BadBase64(usize),
    /// More blocks than [`MAX_PEM_CERTIFICATES`].
    #[error("more than {MAX_PEM_CERTIFICATES} certificate blocks")]
    TooMany,
}

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// Decodes every CERTIFICATE block, in order. Text outside blocks is ignored.
pub fn parse_certificates(text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let index = out.len();
        if index >= MAX_PEM_CERTIFICATES {
            return Err(PemError::TooMany);
        }
        let body_and_more = rest.get(start + BEGIN.len()..).unwrap_or_default();
        let end = body_and_more
            .find(END)
            .ok_or(PemError::Unterminated(index))?;
        let body: String = body_and_more
            .get(..end)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| PemError::BadBase64(index))?;
        out.push(der);
        rest = body_and_more.get(end + END.len()..).unwrap_or_default();
    }
    if out.is_empty() {
        return Err(PemError::Empty);
    }
    Ok(out)
}

/// Encodes DER certificates as PEM blocks.
pub fn encode_certificates(ders: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for der in ders {
        s.push_str(BEGIN);
        s.push('\n');
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(line).unwrap_or_default());
            s.push('\n');
        }
        s.push_str(END);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let ders = vec![vec![1u8, 2, 3], vec![0u8; 100]];
        let text = format!("junk\n{}trailer", encode_certificates(&ders));
        assert_eq!(parse_certificates(&text).unwrap(), ders);
        assert_eq!(parse_certificates("nothing"), Err(PemError::Empty));
        assert_eq!(
            parse_certificates(&format!("{BEGIN}\nAAAA")),
            Err(PemError::Unterminated(0))
        );
        assert_eq!(
            parse_certificates(&format!("{BEGIN}\n!!\n{END}")),
            Err(PemError::BadBase64(0))
        );
        let many = encode_certificates(&vec![vec![1u8]; MAX_PEM_CERTIFICATES + 1]);
        assert_eq!(parse_certificates(&many), Err(PemError::TooMany));
    }
}
