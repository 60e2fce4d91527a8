//! X.509 certificates, parsed just enough to verify an attestation chain.
//!
//! We keep the received bytes and remember where each field lies; signatures are verified over
//! the original `tbsCertificate` octets. Extension values are not interpreted here (a Huawei leaf
//! carries a CRL Distribution Points value of one `0x00` byte, which strict parsers refuse);
//! only the extensions attestation needs are parsed, by their own modules.

use std::ops::Range;

use attest_core::{CivilDate, UnixTime};

use crate::der::{self, DerError, DerErrorKind, Tag, Tlv};

/// Object identifier content octets we look for.
pub(crate) mod oid {
    /// 1.3.6.1.4.1.11129.2.1.17, the Android KeyDescription (key attestation) extension.
    pub const KEY_DESCRIPTION: &[u8] =
        &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x01, 0x11];
    /// 1.3.6.1.4.1.11129.2.1.30, the remote key provisioning info extension.
    pub const PROVISIONING_INFO: &[u8] =
        &[0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x01, 0x1e];
    /// 1.2.840.113549.1.1.1 rsaEncryption.
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.2.840.113549.1.1.11 sha256WithRSAEncryption.
    pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    /// 1.2.840.113549.1.1.12 sha384WithRSAEncryption.
    pub const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    /// 1.2.840.113549.1.1.13 sha512WithRSAEncryption.
    pub const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    /// 1.2.840.10045.2.1 id-ecPublicKey.
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.4.3.2 ecdsa-with-SHA256.
    pub const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    /// 1.2.840.10045.4.3.3 ecdsa-with-SHA384.
    pub const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    /// 1.2.840.10045.4.3.4 ecdsa-with-SHA512.
    pub const ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
    /// 1.2.840.10045.3.1.7 prime256v1 (P-256).
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// 1.3.132.0.34 secp384r1 (P-384).
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// 1.3.132.0.35 secp521r1 (P-521).
    pub const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    /// 2.5.29.15 keyUsage.
    pub const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
    /// 2.5.29.19 basicConstraints.
    pub const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
    /// 2.5.4.3 commonName.
    pub const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    /// 2.5.4.5 serialNumber.
    pub const SERIAL_NUMBER: &[u8] = &[0x55, 0x04, 0x05];
    /// 2.5.4.10 organizationName.
    pub const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
}

/// How a certificate is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSA PKCS#1 v1.5 with SHA-512.
    RsaPkcs1Sha512,
    /// ECDSA with SHA-256.
    EcdsaSha256,
    /// ECDSA with SHA-384.
    EcdsaSha384,
    /// ECDSA with SHA-512.
    EcdsaSha512,
    /// Anything else: parses, but never verifies.
    Unsupported,
}

/// Elliptic curves we can verify with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
}

/// The algorithm of a subject public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA (`rsaEncryption`).
    Rsa,
    /// EC on a named curve.
    Ec(Curve),
    /// Something we do not verify with (e.g. ML-DSA leaf keys, other curves).
    Other,
}

/// One extension, with positions into the certificate.
#[derive(Clone, Debug)]
pub struct Extension {
    oid: Range<usize>,
    critical: bool,
    value: Range<usize>,
}

/// A parsed certificate that owns its bytes.
#[derive(Clone, Debug)]
pub struct Certificate {
    der: Vec<u8>,
    tbs: Range<usize>,
    signature_algorithm: SignatureAlgorithm,
    signature: Range<usize>,
    serial: Range<usize>,
    issuer: Range<usize>,
    subject: Range<usize>,
    not_before: UnixTime,
    not_after: UnixTime,
    spki: Range<usize>,
    key_algorithm: KeyAlgorithm,
    public_key: Range<usize>,
    extensions: Vec<Extension>,
}

/// Upper bound on extensions in one certificate.
const MAX_EXTENSIONS: usize = 32;

fn range(tlv: &Tlv<'_>, whole: bool) -> Range<usize> {
    if whole {
        tlv.offset..tlv.offset.saturating_add(tlv.raw.len())
    } else {
        tlv.value_offset..tlv.value_offset.saturating_add(tlv.value.len())
    }
}

impl Certificate {
    /// Parses one DER certificate. Offsets in errors count from its first byte.
    pub fn from_der(der: Vec<u8>) -> Result<Certificate, DerError> {
        let parsed = parse(&der)?;
        Ok(Certificate { der, ..parsed })
    }

    fn slice(&self, r: &Range<usize>) -> &[u8] {
        // Ranges are produced by the parser over these same bytes.
        self.der.get(r.clone()).unwrap_or_default()
    }

    /// The certificate as received.
    pub fn der(&self) -> &[u8] {
        &self.der
    }
    /// The `tbsCertificate` octets as received: what the issuer signed.
    pub fn tbs(&self) -> &[u8] {
        self.slice(&self.tbs)
    }
    /// The outer signature algorithm.
    pub fn signature_algorithm(&self) -> SignatureAlgorithm {
        self.signature_algorithm
    }
    /// The signature octets.
    pub fn signature(&self) -> &[u8] {
        self.slice(&self.signature)
    }
    /// The serial number's content octets (big-endian two's complement).
    pub fn serial(&self) -> &[u8] {
        self.slice(&self.serial)
    }
    /// The serial as Google's status list keys it: Java's `BigInteger.toString(16)`, lowercase
    /// hex without leading zeros, and for a negative serial (RFC 5280 forbids them, devices emit
    /// them) `-` followed by the hex of its magnitude.
    pub fn serial_hex(&self) -> String {
        let bytes = self.serial();
        let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
        let magnitude = if negative {
            // Two's complement: invert and add one.
            let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
            for b in m.iter_mut().rev() {
                let (v, carry) = b.overflowing_add(1);
                *b = v;
                if !carry {
                    break;
                }
            }
            m
        } else {
            bytes.to_vec()
        };
        let hex = crate::hex(&magnitude);
        let trimmed = hex.trim_start_matches('0');
        match (trimmed.is_empty(), negative) {
            (true, _) => "0".to_owned(),
            (false, true) => format!("-{trimmed}"),
            (false, false) => trimmed.to_owned(),
        }
    }
    /// The issuer Name, encoded as received.
    pub fn issuer(&self) -> &[u8] {
        self.slice(&self.issuer)
    }
    /// The subject Name, encoded as received.
    pub fn subject(&self) -> &[u8] {
        self.slice(&self.subject)
    }
    /// Start of the validity period.
    pub fn not_before(&self) -> UnixTime {
        self.not_before
    }
    /// End of the validity period.
    pub fn not_after(&self) -> UnixTime {
        self.not_after
    }
    /// The SubjectPublicKeyInfo as received.
    pub fn spki(&self) -> &[u8] {
        self.slice(&self.spki)
    }
    /// The subject key's algorithm.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.key_algorithm
    }
    /// The subject public key octets (RSAPublicKey DER, or an EC point).
    pub fn public_key(&self) -> &[u8] {
        self.slice(&self.public_key)
    }
    /// The value (inside the OCTET STRING) of the extension with `oid`, and its absolute offset.
    pub fn extension(&self, oid: &[u8]) -> Option<(&[u8], usize)> {
        self.extensions
            .iter()
            .find(|e| self.slice(&e.oid) == oid)
            .map(|e| (self.slice(&e.value), e.value.start))
    }
    /// Checks that `issuer`'s key signed this certificate (a signature check only, no other
    /// rule).
    pub fn verify_signed_by(&self, issuer: &Certificate) -> Result<(), crate::sig::SignatureError> {
        crate::sig::verify(
            issuer.key_algorithm(),
            issuer.public_key(),
            self.signature_algorithm(),
            self.tbs(),
            self.signature(),
        )
    }
    /// Whether the extension with `oid` is marked critical (`None` when absent).
    pub fn extension_critical(&self, oid: &[u8]) -> Option<bool> {
        self.extensions
            .iter()
            .find(|e| self.slice(&e.oid) == oid)
            .map(|e| e.critical)
    }
    /// Whether the certificate carries the extension with `oid`.
    pub fn has_extension(&self, oid: &[u8]) -> bool {
        self.extension(oid).is_some()
    }
    /// The OIDs (content octets) of extensions marked critical, in the order received.
    pub fn critical_extensions(&self) -> impl Iterator<Item = &[u8]> {
        self.extensions
            .iter()
            .filter(|e| e.critical)
            .map(|e| self.slice(&e.oid))
    }
    /// The attributes of the subject Name as (type OID content octets, value content octets),
    /// in the order received. A Name that does not have the RFC 5280 shape yields none: nothing
    /// read from it can then vouch for anything.
    pub fn subject_attributes(&self) -> Vec<(&[u8], &[u8])> {
        name_attributes(self.subject()).unwrap_or_default()
    }
    /// The value of the first subject attribute of type `oid`.
    pub fn subject_attribute(&self, oid: &[u8]) -> Option<&[u8]> {
        self.subject_attributes()
            .into_iter()
            .find(|(t, _)| *t == oid)
            .map(|(_, v)| v)
    }
}

/// Walks a Name: SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }. The value is the content
/// of whatever string type was used; names are compared by their bytes (docs/decisions/0013).
fn name_attributes(name: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let tlv = der::parse_single(name, 0, Tag::SEQUENCE, "Name", "Name").ok()?;
    let mut out = Vec::new();
    let mut rdns = tlv.reader();
    while !rdns.is_empty() {
        let rdn = rdns
            .read(Tag::SET, "RelativeDistinguishedName", "Name")
            .ok()?;
        let mut atvs = rdn.reader();
        while !atvs.is_empty() {
            let atv = atvs
                .read(Tag::SEQUENCE, "AttributeTypeAndValue", "Name")
                .ok()?;
            let mut r = atv.reader();
            let kind = r.read(Tag::OID, "OBJECT IDENTIFIER", "Name").ok()?;
            let value = r.read_any("Name").ok()?;
            r.finish("Name").ok()?;
            out.push((kind.value, value.value));
        }
    }
    Some(out)
}

/// Facts about an RSA public key that bound the work of verifying with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RsaKeyFacts {
    /// Modulus size in bits.
    pub modulus_bits: usize,
    /// The public exponent, when it fits in 64 bits.
    pub exponent: Option<u64>,
}

/// Reads an RSAPublicKey (SEQUENCE { modulus INTEGER, publicExponent INTEGER }).
pub fn rsa_key_facts(public_key: &[u8]) -> Option<RsaKeyFacts> {
    let tlv =
        der::parse_single(public_key, 0, Tag::SEQUENCE, "RSAPublicKey", "RSAPublicKey").ok()?;
    let mut r = tlv.reader();
    let n = r
        .read(Tag::INTEGER, "INTEGER", "RSAPublicKey.modulus")
        .ok()?;
    let e = r
        .read(Tag::INTEGER, "INTEGER", "RSAPublicKey.publicExponent")
        .ok()?;
    r.finish("RSAPublicKey").ok()?;
    let magnitude = |v: &[u8]| -> Vec<u8> { v.iter().copied().skip_while(|b| *b == 0).collect() };
    let n = magnitude(n.value);
    let modulus_bits = match n.first() {
        Some(top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    };
    let e = magnitude(e.value);
    let exponent = (e.len() <= 8).then(|| e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
    Some(RsaKeyFacts {
        modulus_bits,
        exponent,
    })
}

fn parse(der: &[u8]) -> Result<Certificate, DerError> {
    let cert = der::parse_single(der, 0, Tag::SEQUENCE, "SEQUENCE", "Certificate")?;
    let mut c = cert.reader();
    let tbs = c.read(Tag::SEQUENCE, "SEQUENCE", "Certificate.tbsCertificate")?;
    let outer_alg = c.read(
        Tag::SEQUENCE,
        "AlgorithmIdentifier",
        "Certificate.signatureAlgorithm",
    )?;
    let sig = c.read(Tag::BIT_STRING, "BIT STRING", "Certificate.signatureValue")?;
    c.finish("Certificate")?;
    let signature_algorithm = signature_algorithm(&outer_alg, "Certificate.signatureAlgorithm")?;
    let signature = bit_string(&sig, "Certificate.signatureValue")?;

    let mut t = tbs.reader();
    const F: &str = "tbsCertificate";
    let mut version = 0;
    if let Some(v) = t.read_optional(Tag::context(0), "tbsCertificate.version")? {
        let inner = der::parse_single(
            v.value,
            v.value_offset,
            Tag::INTEGER,
            "INTEGER",
            "tbsCertificate.version",
        )?;
        version = inner.i64("tbsCertificate.version")?;
        if !(0..=2).contains(&version) {
            return Err(inner.error(
                "tbsCertificate.version",
                DerErrorKind::BadValue("unknown version"),
            ));
        }
    }
    let serial = t.read(Tag::INTEGER, "INTEGER", "tbsCertificate.serialNumber")?;
    der::integer_bytes(&serial, "tbsCertificate.serialNumber")?;
    if serial.value.len() > 32 {
        return Err(serial.error(
            "tbsCertificate.serialNumber",
            DerErrorKind::LimitExceeded("serial longer than 32 octets"),
        ));
    }
    let inner_alg = t.read(
        Tag::SEQUENCE,
        "AlgorithmIdentifier",
        "tbsCertificate.signature",
    )?;
    if inner_alg.raw != outer_alg.raw {
        // RFC 5280 4.1.1.2: the two must be identical; a mismatch only comes from tampering.
        return Err(inner_alg.error(
            "tbsCertificate.signature",
            DerErrorKind::BadValue("differs from Certificate.signatureAlgorithm"),
        ));
    }
    let issuer = t.read(Tag::SEQUENCE, "Name", "tbsCertificate.issuer")?;
    let validity = t.read(Tag::SEQUENCE, "SEQUENCE", "tbsCertificate.validity")?;
    let mut v = validity.reader();
    let not_before = time(
        &v.read_any("tbsCertificate.validity.notBefore")?,
        "tbsCertificate.validity.notBefore",
    )?;
    let not_after = time(
        &v.read_any("tbsCertificate.validity.notAfter")?,
        "tbsCertificate.validity.notAfter",
    )?;
    v.finish("tbsCertificate.validity")?;
    let subject = t.read(Tag::SEQUENCE, "Name", "tbsCertificate.subject")?;
    let spki = t.read(
        Tag::SEQUENCE,
        "SubjectPublicKeyInfo",
        "tbsCertificate.subjectPublicKeyInfo",
    )?;
    let (key_algorithm, public_key) = subject_public_key(&spki)?;
    let issuer_uid = Tag {
        constructed: false,
        ..Tag::context(1)
    };
    let subject_uid = Tag {
        constructed: false,
        ..Tag::context(2)
    };
    t.read_optional(issuer_uid, "tbsCertificate.issuerUniqueID")?;
    t.read_optional(subject_uid, "tbsCertificate.subjectUniqueID")?;
    let mut extensions = Vec::new();
    if let Some(exts) = t.read_optional(Tag::context(3), "tbsCertificate.extensions")? {
        if version != 2 {
            return Err(exts.error(
                "tbsCertificate.extensions",
                DerErrorKind::BadValue("extensions in a certificate before v3"),
            ));
        }
        let list = der::parse_single(
            exts.value,
            exts.value_offset,
            Tag::SEQUENCE,
            "SEQUENCE",
            "tbsCertificate.extensions",
        )?;
        let mut r = list.reader();
        while !r.is_empty() {
            if extensions.len() >= MAX_EXTENSIONS {
                return Err(DerError {
                    field: "tbsCertificate.extensions".to_owned(),
                    offset: r.offset(),
                    kind: DerErrorKind::LimitExceeded("more than 32 extensions"),
                });
            }
            let ext = r.read(
                Tag::SEQUENCE,
                "Extension",
                "tbsCertificate.extensions.Extension",
            )?;
            let mut e = ext.reader();
            let oid = e.read(Tag::OID, "OBJECT IDENTIFIER", "Extension.extnID")?;
            let critical = match e.read_optional(Tag::BOOLEAN, "Extension.critical")? {
                Some(b) => b.boolean("Extension.critical")?,
                None => false,
            };
            let value = e.read(Tag::OCTET_STRING, "OCTET STRING", "Extension.extnValue")?;
            e.finish("Extension")?;
            let seen = extensions
                .iter()
                .any(|x: &Extension| der.get(x.oid.clone()) == Some(oid.value));
            if seen {
                return Err(oid.error(
                    "tbsCertificate.extensions",
                    DerErrorKind::Duplicate(format!("extension {}", oid_string(oid.value))),
                ));
            }
            extensions.push(Extension {
                oid: range(&oid, false),
                critical,
                value: range(&value, false),
            });
        }
    }
    t.finish(F)?;
    Ok(Certificate {
        der: Vec::new(),
        tbs: range(&tbs, true),
        signature_algorithm,
        signature,
        serial: range(&serial, false),
        issuer: range(&issuer, true),
        subject: range(&subject, true),
        not_before,
        not_after,
        spki: range(&spki, true),
        key_algorithm,
        public_key,
        extensions,
    })
}

fn bit_string(tlv: &Tlv<'_>, field: &str) -> Result<Range<usize>, DerError> {
    match tlv.value.first() {
        Some(0) => Ok(
            tlv.value_offset.saturating_add(1)..tlv.value_offset.saturating_add(tlv.value.len())
        ),
        _ => Err(tlv.error(field, DerErrorKind::BadValue("BIT STRING with unused bits"))),
    }
}

fn signature_algorithm(alg: &Tlv<'_>, field: &str) -> Result<SignatureAlgorithm, DerError> {
    let mut r = alg.reader();
    let oid = r.read(Tag::OID, "OBJECT IDENTIFIER", field)?;
    let params = r.read_optional(Tag::NULL, field)?;
    if let Some(p) = &params {
        if !p.value.is_empty() {
            return Err(p.error(field, DerErrorKind::BadValue("NULL with content")));
        }
    }
    r.finish(field)?;
    // RSA identifiers carry NULL parameters (RFC 4055); some encoders omit them, which is
    // harmless. ECDSA identifiers must omit them (RFC 5758), but a Pixel 4 StrongBox leaf sends
    // an explicit NULL: accepted, see docs/decisions/0002-accepted-device-quirks.md.
    Ok(match oid.value {
        oid::SHA256_WITH_RSA => SignatureAlgorithm::RsaPkcs1Sha256,
        oid::SHA384_WITH_RSA => SignatureAlgorithm::RsaPkcs1Sha384,
        oid::SHA512_WITH_RSA => SignatureAlgorithm::RsaPkcs1Sha512,
        oid::ECDSA_SHA256 => SignatureAlgorithm::EcdsaSha256,
        oid::ECDSA_SHA384 => SignatureAlgorithm::EcdsaSha384,
        oid::ECDSA_SHA512 => SignatureAlgorithm::EcdsaSha512,
        _ => SignatureAlgorithm::Unsupported,
    })
}

fn subject_public_key(spki: &Tlv<'_>) -> Result<(KeyAlgorithm, Range<usize>), DerError> {
    const F: &str = "tbsCertificate.subjectPublicKeyInfo";
    let mut r = spki.reader();
    let alg = r.read(Tag::SEQUENCE, "AlgorithmIdentifier", F)?;
    let key = r.read(Tag::BIT_STRING, "BIT STRING", F)?;
    r.finish(F)?;
    let mut a = alg.reader();
    let oid = a.read(Tag::OID, "OBJECT IDENTIFIER", F)?;
    let algorithm = match oid.value {
        oid::RSA_ENCRYPTION => KeyAlgorithm::Rsa,
        oid::EC_PUBLIC_KEY => match a.read_optional(Tag::OID, F)? {
            Some(curve) => match curve.value {
                oid::P256 => KeyAlgorithm::Ec(Curve::P256),
                oid::P384 => KeyAlgorithm::Ec(Curve::P384),
                oid::P521 => KeyAlgorithm::Ec(Curve::P521),
                _ => KeyAlgorithm::Other,
            },
            None => KeyAlgorithm::Other,
        },
        _ => KeyAlgorithm::Other,
    };
    Ok((algorithm, bit_string(&key, F)?))
}

/// Splits a standalone SubjectPublicKeyInfo into its algorithm and key octets (RSAPublicKey DER
/// for RSA, the uncompressed point for EC).
pub fn split_spki(spki: &[u8]) -> Option<(KeyAlgorithm, Vec<u8>)> {
    let tlv = der::parse_single(
        spki,
        0,
        Tag::SEQUENCE,
        "SubjectPublicKeyInfo",
        "SubjectPublicKeyInfo",
    )
    .ok()?;
    let (algorithm, key) = subject_public_key(&tlv).ok()?;
    Some((algorithm, spki.get(key)?.to_vec()))
}

fn time(tlv: &Tlv<'_>, field: &str) -> Result<UnixTime, DerError> {
    let digits = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let bad = || {
        tlv.error(
            field,
            DerErrorKind::BadValue("not a valid UTCTime/GeneralizedTime"),
        )
    };
    let (year, rest) = match (tlv.tag, tlv.value.len()) {
        (t, 13) if t == Tag::UTC_TIME => {
            let yy = digits(tlv.value.get(..2).ok_or_else(bad)?).ok_or_else(bad)?;
            // RFC 5280 4.1.2.5.1: YY >= 50 is 19YY, otherwise 20YY.
            let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
            (year, tlv.value.get(2..).ok_or_else(bad)?)
        }
        (t, 15) if t == Tag::GENERALIZED_TIME => {
            let year = digits(tlv.value.get(..4).ok_or_else(bad)?).ok_or_else(bad)?;
            (year, tlv.value.get(4..).ok_or_else(bad)?)
        }
        (t, _) if t == Tag::UTC_TIME || t == Tag::GENERALIZED_TIME => return Err(bad()),
        _ => {
            return Err(tlv.error(
                field,
                DerErrorKind::UnexpectedTag {
                    expected: "UTCTime or GeneralizedTime",
                    found: tlv.tag.to_string(),
                },
            ));
        }
    };
    let part = |i: usize| rest.get(i..i + 2).and_then(digits).ok_or_else(bad);
    if rest.last() != Some(&b'Z') {
        return Err(bad());
    }
    UnixTime::from_civil(CivilDate {
        year: i64::from(year),
        month: part(0)?,
        day: part(2)?,
        hour: part(4)?,
        minute: part(6)?,
        second: part(8)?,
    })
    .ok_or_else(bad)
}

/// Dotted-decimal form of OID content octets, for messages.
pub(crate) fn oid_string(content: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut acc: u64 = 0;
    for b in content {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let (first, second) = match acc {
                    0..40 => (0, acc),
                    40..80 => (1, acc - 40),
                    _ => (2, acc - 80),
                };
                parts.push(first.to_string());
                parts.push(second.to_string());
            } else {
                parts.push(acc.to_string());
            }
            acc = 0;
        }
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_strings() {
        assert_eq!(oid_string(oid::KEY_DESCRIPTION), "1.3.6.1.4.1.11129.2.1.17");
        assert_eq!(oid_string(oid::P384), "1.3.132.0.34");
    }
}
