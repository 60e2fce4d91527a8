//! Bytes a device and an outcome take in each database (BENCHMARKS.md): 100,000 synthetic
//! devices, then 100,000 outcomes, measured by the database's own size. SQLite in a temporary
//! folder; PostgreSQL too when `ENIGM_ATTEST_TEST_DATABASE_URL` names a server.
//!
//! `cargo run --release -p attest-store --features testing --example bytes_per_row`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use attest_core::UnixTime;
use attest_store::{OutcomeRecord, Store};

const N: u64 = 100_000;

async fn measure(name: &str, store: Store) {
    let at = UnixTime::from_secs(1_793_491_200);
    let empty = store.storage_bytes().await.unwrap();
    store.seed_devices(N, at).await.unwrap();
    let with_devices = store.storage_bytes().await.unwrap();
    for i in 0..N {
        store
            .record(
                &OutcomeRecord {
                    device_handle: Some(format!("dh_{i:032x}")),
                    workflow: "private_artifact".into(),
                    resource: "build-42".into(),
                    decision: "eligible".into(),
                    reasons: vec![],
                    policy_hash: "ab".repeat(32),
                    created_at: at,
                },
                None,
            )
            .await
            .unwrap();
    }
    let with_outcomes = store.storage_bytes().await.unwrap();
    println!(
        "{name}: {:.0} bytes per device, {:.0} bytes per outcome ({N} of each)",
        (with_devices - empty) as f64 / N as f64,
        (with_outcomes - with_devices) as f64 / N as f64
    );
}

#[tokio::main]
async fn main() {
    let dir = std::env::temp_dir().join(format!("enigm-bytes-{}", std::process::id()));
    measure("sqlite", Store::open_sqlite_dir(&dir).await.unwrap()).await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(url) = attest_store::testing::fresh_postgres_database("bytes").await {
        measure("postgres", Store::connect(&url).await.unwrap()).await;
    }
}
