//! A software Android device: a test PKI (root and intermediate of its own) that mints
//! attestation chains whose leaf carries a KeyDescription of the caller's choice.
//!
//! It exists so that every verification rule can be broken on purpose, exactly once, by a test;
//! later the simulator and the benchmarks use it to play many devices. Its root is never a
//! production anchor: a verifier trusts it only when a test or an operator adds it explicitly.
//!
//! Nothing here reads a clock or touches the file system. Key generation uses the crypto
//! library's system randomness, which is fine for test keys.

use attest_android::der::write;
use attest_core::UnixTime;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

#[cfg(feature = "client")]
pub mod client;
pub mod keydesc;
pub mod testing;

pub use keydesc::{KeyDescriptionSpec, value};

/// Errors of the software device (only key generation and signing can fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceError(&'static str);

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DeviceError {}

/// Object identifier content octets used when minting.
pub mod oid {
    pub use attest_android::oids::{KEY_DESCRIPTION, PROVISIONING_INFO};
    /// 1.2.840.10045.2.1 id-ecPublicKey.
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7 P-256.
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// 1.3.132.0.34 P-384.
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// 1.2.840.113549.1.1.1 rsaEncryption.
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.2.840.113549.1.1.11 sha256WithRSAEncryption.
    pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    /// 1.2.840.10045.4.3.2 ecdsa-with-SHA256.
    pub const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    /// 1.2.840.10045.4.3.3 ecdsa-with-SHA384.
    pub const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    /// 2.5.4.3 commonName.
    pub const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    /// 2.5.29.19 basicConstraints.
    pub const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
}

/// Which kind of key to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256, signing with SHA-256.
    EcP256,
    /// ECDSA P-384, signing with SHA-384.
    EcP384,
    /// RSA-2048, PKCS#1 v1.5 with SHA-256.
    Rsa2048,
    /// RSA-4096 (the size of Google's root), PKCS#1 v1.5 with SHA-256. Slow to generate.
    Rsa4096,
}

enum Inner {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A private key that can sign certificates (or proofs), with its SubjectPublicKeyInfo.
pub struct SigningKey {
    kind: KeyKind,
    inner: Inner,
    spki: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key.
    pub fn generate(kind: KeyKind) -> Result<SigningKey, DeviceError> {
        let rng = SystemRandom::new();
        let inner = match kind {
            KeyKind::EcP256 | KeyKind::EcP384 => {
                let alg = if kind == KeyKind::EcP256 {
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING
                };
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
                    .map_err(|_| DeviceError("EC key generation failed"))?;
                Inner::Ec(
                    EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref())
                        .map_err(|_| DeviceError("EC key rejected"))?,
                )
            }
            KeyKind::Rsa2048 | KeyKind::Rsa4096 => Inner::Rsa(
                RsaKeyPair::generate(if kind == KeyKind::Rsa2048 {
                    KeySize::Rsa2048
                } else {
                    KeySize::Rsa4096
                })
                .map_err(|_| DeviceError("RSA key generation failed"))?,
            ),
        };
        let spki = match (&inner, kind) {
            (Inner::Ec(k), KeyKind::EcP384) => ec_spki(oid::P384, k.public_key().as_ref()),
            (Inner::Ec(k), _) => ec_spki(oid::P256, k.public_key().as_ref()),
            (Inner::Rsa(k), _) => write::sequence(&[
                &write::sequence(&[&write::oid(oid::RSA_ENCRYPTION), &write::null()]),
                &write::bit_string(k.public_key().as_ref()),
            ]),
        };
        Ok(SigningKey { kind, inner, spki })
    }

    /// Loads a P-256 key from PKCS#8.
    pub fn from_pkcs8_p256(pkcs8: &[u8]) -> Result<SigningKey, DeviceError> {
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
            .map_err(|_| DeviceError("not a P-256 PKCS#8 key"))?;
        let spki = ec_spki(oid::P256, pair.public_key().as_ref());
        Ok(SigningKey {
            kind: KeyKind::EcP256,
            inner: Inner::Ec(pair),
            spki,
        })
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The SubjectPublicKeyInfo, DER.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The AlgorithmIdentifier (DER) of the signatures this key makes.
    pub fn signature_algorithm(&self) -> Vec<u8> {
        match self.kind {
            KeyKind::EcP256 => write::sequence(&[&write::oid(oid::ECDSA_SHA256)]),
            KeyKind::EcP384 => write::sequence(&[&write::oid(oid::ECDSA_SHA384)]),
            KeyKind::Rsa2048 | KeyKind::Rsa4096 => {
                write::sequence(&[&write::oid(oid::SHA256_WITH_RSA), &write::null()])
            }
        }
    }

    /// Signs `message` (ECDSA signatures are ASN.1 DER encoded).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DeviceError> {
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Ec(k) => k
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| DeviceError("ECDSA signing failed")),
            Inner::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| DeviceError("RSA signing failed"))?;
                Ok(sig)
            }
        }
    }
}

fn random<const N: usize>() -> Result<[u8; N], DeviceError> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| DeviceError("randomness failed"))?;
    Ok(b)
}

/// A random positive 16-byte serial whose DER encoding is exactly 16 bytes (no sign octet, no
/// leading zero), so tests can search stored bytes for it.
fn random_serial() -> Result<[u8; 16], DeviceError> {
    let mut s: [u8; 16] = random()?;
    s[0] = (s[0] & 0x7f) | 0x40;
    Ok(s)
}

fn ec_spki(curve: &[u8], point: &[u8]) -> Vec<u8> {
    write::sequence(&[
        &write::sequence(&[&write::oid(oid::EC_PUBLIC_KEY), &write::oid(curve)]),
        &write::bit_string(point),
    ])
}

/// A Name with a serialNumber (PrintableString) and a commonName (UTF8String).
pub fn name_with_serial_number(common_name: &str, serial_number: &str) -> Vec<u8> {
    let serial = write::sequence(&[
        &write::oid(&[0x55, 0x04, 0x05]),
        &write::tlv(0x13, serial_number.as_bytes()),
    ]);
    let cn = write::sequence(&[
        &write::oid(oid::COMMON_NAME),
        &write::tlv(0x0c, common_name.as_bytes()),
    ]);
    write::sequence(&[&write::set(&[&serial]), &write::set(&[&cn])])
}

/// A Name with one commonName (UTF8String).
pub fn name(common_name: &str) -> Vec<u8> {
    let atv = write::sequence(&[
        &write::oid(oid::COMMON_NAME),
        &write::tlv(0x0c, common_name.as_bytes()),
    ]);
    write::sequence(&[&write::set(&[&atv])])
}

/// One extension to put in a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionSpec {
    /// OID content octets.
    pub oid: Vec<u8>,
    /// Critical flag.
    pub critical: bool,
    /// The value inside the OCTET STRING.
    pub value: Vec<u8>,
}

/// Everything that goes into one certificate.
#[derive(Clone, Debug)]
pub struct CertSpec {
    /// Serial number: the INTEGER content octets (two's complement; a first byte of 0x80 or
    /// more makes it negative).
    pub serial: Vec<u8>,
    /// Issuer Name (DER).
    pub issuer: Vec<u8>,
    /// Subject Name (DER).
    pub subject: Vec<u8>,
    /// Start of validity.
    pub not_before: UnixTime,
    /// End of validity.
    pub not_after: UnixTime,
    /// Subject public key (SPKI DER).
    pub spki: Vec<u8>,
    /// Extensions, in order (duplicates are allowed, for negative tests).
    pub extensions: Vec<ExtensionSpec>,
}

fn time(t: UnixTime) -> Vec<u8> {
    let c = t.to_civil().unwrap_or(attest_core::CivilDate {
        year: 1970,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
    });
    let body = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        c.month, c.day, c.hour, c.minute, c.second
    );
    // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
    if (1950..2050).contains(&c.year) {
        write::tlv(0x17, format!("{:02}{body}", c.year % 100).as_bytes())
    } else {
        write::tlv(0x18, format!("{:04}{body}", c.year).as_bytes())
    }
}

impl CertSpec {
    /// The tbsCertificate for an issuer whose signatures use `signature_algorithm`.
    pub fn tbs(&self, signature_algorithm: &[u8]) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = vec![
            write::explicit(0, &write::integer(2)),
            // As on the wire: devices do emit negative serials, and tests need them.
            write::tlv(0x02, &self.serial),
            signature_algorithm.to_vec(),
            self.issuer.clone(),
            write::sequence(&[&time(self.not_before), &time(self.not_after)]),
            self.subject.clone(),
            self.spki.clone(),
        ];
        if !self.extensions.is_empty() {
            let exts: Vec<Vec<u8>> = self
                .extensions
                .iter()
                .map(|e| {
                    let mut fields = vec![write::oid(&e.oid)];
                    if e.critical {
                        fields.push(write::boolean(true));
                    }
                    fields.push(write::octet_string(&e.value));
                    write::sequence(&fields.iter().map(Vec::as_slice).collect::<Vec<_>>())
                })
                .collect();
            let list = write::sequence(&exts.iter().map(Vec::as_slice).collect::<Vec<_>>());
            parts.push(write::explicit(3, &list));
        }
        write::sequence(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }

    /// The signed certificate (DER).
    pub fn sign(&self, issuer: &SigningKey) -> Result<Vec<u8>, DeviceError> {
        let alg = issuer.signature_algorithm();
        let tbs = self.tbs(&alg);
        let sig = issuer.sign(&tbs)?;
        Ok(write::sequence(&[&tbs, &alg, &write::bit_string(&sig)]))
    }
}

fn ca_extensions() -> Vec<ExtensionSpec> {
    vec![ExtensionSpec {
        oid: oid::BASIC_CONSTRAINTS.to_vec(),
        critical: true,
        value: write::sequence(&[&write::boolean(true)]),
    }]
}

/// 2020-01-01T00:00:00Z, the start of the test PKI's validity.
pub const PKI_NOT_BEFORE: UnixTime = UnixTime::from_secs(1_577_836_800);
/// 2040-01-01T00:00:00Z, the end of the test PKI's validity.
pub const PKI_NOT_AFTER: UnixTime = UnixTime::from_secs(2_208_988_800);

/// A test PKI: a self-signed root and one intermediate ("attestation key"), as a factory chain
/// has. With `remote` set, the intermediate carries the provisioning-info extension, as an RKP
/// attestation key certificate does.
pub struct TestPki {
    /// The root's key.
    pub root_key: SigningKey,
    /// The root certificate (DER).
    pub root_cert: Vec<u8>,
    /// The root's Name.
    pub root_name: Vec<u8>,
    /// The intermediate's key: it signs leaves.
    pub intermediate_key: SigningKey,
    /// The intermediate certificate (DER).
    pub intermediate_cert: Vec<u8>,
    /// The intermediate's Name.
    pub intermediate_name: Vec<u8>,
    /// The intermediate's certificate spec, to re-mint variants.
    pub intermediate_spec: CertSpec,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

/// The simulator root's private key (P-256, PKCS#8). It is public on purpose: anyone can mint
/// chains under it, which is exactly why a server trusts it only with the loud, test-only
/// `--test-trust-simulator` switch. Never trust it in production.
const SIMULATOR_ROOT_PKCS8: &[u8] = &[
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02,
    0x01, 0x01, 0x04, 0x20, 0xb9, 0x08, 0x6a, 0xf7, 0x80, 0x49, 0x84, 0x37, 0x4d, 0x38, 0x1c, 0x1a,
    0x64, 0xf4, 0xa5, 0x61, 0x57, 0xa0, 0xda, 0xa7, 0x34, 0xf1, 0x0f, 0xad, 0x4c, 0x50, 0xe7, 0x30,
    0x5b, 0xb4, 0x8f, 0x55, 0xa1, 0x44, 0x03, 0x42, 0x00, 0x04, 0x10, 0x49, 0x34, 0xb7, 0x9e, 0xf0,
    0xa5, 0x92, 0xa8, 0xa0, 0xea, 0x6f, 0x7c, 0x54, 0xb1, 0x68, 0xfb, 0xaa, 0xe3, 0xba, 0x3a, 0xe5,
    0xe3, 0x45, 0xfa, 0xeb, 0x43, 0x82, 0xd7, 0xed, 0xd1, 0x78, 0x17, 0xee, 0x45, 0xd1, 0x73, 0x60,
    0x25, 0x2f, 0x6a, 0x7c, 0xd3, 0x1e, 0x7d, 0xa2, 0xd2, 0x50, 0x48, 0xe1, 0x3c, 0xab, 0xce, 0x20,
    0x92, 0x56, 0x66, 0xd3, 0xd8, 0x62, 0x8d, 0xa5, 0xbd, 0x94,
];

/// The subject Name of the simulator root.
pub fn simulator_root_name() -> Vec<u8> {
    name("enigm-attest SIMULATOR root (test only, never trust in production)")
}

/// The simulator root certificate. Its key is fixed, so every copy (the signature differs each
/// time) is the same anchor: a server trusts the key, not these bytes.
pub fn simulator_root_cert() -> Result<Vec<u8>, DeviceError> {
    let key = SigningKey::from_pkcs8_p256(SIMULATOR_ROOT_PKCS8)?;
    self_signed_ca(&key, &simulator_root_name(), &[0x51, 0x11])
}

/// A self-signed CA certificate for `key`, valid 2020-2040.
fn self_signed_ca(key: &SigningKey, subject: &[u8], serial: &[u8]) -> Result<Vec<u8>, DeviceError> {
    CertSpec {
        serial: serial.to_vec(),
        issuer: subject.to_vec(),
        subject: subject.to_vec(),
        not_before: PKI_NOT_BEFORE,
        not_after: PKI_NOT_AFTER,
        spki: key.spki().to_vec(),
        extensions: ca_extensions(),
    }
    .sign(key)
}

/// How to make the intermediate of a [`TestPki`].
struct Intermediate<'a> {
    kind: KeyKind,
    remote: bool,
    serial: &'a [u8],
    common_name: &'a str,
}

/// The provisioning-info extension value real RKP certificates carry: CBOR `{1: 8}`.
pub const PROVISIONING_INFO_VALUE: &[u8] = &[0xa1, 0x01, 0x08];

impl TestPki {
    /// A new PKI whose root and intermediate use `kind` keys, valid 2020-2040.
    pub fn new(kind: KeyKind, remote: bool) -> Result<TestPki, DeviceError> {
        TestPki::with_serials(kind, remote, &[0x10, 0x01], &[0x20, 0x02])
    }

    /// Like [`TestPki::new`], with chosen serial numbers for the root and the intermediate.
    pub fn with_serials(
        kind: KeyKind,
        remote: bool,
        root_serial: &[u8],
        intermediate_serial: &[u8],
    ) -> Result<TestPki, DeviceError> {
        TestPki::build(
            kind,
            remote,
            root_serial,
            intermediate_serial,
            "enigm-attest test attestation key",
        )
    }

    /// A PKI whose intermediate is certified as a StrongBox attestation key (its subject says
    /// `StrongBox`, as real StrongBox batch certificates do); random serials.
    pub fn strongbox() -> Result<TestPki, DeviceError> {
        TestPki::build(
            KeyKind::EcP256,
            false,
            &random_serial()?,
            &random_serial()?,
            "enigm-attest test StrongBox attestation key",
        )
    }

    fn build(
        kind: KeyKind,
        remote: bool,
        root_serial: &[u8],
        intermediate_serial: &[u8],
        intermediate_name: &str,
    ) -> Result<TestPki, DeviceError> {
        let root_key = SigningKey::generate(kind)?;
        let root_name = name("enigm-attest test root (never trust in production)");
        let root_cert = self_signed_ca(&root_key, &root_name, root_serial)?;
        let intermediate = Intermediate {
            kind,
            remote,
            serial: intermediate_serial,
            common_name: intermediate_name,
        };
        TestPki::under_root(root_key, root_name, root_cert, &intermediate)
    }

    /// A PKI under the fixed simulator root (see [`simulator_root_cert`]), with a fresh
    /// intermediate whose serial is random.
    pub fn simulator() -> Result<TestPki, DeviceError> {
        let intermediate = Intermediate {
            kind: KeyKind::EcP256,
            remote: false,
            serial: &random_serial()?,
            common_name: "enigm-attest simulated attestation key",
        };
        TestPki::under_root(
            SigningKey::from_pkcs8_p256(SIMULATOR_ROOT_PKCS8)?,
            simulator_root_name(),
            simulator_root_cert()?,
            &intermediate,
        )
    }

    /// A fresh intermediate ("attestation key") signed by the given root.
    fn under_root(
        root_key: SigningKey,
        root_name: Vec<u8>,
        root_cert: Vec<u8>,
        i: &Intermediate<'_>,
    ) -> Result<TestPki, DeviceError> {
        let intermediate_key = SigningKey::generate(i.kind)?;
        // Factory attestation keys are named as Google's factory intermediates are: with a
        // serialNumber attribute, which is what marks a chain as factory-provisioned.
        let intermediate_name = if i.remote {
            name(i.common_name)
        } else {
            name_with_serial_number(i.common_name, &attest_android::hex(i.serial))
        };
        let mut extensions = ca_extensions();
        if i.remote {
            extensions.push(ExtensionSpec {
                oid: oid::PROVISIONING_INFO.to_vec(),
                critical: false,
                value: PROVISIONING_INFO_VALUE.to_vec(),
            });
        }
        let intermediate_spec = CertSpec {
            serial: i.serial.to_vec(),
            issuer: root_name.clone(),
            subject: intermediate_name.clone(),
            not_before: PKI_NOT_BEFORE,
            not_after: PKI_NOT_AFTER,
            spki: intermediate_key.spki().to_vec(),
            extensions,
        };
        let intermediate_cert = intermediate_spec.sign(&root_key)?;
        Ok(TestPki {
            root_key,
            root_cert,
            root_name,
            intermediate_key,
            intermediate_cert,
            intermediate_name,
            intermediate_spec,
        })
    }

    /// The spec of a leaf for `leaf_spki` carrying `key_description`, with the dates a real
    /// device sets (1970 to 2048) and serial 1.
    pub fn leaf_spec(&self, leaf_spki: &[u8], key_description: &[u8]) -> CertSpec {
        CertSpec {
            serial: vec![1],
            issuer: self.intermediate_name.clone(),
            subject: name("Android Keystore Key"),
            not_before: UnixTime::EPOCH,
            not_after: UnixTime::from_secs(2_461_449_600), // 2048-01-01
            spki: leaf_spki.to_vec(),
            extensions: vec![ExtensionSpec {
                oid: oid::KEY_DESCRIPTION.to_vec(),
                critical: false,
                value: key_description.to_vec(),
            }],
        }
    }

    /// A full chain `[leaf, intermediate, root]` for a leaf signed by the intermediate.
    pub fn chain(&self, leaf_spec: &CertSpec) -> Result<Vec<Vec<u8>>, DeviceError> {
        Ok(vec![
            leaf_spec.sign(&self.intermediate_key)?,
            self.intermediate_cert.clone(),
            self.root_cert.clone(),
        ])
    }
}

/// A software device: a test PKI plus the state a real device would attest.
pub struct SoftwareDevice {
    /// The device's attestation PKI.
    pub pki: TestPki,
    /// The KeyDescription template; `attest` fills in the challenge.
    pub template: KeyDescriptionSpec,
}

impl std::fmt::Debug for SoftwareDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareDevice").finish_non_exhaustive()
    }
}

/// A minted attestation: the attested key and its chain, leaf first.
pub struct Attestation {
    /// The attested key (K_dev at enrollment, K_eph later).
    pub key: SigningKey,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
}

impl SoftwareDevice {
    /// A locked, verified TEE device with a random boot key, on a factory-style test PKI with
    /// random 16-byte serial numbers (so that tests can search stored bytes for them).
    pub fn new() -> Result<SoftwareDevice, DeviceError> {
        let boot_key: [u8; 32] = random()?;
        let root_serial = random_serial()?;
        let intermediate_serial = random_serial()?;
        Ok(SoftwareDevice {
            pki: TestPki::with_serials(KeyKind::EcP256, false, &root_serial, &intermediate_serial)?,
            template: KeyDescriptionSpec::typical(&boot_key, b""),
        })
    }

    /// The device's verified boot key.
    pub fn boot_key(&self) -> Vec<u8> {
        self.template
            .hardware
            .iter()
            .find(|(t, _)| *t == 704)
            .and_then(|(_, rot)| rot.get(4..36).map(<[u8]>::to_vec))
            .unwrap_or_default()
    }

    /// A locked, verified StrongBox device: both levels StrongBox, on a PKI that certifies its
    /// attestation key as StrongBox.
    pub fn strongbox() -> Result<SoftwareDevice, DeviceError> {
        let boot_key: [u8; 32] = random()?;
        let mut template = KeyDescriptionSpec::typical(&boot_key, b"");
        template.attestation_security_level = keydesc::STRONGBOX;
        template.keymint_security_level = keydesc::STRONGBOX;
        Ok(SoftwareDevice {
            pki: TestPki::strongbox()?,
            template,
        })
    }

    /// A device like [`SoftwareDevice::new`] whose chains end at the simulator root.
    pub fn simulated() -> Result<SoftwareDevice, DeviceError> {
        let boot_key: [u8; 32] = random()?;
        Ok(SoftwareDevice {
            pki: TestPki::simulator()?,
            template: KeyDescriptionSpec::typical(&boot_key, b""),
        })
    }

    /// The root certificate a verifier must add to trust this device.
    pub fn root_cert(&self) -> &[u8] {
        &self.pki.root_cert
    }

    /// Generates a fresh P-256 key attested with `challenge`.
    pub fn attest(&self, challenge: &[u8]) -> Result<Attestation, DeviceError> {
        self.attest_with(challenge, |_| {})
    }

    /// Like [`SoftwareDevice::attest`], with a last change to the KeyDescription.
    pub fn attest_with(
        &self,
        challenge: &[u8],
        change: impl FnOnce(&mut KeyDescriptionSpec),
    ) -> Result<Attestation, DeviceError> {
        let key = SigningKey::generate(KeyKind::EcP256)?;
        let mut kd = self.template.clone();
        kd.challenge = challenge.to_vec();
        change(&mut kd);
        let mut spec = self.pki.leaf_spec(key.spki(), &kd.encode());
        spec.serial = random_serial()?.to_vec();
        let chain = self.pki.chain(&spec)?;
        Ok(Attestation { key, chain })
    }
}
