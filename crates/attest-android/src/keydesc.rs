//! The Android KeyDescription extension (OID 1.3.6.1.4.1.11129.2.1.17).
//!
//! One parser serves every schema version seen on real devices (attestationVersion 1 to 500):
//! the top-level layout never changed, and the AuthorizationList only gained tags. Known tags
//! are type-checked; unknown tags are kept as raw values so that a new KeyMint release does not
//! turn every device into `malformed_evidence`.
//!
//! Accepted device quirks (docs/decisions/0002-accepted-device-quirks.md): SET OF elements out
//! of DER order, BER booleans (`0x01` for true), 6-digit vendor/boot patch levels and day `00`,
//! a 4-element RootOfTrust below attestationVersion 3, tags in any order, a tag repeated with
//! the same value. Rejected: a tag repeated with another value, wrong types, trailing bytes,
//! non-minimal lengths or integers.
//!
//! Privacy: the values of the serial, IMEI, MEID and second-IMEI attestation ids and of the
//! unique id are checked for shape and then dropped; only their presence is kept.

use crate::der::{self, DerError, DerErrorKind, Reader, Tag, Tlv};

/// Size and count bounds for one KeyDescription.
#[derive(Clone, Copy, Debug)]
pub struct KeyDescriptionLimits {
    /// Largest extension value accepted.
    pub max_bytes: usize,
    /// Most entries in one AuthorizationList.
    pub max_tags: usize,
    /// Most elements in one SET OF (purposes, digests, packages, signature digests).
    pub max_set_elements: usize,
    /// Longest OCTET STRING field (challenge, ids, package names, boot key, ...).
    pub max_octets: usize,
}

impl Default for KeyDescriptionLimits {
    fn default() -> Self {
        KeyDescriptionLimits {
            max_bytes: 16 * 1024,
            max_tags: 64,
            max_set_elements: 64,
            // KeyMint caps ATTESTATION_CHALLENGE at 128 bytes; ids and names are far shorter.
            max_octets: 1024,
        }
    }
}

/// `SecurityLevel ::= ENUMERATED { Software(0), TrustedEnvironment(1), StrongBox(2) }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityLevel {
    /// Keystore software: no hardware protection.
    Software,
    /// A trusted execution environment.
    TrustedEnvironment,
    /// A discrete secure element.
    StrongBox,
}

impl SecurityLevel {
    /// Wire name: `software`, `tee`, `strongbox`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::Software => "software",
            SecurityLevel::TrustedEnvironment => "tee",
            SecurityLevel::StrongBox => "strongbox",
        }
    }
}

/// `VerifiedBootState ::= ENUMERATED { Verified(0), SelfSigned(1), Unverified(2), Failed(3) }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerifiedBootState {
    /// Booted an image signed by the device maker's key.
    Verified,
    /// Booted an image signed by a user-installed key (custom OS on a locked bootloader).
    SelfSigned,
    /// Unlocked bootloader: anything may have booted.
    Unverified,
    /// Verification failed.
    Failed,
}

impl VerifiedBootState {
    /// Wire name: `verified`, `self_signed`, `unverified`, `failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            VerifiedBootState::Verified => "verified",
            VerifiedBootState::SelfSigned => "self_signed",
            VerifiedBootState::Unverified => "unverified",
            VerifiedBootState::Failed => "failed",
        }
    }
}

/// `RootOfTrust` (tag 704).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootOfTrust {
    /// SHA-256 of the vbmeta public key (32 zero bytes or empty on some unlocked devices).
    pub verified_boot_key: Vec<u8>,
    /// Whether the bootloader is locked.
    pub device_locked: bool,
    /// The verified boot state.
    pub verified_boot_state: VerifiedBootState,
    /// Digest of the verified boot images (attestationVersion >= 3; some older devices too).
    pub verified_boot_hash: Option<Vec<u8>>,
}

/// One entry of `AttestationApplicationId.packageInfos`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    /// The package name (UTF-8).
    pub name: String,
    /// The package's version code.
    pub version: i64,
}

/// `AttestationApplicationId` (tag 709): which app owns the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationApplicationId {
    /// Packages sharing the owning UID, in the order received.
    pub packages: Vec<PackageInfo>,
    /// SHA-256 digests of the signing certificates, in the order received.
    pub signature_digests: Vec<Vec<u8>>,
}

/// Device identifiers from ID attestation (tags 710-717, 723). Only the non-unique ones keep
/// their values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttestationIds {
    /// 710 brand.
    pub brand: Option<String>,
    /// 711 device.
    pub device: Option<String>,
    /// 712 product.
    pub product: Option<String>,
    /// 716 manufacturer.
    pub manufacturer: Option<String>,
    /// 717 model.
    pub model: Option<String>,
    /// 713 serial was present (value dropped).
    pub serial_present: bool,
    /// 714 IMEI was present (value dropped).
    pub imei_present: bool,
    /// 715 MEID was present (value dropped).
    pub meid_present: bool,
    /// 723 second IMEI was present (value dropped).
    pub second_imei_present: bool,
}

/// A typed AuthorizationList value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthValue {
    /// `INTEGER`.
    Int(i64),
    /// `SET OF INTEGER`, in the order received.
    IntSet(Vec<i64>),
    /// `NULL` (a flag that is set).
    Flag,
    /// `OCTET STRING`.
    Bytes(Vec<u8>),
    /// An attestation id whose value is never kept.
    Redacted,
    /// `RootOfTrust`.
    RootOfTrust(RootOfTrust),
    /// `AttestationApplicationId`.
    ApplicationId(AttestationApplicationId),
    /// A tag this parser does not know: the inner encoding as received.
    Unknown(Vec<u8>),
}

/// The expected type of a known tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int,
    IntSet,
    Null,
    Bytes,
    Utf8,
    Redacted,
    RootOfTrust,
    ApplicationId,
}

/// Every tag of the current KeyMint schema plus the Keymaster-era ones, with their types.
const KNOWN_TAGS: &[(u32, &str, Kind)] = &[
    (1, "purpose", Kind::IntSet),
    (2, "algorithm", Kind::Int),
    (3, "keySize", Kind::Int),
    (4, "blockMode", Kind::IntSet),
    (5, "digest", Kind::IntSet),
    (6, "padding", Kind::IntSet),
    (7, "callerNonce", Kind::Null),
    (8, "minMacLength", Kind::Int),
    (10, "ecCurve", Kind::Int),
    (11, "mlDsaVariant", Kind::Int),
    (200, "rsaPublicExponent", Kind::Int),
    (203, "mgfDigest", Kind::IntSet),
    (303, "rollbackResistance", Kind::Null),
    (305, "earlyBootOnly", Kind::Null),
    (400, "activeDateTime", Kind::Int),
    (401, "originationExpireDateTime", Kind::Int),
    (402, "usageExpireDateTime", Kind::Int),
    (405, "usageCountLimit", Kind::Int),
    (502, "userSecureId", Kind::Int),
    (503, "noAuthRequired", Kind::Null),
    (504, "userAuthType", Kind::Int),
    (505, "authTimeout", Kind::Int),
    (506, "allowWhileOnBody", Kind::Null),
    (507, "trustedUserPresenceRequired", Kind::Null),
    (508, "trustedConfirmationRequired", Kind::Null),
    (509, "unlockedDeviceRequired", Kind::Null),
    (600, "allApplications", Kind::Null),
    (601, "applicationId", Kind::Bytes),
    (701, "creationDateTime", Kind::Int),
    (702, "origin", Kind::Int),
    (703, "rollbackResistant", Kind::Null),
    (704, "rootOfTrust", Kind::RootOfTrust),
    (705, "osVersion", Kind::Int),
    (706, "osPatchLevel", Kind::Int),
    (709, "attestationApplicationId", Kind::ApplicationId),
    (710, "attestationIdBrand", Kind::Utf8),
    (711, "attestationIdDevice", Kind::Utf8),
    (712, "attestationIdProduct", Kind::Utf8),
    (713, "attestationIdSerial", Kind::Redacted),
    (714, "attestationIdImei", Kind::Redacted),
    (715, "attestationIdMeid", Kind::Redacted),
    (716, "attestationIdManufacturer", Kind::Utf8),
    (717, "attestationIdModel", Kind::Utf8),
    (718, "vendorPatchLevel", Kind::Int),
    (719, "bootPatchLevel", Kind::Int),
    (720, "deviceUniqueAttestation", Kind::Null),
    (723, "attestationIdSecondImei", Kind::Redacted),
    (724, "moduleHash", Kind::Bytes),
];

/// Well-known tag numbers.
pub mod tag {
    /// purpose (SET OF KeyPurpose).
    pub const PURPOSE: u32 = 1;
    /// algorithm.
    pub const ALGORITHM: u32 = 2;
    /// creationDateTime (ms since the epoch).
    pub const CREATION_DATE_TIME: u32 = 701;
    /// origin.
    pub const ORIGIN: u32 = 702;
    /// rootOfTrust.
    pub const ROOT_OF_TRUST: u32 = 704;
    /// osVersion.
    pub const OS_VERSION: u32 = 705;
    /// osPatchLevel (YYYYMM).
    pub const OS_PATCH_LEVEL: u32 = 706;
    /// attestationApplicationId.
    pub const ATTESTATION_APPLICATION_ID: u32 = 709;
    /// vendorPatchLevel (YYYYMMDD).
    pub const VENDOR_PATCH_LEVEL: u32 = 718;
    /// bootPatchLevel (YYYYMMDD).
    pub const BOOT_PATCH_LEVEL: u32 = 719;
    /// allApplications (Keymaster-era flag: the key is usable by every application).
    pub const ALL_APPLICATIONS: u32 = 600;
    /// KeyPurpose ATTEST_KEY.
    pub const PURPOSE_ATTEST_KEY: i64 = 7;
}

/// The name of a known tag (`osVersion`), or `None`.
pub fn tag_name(tag: u32) -> Option<&'static str> {
    KNOWN_TAGS
        .iter()
        .find(|(t, _, _)| *t == tag)
        .map(|(_, n, _)| *n)
}

/// An `AuthorizationList`: tag/value entries in the order received (the schema says ascending;
/// some devices do not), each tag once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizationList {
    entries: Vec<(u32, AuthValue)>,
    ids: AttestationIds,
}

impl AuthorizationList {
    /// The value of `tag`, if present.
    pub fn get(&self, tag: u32) -> Option<&AuthValue> {
        self.entries.iter().find(|(t, _)| *t == tag).map(|(_, v)| v)
    }
    /// Every tag present, in the order received.
    pub fn tags(&self) -> Vec<u32> {
        self.entries.iter().map(|(t, _)| *t).collect()
    }
    /// All entries, in the order received.
    pub fn entries(&self) -> &[(u32, AuthValue)] {
        &self.entries
    }
    /// An INTEGER tag's value.
    pub fn int(&self, tag: u32) -> Option<i64> {
        match self.get(tag) {
            Some(AuthValue::Int(v)) => Some(*v),
            _ => None,
        }
    }
    /// A SET OF INTEGER tag's values.
    pub fn int_set(&self, tag: u32) -> Option<&[i64]> {
        match self.get(tag) {
            Some(AuthValue::IntSet(v)) => Some(v),
            _ => None,
        }
    }
    /// Whether a NULL flag tag is present.
    pub fn flag(&self, tag: u32) -> bool {
        matches!(self.get(tag), Some(AuthValue::Flag))
    }
    /// The rootOfTrust (704).
    pub fn root_of_trust(&self) -> Option<&RootOfTrust> {
        match self.get(tag::ROOT_OF_TRUST) {
            Some(AuthValue::RootOfTrust(r)) => Some(r),
            _ => None,
        }
    }
    /// The attestationApplicationId (709).
    pub fn attestation_application_id(&self) -> Option<&AttestationApplicationId> {
        match self.get(tag::ATTESTATION_APPLICATION_ID) {
            Some(AuthValue::ApplicationId(a)) => Some(a),
            _ => None,
        }
    }
    /// ID attestation fields (710-717, 723).
    pub fn attestation_ids(&self) -> &AttestationIds {
        &self.ids
    }
    /// osVersion (705), e.g. 150000 for 15.0.0.
    pub fn os_version(&self) -> Option<i64> {
        self.int(tag::OS_VERSION)
    }
    /// osPatchLevel (706), YYYYMM as sent.
    pub fn os_patch_level(&self) -> Option<i64> {
        self.int(tag::OS_PATCH_LEVEL)
    }
    /// vendorPatchLevel (718), YYYYMMDD (sometimes YYYYMM) as sent.
    pub fn vendor_patch_level(&self) -> Option<i64> {
        self.int(tag::VENDOR_PATCH_LEVEL)
    }
    /// bootPatchLevel (719), YYYYMMDD (sometimes YYYYMM) as sent.
    pub fn boot_patch_level(&self) -> Option<i64> {
        self.int(tag::BOOT_PATCH_LEVEL)
    }
    /// creationDateTime (701) in milliseconds since the epoch, as sent (device clock).
    pub fn creation_date_time(&self) -> Option<i64> {
        self.int(tag::CREATION_DATE_TIME)
    }
}

/// The parsed KeyDescription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDescription {
    /// attestationVersion (1, 2, 3, 4, 100, 200, 300, 400, 500, ...).
    pub attestation_version: i64,
    /// Where the attestation was produced.
    pub attestation_security_level: SecurityLevel,
    /// keymasterVersion / keyMintVersion.
    pub keymint_version: i64,
    /// Where the key lives.
    pub keymint_security_level: SecurityLevel,
    /// The challenge the device was asked to attest.
    pub attestation_challenge: Vec<u8>,
    /// Whether a unique id was included (its value is dropped).
    pub unique_id_present: bool,
    /// Enforced by Android, not by secure hardware: informative only.
    pub software_enforced: AuthorizationList,
    /// Enforced by the TEE or StrongBox: the only source of claims.
    pub hardware_enforced: AuthorizationList,
}

impl KeyDescription {
    /// Parses the extension value. `base` is the value's offset inside its certificate, so
    /// error offsets point into the certificate.
    pub fn parse(
        value: &[u8],
        base: usize,
        limits: &KeyDescriptionLimits,
    ) -> Result<KeyDescription, DerError> {
        if value.len() > limits.max_bytes {
            return Err(DerError {
                field: "KeyDescription".to_owned(),
                offset: base,
                kind: DerErrorKind::LimitExceeded("KeyDescription larger than the limit"),
            });
        }
        let p = Parser { limits };
        let seq = der::parse_single(value, base, Tag::SEQUENCE, "SEQUENCE", "KeyDescription")?;
        let mut r = seq.reader();
        let attestation_version = r
            .read(Tag::INTEGER, "INTEGER", "KeyDescription.attestationVersion")?
            .i64("KeyDescription.attestationVersion")?;
        let attestation_security_level = security_level(
            &r.read_any("KeyDescription.attestationSecurityLevel")?,
            "KeyDescription.attestationSecurityLevel",
        )?;
        let keymint_version = r
            .read(Tag::INTEGER, "INTEGER", "KeyDescription.keyMintVersion")?
            .i64("KeyDescription.keyMintVersion")?;
        let keymint_security_level = security_level(
            &r.read_any("KeyDescription.keyMintSecurityLevel")?,
            "KeyDescription.keyMintSecurityLevel",
        )?;
        let challenge = p.octets(&mut r, "KeyDescription.attestationChallenge")?;
        let unique_id = p.octets(&mut r, "KeyDescription.uniqueId")?;
        let software_enforced = p.authorization_list(&mut r, "KeyDescription.softwareEnforced")?;
        let hardware_enforced = p.authorization_list(&mut r, "KeyDescription.hardwareEnforced")?;
        r.finish("KeyDescription")?;
        Ok(KeyDescription {
            attestation_version,
            attestation_security_level,
            keymint_version,
            keymint_security_level,
            attestation_challenge: challenge.to_vec(),
            unique_id_present: !unique_id.is_empty(),
            software_enforced,
            hardware_enforced,
        })
    }

    /// creationDateTime, from the hardware list when present, else the software list.
    pub fn creation_date_time(&self) -> Option<i64> {
        self.hardware_enforced
            .creation_date_time()
            .or_else(|| self.software_enforced.creation_date_time())
    }
}

fn security_level(tlv: &Tlv<'_>, field: &str) -> Result<SecurityLevel, DerError> {
    let v = tlv
        .expect(Tag::ENUMERATED, "ENUMERATED", field)?
        .i64(field)?;
    match v {
        0 => Ok(SecurityLevel::Software),
        1 => Ok(SecurityLevel::TrustedEnvironment),
        2 => Ok(SecurityLevel::StrongBox),
        _ => Err(tlv.error(field, DerErrorKind::BadValue("unknown SecurityLevel"))),
    }
}

struct Parser<'l> {
    limits: &'l KeyDescriptionLimits,
}

impl Parser<'_> {
    fn octets<'a>(&self, r: &mut Reader<'a>, field: &str) -> Result<&'a [u8], DerError> {
        let t = r.read(Tag::OCTET_STRING, "OCTET STRING", field)?;
        self.octets_of(&t, field)
    }

    fn octets_of<'a>(&self, t: &Tlv<'a>, field: &str) -> Result<&'a [u8], DerError> {
        let t = t.expect(Tag::OCTET_STRING, "OCTET STRING", field)?;
        if t.value.len() > self.limits.max_octets {
            return Err(t.error(
                field,
                DerErrorKind::LimitExceeded("OCTET STRING longer than the limit"),
            ));
        }
        Ok(t.value)
    }

    fn utf8(&self, t: &Tlv<'_>, field: &str) -> Result<String, DerError> {
        let bytes = self.octets_of(t, field)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| t.error(field, DerErrorKind::BadValue("not UTF-8")))
    }

    fn int_set(&self, t: &Tlv<'_>, field: &str) -> Result<Vec<i64>, DerError> {
        let set = t.expect(Tag::SET, "SET OF INTEGER", field)?;
        let mut r = set.reader();
        let mut out = Vec::new();
        // Elements are accepted in any order: 88 of 277 real chains send unsorted sets.
        while !r.is_empty() {
            if out.len() >= self.limits.max_set_elements {
                return Err(set.error(
                    field,
                    DerErrorKind::LimitExceeded("too many SET OF elements"),
                ));
            }
            out.push(r.read(Tag::INTEGER, "INTEGER", field)?.i64(field)?);
        }
        Ok(out)
    }

    fn authorization_list(
        &self,
        r: &mut Reader<'_>,
        field: &str,
    ) -> Result<AuthorizationList, DerError> {
        let seq = r.read(Tag::SEQUENCE, "AuthorizationList", field)?;
        let mut items = seq.reader();
        let mut list = AuthorizationList::default();
        while !items.is_empty() {
            let item = items.read_any(field)?;
            let number = item.tag.number;
            let name = tag_name(number).unwrap_or("unknown");
            let f = format!("{field}.[{number}]");
            if item.tag != Tag::context(number) {
                return Err(item.error(
                    &f,
                    DerErrorKind::UnexpectedTag {
                        expected: "[n] EXPLICIT",
                        found: item.tag.to_string(),
                    },
                ));
            }
            if list.entries.len() >= self.limits.max_tags {
                return Err(item.error(&f, DerErrorKind::LimitExceeded("too many tags")));
            }
            let inner = der::parse_single(
                item.value,
                item.value_offset,
                any_tag(item.value),
                "one value",
                &f,
            )?;
            let value = self.value(number, &inner, &f, &mut list.ids)?;
            // Any order is accepted (a Motorola edge 2022 lists 717..710 descending); a tag
            // repeated with the same value is one entry, with another value a contradiction
            // (docs/decisions/0002-accepted-device-quirks.md).
            if let Some((_, earlier)) = list.entries.iter().find(|(t, _)| *t == number) {
                if *earlier == value {
                    continue;
                }
                return Err(item.error(
                    &f,
                    DerErrorKind::Duplicate(format!(
                        "tag {number} ({name}) with conflicting values"
                    )),
                ));
            }
            list.entries.push((number, value));
        }
        Ok(list)
    }

    fn value(
        &self,
        number: u32,
        t: &Tlv<'_>,
        f: &str,
        ids: &mut AttestationIds,
    ) -> Result<AuthValue, DerError> {
        let Some((_, _, kind)) = KNOWN_TAGS.iter().find(|(n, _, _)| *n == number) else {
            return Ok(AuthValue::Unknown(t.raw.to_vec()));
        };
        Ok(match kind {
            Kind::Int => AuthValue::Int(t.expect(Tag::INTEGER, "INTEGER", f)?.i64(f)?),
            Kind::IntSet => AuthValue::IntSet(self.int_set(t, f)?),
            Kind::Null => {
                let n = t.expect(Tag::NULL, "NULL", f)?;
                if !n.value.is_empty() {
                    return Err(n.error(f, DerErrorKind::BadValue("NULL with content")));
                }
                AuthValue::Flag
            }
            Kind::Bytes => AuthValue::Bytes(self.octets_of(t, f)?.to_vec()),
            Kind::Utf8 => {
                let s = self.utf8(t, f)?;
                let slot = match number {
                    710 => &mut ids.brand,
                    711 => &mut ids.device,
                    712 => &mut ids.product,
                    716 => &mut ids.manufacturer,
                    _ => &mut ids.model,
                };
                *slot = Some(s.clone());
                AuthValue::Bytes(s.into_bytes())
            }
            Kind::Redacted => {
                self.octets_of(t, f)?;
                match number {
                    713 => ids.serial_present = true,
                    714 => ids.imei_present = true,
                    715 => ids.meid_present = true,
                    _ => ids.second_imei_present = true,
                }
                AuthValue::Redacted
            }
            Kind::RootOfTrust => AuthValue::RootOfTrust(self.root_of_trust(t, f)?),
            Kind::ApplicationId => AuthValue::ApplicationId(self.application_id(t, f)?),
        })
    }

    fn root_of_trust(&self, t: &Tlv<'_>, f: &str) -> Result<RootOfTrust, DerError> {
        let seq = t.expect(Tag::SEQUENCE, "RootOfTrust", f)?;
        let mut r = seq.reader();
        let verified_boot_key = self
            .octets(&mut r, &format!("{f}.verifiedBootKey"))?
            .to_vec();
        let device_locked = r
            .read(Tag::BOOLEAN, "BOOLEAN", &format!("{f}.deviceLocked"))?
            .boolean(&format!("{f}.deviceLocked"))?;
        let state_field = format!("{f}.verifiedBootState");
        let state = r.read(Tag::ENUMERATED, "ENUMERATED", &state_field)?;
        let verified_boot_state = match state.i64(&state_field)? {
            0 => VerifiedBootState::Verified,
            1 => VerifiedBootState::SelfSigned,
            2 => VerifiedBootState::Unverified,
            3 => VerifiedBootState::Failed,
            _ => {
                return Err(state.error(
                    &state_field,
                    DerErrorKind::BadValue("unknown VerifiedBootState"),
                ));
            }
        };
        // The hash was defined from attestationVersion 3, but a Poco F1 at version 2 sends it:
        // accept 3 or 4 elements whatever the version.
        let verified_boot_hash = if r.is_empty() {
            None
        } else {
            Some(
                self.octets(&mut r, &format!("{f}.verifiedBootHash"))?
                    .to_vec(),
            )
        };
        r.finish(f)?;
        Ok(RootOfTrust {
            verified_boot_key,
            device_locked,
            verified_boot_state,
            verified_boot_hash,
        })
    }

    fn application_id(&self, t: &Tlv<'_>, f: &str) -> Result<AttestationApplicationId, DerError> {
        let wrapped = self.octets_of(t, f)?;
        let seq = der::parse_single(
            wrapped,
            t.value_offset,
            Tag::SEQUENCE,
            "AttestationApplicationId",
            f,
        )?;
        let mut r = seq.reader();
        let pf = format!("{f}.packageInfos");
        let infos = r.read(Tag::SET, "SET OF AttestationPackageInfo", &pf)?;
        let df = format!("{f}.signatureDigests");
        let digests = r.read(Tag::SET, "SET OF OCTET STRING", &df)?;
        r.finish(f)?;
        let mut packages = Vec::new();
        let mut pr = infos.reader();
        while !pr.is_empty() {
            if packages.len() >= self.limits.max_set_elements {
                return Err(infos.error(&pf, DerErrorKind::LimitExceeded("too many packages")));
            }
            let info = pr.read(Tag::SEQUENCE, "AttestationPackageInfo", &pf)?;
            let mut ir = info.reader();
            let name_tlv = ir.read(
                Tag::OCTET_STRING,
                "OCTET STRING",
                &format!("{pf}.packageName"),
            )?;
            let name = self.utf8(&name_tlv, &format!("{pf}.packageName"))?;
            let version = ir
                .read(Tag::INTEGER, "INTEGER", &format!("{pf}.version"))?
                .i64(&format!("{pf}.version"))?;
            ir.finish(&pf)?;
            packages.push(PackageInfo { name, version });
        }
        let mut signature_digests = Vec::new();
        let mut dr = digests.reader();
        while !dr.is_empty() {
            if signature_digests.len() >= self.limits.max_set_elements {
                return Err(digests.error(
                    &df,
                    DerErrorKind::LimitExceeded("too many signature digests"),
                ));
            }
            signature_digests.push(self.octets(&mut dr, &df)?.to_vec());
        }
        Ok(AttestationApplicationId {
            packages,
            signature_digests,
        })
    }
}

/// The tag of the first element in `value`, so `parse_single` accepts whatever is there (the
/// caller checks the type).
fn any_tag(value: &[u8]) -> Tag {
    Reader::new(value).peek_tag().unwrap_or(Tag::NULL)
}
