//! Building KeyDescription records, good and deliberately bad.

use attest_android::der::write;

/// Encoders for AuthorizationList values (the inner value of each `[tag] EXPLICIT`).
pub mod value {
    use super::write;

    /// `INTEGER`.
    pub fn int(v: i64) -> Vec<u8> {
        write::integer(v)
    }
    /// `SET OF INTEGER`, in the order given (real devices do not always sort).
    pub fn int_set(values: &[i64]) -> Vec<u8> {
        let parts: Vec<Vec<u8>> = values.iter().map(|v| write::integer(*v)).collect();
        write::set(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>())
    }
    /// `NULL`.
    pub fn null() -> Vec<u8> {
        write::null()
    }
    /// `OCTET STRING`.
    pub fn octets(v: &[u8]) -> Vec<u8> {
        write::octet_string(v)
    }
    /// `RootOfTrust` with the 4-element layout.
    pub fn root_of_trust(boot_key: &[u8], locked: bool, state: i64, boot_hash: &[u8]) -> Vec<u8> {
        write::sequence(&[
            &write::octet_string(boot_key),
            &write::boolean(locked),
            &write::enumerated(state),
            &write::octet_string(boot_hash),
        ])
    }
    /// `AttestationApplicationId` wrapped in its OCTET STRING.
    pub fn application_id(packages: &[(&str, i64)], digests: &[&[u8]]) -> Vec<u8> {
        let infos: Vec<Vec<u8>> = packages
            .iter()
            .map(|(n, v)| {
                write::sequence(&[&write::octet_string(n.as_bytes()), &write::integer(*v)])
            })
            .collect();
        let digests: Vec<Vec<u8>> = digests.iter().map(|d| write::octet_string(d)).collect();
        let aaid = write::sequence(&[
            &write::set(&infos.iter().map(Vec::as_slice).collect::<Vec<_>>()),
            &write::set(&digests.iter().map(Vec::as_slice).collect::<Vec<_>>()),
        ]);
        write::octet_string(&aaid)
    }
}

/// Security level values.
pub const SOFTWARE: i64 = 0;
/// TrustedEnvironment.
pub const TEE: i64 = 1;
/// StrongBox.
pub const STRONGBOX: i64 = 2;

/// The OTA client package the typical record names.
pub const UPDATER_PACKAGE: &str = "os.enigm.updater";
/// The OTA client signing digest the typical record names.
pub const UPDATER_DIGEST: [u8; 32] = [0x5a; 32];

/// A KeyDescription to encode. Tags are encoded in the order of the vectors, so a test can put
/// them out of order or twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDescriptionSpec {
    /// attestationVersion.
    pub attestation_version: i64,
    /// attestationSecurityLevel (0, 1, 2).
    pub attestation_security_level: i64,
    /// keyMintVersion.
    pub keymint_version: i64,
    /// keyMintSecurityLevel.
    pub keymint_security_level: i64,
    /// attestationChallenge.
    pub challenge: Vec<u8>,
    /// uniqueId.
    pub unique_id: Vec<u8>,
    /// softwareEnforced entries: (tag, encoded inner value).
    pub software: Vec<(u32, Vec<u8>)>,
    /// hardwareEnforced entries: (tag, encoded inner value).
    pub hardware: Vec<(u32, Vec<u8>)>,
}

fn set_entry(list: &mut Vec<(u32, Vec<u8>)>, tag: u32, v: Vec<u8>) {
    list.retain(|(t, _)| *t != tag);
    let at = list
        .iter()
        .position(|(t, _)| *t > tag)
        .unwrap_or(list.len());
    list.insert(at, (tag, v));
}

impl KeyDescriptionSpec {
    /// A KeyMint 300 TEE record of a locked, verified device with boot key `boot_key`, patch
    /// levels of September 2026, owned by the Enigm OS updater.
    pub fn typical(boot_key: &[u8], challenge: &[u8]) -> KeyDescriptionSpec {
        KeyDescriptionSpec {
            attestation_version: 300,
            attestation_security_level: TEE,
            keymint_version: 300,
            keymint_security_level: TEE,
            challenge: challenge.to_vec(),
            unique_id: Vec::new(),
            software: vec![
                (701, value::int(1_790_000_000_000)),
                (
                    709,
                    value::application_id(&[(UPDATER_PACKAGE, 42)], &[&UPDATER_DIGEST]),
                ),
            ],
            hardware: vec![
                (1, value::int_set(&[2, 3])),
                (2, value::int(3)),
                (3, value::int(256)),
                (5, value::int_set(&[4])),
                (10, value::int(1)),
                (503, value::null()),
                (702, value::int(0)),
                (704, value::root_of_trust(boot_key, true, 0, &[0x11; 32])),
                (705, value::int(160_000)),
                (706, value::int(202_609)),
                (718, value::int(20_260_905)),
                (719, value::int(20_260_905)),
            ],
        }
    }

    /// Sets (or replaces) a hardware-enforced tag, keeping ascending order.
    pub fn set_hw(&mut self, tag: u32, v: Vec<u8>) -> &mut Self {
        set_entry(&mut self.hardware, tag, v);
        self
    }

    /// Removes a hardware-enforced tag.
    pub fn remove_hw(&mut self, tag: u32) -> &mut Self {
        self.hardware.retain(|(t, _)| *t != tag);
        self
    }

    /// Sets (or replaces) a software-enforced tag, keeping ascending order.
    pub fn set_sw(&mut self, tag: u32, v: Vec<u8>) -> &mut Self {
        set_entry(&mut self.software, tag, v);
        self
    }

    /// The DER encoding, as the extension value.
    pub fn encode(&self) -> Vec<u8> {
        let list = |entries: &[(u32, Vec<u8>)]| {
            let parts: Vec<Vec<u8>> = entries
                .iter()
                .map(|(t, v)| write::explicit(*t, v))
                .collect();
            write::sequence(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>())
        };
        write::sequence(&[
            &write::integer(self.attestation_version),
            &write::enumerated(self.attestation_security_level),
            &write::integer(self.keymint_version),
            &write::enumerated(self.keymint_security_level),
            &write::octet_string(&self.challenge),
            &write::octet_string(&self.unique_id),
            &list(&self.software),
            &list(&self.hardware),
        ])
    }
}
