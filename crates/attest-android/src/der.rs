//! A small, bounded DER reader that keeps byte positions.
//!
//! We parse certificates and the KeyDescription with this instead of a general ASN.1 library
//! (docs/decisions/0011-own-der-reader.md)
//! because attestation evidence needs two things such libraries make hard: signatures are checked
//! over the exact bytes received (nothing is re-encoded or re-sorted), and the quirks real devices
//! emit are accepted at the one place they occur while everything else stays strict. Lengths must
//! be definite and minimal; tags may use the high-tag-number form (the KeyDescription's
//! `[704]`).
//!
//! Every error names the field being read and the absolute byte offset where it went wrong.

use std::fmt;

/// What went wrong while reading DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DerErrorKind {
    /// The input ended inside a header or value.
    Truncated,
    /// An indefinite length (`0x80`), which DER forbids.
    IndefiniteLength,
    /// A length or tag number in a longer form than needed.
    NonMinimal,
    /// A length or tag number too large to be real.
    TooLarge,
    /// A different tag was expected here.
    UnexpectedTag {
        /// What the schema requires.
        expected: &'static str,
        /// The tag found, as `class/number`.
        found: String,
    },
    /// Bytes left over after a complete value.
    TrailingBytes,
    /// A value whose content is not valid for its type.
    BadValue(&'static str),
    /// A configured size or count limit was exceeded.
    LimitExceeded(&'static str),
    /// The same key or tag appeared twice.
    Duplicate(String),
}

/// A DER decoding error with the field and absolute byte offset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DerError {
    /// Dotted path of the field being read, e.g. `KeyDescription.hardwareEnforced.[704]`.
    pub field: String,
    /// Byte offset from the start of the enclosing object (certificate or extension value
    /// placed within its certificate).
    pub offset: usize,
    /// What went wrong.
    pub kind: DerErrorKind,
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            DerErrorKind::Truncated => "truncated".to_owned(),
            DerErrorKind::IndefiniteLength => "indefinite length".to_owned(),
            DerErrorKind::NonMinimal => "non-minimal encoding".to_owned(),
            DerErrorKind::TooLarge => "length or tag too large".to_owned(),
            DerErrorKind::UnexpectedTag { expected, found } => {
                format!("expected {expected}, found tag {found}")
            }
            DerErrorKind::TrailingBytes => "trailing bytes".to_owned(),
            DerErrorKind::BadValue(why) => format!("bad value: {why}"),
            DerErrorKind::LimitExceeded(what) => format!("limit exceeded: {what}"),
            DerErrorKind::Duplicate(what) => format!("duplicate {what}"),
        };
        write!(f, "{} at byte {}: {}", self.field, self.offset, what)
    }
}

/// Tag class of a DER identifier octet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Universal types (INTEGER, SEQUENCE, ...).
    Universal,
    /// Application-specific.
    Application,
    /// Context-specific (`[n]`).
    Context,
    /// Private.
    Private,
}

/// A decoded identifier: class, constructed bit and tag number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The class.
    pub class: Class,
    /// Whether the encoding is constructed.
    pub constructed: bool,
    /// The tag number.
    pub number: u32,
}

impl Tag {
    /// A universal, primitive tag.
    pub const fn universal(number: u32) -> Tag {
        Tag {
            class: Class::Universal,
            constructed: false,
            number,
        }
    }
    /// A context-specific, constructed tag (`[n] EXPLICIT`).
    pub const fn context(number: u32) -> Tag {
        Tag {
            class: Class::Context,
            constructed: true,
            number,
        }
    }
    /// BOOLEAN.
    pub const BOOLEAN: Tag = Tag::universal(1);
    /// INTEGER.
    pub const INTEGER: Tag = Tag::universal(2);
    /// BIT STRING.
    pub const BIT_STRING: Tag = Tag::universal(3);
    /// OCTET STRING.
    pub const OCTET_STRING: Tag = Tag::universal(4);
    /// NULL.
    pub const NULL: Tag = Tag::universal(5);
    /// OBJECT IDENTIFIER.
    pub const OID: Tag = Tag::universal(6);
    /// ENUMERATED.
    pub const ENUMERATED: Tag = Tag::universal(10);
    /// UTCTime.
    pub const UTC_TIME: Tag = Tag::universal(23);
    /// GeneralizedTime.
    pub const GENERALIZED_TIME: Tag = Tag::universal(24);
    /// SEQUENCE (OF).
    pub const SEQUENCE: Tag = Tag {
        class: Class::Universal,
        constructed: true,
        number: 16,
    };
    /// SET (OF).
    pub const SET: Tag = Tag {
        class: Class::Universal,
        constructed: true,
        number: 17,
    };
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.class {
            Class::Universal => "universal",
            Class::Application => "application",
            Class::Context => "context",
            Class::Private => "private",
        };
        write!(f, "{class}/{}", self.number)
    }
}

/// One decoded tag-length-value.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    /// The identifier.
    pub tag: Tag,
    /// Absolute offset of the identifier octet.
    pub offset: usize,
    /// Absolute offset of the first value octet.
    pub value_offset: usize,
    /// The value octets.
    pub value: &'a [u8],
    /// The whole encoding: identifier, length and value, as received.
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A reader over this value's content, keeping absolute offsets.
    pub fn reader(&self) -> Reader<'a> {
        Reader::with_base(self.value, self.value_offset)
    }

    /// An error at this TLV.
    pub fn error(&self, field: &str, kind: DerErrorKind) -> DerError {
        DerError {
            field: field.to_owned(),
            offset: self.offset,
            kind,
        }
    }

    /// Requires a specific tag.
    pub fn expect(
        self,
        tag: Tag,
        expected: &'static str,
        field: &str,
    ) -> Result<Tlv<'a>, DerError> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(self.error(
                field,
                DerErrorKind::UnexpectedTag {
                    expected,
                    found: self.tag.to_string(),
                },
            ))
        }
    }

    /// The value as a signed integer that fits in `i64` (minimal two's complement).
    pub fn i64(&self, field: &str) -> Result<i64, DerError> {
        let v = integer_bytes(self, field)?;
        if v.len() > 8 {
            return Err(self.error(
                field,
                DerErrorKind::BadValue("integer does not fit in 64 bits"),
            ));
        }
        let negative = v.first().is_some_and(|b| b & 0x80 != 0);
        let mut out: i64 = if negative { -1 } else { 0 };
        for b in v {
            out = (out << 8) | i64::from(*b);
        }
        Ok(out)
    }

    /// The value of a BOOLEAN. DER allows only `0x00` and `0xFF`; real devices send `0x01` for
    /// true (see docs/decisions/0002-accepted-device-quirks.md), so any non-zero octet is true.
    pub fn boolean(&self, field: &str) -> Result<bool, DerError> {
        match self.value {
            [0] => Ok(false),
            [_] => Ok(true),
            _ => Err(self.error(field, DerErrorKind::BadValue("BOOLEAN must be one octet"))),
        }
    }
}

/// Checks the minimal two's complement form and returns the content octets of an INTEGER or
/// ENUMERATED.
pub(crate) fn integer_bytes<'a>(tlv: &Tlv<'a>, field: &str) -> Result<&'a [u8], DerError> {
    match tlv.value {
        [] => Err(tlv.error(field, DerErrorKind::BadValue("empty integer"))),
        [0x00, next, ..] if next & 0x80 == 0 => Err(tlv.error(field, DerErrorKind::NonMinimal)),
        [0xff, next, ..] if next & 0x80 != 0 => Err(tlv.error(field, DerErrorKind::NonMinimal)),
        v => Ok(v),
    }
}

/// A cursor over DER content.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`, whose first byte is at absolute offset 0.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader::with_base(data, 0)
    }

    /// A reader over `data`, whose first byte is at absolute offset `base`.
    pub fn with_base(data: &'a [u8], base: usize) -> Reader<'a> {
        Reader { data, pos: 0, base }
    }

    /// Whether all input was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    fn err(&self, at: usize, field: &str, kind: DerErrorKind) -> DerError {
        DerError {
            field: field.to_owned(),
            offset: self.base.saturating_add(at),
            kind,
        }
    }

    fn byte(&self, at: usize, field: &str) -> Result<u8, DerError> {
        self.data
            .get(at)
            .copied()
            .ok_or_else(|| self.err(at, field, DerErrorKind::Truncated))
    }

    /// The tag of the next element, without consuming it; `None` at the end.
    pub fn peek_tag(&self) -> Option<Tag> {
        let mut probe = self.clone();
        probe.read_any("peek").ok().map(|t| t.tag)
    }

    /// Reads the next element, whatever its tag.
    pub fn read_any(&mut self, field: &str) -> Result<Tlv<'a>, DerError> {
        let start = self.pos;
        let first = self.byte(start, field)?;
        let class = match first >> 6 {
            0 => Class::Universal,
            1 => Class::Application,
            2 => Class::Context,
            _ => Class::Private,
        };
        let constructed = first & 0x20 != 0;
        let mut at = start.saturating_add(1);
        let mut number = u32::from(first & 0x1f);
        if number == 0x1f {
            // High-tag-number form: base-128, most significant group first.
            number = 0;
            let mut groups = 0;
            loop {
                let b = self.byte(at, field)?;
                if groups == 0 && b == 0x80 {
                    return Err(self.err(at, field, DerErrorKind::NonMinimal));
                }
                groups += 1;
                if groups > 4 {
                    return Err(self.err(at, field, DerErrorKind::TooLarge));
                }
                number = (number << 7) | u32::from(b & 0x7f);
                at = at.saturating_add(1);
                if b & 0x80 == 0 {
                    break;
                }
            }
            if number < 0x1f {
                return Err(self.err(start, field, DerErrorKind::NonMinimal));
            }
        }
        let len_at = at;
        let first_len = self.byte(at, field)?;
        at = at.saturating_add(1);
        let len: usize = if first_len < 0x80 {
            usize::from(first_len)
        } else if first_len == 0x80 {
            return Err(self.err(len_at, field, DerErrorKind::IndefiniteLength));
        } else {
            let n = usize::from(first_len & 0x7f);
            if n > 4 {
                return Err(self.err(len_at, field, DerErrorKind::TooLarge));
            }
            let mut len = 0usize;
            for i in 0..n {
                let b = self.byte(at, field)?;
                if i == 0 && b == 0 {
                    return Err(self.err(len_at, field, DerErrorKind::NonMinimal));
                }
                len = (len << 8) | usize::from(b);
                at = at.saturating_add(1);
            }
            if len < 0x80 {
                return Err(self.err(len_at, field, DerErrorKind::NonMinimal));
            }
            len
        };
        let value_start = at;
        let end = value_start
            .checked_add(len)
            .filter(|end| *end <= self.data.len())
            .ok_or_else(|| self.err(len_at, field, DerErrorKind::Truncated))?;
        let (Some(value), Some(raw)) = (self.data.get(value_start..end), self.data.get(start..end))
        else {
            return Err(self.err(len_at, field, DerErrorKind::Truncated));
        };
        self.pos = end;
        Ok(Tlv {
            tag: Tag {
                class,
                constructed,
                number,
            },
            offset: self.base.saturating_add(start),
            value_offset: self.base.saturating_add(value_start),
            value,
            raw,
        })
    }

    /// Reads the next element and requires its tag.
    pub fn read(
        &mut self,
        tag: Tag,
        expected: &'static str,
        field: &str,
    ) -> Result<Tlv<'a>, DerError> {
        self.read_any(field)?.expect(tag, expected, field)
    }

    /// Reads the next element only if it has `tag`.
    pub fn read_optional(&mut self, tag: Tag, field: &str) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read_any(field).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Requires that nothing follows.
    pub fn finish(&self, field: &str) -> Result<(), DerError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.err(self.pos, field, DerErrorKind::TrailingBytes))
        }
    }
}

/// Parses a whole buffer as exactly one element with `tag`.
pub fn parse_single<'a>(
    data: &'a [u8],
    base: usize,
    tag: Tag,
    expected: &'static str,
    field: &str,
) -> Result<Tlv<'a>, DerError> {
    let mut r = Reader::with_base(data, base);
    let tlv = r.read(tag, expected, field)?;
    r.finish(field)?;
    Ok(tlv)
}

/// Encoding helpers used by the test device and by tests; kept here so the reader and the writer
/// agree on one definition of DER.
pub mod write {
    /// Appends a DER length.
    pub fn length(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            let rest = bytes.get(skip..).unwrap_or_default();
            out.push(0x80 | rest.len() as u8);
            out.extend_from_slice(rest);
        }
    }

    /// Appends an identifier for `class_bits` (`0x00`, `0x40`, `0x80`, `0xc0`), constructed flag
    /// and tag number, using the high-tag-number form where needed.
    pub fn identifier(out: &mut Vec<u8>, class_bits: u8, constructed: bool, number: u32) {
        let c = if constructed { 0x20 } else { 0 };
        if number < 0x1f {
            out.push(class_bits | c | number as u8);
            return;
        }
        out.push(class_bits | c | 0x1f);
        let mut groups = Vec::new();
        let mut n = number;
        loop {
            groups.push((n & 0x7f) as u8);
            n >>= 7;
            if n == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().enumerate().rev() {
            out.push(if i == 0 { *g } else { g | 0x80 });
        }
    }

    /// A complete TLV with a single-byte universal identifier.
    pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        length(&mut out, value.len());
        out.extend_from_slice(value);
        out
    }

    /// `[number] EXPLICIT` around an already encoded value.
    pub fn explicit(number: u32, inner: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        identifier(&mut out, 0x80, true, number);
        length(&mut out, inner.len());
        out.extend_from_slice(inner);
        out
    }

    /// A SEQUENCE of already encoded parts.
    pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    /// A SET (OF) of already encoded parts, in the order given (not sorted).
    pub fn set(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x31, &parts.concat())
    }

    /// An INTEGER in minimal two's complement.
    pub fn integer(v: i64) -> Vec<u8> {
        let bytes = v.to_be_bytes();
        let mut start = 0;
        while start < 7 {
            let (Some(b), Some(next)) = (bytes.get(start), bytes.get(start + 1)) else {
                break;
            };
            let redundant = (*b == 0 && next & 0x80 == 0) || (*b == 0xff && next & 0x80 != 0);
            if !redundant {
                break;
            }
            start += 1;
        }
        tlv(0x02, bytes.get(start..).unwrap_or_default())
    }

    /// An INTEGER from unsigned big-endian bytes (e.g. a serial number).
    pub fn unsigned_integer(be: &[u8]) -> Vec<u8> {
        let trimmed: Vec<u8> = be.iter().copied().skip_while(|b| *b == 0).collect();
        let mut v = Vec::with_capacity(trimmed.len() + 1);
        if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
            v.push(0);
        }
        v.extend_from_slice(&trimmed);
        tlv(0x02, &v)
    }

    /// An ENUMERATED.
    pub fn enumerated(v: i64) -> Vec<u8> {
        let mut out = integer(v);
        if let Some(first) = out.first_mut() {
            *first = 0x0a;
        }
        out
    }

    /// An OCTET STRING.
    pub fn octet_string(v: &[u8]) -> Vec<u8> {
        tlv(0x04, v)
    }

    /// A BOOLEAN in DER form.
    pub fn boolean(v: bool) -> Vec<u8> {
        tlv(0x01, &[if v { 0xff } else { 0x00 }])
    }

    /// NULL.
    pub fn null() -> Vec<u8> {
        vec![0x05, 0x00]
    }

    /// An OBJECT IDENTIFIER from its content octets.
    pub fn oid(content: &[u8]) -> Vec<u8> {
        tlv(0x06, content)
    }

    /// A BIT STRING with no unused bits.
    pub fn bit_string(v: &[u8]) -> Vec<u8> {
        let mut content = vec![0u8];
        content.extend_from_slice(v);
        tlv(0x03, &content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_high_tag_numbers_and_long_lengths() {
        let inner = write::integer(130_000);
        let tagged = write::explicit(705, &inner);
        let mut r = Reader::with_base(&tagged, 100);
        let t = r.read_any("x").unwrap();
        assert_eq!(t.tag, Tag::context(705));
        assert_eq!(t.offset, 100);
        let v = t.reader().read(Tag::INTEGER, "INTEGER", "x").unwrap();
        assert_eq!(v.i64("x").unwrap(), 130_000);

        let long = write::octet_string(&[7u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let t = parse_single(&long, 0, Tag::OCTET_STRING, "OCTET STRING", "x").unwrap();
        assert_eq!(t.value.len(), 300);
    }

    #[test]
    fn integers_round_trip() {
        for v in [0, 1, -1, 127, 128, -128, -129, 255, 256, i64::MAX, i64::MIN] {
            let enc = write::integer(v);
            let t = parse_single(&enc, 0, Tag::INTEGER, "INTEGER", "x").unwrap();
            assert_eq!(t.i64("x").unwrap(), v);
        }
    }

    fn kind(data: &[u8]) -> DerErrorKind {
        Reader::new(data).read_any("f").unwrap_err().kind
    }

    #[test]
    fn rejects_malformed_headers_with_offsets() {
        assert_eq!(kind(&[0x30]), DerErrorKind::Truncated);
        assert_eq!(
            kind(&[0x30, 0x80, 0x00, 0x00]),
            DerErrorKind::IndefiniteLength
        );
        assert_eq!(
            kind(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]),
            DerErrorKind::NonMinimal
        );
        assert_eq!(kind(&[0x04, 0x82, 0x00, 0x80]), DerErrorKind::NonMinimal);
        assert_eq!(kind(&[0x04, 0x85, 1, 0, 0, 0, 0]), DerErrorKind::TooLarge);
        assert_eq!(kind(&[0x04, 0x03, 1, 2]), DerErrorKind::Truncated);
        assert_eq!(kind(&[0xbf, 0x80, 0x01, 0x00]), DerErrorKind::NonMinimal);
        assert_eq!(kind(&[0xbf, 0x1e, 0x00]), DerErrorKind::NonMinimal);
        assert_eq!(
            kind(&[0xbf, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00]),
            DerErrorKind::TooLarge
        );

        let e = parse_single(&[0x05, 0x00, 0x00], 40, Tag::NULL, "NULL", "f").unwrap_err();
        assert_eq!((e.kind, e.offset), (DerErrorKind::TrailingBytes, 42));
        let e = Reader::with_base(&[0x04, 0x05, 1], 10)
            .read_any("a.b")
            .unwrap_err();
        assert_eq!(e.to_string(), "a.b at byte 11: truncated");
    }

    #[test]
    fn rejects_non_minimal_integers() {
        for bad in [
            &[0x02, 0x02, 0x00, 0x01][..],
            &[0x02, 0x02, 0xff, 0x80],
            &[0x02, 0x00],
        ] {
            let t = parse_single(bad, 0, Tag::INTEGER, "INTEGER", "x").unwrap();
            assert!(t.i64("x").is_err());
        }
        let big = write::unsigned_integer(&[0xff; 9]);
        let t = parse_single(&big, 0, Tag::INTEGER, "INTEGER", "x").unwrap();
        assert!(t.i64("x").is_err());
    }

    #[test]
    fn booleans_accept_ber_true() {
        for (bytes, want) in [
            ([0x01, 0x01, 0xff], true),
            ([0x01, 0x01, 0x01], true),
            ([0x01, 0x01, 0x00], false),
        ] {
            let t = parse_single(&bytes, 0, Tag::BOOLEAN, "BOOLEAN", "x").unwrap();
            assert_eq!(t.boolean("x").unwrap(), want);
        }
        let t = parse_single(&[0x01, 0x02, 0, 0], 0, Tag::BOOLEAN, "BOOLEAN", "x").unwrap();
        assert!(t.boolean("x").is_err());
    }
}
