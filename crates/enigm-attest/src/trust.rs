//! Loading what the verifier trusts: the policy's `[trust]` section plus command-line extras.
//! Shared by `verify` and `serve`, so both trust exactly the same things for the same inputs.

use std::path::{Path, PathBuf};

use attest_android::{MAX_STATUS_LIST_BYTES, StatusList, TrustAnchors, Verifier, pem};
use attest_policy::{MAX_POLICY_BYTES, Policy};

/// A problem with the command line or a file: exit status 2, or a refused start.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// Largest chain or certificate file read (a chain is a few kilobytes).
pub const MAX_CHAIN_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a file of at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, CliError> {
    let meta = std::fs::metadata(path).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    if meta.len() > limit {
        return Err(CliError(format!(
            "{}: larger than {limit} bytes",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// A policy loaded from a file, with the folder its relative paths start from.
pub struct LoadedPolicy {
    /// The validated policy.
    pub policy: Policy,
    /// Folder of the policy file (for `extra_roots` and `status_list`).
    pub dir: PathBuf,
}

/// Reads and validates a policy file.
pub fn load_policy(path: &Path) -> Result<LoadedPolicy, CliError> {
    let bytes = read_limited(path, MAX_POLICY_BYTES as u64)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError(format!("{}: not UTF-8 text", path.display())))?;
    let policy =
        Policy::from_toml(&text).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(LoadedPolicy { policy, dir })
}

/// Adds one PEM root file (exactly one certificate) to `anchors`.
pub fn add_root_file(anchors: &mut TrustAnchors, path: &Path) -> Result<String, CliError> {
    let text = String::from_utf8(read_limited(path, MAX_CHAIN_FILE_BYTES)?)
        .map_err(|_| CliError(format!("{}: not a PEM text file", path.display())))?;
    let ders =
        pem::parse_certificates(&text).map_err(|e| CliError(format!("{}: {e}", path.display())))?;
    let [der] = <[Vec<u8>; 1]>::try_from(ders).map_err(|ders| {
        CliError(format!(
            "{}: holds {} certificates; give one root per file",
            path.display(),
            ders.len()
        ))
    })?;
    anchors
        .add_certificate(der)
        .map(|id| id.name())
        .map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// Reads a status list in Google's format.
pub fn load_status_list(path: &Path) -> Result<StatusList, CliError> {
    let bytes = read_limited(path, MAX_STATUS_LIST_BYTES as u64)?;
    StatusList::from_json(&bytes).map_err(|e| CliError(format!("{}: {e}", path.display())))
}

/// What a policy (or, without one, the built-in defaults) trusts, plus command-line extras:
/// Google's roots unless the policy turns them off, the policy's `extra_roots` (relative to
/// its file), then `extra_roots`; the status list from `status_list`, else the policy's.
pub fn load_trust_material(
    policy: Option<&LoadedPolicy>,
    extra_roots: &[PathBuf],
    status_list: Option<&Path>,
) -> Result<(TrustAnchors, Option<StatusList>), CliError> {
    let google = policy.is_none_or(|p| p.policy.trust().google_roots);
    let mut anchors = if google {
        TrustAnchors::google()
    } else {
        TrustAnchors::empty()
    };
    let mut list_path = status_list.map(Path::to_path_buf);
    if let Some(p) = policy {
        for r in &p.policy.trust().extra_roots {
            add_root_file(&mut anchors, &p.dir.join(r))?;
        }
        if list_path.is_none() {
            list_path = p.policy.trust().status_list.as_ref().map(|s| p.dir.join(s));
        }
    }
    for r in extra_roots {
        add_root_file(&mut anchors, r)?;
    }
    let list = list_path.map(|p| load_status_list(&p)).transpose()?;
    Ok((anchors, list))
}

/// The verifier for `verify` and `policy check`; the second value names every anchor.
pub fn build_verifier(
    policy: Option<&LoadedPolicy>,
    extra_roots: &[PathBuf],
    status_list: Option<&Path>,
) -> Result<(Verifier, Vec<String>), CliError> {
    let (anchors, list) = load_trust_material(policy, extra_roots, status_list)?;
    let names = anchors.iter().map(|a| a.id().name()).collect();
    // Verifying many chains from the same devices repeats the same CA links.
    let mut verifier = Verifier::new(anchors).with_link_cache(4096);
    if let Some(list) = list {
        verifier = verifier.with_status_list(list);
    }
    Ok((verifier, names))
}
