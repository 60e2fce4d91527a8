//! `enigm-attest verify` as a user runs it: a real process, real files, real signatures.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use attest_android::pem;
use attest_device::SoftwareDevice;
use attest_device::testing::TempDir;
use serde_json::Value;

fn write(tmp: &TempDir, name: &str, contents: &[u8]) -> PathBuf {
    tmp.write(name, contents).unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_enigm-attest"))
        .args(args)
        .output()
        .unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const AT: &str = "2026-11-01T00:00:00Z";

#[test]
fn verifies_a_minted_chain_and_prints_the_public_json() {
    let tmp = TempDir::new("json").unwrap();
    let device = SoftwareDevice::new().unwrap();
    let a = device.attest(b"\x01\x02\xff").unwrap();
    let chain = write(
        &tmp,
        "chain.pem",
        pem::encode_certificates(&a.chain).as_bytes(),
    );
    let root = write(
        &tmp,
        "root.pem",
        pem::encode_certificates(&[device.root_cert().to_vec()]).as_bytes(),
    );

    let out = run(&[
        "verify",
        "--chain",
        s(&chain),
        "--trust-root",
        s(&root),
        "--at",
        AT,
        "--challenge",
        "0102ff",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = &lines(&out)[0];
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["reason"], Value::Null);
    assert_eq!(v["chain"]["length"], 3);
    assert!(
        v["chain"]["anchor"]
            .as_str()
            .unwrap()
            .starts_with("configured:")
    );
    assert_eq!(v["chain"]["provisioning"], "factory");
    let kd = &v["key_description"];
    assert_eq!(kd["attestation_version"], 300);
    assert_eq!(kd["attestation_security_level"], "tee");
    assert_eq!(kd["attestation_challenge"], "0102ff");
    assert_eq!(kd["root_of_trust"]["verified_boot_state"], "verified");
    assert_eq!(kd["root_of_trust"]["enforced_by"], "hardware");
    assert_eq!(kd["os_patch_level"], 202609);
    assert_eq!(
        kd["attestation_application_id"]["packages"][0]["name"],
        "os.enigm.updater"
    );
    assert_eq!(kd["hardware_enforced_tags"][0], 1);
    // Key order of the public interface.
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["verdict", "reason", "detail", "chain", "key_description"]
    );

    // Without the device's root: Google roots only.
    let out = run(&["verify", "--chain", s(&chain), "--at", AT, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v = &lines(&out)[0];
    assert_eq!(v["reason"], "invalid_trust_chain");
    assert_eq!(
        v["key_description"]["attestation_challenge"], "0102ff",
        "filled for an invalid chain too"
    );
}

#[test]
fn many_chains_one_line_each_in_order() {
    let tmp = TempDir::new("many").unwrap();
    let device = SoftwareDevice::new().unwrap();
    let root = write(
        &tmp,
        "root.pem",
        pem::encode_certificates(&[device.root_cert().to_vec()]).as_bytes(),
    );
    let good = write(
        &tmp,
        "good.pem",
        pem::encode_certificates(&device.attest(b"c").unwrap().chain).as_bytes(),
    );
    let other = write(
        &tmp,
        "other.pem",
        pem::encode_certificates(&device.attest(b"x").unwrap().chain).as_bytes(),
    );
    let junk = write(&tmp, "junk.pem", b"not pem");
    let args = [
        "verify",
        "--chain",
        s(&good),
        "--chain",
        s(&other),
        "--chain",
        s(&junk),
        "--chain",
        s(&good),
    ];
    let mut args: Vec<&str> = args.to_vec();
    args.extend([
        "--trust-root",
        s(&root),
        "--at",
        AT,
        "--challenge",
        "63",
        "--json",
    ]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    let got: Vec<(String, Value)> = lines(&out)
        .iter()
        .map(|v| {
            (
                v["verdict"].as_str().unwrap().to_owned(),
                v["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("valid".to_owned(), Value::Null),
            ("invalid".to_owned(), Value::from("replay_attempt")),
            ("invalid".to_owned(), Value::from("malformed_evidence")),
            ("valid".to_owned(), Value::Null),
        ]
    );
}

#[test]
fn status_list_revokes() {
    let tmp = TempDir::new("status").unwrap();
    let device = SoftwareDevice::new().unwrap();
    let root = write(
        &tmp,
        "root.pem",
        pem::encode_certificates(&[device.root_cert().to_vec()]).as_bytes(),
    );
    let chain = write(
        &tmp,
        "c.pem",
        pem::encode_certificates(&device.attest(b"c").unwrap().chain).as_bytes(),
    );
    let serial = attest_android::Certificate::from_der(device.pki.intermediate_cert.clone())
        .unwrap()
        .serial_hex();
    let list = write(
        &tmp,
        "status.json",
        format!(r#"{{"entries": {{"{serial}": {{"status": "SUSPENDED"}}}}}}"#).as_bytes(),
    );
    let out = run(&[
        "verify",
        "--chain",
        s(&chain),
        "--trust-root",
        s(&root),
        "--status-list",
        s(&list),
        "--at",
        AT,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lines(&out)[0]["reason"], "revoked");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let tmp = TempDir::new("usage").unwrap();
    let device = SoftwareDevice::new().unwrap();
    let chain = write(
        &tmp,
        "c.pem",
        pem::encode_certificates(&device.attest(b"c").unwrap().chain).as_bytes(),
    );
    let bad_list = write(
        &tmp,
        "status.json",
        br#"{"entries": {"01": {"reason": "no status"}}}"#,
    );
    for args in [
        vec!["verify"],
        vec!["verify", "--chain", "/definitely/not/here.pem"],
        vec!["verify", "--chain", s(&chain), "--at", "yesterday"],
        vec!["verify", "--chain", s(&chain), "--challenge", "xyz"],
        vec!["verify", "--chain", s(&chain), "--trust-root", s(&chain)],
        vec![
            "verify",
            "--chain",
            s(&chain),
            "--status-list",
            s(&bad_list),
        ],
        vec!["frobnicate"],
    ] {
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?} explains itself");
    }
}

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors/android-key-attestation");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "corpus missing under CI=true"
    );
    eprintln!("SKIPPED: corpus not found at {}", dir.display());
    None
}

#[test]
fn real_chain_at_creation_time_never_prints_unique_ids() {
    let Some(dir) = corpus() else { return };
    let file = dir.join("android-keyattestation/akita_sdk34_TEE_RSA_BASE+IMEI.pem");
    let out = run(&[
        "verify",
        "--chain",
        s(&file),
        "--at",
        "creation",
        "--challenge",
        "6368616c6c656e6765",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    for imei in ["351163520096208", "351163520096216"] {
        assert!(!text.contains(imei), "IMEI printed");
    }
    let v = &lines(&out)[0];
    assert_eq!(v["chain"]["provisioning"], "remote");
    assert_eq!(v["key_description"]["attestation_ids"]["model"], "Pixel 8a");
    assert_eq!(
        v["key_description"]["attestation_ids"]["imei"]["present"],
        true
    );
    assert_eq!(
        v["key_description"]["creation_time"],
        "2024-09-26T22:31:25Z"
    );

    // A chain with a garbage creation time cannot be verified "at creation": it gets its own
    // line and the rest of the batch is still verified.
    let garbage = dir.join("asitplus-signum/samsung-sm-a107m__GHLNOA9TDP1CB5MLQG78IOWEC7.pem");
    let good = dir.join("android-keyattestation/akita_sdk34_TEE_EC_NONE.pem");
    let out = run(&[
        "verify",
        "--chain",
        s(&garbage),
        "--chain",
        s(&good),
        "--at",
        "creation",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let l = lines(&out);
    assert_eq!(l.len(), 2);
    assert_eq!(l[0]["verdict"], "error");
    assert!(
        l[0]["detail"]
            .as_str()
            .unwrap()
            .contains("creationDateTime")
    );
    assert_eq!(l[1]["verdict"], "valid", "{}", l[1]);
}

#[test]
fn policy_check_and_decisions() {
    let tmp = TempDir::new("policy").unwrap();
    let device = SoftwareDevice::new().unwrap();
    write(
        &tmp,
        "root.pem",
        pem::encode_certificates(&[device.root_cert().to_vec()]).as_bytes(),
    );
    let policy = write(&tmp,
        "policy.toml",
        b"[trust]\ngoogle_roots = false\nextra_roots = [\"root.pem\"]\n\n[defaults]\nmin_os_patch_level = 202601\n\n[workflows.sensitive_channel]\nmin_security_level = \"strongbox\"\n",
    );
    let out = run(&["policy", "check", s(&policy)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("sha256 ") && text.contains("configured:"),
        "{text}"
    );
    assert!(
        !text.contains("google-rsa4096"),
        "google_roots = false: {text}"
    );

    let chain = write(
        &tmp,
        "c.pem",
        pem::encode_certificates(&device.attest(b"c").unwrap().chain).as_bytes(),
    );
    let out = run(&[
        "verify",
        "--chain",
        s(&chain),
        "--policy",
        s(&policy),
        "--workflow",
        "release_channel",
        "--at",
        AT,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = &lines(&out)[0];
    assert_eq!(v["decision"], "eligible");
    assert_eq!(v["reasons"], serde_json::json!([]));
    assert_eq!(v["policy_hash"].as_str().unwrap().len(), 64);

    let out = run(&[
        "verify",
        "--chain",
        s(&chain),
        "--policy",
        s(&policy),
        "--workflow",
        "sensitive_channel",
        "--at",
        AT,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = &lines(&out)[0];
    assert_eq!(v["verdict"], "valid");
    assert_eq!(v["decision"], "ineligible");
    assert_eq!(v["reasons"], serde_json::json!(["eligibility_failure"]));

    // Invalid policies and flags.
    let bad = write(&tmp, "bad.toml", b"[defaults]\nmin_os_patch_level = 2026\n");
    let out = run(&["policy", "check", s(&bad)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("defaults.min_os_patch_level"));
    let missing_root = write(&tmp, "p2.toml", b"[trust]\nextra_roots = [\"nope.pem\"]\n");
    assert_eq!(
        run(&["policy", "check", s(&missing_root)]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&["verify", "--chain", s(&chain), "--policy", s(&policy)])
            .status
            .code(),
        Some(2),
        "--policy needs --workflow"
    );
    assert_eq!(
        run(&[
            "verify",
            "--chain",
            s(&chain),
            "--policy",
            s(&policy),
            "--workflow",
            "nightly"
        ])
        .status
        .code(),
        Some(2)
    );
}
