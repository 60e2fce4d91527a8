//! The store conformance suite: every test of `conformance!` runs on a real SQLite file and on a
//! fresh database of a real PostgreSQL server (`testing::fresh_postgres_database`), through the
//! same code. Engine-specific behaviour (reopening a file, a corrupt file, replicas migrating
//! together) has tests of its own below.

use super::*;

use attest_device::testing::TempDir;

/// A store on `engine` for test `tag`: SQLite in a temporary folder (kept alive with the
/// store), or a new PostgreSQL database; `None` when PostgreSQL is not configured (outside CI).
async fn open(engine: Backend, tag: &str) -> Option<(Store, Option<TempDir>)> {
    match engine {
        Backend::Sqlite => {
            let dir = TempDir::new(tag).unwrap();
            let store = Store::open_sqlite_dir(dir.path()).await.unwrap();
            Some((store, Some(dir)))
        }
        Backend::Postgres => {
            let url = testing::fresh_postgres_database(tag).await?;
            Some((Store::connect(&url).await.unwrap(), None))
        }
    }
}

/// `conformance!(name)` runs `async fn name(store: Store)` once per engine.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = super::open(super::Backend::Sqlite, stringify!($name)).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some((store, _dir)) = super::open(super::Backend::Postgres, stringify!($name)).await else {
                        return;
                    };
                    assert_eq!(store.backend(), super::Backend::Postgres);
                    super::$name(store).await;
                }
            )*
        }
    };
}

conformance!(
    a_challenge_is_consumed_once,
    concurrent_consumers_race_and_one_wins,
    enrollment_is_unique_per_key_and_outcomes_are_kept,
    high_water_marks_only_rise_and_status_changes,
    counts_split_reasons_and_purge_respects_retention,
    concurrent_enrollments_and_records_all_succeed,
    racing_enrollments_of_one_key_enroll_it_once,
    a_dpop_proof_id_is_spent_once_and_purged_in_batches,
    registrations_and_channels,
    absent_values_round_trip,
    purges_are_bounded_batches,
    replicas_report_their_policy,
    seeded_devices_take_room,
);

async fn seeded_devices_take_room(store: Store) {
    let before = store.storage_bytes().await.unwrap();
    assert_eq!(
        store
            .seed_devices(2000, UnixTime::from_secs(5))
            .await
            .unwrap(),
        2000
    );
    assert!(store.storage_bytes().await.unwrap() > before);
    // Real enrollments still work beside them.
    assert!(
        store
            .enroll(
                &device("dh_real", 3),
                &outcome(Some("dh_real"), "enrollment", "eligible", &[], 6),
                &outcome(None, "enrollment", "ineligible", &["x"], 6),
            )
            .await
            .unwrap()
    );
}

async fn purges_are_bounded_batches(store: Store) {
    for i in 0..7 {
        store
            .record(&outcome(None, "registration", "eligible", &[], i), None)
            .await
            .unwrap();
        store
            .insert_challenge(&challenge(&format!("c{i}"), i))
            .await
            .unwrap();
    }
    let t = UnixTime::from_secs(100);
    assert_eq!(store.purge(t, t, 3).await.unwrap(), (3, 3));
    assert_eq!(store.purge(t, t, 3).await.unwrap(), (3, 3));
    assert_eq!(store.purge(t, t, 3).await.unwrap(), (1, 1));
    assert_eq!(store.purge(t, t, 3).await.unwrap(), (0, 0));
}

async fn replicas_report_their_policy(store: Store) {
    let at = UnixTime::from_secs;
    store
        .heartbeat("r-a", "h1", at(0), at(10), at(0))
        .await
        .unwrap();
    store
        .heartbeat("r-b", "h2", at(5), at(12), at(0))
        .await
        .unwrap();
    store
        .heartbeat("r-a", "h3", at(0), at(20), at(0))
        .await
        .unwrap();
    assert_eq!(
        store.replicas(at(11)).await.unwrap(),
        vec![
            ("r-a".to_owned(), "h3".to_owned()),
            ("r-b".to_owned(), "h2".to_owned())
        ]
    );
    assert_eq!(store.replicas(at(15)).await.unwrap().len(), 1);
    // Replicas gone for long are forgotten.
    store
        .heartbeat("r-c", "h1", at(30), at(40), at(15))
        .await
        .unwrap();
    assert_eq!(store.replicas(at(0)).await.unwrap().len(), 2);
}

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

async fn a_challenge_is_consumed_once(store: Store) {
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

async fn concurrent_consumers_race_and_one_wins(store: Store) {
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

async fn enrollment_is_unique_per_key_and_outcomes_are_kept(store: Store) {
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

async fn high_water_marks_only_rise_and_status_changes(store: Store) {
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
    // An eligible outcome racing the revocation: nothing is written, and the caller learns it.
    let before = store
        .outcome_counts(UnixTime::from_secs(0), UnixTime::from_secs(1000))
        .await
        .unwrap();
    let higher = HighWater {
        os_version: 180_000,
        ..hw
    };
    assert!(
        !store
            .record(
                &outcome(Some("dh"), "registration", "eligible", &[], 170),
                Some(("dh", higher)),
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .outcome_counts(UnixTime::from_secs(0), UnixTime::from_secs(1000))
            .await
            .unwrap(),
        before
    );
    assert_eq!(
        store.device("dh").await.unwrap().unwrap().os_version,
        170_000
    );
}

async fn counts_split_reasons_and_purge_respects_retention(store: Store) {
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
            .purge(UnixTime::from_secs(15), UnixTime::from_secs(100), 100)
            .await
            .unwrap(),
        (1, 1)
    );
    assert_eq!(store.consume_challenge("old").await.unwrap(), None);
    assert!(store.consume_challenge("new").await.unwrap().is_some());
}

async fn racing_enrollments_of_one_key_enroll_it_once(store: Store) {
    // Replicas racing on one device key: one enrollment, every other a refusal, no error.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move {
                let d = device(&format!("dh_{i}"), 9);
                s.enroll(
                    &d,
                    &outcome(Some(&d.handle), "enrollment", "eligible", &[], 100),
                    &outcome(
                        None,
                        "enrollment",
                        "ineligible",
                        &["enrollment_binding_failed"],
                        100,
                    ),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    let counts = store
        .outcome_counts(UnixTime::from_secs(0), UnixTime::from_secs(1000))
        .await
        .unwrap();
    let n = |d: &str| {
        counts
            .iter()
            .filter(|c| c.decision == d)
            .map(|c| c.count)
            .sum::<i64>()
    };
    assert_eq!((n("eligible"), n("ineligible")), (1, 15));
}

async fn a_dpop_proof_id_is_spent_once_and_purged_in_batches(store: Store) {
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move {
                s.spend_jti("j-race", UnixTime::from_secs(500))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1, "a proof id is spent once");
    for i in 0..10 {
        assert!(
            store
                .spend_jti(&format!("old-{i}"), UnixTime::from_secs(100))
                .await
                .unwrap()
        );
    }
    assert_eq!(
        store.purge_jtis(UnixTime::from_secs(200), 4).await.unwrap(),
        4
    );
    assert_eq!(
        store
            .purge_jtis(UnixTime::from_secs(200), 100)
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        store
            .purge_jtis(UnixTime::from_secs(200), 100)
            .await
            .unwrap(),
        0
    );
    // Unexpired ids stay spent.
    assert!(
        !store
            .spend_jti("j-race", UnixTime::from_secs(500))
            .await
            .unwrap()
    );
}

async fn registrations_and_channels(store: Store) {
    assert_eq!(store.registration("dh").await.unwrap(), None);
    // Not registered: no membership is written.
    assert!(
        !store
            .join_channel("dh", "enigm-os", "stable", UnixTime::from_secs(5))
            .await
            .unwrap()
    );
    let r = store
        .register("dh", "enigm-os", UnixTime::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        r,
        Registration {
            handle: "dh".into(),
            product: "enigm-os".into(),
            registered_at: UnixTime::from_secs(10),
            channels: vec![],
        }
    );
    store
        .join_channel("dh", "enigm-os", "stable", UnixTime::from_secs(11))
        .await
        .unwrap();
    store
        .join_channel("dh", "enigm-os", "beta", UnixTime::from_secs(12))
        .await
        .unwrap();
    store
        .join_channel("dh", "enigm-os", "beta", UnixTime::from_secs(13))
        .await
        .unwrap();
    // The same product again: channels kept, first registration time kept.
    let r = store
        .register("dh", "enigm-os", UnixTime::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        (r.channels.clone(), r.registered_at),
        (
            vec!["beta".to_owned(), "stable".to_owned()],
            UnixTime::from_secs(10)
        )
    );
    // A join for another product than the registration's writes nothing.
    assert!(
        !store
            .join_channel("dh", "other", "beta2", UnixTime::from_secs(25))
            .await
            .unwrap()
    );
    // Another product: the old product's channels do not carry over.
    let r = store
        .register("dh", "other", UnixTime::from_secs(30))
        .await
        .unwrap();
    assert_eq!((r.product.as_str(), r.channels.len()), ("other", 0));
    // Another device is untouched.
    store
        .register("dh2", "enigm-os", UnixTime::from_secs(31))
        .await
        .unwrap();
    store
        .join_channel("dh2", "enigm-os", "stable", UnixTime::from_secs(32))
        .await
        .unwrap();
    store
        .register("dh", "enigm-os", UnixTime::from_secs(33))
        .await
        .unwrap();
    assert_eq!(
        store.registration("dh2").await.unwrap().unwrap().channels,
        vec!["stable".to_owned()]
    );
}

async fn absent_values_round_trip(store: Store) {
    // NULL and empty values read back as written on both engines.
    let mut d = device("dh_null", 4);
    d.model = None;
    let mut c = challenge("c-null", 200);
    c.device_handle = None;
    store.insert_challenge(&c).await.unwrap();
    assert_eq!(store.consume_challenge("c-null").await.unwrap(), Some(c));
    let mut c = challenge("c-some", 200);
    c.device_handle = Some("dh_null".into());
    c.resource = "build-1".into();
    store.insert_challenge(&c).await.unwrap();
    assert_eq!(store.consume_challenge("c-some").await.unwrap(), Some(c));
    assert!(
        store
            .enroll(
                &d,
                &outcome(None, "enrollment", "eligible", &[], 1),
                &outcome(None, "enrollment", "ineligible", &["x"], 1)
            )
            .await
            .unwrap()
    );
    assert_eq!(store.device("dh_null").await.unwrap(), Some(d));
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(url) = testing::fresh_postgres_database("migrate_together").await else {
        return;
    };
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::connect(&url).await.map(|_| ()) })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let store = Store::connect(&url).await.unwrap();
    let Engine::Postgres(pool) = &store.engine else {
        panic!("not PostgreSQL");
    };
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM schema_migrations")
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(n, POSTGRES_MIGRATIONS.len() as i64);
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

async fn concurrent_enrollments_and_records_all_succeed(store: Store) {
    // Found by the load test: deferred transactions that read then write failed with
    // "database is locked" under concurrency instead of waiting their turn.
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
