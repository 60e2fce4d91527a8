//! Store tests on a real SQLite file.

use super::*;

use attest_device::testing::TempDir;

fn challenge(id: &str, expires: i64) -> ChallengeRecord {
    ChallengeRecord {
        id: id.to_owned(),
        nonce: vec![7; 32],
        workflow: "enrollment".into(),
        resource: String::new(),
        device_handle: None,
        created_at: UnixTime::from_secs(100),
        expires_at: UnixTime::from_secs(expires),
    }
}

fn device(handle: &str, key: u8) -> DeviceRecord {
    DeviceRecord {
        handle: handle.into(),
        key_spki: vec![key; 91],
        boot_key: vec![0xb0; 32],
        security_level: 1,
        os_version: 160_000,
        os_patch_level: 20_260_900,
        vendor_patch_level: 20_260_905,
        boot_patch_level: 20_260_905,
        model: Some("Enigm Phone 1".into()),
        status: DeviceStatus::Active,
        enrolled_at: UnixTime::from_secs(100),
        updated_at: UnixTime::from_secs(100),
    }
}

fn outcome(
    handle: Option<&str>,
    workflow: &str,
    decision: &str,
    reasons: &[&str],
    at: i64,
) -> OutcomeRecord {
    OutcomeRecord {
        device_handle: handle.map(str::to_owned),
        workflow: workflow.into(),
        resource: String::new(),
        decision: decision.into(),
        reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
        policy_hash: "ab".repeat(32),
        created_at: UnixTime::from_secs(at),
    }
}

#[tokio::test]
async fn a_challenge_is_consumed_once() {
    let dir = TempDir::new("once").unwrap();
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    store.insert_challenge(&challenge("c1", 200)).await.unwrap();
    assert_eq!(
        store.consume_challenge("c1").await.unwrap(),
        Some(challenge("c1", 200))
    );
    assert_eq!(store.consume_challenge("c1").await.unwrap(), None);
    assert_eq!(store.consume_challenge("never").await.unwrap(), None);
    assert!(store.insert_challenge(&challenge("c2", 200)).await.is_ok());
    assert!(
        store.insert_challenge(&challenge("c2", 200)).await.is_err(),
        "ids are unique"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumers_race_and_one_wins() {
    let dir = TempDir::new("race").unwrap();
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    store
        .insert_challenge(&challenge("race", 200))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.consume_challenge("race").await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn enrollment_is_unique_per_key_and_outcomes_are_kept() {
    let dir = TempDir::new("enroll").unwrap();
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    let d = device("dh_a", 1);
    let eligible = |t| outcome(Some("dh_a"), "enrollment", "eligible", &[], t);
    let refused = |t| {
        outcome(
            None,
            "enrollment",
            "ineligible",
            &["enrollment_binding_failed"],
            t,
        )
    };
    assert!(
        store
            .enroll(&d, &eligible(100), &refused(100))
            .await
            .unwrap()
    );
    // The same key again, under its handle or another: refused, and only the refusal is kept
    // (never a second "eligible" row carrying the existing handle).
    assert!(
        !store
            .enroll(&d, &eligible(101), &refused(101))
            .await
            .unwrap()
    );
    let mut other_handle_same_key = device("dh_b", 1);
    other_handle_same_key.model = None;
    assert!(
        !store
            .enroll(&other_handle_same_key, &eligible(102), &refused(102))
            .await
            .unwrap()
    );
    assert_eq!(store.device("dh_a").await.unwrap(), Some(d));
    assert_eq!(store.device("dh_b").await.unwrap(), None);
    let counts = store
        .outcome_counts(UnixTime::from_secs(0), UnixTime::from_secs(1000))
        .await
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.count).sum::<i64>(), 3);
    let by_decision = |d: &str| {
        counts
            .iter()
            .filter(|c| c.decision == d)
            .map(|c| c.count)
            .sum::<i64>()
    };
    assert_eq!((by_decision("eligible"), by_decision("ineligible")), (1, 2));
}

#[tokio::test]
async fn high_water_marks_only_rise_and_status_changes() {
    let dir = TempDir::new("hw").unwrap();
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    store
        .enroll(
            &device("dh", 2),
            &outcome(Some("dh"), "enrollment", "eligible", &[], 100),
            &outcome(
                None,
                "enrollment",
                "ineligible",
                &["enrollment_binding_failed"],
                100,
            ),
        )
        .await
        .unwrap();
    let hw = HighWater {
        os_version: 170_000,
        os_patch_level: 20_261_000,
        vendor_patch_level: 20_260_101,
        boot_patch_level: 20_261_005,
    };
    store
        .record(
            &outcome(Some("dh"), "registration", "eligible", &[], 150),
            Some(("dh", hw)),
        )
        .await
        .unwrap();
    let d = store.device("dh").await.unwrap().unwrap();
    assert_eq!(
        (
            d.os_version,
            d.os_patch_level,
            d.vendor_patch_level,
            d.boot_patch_level
        ),
        (170_000, 20_261_000, 20_260_905, 20_261_005)
    );
    assert_eq!(d.updated_at, UnixTime::from_secs(150));
    assert!(
        store
            .set_device_status("dh", DeviceStatus::Revoked, UnixTime::from_secs(160))
            .await
            .unwrap()
    );
    assert_eq!(
        store.device("dh").await.unwrap().unwrap().status,
        DeviceStatus::Revoked
    );
    assert!(
        !store
            .set_device_status("nobody", DeviceStatus::Revoked, UnixTime::from_secs(160))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn counts_split_reasons_and_purge_respects_retention() {
    let dir = TempDir::new("counts").unwrap();
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    store
        .record(
            &outcome(
                None,
                "registration",
                "ineligible",
                &["ineligible_build", "patch_level_too_old"],
                10,
            ),
            None,
        )
        .await
        .unwrap();
    store
        .record(
            &outcome(
                None,
                "registration",
                "ineligible",
                &["ineligible_build"],
                20,
            ),
            None,
        )
        .await
        .unwrap();
    store
        .record(&outcome(None, "registration", "eligible", &[], 30), None)
        .await
        .unwrap();
    store.insert_challenge(&challenge("old", 5)).await.unwrap();
    store
        .insert_challenge(&challenge("new", 500))
        .await
        .unwrap();
    let counts = store
        .outcome_counts(UnixTime::from_secs(0), UnixTime::from_secs(25))
        .await
        .unwrap();
    let got: Vec<(&str, &str, i64)> = counts
        .iter()
        .map(|c| (c.decision.as_str(), c.reason.as_str(), c.count))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ineligible", "ineligible_build", 2),
            ("ineligible", "patch_level_too_old", 1)
        ]
    );
    assert_eq!(
        store
            .purge(UnixTime::from_secs(15), UnixTime::from_secs(100))
            .await
            .unwrap(),
        (1, 1)
    );
    assert_eq!(store.consume_challenge("old").await.unwrap(), None);
    assert!(store.consume_challenge("new").await.unwrap().is_some());
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_run_once() {
    let dir = TempDir::new("reopen").unwrap();
    {
        let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
        store
            .enroll(
                &device("dh", 3),
                &outcome(Some("dh"), "enrollment", "eligible", &[], 100),
                &outcome(
                    None,
                    "enrollment",
                    "ineligible",
                    &["enrollment_binding_failed"],
                    100,
                ),
            )
            .await
            .unwrap();
        store.close().await;
    }
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    assert!(store.device("dh").await.unwrap().is_some());
    store.ping().await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(
        Store::connect("mysql://x").await,
        Err(StoreError::UnsupportedUrl)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_and_records_all_succeed() {
    // Found by the load test: deferred transactions that read then write failed with
    // "database is locked" under concurrency instead of waiting their turn.
    let dir = TempDir::new("concurrent").unwrap();
    let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
    let tasks: Vec<_> = (0..48u8)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                let handle = format!("dh_{i}");
                let enrolled = s
                    .enroll(
                        &device(&handle, i),
                        &outcome(Some(&handle), "enrollment", "eligible", &[], 100),
                        &outcome(
                            None,
                            "enrollment",
                            "ineligible",
                            &["enrollment_binding_failed"],
                            100,
                        ),
                    )
                    .await?;
                let hw = HighWater {
                    os_version: 170_000,
                    os_patch_level: 20_261_000,
                    vendor_patch_level: 20_261_005,
                    boot_patch_level: 20_261_005,
                };
                s.record(
                    &outcome(Some(&handle), "registration", "eligible", &[], 101),
                    Some((&handle, hw)),
                )
                .await?;
                Ok::<bool, StoreError>(enrolled)
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap());
    }
    let counts = store
        .outcome_counts(UnixTime::from_secs(0), UnixTime::from_secs(1000))
        .await
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.count).sum::<i64>(), 96);
}

#[tokio::test]
async fn a_corrupt_database_fails_at_once_with_sqlites_message() {
    let dir = TempDir::new("corrupt").unwrap();
    std::fs::write(dir.path().join("attest.db"), vec![0x5au8; 8192]).unwrap();
    let started = std::time::Instant::now();
    let err = match Store::open_sqlite_dir(dir.path()).await {
        Ok(_) => panic!("a corrupt file opened"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("not a database"), "{err}");
    // Not a 30-second pool timeout (a generous bound for a loaded machine).
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
}
