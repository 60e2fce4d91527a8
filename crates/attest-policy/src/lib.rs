//! The eligibility policy: which devices, builds and apps may do which OTA workflow.
//!
//! This room owns the policy format (TOML, documented in `docs/policy.md` with a commented
//! example in `docs/policy.example.toml`), its validation, and its evaluation. A policy is parsed
//! and validated once; evaluation is a total function from verified claims and a workflow to a
//! [`Decision`] that lists every reason that applies. It is pure: file paths in `[trust]` are
//! returned to the caller, who loads them.
//!
//! Reason codes come in pairs: a seed class (`unsupported_device`, `ineligible_build`,
//! `eligibility_failure`) and, where one exists, the specific code (`unknown_boot_key`,
//! `patch_level_too_old`, `bootloader_unlocked`, ...), so that dashboards can group by class and
//! operators can see the cause.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use attest_android::{Claims, PatchLevel, SecurityLevel, VerifiedBootState, hex};
use attest_core::{ReasonCode, Workflow};
use serde::Deserialize;

/// Largest policy file accepted.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not valid TOML, an unknown key, or a value of the wrong type. The message names the key
    /// and line.
    #[error("policy is not valid: {0}")]
    Syntax(String),
    /// A value that is well-typed but not acceptable, or contradicts another.
    #[error("policy key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    google_roots: Option<bool>,
    #[serde(default)]
    extra_roots: Vec<String>,
    status_list: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    model: String,
    boot_states: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    signature_digests: Vec<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawRules {
    min_security_level: Option<String>,
    require_device_locked: Option<bool>,
    boot_states: Option<Vec<String>>,
    min_os_patch_level: Option<i64>,
    min_vendor_patch_level: Option<i64>,
    min_boot_patch_level: Option<i64>,
    allowed_os_versions: Option<Vec<i64>>,
    allowed_boot_hashes: Option<Vec<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    workflow: Option<String>,
    rollout_percent: Option<i64>,
    models: Option<Vec<String>>,
    // Any workflow key, overriding the channel's workflow for this channel.
    min_security_level: Option<String>,
    require_device_locked: Option<bool>,
    min_os_patch_level: Option<i64>,
    min_vendor_patch_level: Option<i64>,
    min_boot_patch_level: Option<i64>,
    allowed_os_versions: Option<Vec<i64>>,
    allowed_boot_hashes: Option<Vec<String>>,
}

impl RawChannel {
    fn rules(&self) -> RawRules {
        RawRules {
            min_security_level: self.min_security_level.clone(),
            require_device_locked: self.require_device_locked,
            boot_states: None,
            min_os_patch_level: self.min_os_patch_level,
            min_vendor_patch_level: self.min_vendor_patch_level,
            min_boot_patch_level: self.min_boot_patch_level,
            allowed_os_versions: self.allowed_os_versions.clone(),
            allowed_boot_hashes: self.allowed_boot_hashes.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    devices: BTreeMap<String, RawDevice>,
    #[serde(default)]
    application: RawApplication,
    #[serde(default)]
    defaults: RawRules,
    #[serde(default)]
    workflows: BTreeMap<String, RawRules>,
    #[serde(default)]
    channels: BTreeMap<String, RawChannel>,
}

/// A rollout channel: which workflow admits to it, its rules, its staged rollout and models.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// `sensitive_channel` or `release_channel`.
    pub workflow: Workflow,
    /// The share of devices admitted, 0-100 (by a server-side bucket of the device handle).
    pub rollout_percent: u8,
    /// Models admitted (as `[devices]` names them); empty = any.
    pub models: Vec<String>,
    /// The workflow's rules with this channel's overrides.
    pub rules: Rules,
}

/// Where the anchors and the status list come from. Paths are as written in the policy
/// (relative ones are relative to the policy file); the caller loads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustConfig {
    /// Trust Google's pinned hardware attestation roots.
    pub google_roots: bool,
    /// Operator anchors (PEM files).
    pub extra_roots: Vec<PathBuf>,
    /// Revocation status list in Google's format.
    pub status_list: Option<PathBuf>,
}

/// An allow-listed verified boot key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The model this boot key belongs to.
    pub model: String,
    /// Boot states accepted with this key.
    pub boot_states: Vec<VerifiedBootState>,
}

/// The OTA client that must own the attested key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Application {
    /// Accepted package names; empty = not checked.
    pub packages: Vec<String>,
    /// Accepted signing certificate digests (SHA-256); empty = not checked.
    pub signature_digests: Vec<Vec<u8>>,
}

/// The rules of one workflow, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Lowest accepted security level.
    pub min_security_level: SecurityLevel,
    /// Whether the bootloader must be locked.
    pub require_device_locked: bool,
    /// Boot states accepted when `[devices]` is empty (with devices, each entry says).
    pub boot_states: Vec<VerifiedBootState>,
    /// Lowest osPatchLevel, YYYYMM; 0 = none.
    pub min_os_patch_level: i64,
    /// Lowest vendorPatchLevel, YYYYMMDD; 0 = none.
    pub min_vendor_patch_level: i64,
    /// Lowest bootPatchLevel, YYYYMMDD; 0 = none.
    pub min_boot_patch_level: i64,
    /// Accepted osVersion values; empty = any.
    pub allowed_os_versions: Vec<i64>,
    /// Accepted verifiedBootHash values (build identities); empty = any.
    pub allowed_boot_hashes: Vec<Vec<u8>>,
}

/// A validated policy.
#[derive(Clone, Debug)]
pub struct Policy {
    hash: String,
    trust: TrustConfig,
    devices: BTreeMap<Vec<u8>, Device>,
    application: Application,
    rules: BTreeMap<Workflow, Rules>,
    channels: BTreeMap<String, Channel>,
}

/// The outcome of evaluating a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the device may proceed.
    pub eligible: bool,
    /// Every reason that applies, sorted and without repeats; empty when eligible.
    pub reasons: Vec<ReasonCode>,
    /// SHA-256 (hex) of the policy text that decided.
    pub policy_hash: String,
    /// The model named by the device's boot key, when allow-listed.
    pub device_model: Option<String>,
}

/// The policy used when none is configured: Google roots, a locked bootloader, Verified boot,
/// TEE or better, any build and any app.
pub const BUILTIN_POLICY: &str = r#"# enigm-attest built-in default policy
[trust]
google_roots = true

[defaults]
min_security_level = "tee"
require_device_locked = true
boot_states = ["verified"]
"#;

fn hex_decode(key: &str, s: &str) -> Result<Vec<u8>, PolicyError> {
    attest_core::hex::decode(s).ok_or_else(|| invalid(key, format!("{s:?} is not hexadecimal")))
}

fn security_level(key: &str, s: &str) -> Result<SecurityLevel, PolicyError> {
    match s {
        "tee" => Ok(SecurityLevel::TrustedEnvironment),
        "strongbox" => Ok(SecurityLevel::StrongBox),
        other => Err(invalid(
            key,
            format!("{other:?} is not \"tee\" or \"strongbox\""),
        )),
    }
}

fn boot_states(key: &str, names: &[String]) -> Result<Vec<VerifiedBootState>, PolicyError> {
    if names.is_empty() {
        return Err(invalid(key, "must list at least one boot state"));
    }
    names
        .iter()
        .map(|n| match n.as_str() {
            "verified" => Ok(VerifiedBootState::Verified),
            "self_signed" => Ok(VerifiedBootState::SelfSigned),
            "unverified" | "failed" => Err(invalid(
                key,
                format!(
                    "{n:?} means verified boot did not vouch for the OS; it can never be eligible"
                ),
            )),
            other => Err(invalid(
                key,
                format!("{other:?} is not \"verified\" or \"self_signed\""),
            )),
        })
        .collect()
}

fn patch(key: &str, v: i64, digits: u32) -> Result<i64, PolicyError> {
    let ok = PatchLevel::new(v).is_some() && v.to_string().len() == digits as usize;
    if ok {
        Ok(v)
    } else {
        let form = if digits == 6 { "YYYYMM" } else { "YYYYMMDD" };
        Err(invalid(key, format!("{v} is not a {form} patch level")))
    }
}

fn resolve(prefix: &str, base: &Rules, raw: &RawRules) -> Result<Rules, PolicyError> {
    let k = |name: &str| format!("{prefix}.{name}");
    Ok(Rules {
        min_security_level: match &raw.min_security_level {
            Some(s) => security_level(&k("min_security_level"), s)?,
            None => base.min_security_level,
        },
        require_device_locked: raw
            .require_device_locked
            .unwrap_or(base.require_device_locked),
        boot_states: match &raw.boot_states {
            Some(b) => boot_states(&k("boot_states"), b)?,
            None => base.boot_states.clone(),
        },
        min_os_patch_level: match raw.min_os_patch_level {
            Some(v) => patch(&k("min_os_patch_level"), v, 6)?,
            None => base.min_os_patch_level,
        },
        min_vendor_patch_level: match raw.min_vendor_patch_level {
            Some(v) => patch(&k("min_vendor_patch_level"), v, 8)?,
            None => base.min_vendor_patch_level,
        },
        min_boot_patch_level: match raw.min_boot_patch_level {
            Some(v) => patch(&k("min_boot_patch_level"), v, 8)?,
            None => base.min_boot_patch_level,
        },
        allowed_os_versions: match &raw.allowed_os_versions {
            Some(v) => {
                if let Some(bad) = v.iter().find(|x| **x < 0) {
                    return Err(invalid(
                        k("allowed_os_versions"),
                        format!("{bad} is not an osVersion"),
                    ));
                }
                v.clone()
            }
            None => base.allowed_os_versions.clone(),
        },
        allowed_boot_hashes: match &raw.allowed_boot_hashes {
            Some(v) => v
                .iter()
                .map(|h| hex_decode(&k("allowed_boot_hashes"), h))
                .collect::<Result<_, _>>()?,
            None => base.allowed_boot_hashes.clone(),
        },
    })
}

impl Policy {
    /// Parses and validates a policy. Unknown keys, bad values and contradictions are errors
    /// naming the key.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(invalid(
                "(file)",
                format!("larger than {MAX_POLICY_BYTES} bytes"),
            ));
        }
        let raw: RawPolicy =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let hash = attest_android::hex(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref(),
        );

        let trust = TrustConfig {
            google_roots: raw.trust.google_roots.unwrap_or(true),
            extra_roots: raw.trust.extra_roots.iter().map(PathBuf::from).collect(),
            status_list: raw.trust.status_list.as_ref().map(PathBuf::from),
        };
        if !trust.google_roots && trust.extra_roots.is_empty() {
            return Err(invalid(
                "trust.google_roots",
                "false with no trust.extra_roots leaves no trust anchor: every device would fail",
            ));
        }

        let mut devices = BTreeMap::new();
        for (key_hex, d) in &raw.devices {
            let key = format!("devices.\"{key_hex}\"");
            let boot_key = hex_decode(&key, key_hex)?;
            if boot_key.len() != 32 {
                return Err(invalid(
                    &key,
                    "a verified boot key is 32 bytes (64 hex digits)",
                ));
            }
            if boot_key.iter().all(|b| *b == 0) {
                return Err(invalid(
                    &key,
                    "the all-zero boot key is what unlocked devices report",
                ));
            }
            if d.model.trim().is_empty() {
                return Err(invalid(format!("{key}.model"), "must name the model"));
            }
            let states = boot_states(&format!("{key}.boot_states"), &d.boot_states)?;
            if devices
                .insert(
                    boot_key,
                    Device {
                        model: d.model.clone(),
                        boot_states: states,
                    },
                )
                .is_some()
            {
                return Err(invalid(&key, "listed twice (keys differ only in case)"));
            }
        }

        let application = Application {
            packages: raw.application.packages.clone(),
            signature_digests: raw
                .application
                .signature_digests
                .iter()
                .map(|d| {
                    let v = hex_decode("application.signature_digests", d)?;
                    if v.len() == 32 {
                        Ok(v)
                    } else {
                        Err(invalid(
                            "application.signature_digests",
                            format!("{d:?} is not a SHA-256 digest"),
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        if application.packages.iter().any(|p| p.trim().is_empty()) {
            return Err(invalid("application.packages", "empty package name"));
        }

        let builtin = Rules {
            min_security_level: SecurityLevel::TrustedEnvironment,
            require_device_locked: true,
            boot_states: vec![VerifiedBootState::Verified],
            min_os_patch_level: 0,
            min_vendor_patch_level: 0,
            min_boot_patch_level: 0,
            allowed_os_versions: Vec::new(),
            allowed_boot_hashes: Vec::new(),
        };
        let defaults = resolve("defaults", &builtin, &raw.defaults)?;
        if !devices.is_empty() && raw.defaults.boot_states.is_some() {
            return Err(invalid(
                "defaults.boot_states",
                "with [devices] listed, each device's boot_states decides; remove this key",
            ));
        }
        if let Some(name) = raw
            .workflows
            .keys()
            .find(|n| Workflow::from_name(n).is_none())
        {
            let known: Vec<&str> = Workflow::ALL.iter().map(|w| w.as_str()).collect();
            return Err(invalid(
                format!("workflows.{name}"),
                format!("unknown workflow; known: {}", known.join(", ")),
            ));
        }
        let mut rules = BTreeMap::new();
        for w in Workflow::ALL {
            let r = match raw.workflows.get(w.as_str()) {
                Some(raw_rules) => {
                    if !devices.is_empty() && raw_rules.boot_states.is_some() {
                        return Err(invalid(
                            format!("workflows.{w}.boot_states"),
                            "with [devices] listed, each device's boot_states decides; remove this key",
                        ));
                    }
                    resolve(&format!("workflows.{w}"), &defaults, raw_rules)?
                }
                None => defaults.clone(),
            };
            rules.insert(w, r);
        }
        let mut channels = BTreeMap::new();
        for (name, raw_channel) in &raw.channels {
            let k = |key: &str| format!("channels.{name}.{key}");
            let valid_name = (1..=128).contains(&name.len())
                && name != "."
                && name != ".."
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
            if !valid_name {
                return Err(invalid(
                    format!("channels.{name}"),
                    "a channel name is 1 to 128 of A-Z a-z 0-9 . _ -",
                ));
            }
            let workflow = match raw_channel.workflow.as_deref().unwrap_or("release_channel") {
                "release_channel" => Workflow::ReleaseChannel,
                "sensitive_channel" => Workflow::SensitiveChannel,
                other => {
                    return Err(invalid(
                        k("workflow"),
                        format!("{other:?} is not \"release_channel\" or \"sensitive_channel\""),
                    ));
                }
            };
            let rollout = raw_channel.rollout_percent.unwrap_or(100);
            let rollout_percent = u8::try_from(rollout)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    invalid(k("rollout_percent"), format!("{rollout} is not 0..=100"))
                })?;
            let models = raw_channel.models.clone().unwrap_or_default();
            if let Some(m) = models
                .iter()
                .find(|m| !devices.values().any(|d| &d.model == *m))
            {
                return Err(invalid(
                    k("models"),
                    format!("{m:?} is no model of [devices]"),
                ));
            }
            let base = rules
                .get(&workflow)
                .cloned()
                .unwrap_or_else(|| defaults.clone());
            let rules = resolve(&format!("channels.{name}"), &base, &raw_channel.rules())?;
            channels.insert(
                name.clone(),
                Channel {
                    workflow,
                    rollout_percent,
                    models,
                    rules,
                },
            );
        }
        Ok(Policy {
            hash,
            trust,
            devices,
            application,
            rules,
            channels,
        })
    }

    /// The built-in default policy ([`BUILTIN_POLICY`]).
    pub fn builtin() -> Policy {
        // The built-in text is a constant validated by a test; fall back to an empty device list
        // on the impossible error rather than panic.
        Policy::from_toml(BUILTIN_POLICY).unwrap_or_else(|_| Policy {
            hash: String::new(),
            trust: TrustConfig {
                google_roots: true,
                extra_roots: Vec::new(),
                status_list: None,
            },
            devices: BTreeMap::new(),
            application: Application::default(),
            rules: BTreeMap::new(),
            channels: BTreeMap::new(),
        })
    }

    /// SHA-256 (hex) of the policy text.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The trust configuration.
    pub fn trust(&self) -> &TrustConfig {
        &self.trust
    }

    /// The allow-listed devices by boot key.
    pub fn devices(&self) -> &BTreeMap<Vec<u8>, Device> {
        &self.devices
    }

    /// The application requirement.
    pub fn application(&self) -> &Application {
        &self.application
    }

    /// The rules of `workflow`.
    pub fn rules(&self, workflow: Workflow) -> Option<&Rules> {
        self.rules.get(&workflow)
    }

    /// A configured channel.
    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.get(name)
    }

    /// The configured channels' names, sorted (each a valid resource name).
    pub fn channel_names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    /// Decides for `workflow` on `resource`: for the channel workflows and for
    /// `protected_metadata`, a configured channel's rules and models apply (and a channel
    /// configured for the other channel workflow is refused). Otherwise as
    /// [`Policy::evaluate`].
    pub fn evaluate_for(&self, claims: &Claims, workflow: Workflow, resource: &str) -> Decision {
        let channel_workflow = matches!(
            workflow,
            Workflow::ReleaseChannel | Workflow::SensitiveChannel
        );
        // A configured channel's metadata asks what joining it asks: its rules and models.
        let applies = channel_workflow || workflow == Workflow::ProtectedMetadata;
        match self.channels.get(resource).filter(|_| applies) {
            None => self.evaluate(claims, workflow),
            Some(c) if channel_workflow && c.workflow != workflow => Decision {
                eligible: false,
                reasons: vec![ReasonCode::EligibilityFailure],
                policy_hash: self.hash.clone(),
                device_model: None,
            },
            Some(c) => {
                let mut d = self.evaluate_with(claims, &c.rules);
                let model_ok = c.models.is_empty()
                    || d.device_model
                        .as_ref()
                        .is_some_and(|m| c.models.contains(m));
                if !model_ok {
                    d.reasons.push(ReasonCode::UnsupportedDevice);
                    d.reasons.sort();
                    d.reasons.dedup();
                    d.eligible = false;
                }
                d
            }
        }
    }

    /// Decides whether a device with `claims` may do `workflow`. Total: every input gives a
    /// decision; anything the policy cannot confirm is a reason to refuse.
    pub fn evaluate(&self, claims: &Claims, workflow: Workflow) -> Decision {
        match self.rules.get(&workflow) {
            Some(rules) => self.evaluate_with(claims, rules),
            None => Decision {
                eligible: false,
                reasons: vec![ReasonCode::EligibilityFailure],
                policy_hash: self.hash.clone(),
                device_model: None,
            },
        }
    }

    fn evaluate_with(&self, claims: &Claims, rules: &Rules) -> Decision {
        let mut reasons = BTreeSet::new();
        let mut device_model = None;
        let mut add = |seed: ReasonCode, specific: Option<ReasonCode>| {
            reasons.insert(seed);
            if let Some(s) = specific {
                reasons.insert(s);
            }
        };

        if claims.security_level < rules.min_security_level {
            add(ReasonCode::EligibilityFailure, None);
        }
        match &claims.root_of_trust {
            None => add(
                ReasonCode::EligibilityFailure,
                Some(ReasonCode::BootStateUnverified),
            ),
            Some(rot) => {
                if rules.require_device_locked && !rot.device_locked {
                    add(
                        ReasonCode::EligibilityFailure,
                        Some(ReasonCode::BootloaderUnlocked),
                    );
                }
                let accepted_states = if self.devices.is_empty() {
                    Some(&rules.boot_states)
                } else {
                    match self.devices.get(&rot.verified_boot_key) {
                        Some(d) => {
                            device_model = Some(d.model.clone());
                            Some(&d.boot_states)
                        }
                        None => {
                            add(
                                ReasonCode::UnsupportedDevice,
                                Some(ReasonCode::UnknownBootKey),
                            );
                            None
                        }
                    }
                };
                if accepted_states.is_some_and(|s| !s.contains(&rot.verified_boot_state)) {
                    add(
                        ReasonCode::EligibilityFailure,
                        Some(ReasonCode::BootStateUnverified),
                    );
                }
                if !rules.allowed_boot_hashes.is_empty()
                    && !rot
                        .verified_boot_hash
                        .as_ref()
                        .is_some_and(|h| rules.allowed_boot_hashes.contains(h))
                {
                    add(ReasonCode::IneligibleBuild, None);
                }
            }
        }
        if !rules.allowed_os_versions.is_empty()
            && !claims
                .os_version
                .is_some_and(|v| rules.allowed_os_versions.contains(&v))
        {
            add(ReasonCode::IneligibleBuild, None);
        }
        let too_old = |level: Option<PatchLevel>, min: i64, ymd: bool| {
            min > 0
                && level.is_none_or(|p| {
                    if ymd {
                        p.year_month_day() < min
                    } else {
                        p.year_month() < min
                    }
                })
        };
        if too_old(claims.os_patch_level, rules.min_os_patch_level, false)
            || too_old(
                claims.vendor_patch_level,
                rules.min_vendor_patch_level,
                true,
            )
            || too_old(claims.boot_patch_level, rules.min_boot_patch_level, true)
        {
            add(
                ReasonCode::IneligibleBuild,
                Some(ReasonCode::PatchLevelTooOld),
            );
        }
        if !self.application_ok(claims) {
            add(
                ReasonCode::EligibilityFailure,
                Some(ReasonCode::WrongApplication),
            );
        }

        let reasons: Vec<ReasonCode> = reasons.into_iter().collect();
        Decision {
            eligible: reasons.is_empty(),
            reasons,
            policy_hash: self.hash.clone(),
            device_model,
        }
    }

    /// Every package sharing the key's UID must be an accepted one (another app in a shared
    /// UID could use the key), and likewise every signing digest.
    fn application_ok(&self, claims: &Claims) -> bool {
        let app = &self.application;
        if app.packages.is_empty() && app.signature_digests.is_empty() {
            return true;
        }
        let Some(aaid) = &claims.software_enforced.attestation_application_id else {
            return false;
        };
        let packages_ok = app.packages.is_empty()
            || (!aaid.packages.is_empty()
                && aaid.packages.iter().all(|p| app.packages.contains(&p.name)));
        let digests_ok = app.signature_digests.is_empty()
            || (!aaid.signature_digests.is_empty()
                && aaid
                    .signature_digests
                    .iter()
                    .all(|d| app.signature_digests.contains(d)));
        packages_ok && digests_ok
    }
}

/// The boot key of a device entry as the policy file writes it (lowercase hex).
pub fn boot_key_name(key: &[u8]) -> String {
    hex(key)
}

#[cfg(test)]
mod tests;
