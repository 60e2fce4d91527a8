//! Storage: challenges, enrolled devices and outcomes.
//!
//! This room owns the schema and every SQL statement. The statements are portable (`$n`
//! placeholders, `DELETE ... RETURNING`, `BIGINT` columns, `sql.rs`) and shared by both engines:
//! the embedded SQLite default through rusqlite on the calling thread (`sqlite.rs`,
//! docs/decisions/0018-sqlite-on-the-calling-thread.md) and PostgreSQL through sqlx; only the
//! DDL differs per engine (`migrations/<engine>/`).
//!
//! What is stored (and what is not) is part of the privacy promise: no certificate, serial,
//! attestation id or raw evidence; pins, handles and policy outcomes only.

#![forbid(unsafe_code)]

use std::path::Path;
use std::str::FromStr;

use attest_core::UnixTime;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

mod sql;
mod sqlite;

/// Storage failures (the database is unreachable, full, or returned something unexpected).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The URL names a database we do not support.
    #[error("unsupported database URL (sqlite:, postgres:// and postgresql:// are supported)")]
    UnsupportedUrl,
    /// A stored value is not what this code wrote.
    #[error("corrupt row: {0}")]
    Corrupt(&'static str),
    /// The data directory could not be created.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, StoreError>;

/// A challenge as issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeRecord {
    /// Public identifier.
    pub id: String,
    /// The 32 random bytes the device must attest.
    pub nonce: Vec<u8>,
    /// Workflow it was issued for (wire name).
    pub workflow: String,
    /// Resource it was issued for ("" for none).
    pub resource: String,
    /// Device handle it was issued to, if any.
    pub device_handle: Option<String>,
    /// Issue time.
    pub created_at: UnixTime,
    /// Expiry.
    pub expires_at: UnixTime,
}

/// Whether an enrolled device may still attest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Enrolled and usable.
    Active,
    /// Revoked by an operator.
    Revoked,
}

impl DeviceStatus {
    /// Stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Revoked => "revoked",
        }
    }
}

impl FromStr for DeviceStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(DeviceStatus::Active),
            "revoked" => Ok(DeviceStatus::Revoked),
            _ => Err(StoreError::Corrupt("device status")),
        }
    }
}

/// An enrolled device: its pins and high-water marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Pseudonymous handle (HMAC of the device key).
    pub handle: String,
    /// The device key K_dev (SubjectPublicKeyInfo DER).
    pub key_spki: Vec<u8>,
    /// Pinned verified boot key.
    pub boot_key: Vec<u8>,
    /// Pinned security level (1 TEE, 2 StrongBox).
    pub security_level: i64,
    /// Highest osVersion seen.
    pub os_version: i64,
    /// Highest osPatchLevel seen (YYYYMMDD, 0 = none).
    pub os_patch_level: i64,
    /// Highest vendorPatchLevel seen (YYYYMMDD, 0 = none).
    pub vendor_patch_level: i64,
    /// Highest bootPatchLevel seen (YYYYMMDD, 0 = none).
    pub boot_patch_level: i64,
    /// Model named by the policy's device entry, if any.
    pub model: Option<String>,
    /// Active or revoked.
    pub status: DeviceStatus,
    /// Enrollment time.
    pub enrolled_at: UnixTime,
    /// Last change.
    pub updated_at: UnixTime,
}

/// One decision, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeRecord {
    /// The device, when known.
    pub device_handle: Option<String>,
    /// Workflow (wire name).
    pub workflow: String,
    /// Resource ("" for none).
    pub resource: String,
    /// `eligible` or `ineligible`.
    pub decision: String,
    /// Reason codes (wire names).
    pub reasons: Vec<String>,
    /// SHA-256 of the deciding policy.
    pub policy_hash: String,
    /// Decision time.
    pub created_at: UnixTime,
}

/// A device registered for updates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Its handle.
    pub handle: String,
    /// The product it gets updates for.
    pub product: String,
    /// When it first registered.
    pub registered_at: UnixTime,
    /// Channels it was admitted to.
    pub channels: Vec<String>,
}

/// One row of an outcome count.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutcomeCount {
    /// Workflow.
    pub workflow: String,
    /// Decision.
    pub decision: String,
    /// A reason code, or `""` for decisions without reasons.
    pub reason: String,
    /// How many.
    pub count: i64,
}

/// New high-water marks after an eligible attestation (only ever raised).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HighWater {
    /// osVersion.
    pub os_version: i64,
    /// osPatchLevel, YYYYMMDD.
    pub os_patch_level: i64,
    /// vendorPatchLevel, YYYYMMDD.
    pub vendor_patch_level: i64,
    /// bootPatchLevel, YYYYMMDD.
    pub boot_patch_level: i64,
}

/// Which database engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (WAL).
    Sqlite,
    /// A PostgreSQL server (shared by replicas).
    Postgres,
}

impl Backend {
    /// Its name, as `/readyz` shows it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Connection pool settings (docs/operations.md, "Several replicas", has the arithmetic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections this process keeps at most. On PostgreSQL, replicas x this must stay below
    /// the server's `max_connections` minus its reserved ones.
    pub max_connections: u32,
    /// How long a request waits for a free connection before it fails (503).
    pub acquire_timeout: std::time::Duration,
    /// PostgreSQL: the longest a statement may run (`statement_timeout`); a request fails
    /// instead of holding a connection.
    pub statement_timeout: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            max_connections: 8,
            acquire_timeout: std::time::Duration::from_secs(5),
            statement_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// The store.
#[derive(Clone, Debug)]
pub struct Store {
    engine: Engine,
}

#[derive(Clone, Debug)]
enum Engine {
    Sqlite(std::sync::Arc<sqlite::Db>),
    Postgres(AnyPool),
}

const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_initial.sql")),
    (2, include_str!("../migrations/sqlite/0002_ota_gate.sql")),
    (3, include_str!("../migrations/sqlite/0003_replicas.sql")),
];

const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_initial.sql")),
    (2, include_str!("../migrations/postgres/0002_ota_gate.sql")),
    (3, include_str!("../migrations/postgres/0003_replicas.sql")),
];

/// The advisory lock key replicas take while migrating, so that replicas started together
/// apply each migration once (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x656e_6967_6d61_7474;

fn get<'r, T>(row: &'r AnyRow, col: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(StoreError::from)
}

fn device_from_row(row: &AnyRow) -> Result<DeviceRecord> {
    Ok(DeviceRecord {
        handle: get(row, "handle")?,
        key_spki: get(row, "key_spki")?,
        boot_key: get(row, "boot_key")?,
        security_level: get(row, "security_level")?,
        os_version: get(row, "os_version")?,
        os_patch_level: get(row, "os_patch_level")?,
        vendor_patch_level: get(row, "vendor_patch_level")?,
        boot_patch_level: get(row, "boot_patch_level")?,
        model: get(row, "model")?,
        status: get::<String>(row, "status")?.parse()?,
        enrolled_at: UnixTime::from_secs(get(row, "enrolled_at")?),
        updated_at: UnixTime::from_secs(get(row, "updated_at")?),
    })
}

impl Store {
    /// Opens (creating if needed) the SQLite database `attest.db` in `dir`.
    pub async fn open_sqlite_dir(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("attest.db");
        Store::connect(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// Connects to a database URL and applies pending migrations, with default pool settings.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, StoreOptions::default()).await
    }

    /// Connects to `sqlite:...`, `postgres://...` or `postgresql://...` and applies pending
    /// migrations.
    pub async fn connect_with(url: &str, opts: StoreOptions) -> Result<Store> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            // sqlite://PATH or sqlite:PATH, with ?mode=rwc to create it.
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let create = query.split('&').any(|kv| kv == "mode=rwc");
            if path.is_empty() {
                return Err(StoreError::UnsupportedUrl);
            }
            let db = sqlite::Db::open(Path::new(path), create, SQLITE_MIGRATIONS)?;
            return Ok(Store {
                engine: Engine::Sqlite(std::sync::Arc::new(db)),
            });
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::UnsupportedUrl);
        }
        sqlx::any::install_default_drivers();
        let statement_timeout_ms = opts.statement_timeout.as_millis();
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // A stuck statement or a forgotten transaction fails instead of holding a
                    // connection (and its locks) forever.
                    conn.execute(
                        format!("SET statement_timeout = {statement_timeout_ms}").as_str(),
                    )
                    .await?;
                    conn.execute(
                        format!(
                            "SET idle_in_transaction_session_timeout = {}",
                            statement_timeout_ms.saturating_mul(2)
                        )
                        .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        migrate_postgres(&pool).await?;
        Ok(Store {
            engine: Engine::Postgres(pool),
        })
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Sqlite(_) => Backend::Sqlite,
            Engine::Postgres(_) => Backend::Postgres,
        }
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<()> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.ping().await,
            Engine::Postgres(p) => p,
        };
        sqlx::query("SELECT 1").fetch_one(pool).await?;
        Ok(())
    }

    /// Stores a new challenge.
    pub async fn insert_challenge(&self, c: &ChallengeRecord) -> Result<()> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.insert_challenge(c).await,
            Engine::Postgres(p) => p,
        };
        sqlx::query(sql::INSERT_CHALLENGE)
            .bind(&c.id)
            .bind(&c.nonce)
            .bind(&c.workflow)
            .bind(&c.resource)
            .bind(&c.device_handle)
            .bind(c.created_at.as_secs())
            .bind(c.expires_at.as_secs())
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Removes and returns a challenge in one atomic statement: of any number of concurrent
    /// callers with the same id, exactly one gets it. Expired challenges are returned too (and
    /// removed); the caller decides.
    pub async fn consume_challenge(&self, id: &str) -> Result<Option<ChallengeRecord>> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.consume_challenge(id).await,
            Engine::Postgres(p) => p,
        };
        let row = sqlx::query(sql::CONSUME_CHALLENGE)
            .bind(id)
            .fetch_optional(pool)
            .await?;
        row.map(|row| {
            Ok(ChallengeRecord {
                id: get(&row, "id")?,
                nonce: get(&row, "nonce")?,
                workflow: get(&row, "workflow")?,
                resource: get(&row, "resource")?,
                device_handle: get(&row, "device_handle")?,
                created_at: UnixTime::from_secs(get(&row, "created_at")?),
                expires_at: UnixTime::from_secs(get(&row, "expires_at")?),
            })
        })
        .transpose()
    }

    /// A device by handle.
    pub async fn device(&self, handle: &str) -> Result<Option<DeviceRecord>> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.device(handle).await,
            Engine::Postgres(p) => p,
        };
        let row = sqlx::query(sql::DEVICE)
            .bind(handle)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// Records an enrollment: the new device and its outcome, together or not at all. Returns
    /// `false` (and stores only the `refused` outcome) when the key or handle is already enrolled.
    pub async fn enroll(
        &self,
        device: &DeviceRecord,
        enrolled: &OutcomeRecord,
        refused: &OutcomeRecord,
    ) -> Result<bool> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.enroll(device, enrolled, refused).await,
            Engine::Postgres(p) => p,
        };
        let mut tx = pool.begin().await?;
        // One statement decides, also between replicas racing on the same key: the row goes in,
        // or the handle or key is taken and nothing changes.
        let inserted = sqlx::query(sql::INSERT_DEVICE)
            .bind(&device.handle)
            .bind(&device.key_spki)
            .bind(&device.boot_key)
            .bind(device.security_level)
            .bind(device.os_version)
            .bind(device.os_patch_level)
            .bind(device.vendor_patch_level)
            .bind(device.boot_patch_level)
            .bind(&device.model)
            .bind(device.status.as_str())
            .bind(device.enrolled_at.as_secs())
            .bind(device.updated_at.as_secs())
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        let exists = !inserted;
        // Exactly one outcome: the enrollment, or its refusal (the key or handle is taken).
        insert_outcome(&mut *tx, if exists { refused } else { enrolled }).await?;
        tx.commit().await?;
        Ok(!exists)
    }

    /// Records an outcome, raising the device's high-water marks in the same transaction when
    /// given (values only ever go up). With marks to raise, the device must still be active:
    /// when it was revoked meanwhile (by another request or replica), nothing is written and
    /// the answer is `false`; the update's row lock orders it exactly against the revocation.
    pub async fn record(
        &self,
        outcome: &OutcomeRecord,
        raise: Option<(&str, HighWater)>,
    ) -> Result<bool> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.record(outcome, raise).await,
            Engine::Postgres(p) => p,
        };
        let Some((handle, hw)) = raise else {
            insert_outcome(pool, outcome).await?;
            return Ok(true);
        };
        // One statement: the marks raised and the outcome written, or (revoked) neither.
        let o = outcome;
        let written = sqlx::query(sql::PG_RECORD_RAISED)
            .bind(handle)
            .bind(hw.os_version)
            .bind(hw.os_patch_level)
            .bind(hw.vendor_patch_level)
            .bind(hw.boot_patch_level)
            .bind(o.created_at.as_secs())
            .bind(&o.device_handle)
            .bind(&o.workflow)
            .bind(&o.resource)
            .bind(&o.decision)
            .bind(o.reasons.join(","))
            .bind(&o.policy_hash)
            .bind(o.created_at.as_secs())
            .execute(pool)
            .await?
            .rows_affected();
        Ok(written == 1)
    }

    /// Sets a device's status; `false` when no such device.
    pub async fn set_device_status(
        &self,
        handle: &str,
        status: DeviceStatus,
        at: UnixTime,
    ) -> Result<bool> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.set_device_status(handle, status.as_str(), at).await,
            Engine::Postgres(p) => p,
        };
        let done = sqlx::query(sql::SET_STATUS)
            .bind(handle)
            .bind(status.as_str())
            .bind(at.as_secs())
            .execute(pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Outcome counts by workflow, decision and reason for `from <= created_at < to`. A decision
    /// with several reasons counts once under each.
    pub async fn outcome_counts(&self, from: UnixTime, to: UnixTime) -> Result<Vec<OutcomeCount>> {
        let rows: Vec<(String, String, String, i64)> = match &self.engine {
            Engine::Sqlite(db) => db.outcome_rows(from, to).await?,
            Engine::Postgres(pool) => sqlx::query(sql::OUTCOME_COUNTS)
                .bind(from.as_secs())
                .bind(to.as_secs())
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        get(row, "workflow")?,
                        get(row, "decision")?,
                        get(row, "reasons")?,
                        get(row, "n")?,
                    ))
                })
                .collect::<Result<_>>()?,
        };
        let mut counts: std::collections::BTreeMap<(String, String, String), i64> =
            Default::default();
        for (workflow, decision, reasons, n) in rows {
            let mut split: Vec<&str> = reasons.split(',').filter(|r| !r.is_empty()).collect();
            if split.is_empty() {
                split.push("");
            }
            for r in split {
                *counts
                    .entry((workflow.clone(), decision.clone(), r.to_owned()))
                    .or_default() += n;
            }
        }
        Ok(counts
            .into_iter()
            .map(|((workflow, decision, reason), count)| OutcomeCount {
                workflow,
                decision,
                reason,
                count,
            })
            .collect())
    }

    /// Deletes at most `limit` outcomes older than `outcomes_before` and at most `limit`
    /// challenges that expired before `challenges_before` (bounded, so a purge never holds the
    /// database for long: call again while it returns `limit`); returns how many of each.
    pub async fn purge(
        &self,
        outcomes_before: UnixTime,
        challenges_before: UnixTime,
        limit: i64,
    ) -> Result<(u64, u64)> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.purge(outcomes_before, challenges_before, limit).await,
            Engine::Postgres(p) => p,
        };
        let o = sqlx::query(sql::PURGE_OUTCOMES)
            .bind(outcomes_before.as_secs())
            .bind(limit)
            .execute(pool)
            .await?;
        let c = sqlx::query(sql::PURGE_CHALLENGES)
            .bind(challenges_before.as_secs())
            .bind(limit)
            .execute(pool)
            .await?;
        Ok((o.rows_affected(), c.rows_affected()))
    }

    /// Says this replica is alive and enforces `policy_hash` (and drops replicas not seen since
    /// `forget_before`).
    pub async fn heartbeat(
        &self,
        replica: &str,
        policy_hash: &str,
        started_at: UnixTime,
        at: UnixTime,
        forget_before: UnixTime,
    ) -> Result<()> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => {
                return db
                    .heartbeat(replica, policy_hash, started_at, at, forget_before)
                    .await;
            }
            Engine::Postgres(p) => p,
        };
        sqlx::query(sql::HEARTBEAT)
            .bind(replica)
            .bind(policy_hash)
            .bind(started_at.as_secs())
            .bind(at.as_secs())
            .execute(pool)
            .await?;
        sqlx::query(sql::FORGET_REPLICAS)
            .bind(forget_before.as_secs())
            .execute(pool)
            .await?;
        Ok(())
    }

    /// The replicas seen since `since`: (id, policy hash), by id.
    pub async fn replicas(&self, since: UnixTime) -> Result<Vec<(String, String)>> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.replicas(since).await,
            Engine::Postgres(p) => p,
        };
        sqlx::query(sql::REPLICAS)
            .bind(since.as_secs())
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| Ok((get(r, "id")?, get(r, "policy_hash")?)))
            .collect()
    }

    /// Records a DPoP proof id until `expires_at`; `false` when it was already seen (a replay).
    /// One statement, so two replicas or requests racing with the same id cannot both win.
    pub async fn spend_jti(&self, jti: &str, expires_at: UnixTime) -> Result<bool> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.spend_jti(jti, expires_at).await,
            Engine::Postgres(p) => p,
        };
        let r = sqlx::query(sql::SPEND_JTI)
            .bind(jti)
            .bind(expires_at.as_secs())
            .execute(pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Drops proof ids whose window ended before `before`, at most `limit` of them.
    pub async fn purge_jtis(&self, before: UnixTime, limit: i64) -> Result<u64> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.purge_jtis(before, limit).await,
            Engine::Postgres(p) => p,
        };
        let r = sqlx::query(sql::PURGE_JTIS)
            .bind(before.as_secs())
            .bind(limit)
            .execute(pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Registers a device for updates of `product` (again: the product is updated); returns the
    /// registration as stored.
    pub async fn register(
        &self,
        handle: &str,
        product: &str,
        at: UnixTime,
    ) -> Result<Registration> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => {
                return db
                    .register(handle, product, at)
                    .await?
                    .ok_or(StoreError::Corrupt("registration vanished"));
            }
            Engine::Postgres(p) => p,
        };
        // Another product: the channels joined for the old one do not carry over (one
        // statement).
        sqlx::query(sql::PG_REGISTER)
            .bind(handle)
            .bind(product)
            .bind(at.as_secs())
            .execute(pool)
            .await?;
        self.registration(handle)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// A device's registration with its channels.
    pub async fn registration(&self, handle: &str) -> Result<Option<Registration>> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.registration(handle).await,
            Engine::Postgres(p) => p,
        };
        let Some(row) = sqlx::query(sql::PG_REGISTRATION)
            .bind(handle)
            .fetch_optional(pool)
            .await?
        else {
            return Ok(None);
        };
        let channels = get::<String>(&row, "channels")?
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Some(Registration {
            handle: get(&row, "handle")?,
            product: get(&row, "product")?,
            registered_at: UnixTime::from_secs(get(&row, "registered_at")?),
            channels,
        }))
    }

    /// Adds a device registered for `product` to a channel (idempotent); `false` when it is
    /// not registered for that product (one statement, so a product change racing it cannot
    /// leave a membership behind for the new product).
    pub async fn join_channel(
        &self,
        handle: &str,
        product: &str,
        channel: &str,
        at: UnixTime,
    ) -> Result<bool> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.join_channel(handle, product, channel, at).await,
            Engine::Postgres(p) => p,
        };
        sqlx::query(sql::JOIN_CHANNEL)
            .bind(handle)
            .bind(channel)
            .bind(at.as_secs())
            .bind(product)
            .execute(pool)
            .await?;
        Ok(self
            .registration(handle)
            .await?
            .is_some_and(|r| r.product == product))
    }

    /// Inserts `count` synthetic devices (random handles and keys that no device holds), in
    /// one statement: the large fleet a load test measures a service against. Returns how many.
    pub async fn seed_devices(&self, count: u64, at: UnixTime) -> Result<u64> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.seed_devices(count, at).await,
            Engine::Postgres(p) => p,
        };
        let r = sqlx::query(
            "INSERT INTO devices (handle, key_spki, boot_key, security_level, os_version, os_patch_level, vendor_patch_level, boot_patch_level, model, status, enrolled_at, updated_at) \
             SELECT 'dh_seed_' || md5(random()::text || g::text), substring(decode(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(g::text), 'hex') from 1 for 91), decode(md5(random()::text) || md5(random()::text), 'hex'), 1, 160000, 20260905, 20260905, 20260905, NULL, 'active', $2, $2 \
             FROM generate_series(1, $1) AS g",
        )
        .bind(i64::try_from(count).unwrap_or(i64::MAX))
        .bind(at.as_secs())
        .execute(pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Bytes the database takes (SQLite: the file after a checkpoint; PostgreSQL: the database).
    pub async fn storage_bytes(&self) -> Result<i64> {
        let pool = match &self.engine {
            Engine::Sqlite(db) => return db.storage_bytes().await,
            Engine::Postgres(p) => p,
        };
        let row = sqlx::query("SELECT pg_database_size(current_database()) AS b")
            .fetch_one(pool)
            .await?;
        get(&row, "b")
    }

    /// Closes the PostgreSQL pool; a SQLite database closes when the last clone of the store is
    /// dropped.
    pub async fn close(&self) {
        if let Engine::Postgres(pool) = &self.engine {
            pool.close().await;
        }
    }
}

/// Applies pending PostgreSQL migrations, each in one transaction under an advisory lock, so
/// replicas started together apply each version once.
async fn migrate_postgres(pool: &AnyPool) -> Result<()> {
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
    for (version, code) in POSTGRES_MIGRATIONS {
        let mut tx = pool.begin().await?;
        // A migration may take longer than a request's statement; waiting for another
        // replica's migration is bounded by lock_timeout instead.
        tx.execute("SET LOCAL statement_timeout = 0").await?;
        tx.execute("SET LOCAL lock_timeout = '120s'").await?;
        // Replicas starting together: one migrates, the others wait here and then find the
        // version applied. DDL is transactional on PostgreSQL.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        // Only when missing: a role that may not create tables still starts once the schema
        // is in place.
        let exists = sqlx::query("SELECT to_regclass('schema_migrations') IS NOT NULL AS e")
            .fetch_one(&mut *tx)
            .await?;
        if !get::<bool>(&exists, "e")? {
            tx.execute(CREATE).await?;
        }
        let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
            .bind(*version)
            .fetch_optional(&mut *tx)
            .await?;
        if done.is_some() {
            tx.rollback().await?;
            continue;
        }
        // Comments are whole lines starting with `--`; statements end with `;`.
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .map(|l| format!("{l}\n"))
            .collect();
        for statement in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            tx.execute(statement).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(0_i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn insert_outcome<'e, E>(ex: E, o: &OutcomeRecord) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(sql::INSERT_OUTCOME)
        .bind(&o.device_handle)
        .bind(&o.workflow)
        .bind(&o.resource)
        .bind(&o.decision)
        .bind(o.reasons.join(","))
        .bind(&o.policy_hash)
        .bind(o.created_at.as_secs())
        .execute(ex)
        .await?;
    Ok(())
}

pub mod testing;
#[cfg(test)]
mod tests;
