//! Where the shared real-device corpus is, for the tests and the benchmark.

use std::path::PathBuf;

/// `ENIGM_VECTORS`, else `../shared/vectors/android-key-attestation` beside the repository.
/// `None` (with a message) when it is absent; a panic when absent under `CI=true`, where the
/// corpus tests must run.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("ENIGM_VECTORS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/vectors/android-key-attestation"),
    };
    if dir.join("index.json").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "corpus missing at {} and CI=true: the corpus tests must run in CI",
        dir.display()
    );
    eprintln!(
        "SKIPPED: corpus not found at {} (set ENIGM_VECTORS)",
        dir.display()
    );
    None
}
