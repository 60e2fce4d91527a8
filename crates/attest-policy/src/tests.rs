//! Policy tests are tables: a policy, claims, a workflow, the expected reasons.

use super::*;
use attest_android::{
    AttestationApplicationId, AttestationIds, PackageInfo, RootOfTrust, SoftwareEnforced,
};

const BOOT_KEY: [u8; 32] = [0xb0; 32];
const OTHER_KEY: [u8; 32] = [0xee; 32];
const DIGEST: [u8; 32] = [0x5a; 32];

fn claims() -> Claims {
    Claims {
        attestation_version: 300,
        keymint_version: 300,
        security_level: SecurityLevel::TrustedEnvironment,
        challenge: b"c".to_vec(),
        root_of_trust: Some(RootOfTrust {
            verified_boot_key: BOOT_KEY.to_vec(),
            device_locked: true,
            verified_boot_state: VerifiedBootState::SelfSigned,
            verified_boot_hash: Some(vec![0x11; 32]),
        }),
        os_version: Some(160_000),
        os_patch_level: PatchLevel::new(202_609),
        vendor_patch_level: PatchLevel::new(20_260_905),
        boot_patch_level: PatchLevel::new(20_260_905),
        purposes: vec![2],
        origin: Some(0),
        attestation_ids: AttestationIds::default(),
        software_enforced: SoftwareEnforced {
            attestation_application_id: Some(AttestationApplicationId {
                packages: vec![PackageInfo {
                    name: "os.enigm.updater".into(),
                    version: 42,
                }],
                signature_digests: vec![DIGEST.to_vec()],
            }),
            creation_date_time: None,
        },
    }
}

fn policy() -> Policy {
    Policy::from_toml(&format!(
        r#"
[devices."{}"]
model = "Enigm Phone 1"
boot_states = ["verified", "self_signed"]

[application]
packages = ["os.enigm.updater"]
signature_digests = ["{}"]

[defaults]
min_security_level = "tee"
require_device_locked = true
min_os_patch_level = 202601
min_vendor_patch_level = 20260101
min_boot_patch_level = 20260101
allowed_os_versions = []
allowed_boot_hashes = []

[workflows.sensitive_channel]
min_security_level = "strongbox"

[workflows.update_authorization]
allowed_os_versions = [160000, 170000]
allowed_boot_hashes = ["{}"]
"#,
        hex(&BOOT_KEY),
        hex(&DIGEST),
        hex(&[0x11; 32])
    ))
    .unwrap()
}

use ReasonCode as R;

#[test]
fn evaluation_table() {
    type Change = fn(&mut Claims);
    let cases: Vec<(&str, Workflow, Change, Vec<ReasonCode>)> = vec![
        ("eligible", Workflow::Enrollment, |_| {}, vec![]),
        (
            "eligible with 6-digit vendor patch",
            Workflow::Enrollment,
            |c| c.vendor_patch_level = PatchLevel::new(202_609),
            vec![],
        ),
        (
            "unknown boot key",
            Workflow::Enrollment,
            |c| c.root_of_trust.as_mut().unwrap().verified_boot_key = OTHER_KEY.to_vec(),
            vec![R::UnsupportedDevice, R::UnknownBootKey],
        ),
        (
            "unlocked",
            Workflow::Registration,
            |c| c.root_of_trust.as_mut().unwrap().device_locked = false,
            vec![R::EligibilityFailure, R::BootloaderUnlocked],
        ),
        (
            "unverified boot",
            Workflow::Registration,
            |c| {
                c.root_of_trust.as_mut().unwrap().verified_boot_state =
                    VerifiedBootState::Unverified
            },
            vec![R::EligibilityFailure, R::BootStateUnverified],
        ),
        (
            "no root of trust",
            Workflow::Registration,
            |c| c.root_of_trust = None,
            vec![R::EligibilityFailure, R::BootStateUnverified],
        ),
        (
            "os patch too old",
            Workflow::ProtectedMetadata,
            |c| c.os_patch_level = PatchLevel::new(202_512),
            vec![R::IneligibleBuild, R::PatchLevelTooOld],
        ),
        (
            "vendor patch too old",
            Workflow::ProtectedMetadata,
            |c| c.vendor_patch_level = PatchLevel::new(20_251_231),
            vec![R::IneligibleBuild, R::PatchLevelTooOld],
        ),
        (
            "boot patch missing",
            Workflow::ProtectedMetadata,
            |c| c.boot_patch_level = None,
            vec![R::IneligibleBuild, R::PatchLevelTooOld],
        ),
        (
            "tee on strongbox workflow",
            Workflow::SensitiveChannel,
            |_| {},
            vec![R::EligibilityFailure],
        ),
        (
            "strongbox on strongbox workflow",
            Workflow::SensitiveChannel,
            |c| c.security_level = SecurityLevel::StrongBox,
            vec![],
        ),
        (
            "os version not allowed",
            Workflow::UpdateAuthorization,
            |c| c.os_version = Some(150_000),
            vec![R::IneligibleBuild],
        ),
        (
            "boot hash not allowed",
            Workflow::UpdateAuthorization,
            |c| c.root_of_trust.as_mut().unwrap().verified_boot_hash = Some(vec![0x22; 32]),
            vec![R::IneligibleBuild],
        ),
        (
            "boot hash absent",
            Workflow::UpdateAuthorization,
            |c| c.root_of_trust.as_mut().unwrap().verified_boot_hash = None,
            vec![R::IneligibleBuild],
        ),
        (
            "other package",
            Workflow::PrivateArtifact,
            |c| {
                c.software_enforced
                    .attestation_application_id
                    .as_mut()
                    .unwrap()
                    .packages[0]
                    .name = "com.evil".into()
            },
            vec![R::EligibilityFailure, R::WrongApplication],
        ),
        (
            "extra shared-uid package",
            Workflow::PrivateArtifact,
            |c| {
                c.software_enforced
                    .attestation_application_id
                    .as_mut()
                    .unwrap()
                    .packages
                    .push(PackageInfo {
                        name: "com.evil".into(),
                        version: 1,
                    })
            },
            vec![R::EligibilityFailure, R::WrongApplication],
        ),
        (
            "other signer",
            Workflow::PrivateArtifact,
            |c| {
                c.software_enforced
                    .attestation_application_id
                    .as_mut()
                    .unwrap()
                    .signature_digests = vec![vec![1; 32]]
            },
            vec![R::EligibilityFailure, R::WrongApplication],
        ),
        (
            "no signer (system_server glitch)",
            Workflow::PrivateArtifact,
            |c| {
                c.software_enforced
                    .attestation_application_id
                    .as_mut()
                    .unwrap()
                    .signature_digests
                    .clear()
            },
            vec![R::EligibilityFailure, R::WrongApplication],
        ),
        (
            "no application id",
            Workflow::PrivateArtifact,
            |c| c.software_enforced.attestation_application_id = None,
            vec![R::EligibilityFailure, R::WrongApplication],
        ),
        (
            "everything wrong at once",
            Workflow::SensitiveChannel,
            |c| {
                c.root_of_trust = None;
                c.os_patch_level = None;
                c.software_enforced.attestation_application_id = None;
            },
            vec![
                R::IneligibleBuild,
                R::EligibilityFailure,
                R::BootStateUnverified,
                R::PatchLevelTooOld,
                R::WrongApplication,
            ],
        ),
    ];
    let p = policy();
    for (name, workflow, change, want) in cases {
        let mut c = claims();
        change(&mut c);
        let d = p.evaluate(&c, workflow);
        let mut want = want;
        want.sort();
        assert_eq!(d.reasons, want, "{name}");
        assert_eq!(d.eligible, want.is_empty(), "{name}");
        assert_eq!(d.policy_hash, p.hash(), "{name}");
    }
}

#[test]
fn allow_listed_key_names_the_model() {
    let d = policy().evaluate(&claims(), Workflow::Enrollment);
    assert_eq!(d.device_model.as_deref(), Some("Enigm Phone 1"));
}

#[test]
fn builtin_policy_trusts_google_and_wants_locked_verified_tee() {
    let p = Policy::builtin();
    assert_eq!(p.hash(), Policy::from_toml(BUILTIN_POLICY).unwrap().hash());
    assert!(p.trust().google_roots);
    let mut c = claims();
    assert_eq!(
        p.evaluate(&c, Workflow::Enrollment).reasons,
        vec![R::EligibilityFailure, R::BootStateUnverified],
        "self-signed is not enough without an allow-list"
    );
    c.root_of_trust.as_mut().unwrap().verified_boot_state = VerifiedBootState::Verified;
    for w in Workflow::ALL {
        assert!(p.evaluate(&c, w).eligible, "{w}");
    }
}

#[test]
fn invalid_policies_name_the_key() {
    let key = hex(&BOOT_KEY);
    let cases: Vec<(String, &str)> = vec![
        (
            "[defaults]\nmin_security_level = \"software\"".into(),
            "defaults.min_security_level",
        ),
        (
            "[defaults]\nmin_os_patch_level = 20260101".into(),
            "defaults.min_os_patch_level",
        ),
        (
            "[defaults]\nmin_vendor_patch_level = 202601".into(),
            "defaults.min_vendor_patch_level",
        ),
        (
            "[defaults]\nmin_boot_patch_level = 20261301".into(),
            "defaults.min_boot_patch_level",
        ),
        (
            "[defaults]\nallowed_boot_hashes = [\"xyz\"]".into(),
            "defaults.allowed_boot_hashes",
        ),
        (
            "[workflows.nightly]\nmin_security_level = \"tee\"".into(),
            "workflows.nightly",
        ),
        (
            "[workflows.sensitive_channel]\nmin_security_level = \"hsm\"".into(),
            "workflows.sensitive_channel.min_security_level",
        ),
        ("[trust]\ngoogle_roots = false".into(), "trust.google_roots"),
        (
            "[devices.\"abcd\"]\nmodel = \"x\"\nboot_states = [\"verified\"]".into(),
            "devices.\"abcd\"",
        ),
        (
            format!(
                "[devices.\"{}\"]\nmodel = \"x\"\nboot_states = [\"verified\"]",
                "00".repeat(32)
            ),
            "devices.\"0000",
        ),
        (
            format!("[devices.\"{key}\"]\nmodel = \"x\"\nboot_states = [\"unverified\"]"),
            "boot_states",
        ),
        (
            format!("[devices.\"{key}\"]\nmodel = \"x\"\nboot_states = []"),
            "boot_states",
        ),
        (
            format!("[devices.\"{key}\"]\nmodel = \"\"\nboot_states = [\"verified\"]"),
            ".model",
        ),
        (
            format!(
                "[devices.\"{key}\"]\nmodel = \"x\"\nboot_states = [\"verified\"]\n[defaults]\nboot_states = [\"verified\"]"
            ),
            "defaults.boot_states",
        ),
        (
            "[application]\nsignature_digests = [\"abcd\"]".into(),
            "application.signature_digests",
        ),
        (
            "[application]\npackages = [\"\"]".into(),
            "application.packages",
        ),
    ];
    for (text, key) in cases {
        let err = Policy::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains(key), "{text:?}: {err}");
    }
    // Unknown keys, wrong types and broken TOML are syntax errors naming the key.
    for (text, key) in [
        ("[defaults]\nmin_patch = 1", "min_patch"),
        (
            "[defaults]\nrequire_device_locked = \"yes\"",
            "require_device_locked",
        ),
        ("[surprise]\nx = 1", "surprise"),
        ("[defaults\n", "line"),
    ] {
        let err = Policy::from_toml(text).unwrap_err();
        assert!(matches!(err, PolicyError::Syntax(_)), "{text:?}");
        assert!(err.to_string().contains(key), "{text:?}: {err}");
    }
}

#[test]
fn documented_example_is_valid() {
    let text = include_str!("../../../docs/policy.example.toml");
    let p = Policy::from_toml(text).unwrap();
    assert_eq!(p.devices().len(), 1);
    assert_eq!(
        p.rules(Workflow::SensitiveChannel)
            .unwrap()
            .min_security_level,
        SecurityLevel::StrongBox
    );
}

#[test]
fn hash_is_of_the_text() {
    let a = Policy::from_toml("[defaults]\nrequire_device_locked = true\n").unwrap();
    let b = Policy::from_toml("[defaults]\nrequire_device_locked = true # same\n").unwrap();
    assert_ne!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 64);
}

#[test]
fn channels_override_rules_and_restrict_models() {
    let key = hex(&BOOT_KEY);
    let p = Policy::from_toml(&format!(
        r#"
[devices."{key}"]
model = "Enigm Phone 1"
boot_states = ["self_signed"]

[channels.beta]
rollout_percent = 10
min_os_patch_level = 202610

[channels.phones]
models = ["Enigm Phone 1"]

[channels.vault]
workflow = "sensitive_channel"
min_security_level = "strongbox"
"#
    ))
    .unwrap();
    let c = claims();
    let beta = p.channel("beta").unwrap();
    assert_eq!(
        (beta.workflow, beta.rollout_percent),
        (Workflow::ReleaseChannel, 10)
    );
    // beta's own minimum: patch 2026-09 is too old there, fine for the plain workflow.
    assert_eq!(
        p.evaluate_for(&c, Workflow::ReleaseChannel, "beta").reasons,
        [R::IneligibleBuild, R::PatchLevelTooOld]
    );
    assert!(
        p.evaluate_for(&c, Workflow::ReleaseChannel, "unconfigured")
            .eligible
    );
    assert!(
        p.evaluate_for(&c, Workflow::ReleaseChannel, "phones")
            .eligible
    );
    // A device whose boot key names no listed model is refused by `models` too.
    let mut other = claims();
    other.root_of_trust.as_mut().unwrap().verified_boot_key = OTHER_KEY.to_vec();
    assert!(
        p.evaluate_for(&other, Workflow::ReleaseChannel, "phones")
            .reasons
            .contains(&R::UnsupportedDevice)
    );
    assert_eq!(
        p.evaluate_for(&c, Workflow::SensitiveChannel, "vault")
            .reasons,
        [R::EligibilityFailure]
    );
    // A channel asked for through the other channel workflow is refused.
    assert_eq!(
        p.evaluate_for(&c, Workflow::ReleaseChannel, "vault")
            .reasons,
        [R::EligibilityFailure]
    );
    // A configured channel's metadata asks what joining it asks (its rules, its models).
    assert_eq!(
        p.evaluate_for(&c, Workflow::ProtectedMetadata, "beta")
            .reasons,
        [R::IneligibleBuild, R::PatchLevelTooOld]
    );
    assert_eq!(
        p.evaluate_for(&c, Workflow::ProtectedMetadata, "vault")
            .reasons,
        [R::EligibilityFailure]
    );
    assert!(
        p.evaluate_for(&other, Workflow::ProtectedMetadata, "phones")
            .reasons
            .contains(&R::UnsupportedDevice)
    );
    assert!(
        p.evaluate_for(&c, Workflow::ProtectedMetadata, "unconfigured")
            .eligible
    );
    // Other workflows ignore channels even when the resource has a channel's name.
    assert!(
        p.evaluate_for(&c, Workflow::PrivateArtifact, "beta")
            .eligible
    );

    for (text, want) in [
        (
            "[channels.x]\nworkflow = \"registration\"",
            "channels.x.workflow",
        ),
        (
            "[channels.x]\nrollout_percent = 101",
            "channels.x.rollout_percent",
        ),
        (
            "[channels.x]\nrollout_percent = -1",
            "channels.x.rollout_percent",
        ),
        ("[channels.x]\nmodels = [\"Nope\"]", "channels.x.models"),
        ("[channels.\"a/b\"]\nrollout_percent = 5", "channels.a/b"),
        ("[channels.x]\nboot_states = [\"verified\"]", "boot_states"),
    ] {
        let err = Policy::from_toml(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
}
