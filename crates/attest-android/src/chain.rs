//! Chain verification: from received certificates to verified claims or a precise rejection.
//!
//! The rules run in a fixed order (ARCHITECTURE.md, "Verification rules"); the first failure is
//! the reason reported:
//!
//! 1. size and count limits, before parsing;
//! 2. every certificate parses (`malformed_evidence` otherwise);
//! 3. the chain ends at a pinned anchor, with or without the root certificate itself
//!    (`invalid_trust_chain`); anchors are checked before any other signature so that a chain to
//!    an unknown root costs at most one signature check;
//! 4. the chain has a shape real devices emit: the leaf, at most two ATTEST_KEY records (one
//!    under an operator root), then
//!    exactly the CA certificates of a factory or remotely provisioned chain, nothing repeated
//!    (`invalid_trust_chain`), see docs/decisions/0012-chain-shapes.md; the anchor's certificate
//!    is therefore never the leaf;
//! 5. issuer/subject name chaining and a signature over the received TBS bytes for every
//!    certificate below the anchor (`invalid_trust_chain`); RSA keys above 4096 bits or with an
//!    exponent other than 65537 are refused (docs/decisions/0014-bounded-signature-work.md);
//! 6. CA certificates: no unprocessed critical extension (docs/decisions/0013-name-and-extension-rules.md)
//!    and validity at the server-supplied instant (`invalid_trust_chain`), see
//!    docs/decisions/0003-certificate-validity.md;
//! 7. revocation of every serial against the status list (`revoked`);
//! 8. KeyDescription placement: the leaf, plus ATTEST_KEY records directly above it
//!    (`invalid_trust_chain`; `malformed_evidence` when a record does not parse), see
//!    docs/decisions/0004-attest-key-records.md;
//! 9. both security levels in hardware (`software_attestation`, docs/decisions/0005-security-levels.md),
//!    the attested key generated in hardware (`key_not_generated`), and the challenge
//!    (`replay_attempt`, constant-time).

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::sync::Mutex;

use attest_core::{ReasonCode, UnixTime};
use aws_lc_rs::digest;

use crate::anchors::{self, AnchorId, TrustAnchors};
use crate::claims::Claims;
use crate::der::DerError;
use crate::keydesc::{KeyDescription, KeyDescriptionLimits, SecurityLevel, tag};
use crate::revocation::StatusList;
use crate::sig;
use crate::x509::{Certificate, oid};

/// Bounds checked before any parsing.
#[derive(Clone, Copy, Debug)]
pub struct ChainLimits {
    /// Most certificates in one chain (the longest real chain, ATTEST_KEY over RKP, has 7).
    pub max_certificates: usize,
    /// Largest single certificate.
    pub max_certificate_bytes: usize,
    /// Largest chain in total.
    pub max_chain_bytes: usize,
    /// Bounds for each KeyDescription.
    pub key_description: KeyDescriptionLimits,
}

impl Default for ChainLimits {
    fn default() -> Self {
        ChainLimits {
            max_certificates: 10,
            max_certificate_bytes: 16 * 1024,
            max_chain_bytes: 64 * 1024,
            key_description: KeyDescriptionLimits::default(),
        }
    }
}

/// Why evidence was rejected: a stable code and a human-readable detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The stable reason code.
    pub reason: ReasonCode,
    /// What exactly failed, for operators (never shown with identifiers).
    pub detail: String,
}

impl Rejection {
    fn new(reason: ReasonCode, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

fn malformed(e: &DerError, index: usize) -> Rejection {
    Rejection::new(
        ReasonCode::MalformedEvidence,
        format!("certificate {index}: {e}"),
    )
}

/// How the attestation key was provisioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provisioning {
    /// A key injected at the factory ("keybox"); the chain has no provisioning-info extension.
    Factory,
    /// Remote key provisioning (RKP): a certificate carries the provisioning-info extension.
    Remote,
    /// Not known: no provisioning-info extension, and the chain does not end at a trusted
    /// anchor.
    Unknown,
}

impl Provisioning {
    /// Wire name: `factory`, `remote`, `unknown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Provisioning::Factory => "factory",
            Provisioning::Remote => "remote",
            Provisioning::Unknown => "unknown",
        }
    }
}

/// What is known about the chain's shape, valid or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// Number of certificates received.
    pub length: usize,
    /// The anchor it ends at, when it does.
    pub anchor: Option<AnchorId>,
    /// How its attestation key was provisioned.
    pub provisioning: Provisioning,
}

/// Certificates as received, parsed but not yet trusted.
#[derive(Clone, Debug)]
pub struct UnverifiedChain {
    certs: Vec<Certificate>,
}

impl UnverifiedChain {
    /// Checks limits (rule 1) and parses every certificate (rule 2). Leaf first.
    pub fn from_der(
        ders: Vec<Vec<u8>>,
        limits: &ChainLimits,
    ) -> Result<UnverifiedChain, Rejection> {
        if ders.is_empty() {
            return Err(Rejection::new(
                ReasonCode::MalformedEvidence,
                "empty certificate chain",
            ));
        }
        if ders.len() > limits.max_certificates {
            return Err(Rejection::new(
                ReasonCode::MalformedEvidence,
                format!(
                    "chain has {} certificates; the limit is {}",
                    ders.len(),
                    limits.max_certificates
                ),
            ));
        }
        let total: usize = ders.iter().map(Vec::len).sum();
        if total > limits.max_chain_bytes {
            return Err(Rejection::new(
                ReasonCode::MalformedEvidence,
                format!(
                    "chain is {total} bytes; the limit is {}",
                    limits.max_chain_bytes
                ),
            ));
        }
        if let Some((i, d)) = ders
            .iter()
            .enumerate()
            .find(|(_, d)| d.len() > limits.max_certificate_bytes)
        {
            return Err(Rejection::new(
                ReasonCode::MalformedEvidence,
                format!(
                    "certificate {i} is {} bytes; the limit is {}",
                    d.len(),
                    limits.max_certificate_bytes
                ),
            ));
        }
        let mut certs = Vec::with_capacity(ders.len());
        for (i, der) in ders.into_iter().enumerate() {
            certs.push(Certificate::from_der(der).map_err(|e| malformed(&e, i))?);
        }
        Ok(UnverifiedChain { certs })
    }

    /// The certificates, leaf first.
    pub fn certificates(&self) -> &[Certificate] {
        &self.certs
    }

    /// The leaf's KeyDescription: `None` when the leaf has no such extension.
    pub fn leaf_key_description(
        &self,
        limits: &KeyDescriptionLimits,
    ) -> Option<Result<KeyDescription, DerError>> {
        key_description(self.certs.first()?, limits)
    }
}

fn key_description(
    cert: &Certificate,
    limits: &KeyDescriptionLimits,
) -> Option<Result<KeyDescription, DerError>> {
    let (value, offset) = cert.extension(oid::KEY_DESCRIPTION)?;
    Some(KeyDescription::parse(value, offset, limits))
}

/// A chain that passed every rule. Only [`Verifier::appraise`] builds one.
#[derive(Clone, Debug)]
pub struct VerifiedEvidence {
    anchor: AnchorId,
    provisioning: Provisioning,
    leaf_spki: Vec<u8>,
    claims: Claims,
}

impl VerifiedEvidence {
    /// The anchor the chain ends at.
    pub fn anchor(&self) -> &AnchorId {
        &self.anchor
    }
    /// How the attestation key was provisioned.
    pub fn provisioning(&self) -> Provisioning {
        self.provisioning
    }
    /// The attested key's SubjectPublicKeyInfo (DER).
    pub fn leaf_spki(&self) -> &[u8] {
        &self.leaf_spki
    }
    /// The claims: hardware-enforced facts, with software-enforced ones kept apart.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}

/// The result of appraising one chain: always a value, never an error.
#[derive(Clone, Debug)]
pub struct Appraisal {
    /// The chain's shape.
    pub chain: ChainSummary,
    /// The leaf's KeyDescription whenever it parsed, also for a rejected chain.
    pub key_description: Option<KeyDescription>,
    /// Verified evidence, or why not.
    pub outcome: Result<VerifiedEvidence, Rejection>,
}

/// A bounded set of chain links whose signature already verified, keyed by a SHA-256 over the
/// exact bytes checked (the child certificate as received and the issuer's SubjectPublicKeyInfo).
/// Only immutable, verified facts go in, so a hit is as good as a fresh check.
#[derive(Debug)]
pub struct LinkCache {
    capacity: usize,
    links: Mutex<HashSet<[u8; 32]>>,
}

impl LinkCache {
    /// A cache holding at most `capacity` links; when full it starts over.
    pub fn new(capacity: usize) -> LinkCache {
        LinkCache {
            capacity,
            links: Mutex::new(HashSet::new()),
        }
    }

    fn key(child: &[u8], issuer_spki: &[u8]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&(child.len() as u64).to_be_bytes());
        ctx.update(child);
        ctx.update(issuer_spki);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.links.lock().map(|s| s.contains(key)).unwrap_or(false)
    }

    fn insert(&self, key: [u8; 32]) {
        if let Ok(mut s) = self.links.lock() {
            if s.len() >= self.capacity {
                s.clear();
            }
            s.insert(key);
        }
    }

    /// Number of cached links.
    pub fn len(&self) -> usize {
        self.links.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Verifies chains against anchors, an optional status list and limits.
#[derive(Debug)]
pub struct Verifier {
    anchors: TrustAnchors,
    status_list: Option<StatusList>,
    google_status_list: Option<StatusList>,
    limits: ChainLimits,
    cache: Option<LinkCache>,
}

/// The issuer of one link: a certificate of the chain or an anchor.
struct Issuer<'a> {
    spki: &'a [u8],
    key_algorithm: crate::x509::KeyAlgorithm,
    public_key: &'a [u8],
}

impl Verifier {
    /// A verifier trusting `anchors`, with default limits, no status list and no cache.
    pub fn new(anchors: TrustAnchors) -> Verifier {
        Verifier {
            anchors,
            status_list: None,
            google_status_list: None,
            limits: ChainLimits::default(),
            cache: None,
        }
    }

    /// Checks every serial of every chain against `list`.
    pub fn with_status_list(mut self, list: StatusList) -> Verifier {
        self.status_list = Some(list);
        self
    }

    /// Checks every serial of chains ending at Google's anchors against `list` (Google's
    /// published list), besides any list given to [`Verifier::with_status_list`].
    pub fn with_google_status_list(mut self, list: StatusList) -> Verifier {
        self.google_status_list = Some(list);
        self
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: ChainLimits) -> Verifier {
        self.limits = limits;
        self
    }

    /// Remembers up to `capacity` verified CA links.
    pub fn with_link_cache(mut self, capacity: usize) -> Verifier {
        self.cache = Some(LinkCache::new(capacity));
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &ChainLimits {
        &self.limits
    }

    /// The anchors in force.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// The link cache, when enabled.
    pub fn link_cache(&self) -> Option<&LinkCache> {
        self.cache.as_ref()
    }

    /// Parses and appraises a chain of DER certificates, leaf first.
    pub fn appraise_der(
        &self,
        ders: Vec<Vec<u8>>,
        at: UnixTime,
        expected_challenge: Option<&[u8]>,
    ) -> Appraisal {
        let length = ders.len();
        match UnverifiedChain::from_der(ders, &self.limits) {
            Ok(chain) => self.appraise(&chain, at, expected_challenge),
            Err(rejection) => Appraisal {
                chain: ChainSummary {
                    length,
                    anchor: None,
                    provisioning: Provisioning::Unknown,
                },
                key_description: None,
                outcome: Err(rejection),
            },
        }
    }

    /// Appraises a parsed chain at the server-supplied instant `at`. With `expected_challenge`,
    /// the attested challenge must equal it.
    pub fn appraise(
        &self,
        chain: &UnverifiedChain,
        at: UnixTime,
        expected_challenge: Option<&[u8]>,
    ) -> Appraisal {
        let certs = chain.certificates();
        let leaf_kd = chain.leaf_key_description(&self.limits.key_description);
        let mut summary = ChainSummary {
            length: certs.len(),
            anchor: None,
            provisioning: if looks_remote(certs) {
                Provisioning::Remote
            } else {
                Provisioning::Unknown
            },
        };
        let key_description = leaf_kd.as_ref().and_then(|r| r.as_ref().ok()).cloned();
        let outcome = self.check(certs, leaf_kd, at, expected_challenge, &mut summary);
        Appraisal {
            chain: summary,
            key_description,
            outcome,
        }
    }

    fn check(
        &self,
        certs: &[Certificate],
        leaf_kd: Option<Result<KeyDescription, DerError>>,
        at: UnixTime,
        expected_challenge: Option<&[u8]>,
        summary: &mut ChainSummary,
    ) -> Result<VerifiedEvidence, Rejection> {
        let (Some(leaf), Some(last)) = (certs.first(), certs.last()) else {
            return Err(Rejection::new(
                ReasonCode::MalformedEvidence,
                "empty certificate chain",
            ));
        };
        let last_index = certs.len().saturating_sub(1);

        // Rule 3: the anchor.
        let (anchor, root_in_chain) = self.find_anchor(last, last_index)?;
        summary.anchor = Some(anchor.clone());
        // The certificates below the anchor: every one of them is signature-checked.
        let below = if root_in_chain {
            certs.get(..last_index).unwrap_or_default()
        } else {
            certs
        };

        // Rule 4: the chain has a shape real devices emit (decision 0012), checked before any
        // further signature so that odd chains cost nothing.
        let shape = chain_shape(below, &anchor)?;
        summary.provisioning = shape.provisioning;
        if let Some(rejection) = repeated_certificate(certs) {
            return Err(rejection);
        }

        // Rule 5: name chaining and signatures, leaf upwards. The top link of a chain sent
        // without its root was checked by `find_anchor`.
        for (i, pair) in certs.windows(2).enumerate() {
            let [child, parent] = pair else { continue };
            if child.issuer() != parent.subject() {
                return Err(Rejection::new(
                    ReasonCode::InvalidTrustChain,
                    format!(
                        "certificate {i}'s issuer is not the subject of certificate {}",
                        i + 1
                    ),
                ));
            }
            let issuer = Issuer {
                spki: parent.spki(),
                key_algorithm: parent.key_algorithm(),
                public_key: parent.public_key(),
            };
            // The leaf is new every time; caching it would only evict useful links.
            self.verify_link(child, &issuer, i > 0).map_err(|e| {
                Rejection::new(
                    ReasonCode::InvalidTrustChain,
                    format!(
                        "certificate {i} is not signed by certificate {}: {e}",
                        i + 1
                    ),
                )
            })?;
        }

        // Rule 6: CA certificates (all but the attested records and an in-chain anchor): no
        // critical extension we do not process (decision 0013), and validity at the
        // server-supplied instant (decision 0003).
        let enforce_expiry = shape.provisioning != Provisioning::Factory;
        for (i, cert) in below.iter().enumerate().skip(shape.records) {
            if let Some(oid) = cert
                .critical_extensions()
                .find(|oid| *oid != oid::BASIC_CONSTRAINTS && *oid != oid::KEY_USAGE)
            {
                return Err(Rejection::new(
                    ReasonCode::InvalidTrustChain,
                    format!(
                        "certificate {i} carries the critical extension {}, which this verifier does not process",
                        crate::x509::oid_string(oid)
                    ),
                ));
            }
            if at < cert.not_before() {
                return Err(Rejection::new(
                    ReasonCode::InvalidTrustChain,
                    format!("certificate {i} is not valid before {}", cert.not_before()),
                ));
            }
            if enforce_expiry && at > cert.not_after() {
                return Err(Rejection::new(
                    ReasonCode::InvalidTrustChain,
                    format!(
                        "certificate {i} (remotely provisioned chain) expired at {}",
                        cert.not_after()
                    ),
                ));
            }
        }

        // Rule 7: revocation of every serial.
        let google_list = self
            .google_status_list
            .as_ref()
            .filter(|_| anchor.is_google());
        for list in self.status_list.iter().chain(google_list) {
            for (i, cert) in certs.iter().enumerate() {
                if let Some(listing) = list.lookup(&cert.serial_hex()) {
                    return Err(Rejection::new(
                        ReasonCode::Revoked,
                        format!(
                            "certificate {i} is {} in the status list ({})",
                            listing.status.as_str(),
                            listing.reason.as_deref().unwrap_or("no reason given")
                        ),
                    ));
                }
            }
        }

        // Rule 8: KeyDescription placement: the leaf, then ATTEST_KEY records directly above
        // it, nowhere else (the anchor's certificate included).
        let kd = match leaf_kd {
            None => {
                return Err(Rejection::new(
                    ReasonCode::MalformedEvidence,
                    "the leaf certificate has no KeyDescription extension",
                ));
            }
            Some(Err(e)) => return Err(malformed(&e, 0)),
            Some(Ok(kd)) => kd,
        };
        if let Some((i, _)) = certs
            .iter()
            .enumerate()
            .skip(shape.records)
            .find(|(_, c)| c.has_extension(oid::KEY_DESCRIPTION))
        {
            return Err(Rejection::new(
                ReasonCode::InvalidTrustChain,
                format!(
                    "certificate {i} carries a KeyDescription above a CA certificate: the chain was extended"
                ),
            ));
        }
        for (i, cert) in certs.iter().enumerate().take(shape.records).skip(1) {
            let record = match key_description(cert, &self.limits.key_description) {
                Some(Ok(r)) => r,
                Some(Err(e)) => return Err(malformed(&e, i)),
                None => continue,
            };
            check_attest_key_record(&kd, &record).map_err(|(reason, why)| {
                Rejection::new(
                    reason,
                    format!("certificate {i} carries a KeyDescription but is not a valid ATTEST_KEY certificate: {why}"),
                )
            })?;
        }
        if let Some((i, _)) = certs
            .iter()
            .enumerate()
            .find(|(i, c)| *i != shape.records && c.has_extension(oid::PROVISIONING_INFO))
        {
            return Err(Rejection::new(
                ReasonCode::InvalidTrustChain,
                format!(
                    "certificate {i} carries the provisioning-info extension, which belongs only directly above the attested key's certificate"
                ),
            ));
        }

        // Rule 9: hardware security levels, a key generated in hardware, and the challenge.
        if kd.attestation_security_level == SecurityLevel::Software
            || kd.keymint_security_level == SecurityLevel::Software
        {
            return Err(Rejection::new(
                ReasonCode::SoftwareAttestation,
                format!(
                    "attestation security level is {}, KeyMint security level is {}; both must be tee or strongbox",
                    kd.attestation_security_level.as_str(),
                    kd.keymint_security_level.as_str()
                ),
            ));
        }
        if kd.attestation_security_level != kd.keymint_security_level {
            return Err(Rejection::new(
                ReasonCode::InvalidTrustChain,
                format!(
                    "attestation security level {} differs from KeyMint security level {}; KeyMint requires them equal",
                    kd.attestation_security_level.as_str(),
                    kd.keymint_security_level.as_str()
                ),
            ));
        }
        generated_in_hardware(&kd).map_err(|why| {
            Rejection::new(
                ReasonCode::KeyNotGenerated,
                format!("the attested key {why}"),
            )
        })?;
        if let Some(expected) = expected_challenge {
            if aws_lc_rs::constant_time::verify_slices_are_equal(
                expected,
                &kd.attestation_challenge,
            )
            .is_err()
            {
                return Err(Rejection::new(
                    ReasonCode::ReplayAttempt,
                    "the attested challenge is not the expected one",
                ));
            }
        }

        let ca = below.get(shape.records..).unwrap_or_default();
        Ok(VerifiedEvidence {
            anchor,
            provisioning: shape.provisioning,
            leaf_spki: leaf.spki().to_vec(),
            claims: Claims::from_key_description(&kd, certified_level(ca, &shape)?),
        })
    }

    /// Finds the anchor: the last certificate's key is pinned (root included), or the last
    /// certificate is signed by a pinned key (root omitted).
    fn find_anchor(
        &self,
        last: &Certificate,
        last_index: usize,
    ) -> Result<(AnchorId, bool), Rejection> {
        if let Some(a) = self.anchors.by_spki(last.spki()) {
            return Ok((a.id.clone(), true));
        }
        let mut signature_failure = None;
        for a in self.anchors.by_subject(last.issuer()) {
            let issuer = Issuer {
                spki: &a.spki,
                key_algorithm: a.key_algorithm,
                public_key: &a.public_key,
            };
            match self.verify_link(last, &issuer, true) {
                Ok(()) => return Ok((a.id.clone(), false)),
                Err(e) => signature_failure = Some(e),
            }
        }
        let fp = anchors::sha256_hex(last.spki());
        let detail = if fp == anchors::AOSP_SOFTWARE_EC_SPKI_SHA256
            || fp == anchors::AOSP_SOFTWARE_RSA_SPKI_SHA256
        {
            "the chain ends at the AOSP software attestation root, which is never trusted"
                .to_owned()
        } else if let Some(e) = signature_failure {
            format!(
                "certificate {last_index} names a trusted root as issuer but is not signed by it: {e}"
            )
        } else {
            format!(
                "the chain does not end at a trusted root (last certificate's key SHA-256 {fp})"
            )
        };
        Err(Rejection::new(ReasonCode::InvalidTrustChain, detail))
    }

    fn verify_link(
        &self,
        child: &Certificate,
        issuer: &Issuer<'_>,
        cacheable: bool,
    ) -> Result<(), sig::SignatureError> {
        let cache = self.cache.as_ref().filter(|_| cacheable);
        let key = cache.map(|_| LinkCache::key(child.der(), issuer.spki));
        if let (Some(c), Some(k)) = (cache, &key) {
            if c.contains(k) {
                return Ok(());
            }
        }
        sig::verify(
            issuer.key_algorithm,
            issuer.public_key,
            child.signature_algorithm(),
            child.tbs(),
            child.signature(),
        )?;
        if let (Some(c), Some(k)) = (cache, key) {
            c.insert(k);
        }
        Ok(())
    }
}

/// Most ATTEST_KEY records between the leaf and the CA certificates under Google's anchors: the
/// corpus has chains with one (GrapheneOS Auditor) and with two (Google's
/// `cert_chain_with_attest_keys`).
pub const MAX_ATTEST_KEY_RECORDS: usize = 2;
/// Under an operator root, whose chains may carry one CA certificate more, one record (the
/// GrapheneOS layout): this keeps the costliest accepted chain within 3x of a real one
/// (decision 0014, BENCHMARKS.md).
pub const MAX_OPERATOR_ATTEST_KEY_RECORDS: usize = 1;

/// How many CA certificates lie between the attested records and each kind of anchor.
const GOOGLE_FACTORY_CAS: RangeInclusive<usize> = 2..=2; // batch key, intermediate (serialNumber)
const GOOGLE_REMOTE_CAS: RangeInclusive<usize> = 3..=3; // attestation key, Droid CA3, Droid CA2
/// The attestation key certificate, optionally under one intermediate.
const OPERATOR_CAS: RangeInclusive<usize> = 1..=2;

/// The accepted shape of one chain.
struct Shape {
    /// The leaf plus its ATTEST_KEY records: the device-made certificates.
    records: usize,
    /// How the attestation key was provisioned.
    provisioning: Provisioning,
    /// Whether the anchor is one of Google's keys.
    google: bool,
}

fn shape_error(detail: impl Into<String>) -> Rejection {
    Rejection::new(ReasonCode::InvalidTrustChain, detail)
}

/// Whether `cert` is Google's RKP intermediate `CN=Droid CA2, O=Google LLC`, by which Google's
/// verifier recognises remotely provisioned chains.
fn is_droid_ca2(cert: &Certificate) -> bool {
    cert.subject_attribute(oid::COMMON_NAME) == Some(b"Droid CA2".as_slice())
        && cert.subject_attribute(oid::ORGANIZATION) == Some(b"Google LLC".as_slice())
}

/// Remote provisioning as far as it can be told without an anchor: a provisioning-info
/// extension, or Google's RKP intermediate anywhere in the chain.
fn looks_remote(certs: &[Certificate]) -> bool {
    certs
        .iter()
        .skip(1)
        .any(|c| c.has_extension(oid::PROVISIONING_INFO) || is_droid_ca2(c))
}

/// The shapes real devices emit (docs/decisions/0012-chain-shapes.md), for the certificates
/// below the anchor, leaf first:
///
/// - the leaf, with a KeyDescription, then at most [`MAX_ATTEST_KEY_RECORDS`] ATTEST_KEY
///   records directly above it ([`MAX_OPERATOR_ATTEST_KEY_RECORDS`] under an operator root);
/// - then, under Google's keys, either a factory chain (the batch key certificate and an
///   intermediate whose subject has a `serialNumber`) or a remotely provisioned one (the
///   attestation key certificate, `Droid CA3` and `Droid CA2, Google LLC`); the P-384 root only
///   issues remotely provisioned chains;
/// - under an operator root, the attestation key certificate, optionally under one intermediate.
///
/// Anything else is refused, so the anchor's certificate is never the leaf, and no extra CA
/// certificate can be slipped in to vouch for StrongBox.
fn chain_shape(below: &[Certificate], anchor: &AnchorId) -> Result<Shape, Rejection> {
    let records = below
        .iter()
        .take_while(|c| c.has_extension(oid::KEY_DESCRIPTION))
        .count();
    if below.is_empty() {
        return Err(shape_error(
            "the chain is only the anchor's certificate: the anchor is never the attested key",
        ));
    }
    if records == 0 {
        return Err(Rejection::new(
            ReasonCode::MalformedEvidence,
            "the leaf certificate has no KeyDescription extension",
        ));
    }
    let max_records = if anchor.is_google() {
        MAX_ATTEST_KEY_RECORDS
    } else {
        MAX_OPERATOR_ATTEST_KEY_RECORDS
    };
    if records > max_records + 1 {
        return Err(shape_error(format!(
            "{} ATTEST_KEY records above the leaf; at most {max_records} are accepted under this anchor",
            records - 1
        )));
    }
    let ca = below.get(records..).unwrap_or_default();
    let Some(top) = ca.last() else {
        return Err(shape_error(
            "no CA certificate between the attested key and the anchor",
        ));
    };
    let remote_marker = ca.iter().any(|c| c.has_extension(oid::PROVISIONING_INFO));
    let provisioning = if anchor.is_google() {
        let factory = top.subject_attribute(oid::SERIAL_NUMBER).is_some()
            && !remote_marker
            && *anchor != AnchorId::GoogleEcP384;
        if factory {
            Provisioning::Factory
        } else if is_droid_ca2(top) {
            Provisioning::Remote
        } else {
            return Err(shape_error(
                "the certificate below Google's root is neither a factory intermediate (serialNumber) nor Droid CA2",
            ));
        }
    } else if top.subject_attribute(oid::SERIAL_NUMBER).is_some() && !remote_marker {
        // Google's rule for factory chains: the certificate below the root names a serialNumber.
        Provisioning::Factory
    } else {
        // Not positively factory: expiry is enforced (decision 0003).
        Provisioning::Remote
    };
    let want = match (anchor.is_google(), provisioning) {
        (false, _) => OPERATOR_CAS,
        (true, Provisioning::Factory) => GOOGLE_FACTORY_CAS,
        (true, _) => GOOGLE_REMOTE_CAS,
    };
    if !want.contains(&ca.len()) {
        let expected = if want.start() == want.end() {
            want.start().to_string()
        } else {
            format!("{} to {}", want.start(), want.end())
        };
        return Err(shape_error(format!(
            "{} CA certificates between the attested key and the anchor; a {} chain under this anchor has {expected}",
            ca.len(),
            provisioning.as_str()
        )));
    }
    Ok(Shape {
        records,
        provisioning,
        google: anchor.is_google(),
    })
}

/// A certificate or a key that appears twice: no real chain repeats one.
fn repeated_certificate(certs: &[Certificate]) -> Option<Rejection> {
    for (i, a) in certs.iter().enumerate() {
        if let Some((j, _)) = certs
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(_, b)| b.der() == a.der() || b.spki() == a.spki())
        {
            return Some(shape_error(format!(
                "certificate {j} repeats the certificate or key of certificate {i}"
            )));
        }
    }
    None
}

/// Whether a Name attribute value says StrongBox, in any letter case.
fn says_strongbox(value: &[u8]) -> bool {
    value
        .windows(b"strongbox".len())
        .any(|w| w.eq_ignore_ascii_case(b"strongbox"))
}

/// The highest security level the CA certificates vouch for, read only where a leaked lower key
/// cannot write it. Under Google's keys, where Google's verifier reads it: for a remotely
/// provisioned chain the attestation key certificate's `O` (`StrongBox` or `TEE`); for a
/// factory chain `StrongBox` anywhere in the subject of the batch certificate or of the
/// intermediate above it (the shape is fixed, so neither position can be an inserted
/// certificate). Under an operator root, whose chains may have one CA certificate more or less,
/// only the certificate the root signed directly counts, whatever the provisioning: a holder of
/// a leaked attestation key can sign a certificate of its own saying `O=StrongBox` with a
/// provisioning-info extension, but cannot get the root to sign one. Letter case does not matter. A StrongBox
/// claim under a chain that does not say so is capped at TEE, so a leaked TEE key cannot mint
/// StrongBox evidence (docs/decisions/0005-security-levels.md).
fn certified_level(ca: &[Certificate], shape: &Shape) -> Result<SecurityLevel, Rejection> {
    let says = |c: &Certificate| {
        c.subject_attributes()
            .into_iter()
            .any(|(_, v)| says_strongbox(v))
    };
    let strongbox = match (shape.google, shape.provisioning) {
        (false, _) => ca.last().is_some_and(says),
        (true, Provisioning::Remote) => {
            let o = ca
                .first()
                .and_then(|c| c.subject_attribute(oid::ORGANIZATION));
            match rkp_certified_level(o) {
                Some(level) => level == SecurityLevel::StrongBox,
                None => {
                    return Err(shape_error(
                        "the remotely provisioned attestation key certificate names neither TEE nor StrongBox as its organization",
                    ));
                }
            }
        }
        (true, _) => ca.iter().take(2).any(says),
    };
    Ok(if strongbox {
        SecurityLevel::StrongBox
    } else {
        SecurityLevel::TrustedEnvironment
    })
}

/// The level Google's RKP servers write in the attestation key certificate's `O`: `TEE` or
/// `StrongBox` (any letter case). Anything else Google's verifier takes for software, so it is
/// refused here.
fn rkp_certified_level(organization: Option<&[u8]>) -> Option<SecurityLevel> {
    let o = organization?;
    if o.eq_ignore_ascii_case(b"strongbox") {
        Some(SecurityLevel::StrongBox)
    } else if o.eq_ignore_ascii_case(b"tee") {
        Some(SecurityLevel::TrustedEnvironment)
    } else {
        None
    }
}

/// The KeyMint origin of a key generated inside the secure hardware.
const ORIGIN_GENERATED: i64 = 0;

/// The hardware-enforced origin must be GENERATED: an imported key was known outside the
/// device, so it proves nothing about the device.
fn generated_in_hardware(kd: &KeyDescription) -> Result<(), &'static str> {
    match kd.hardware_enforced.int(tag::ORIGIN) {
        Some(ORIGIN_GENERATED) => Ok(()),
        Some(_) => Err(
            "was not generated in the secure hardware (hardware-enforced origin is not GENERATED)",
        ),
        None => Err("has no hardware-enforced origin"),
    }
}

/// An ATTEST_KEY record above the leaf must describe a hardware attestation key of the same
/// device state: purposes exactly {ATTEST_KEY}, generated in hardware, not usable by all
/// applications, the same security levels and the same root of trust
/// (docs/decisions/0004-attest-key-records.md).
fn check_attest_key_record(
    leaf: &KeyDescription,
    record: &KeyDescription,
) -> Result<(), (ReasonCode, &'static str)> {
    let invalid = |why| Err((ReasonCode::InvalidTrustChain, why));
    let purposes = record
        .hardware_enforced
        .int_set(tag::PURPOSE)
        .unwrap_or_default();
    if purposes.is_empty() || purposes.iter().any(|p| *p != tag::PURPOSE_ATTEST_KEY) {
        return invalid("its key's purposes are not exactly {ATTEST_KEY}");
    }
    generated_in_hardware(record).map_err(|why| (ReasonCode::KeyNotGenerated, why))?;
    if record.hardware_enforced.flag(tag::ALL_APPLICATIONS)
        || record.software_enforced.flag(tag::ALL_APPLICATIONS)
    {
        return invalid("its key is usable by all applications");
    }
    if record.attestation_security_level != leaf.attestation_security_level
        || record.keymint_security_level != leaf.keymint_security_level
    {
        return invalid("its security levels differ from the leaf's");
    }
    if record.hardware_enforced.root_of_trust().is_none() {
        return invalid("it has no hardware-enforced root of trust");
    }
    if record.hardware_enforced.root_of_trust() != leaf.hardware_enforced.root_of_trust() {
        return invalid("its root of trust differs from the leaf's");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rkp_organization_must_name_a_hardware_level() {
        assert_eq!(
            rkp_certified_level(Some(b"StrongBox")),
            Some(SecurityLevel::StrongBox)
        );
        assert_eq!(
            rkp_certified_level(Some(b"TEE")),
            Some(SecurityLevel::TrustedEnvironment)
        );
        assert_eq!(
            rkp_certified_level(Some(b"STRONGBOX")),
            Some(SecurityLevel::StrongBox)
        );
        for bad in [&b"Software"[..], b"", b"Google LLC", b"TEE "] {
            assert_eq!(rkp_certified_level(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(rkp_certified_level(None), None);
    }
}
