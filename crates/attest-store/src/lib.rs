//! Storage: challenges, enrolled devices and outcomes.
//!
//! This room owns the schema and every SQL statement. It goes through sqlx's `Any` driver with
//! portable SQL (`$n` placeholders, `DELETE ... RETURNING`, `BIGINT` columns), so the same code
//! serves the embedded SQLite default and PostgreSQL; only the DDL differs per backend
//! (`migrations/<backend>/`); see docs/decisions/0009-storage-through-sqlx-any.md.
//!
//! What is stored (and what is not) is part of the privacy promise: no certificate, serial,
//! attestation id or raw evidence; pins, handles and policy outcomes only.

#![forbid(unsafe_code)]

use std::path::Path;
use std::str::FromStr;

use attest_core::UnixTime;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

/// Storage failures (the database is unreachable, full, or returned something unexpected).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
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
    pool: AnyPool,
    backend: Backend,
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
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let statement_timeout_ms = opts.statement_timeout.as_millis();
        let options = AnyConnectOptions::from_str(url)?;
        if backend == Backend::Sqlite {
            // One connection first, so a corrupt or foreign file fails at once with SQLite's own
            // message ("file is not a database") instead of a pool timeout 30 s later.
            let mut probe =
                <sqlx::AnyConnection as sqlx::Connection>::connect_with(&options).await?;
            probe.execute("SELECT count(*) FROM sqlite_master").await?;
            sqlx::Connection::close(probe).await?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            // Concurrent writers wait instead of failing; WAL lets readers run
                            // beside the single writer.
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                        }
                        Backend::Postgres => {
                            // A stuck statement or a forgotten transaction fails instead of
                            // holding a connection (and its locks) forever.
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
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// The engine in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        let migrations = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        const CREATE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
        if self.backend == Backend::Sqlite {
            self.pool.execute(CREATE).await?;
        }
        for (version, sql) in migrations {
            let mut tx = self.write_transaction().await?;
            if self.backend == Backend::Postgres {
                // A migration may take longer than a request's statement; waiting for another
                // replica's migration is bounded by lock_timeout instead.
                tx.execute("SET LOCAL statement_timeout = 0").await?;
                tx.execute("SET LOCAL lock_timeout = '120s'").await?;
                // Replicas starting together: one migrates, the others wait here and then find
                // the version applied. DDL is transactional on PostgreSQL.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await?;
                // Only when missing: a role that may not create tables still starts once the
                // schema is in place.
                let exists =
                    sqlx::query("SELECT to_regclass('schema_migrations') IS NOT NULL AS e")
                        .fetch_one(&mut *tx)
                        .await?;
                if !get::<bool>(&exists, "e")? {
                    tx.execute(CREATE).await?;
                }
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
            let code: String = sql
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

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later cannot
    /// wait for a concurrent writer (SQLite reports `database is locked` at once instead of
    /// deadlocking), while an immediate one queues behind it for up to the busy timeout.
    async fn write_transaction(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Stores a new challenge.
    pub async fn insert_challenge(&self, c: &ChallengeRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO challenges (id, nonce, workflow, resource, device_handle, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.nonce)
        .bind(&c.workflow)
        .bind(&c.resource)
        .bind(&c.device_handle)
        .bind(c.created_at.as_secs())
        .bind(c.expires_at.as_secs())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes and returns a challenge in one atomic statement: of any number of concurrent
    /// callers with the same id, exactly one gets it. Expired challenges are returned too (and
    /// removed); the caller decides.
    pub async fn consume_challenge(&self, id: &str) -> Result<Option<ChallengeRecord>> {
        let row = sqlx::query(
            "DELETE FROM challenges WHERE id = $1 RETURNING id, nonce, workflow, resource, device_handle, created_at, expires_at",
        )
        .bind(id)
        .fetch_optional(&self.pool)
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
        let row = sqlx::query("SELECT * FROM devices WHERE handle = $1")
            .bind(handle)
            .fetch_optional(&self.pool)
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
        let mut tx = self.write_transaction().await?;
        // One statement decides, also between replicas racing on the same key: the row goes in,
        // or the handle or key is taken and nothing changes.
        let inserted = sqlx::query(
            "INSERT INTO devices (handle, key_spki, boot_key, security_level, os_version, os_patch_level, vendor_patch_level, boot_patch_level, model, status, enrolled_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
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
        insert_outcome(&mut tx, if exists { refused } else { enrolled }).await?;
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
        let mut tx = self.write_transaction().await?;
        if let Some((handle, hw)) = raise {
            let raised = sqlx::query(
                "UPDATE devices SET \
                 os_version = CASE WHEN $2 > os_version THEN $2 ELSE os_version END, \
                 os_patch_level = CASE WHEN $3 > os_patch_level THEN $3 ELSE os_patch_level END, \
                 vendor_patch_level = CASE WHEN $4 > vendor_patch_level THEN $4 ELSE vendor_patch_level END, \
                 boot_patch_level = CASE WHEN $5 > boot_patch_level THEN $5 ELSE boot_patch_level END, \
                 updated_at = $6 WHERE handle = $1 AND status = 'active'",
            )
            .bind(handle)
            .bind(hw.os_version)
            .bind(hw.os_patch_level)
            .bind(hw.vendor_patch_level)
            .bind(hw.boot_patch_level)
            .bind(outcome.created_at.as_secs())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if raised == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        insert_outcome(&mut tx, outcome).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sets a device's status; `false` when no such device.
    pub async fn set_device_status(
        &self,
        handle: &str,
        status: DeviceStatus,
        at: UnixTime,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE devices SET status = $2, updated_at = $3 WHERE handle = $1")
            .bind(handle)
            .bind(status.as_str())
            .bind(at.as_secs())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Outcome counts by workflow, decision and reason for `from <= created_at < to`. A decision
    /// with several reasons counts once under each.
    pub async fn outcome_counts(&self, from: UnixTime, to: UnixTime) -> Result<Vec<OutcomeCount>> {
        let rows = sqlx::query(
            "SELECT workflow, decision, reasons, COUNT(*) AS n FROM outcomes WHERE created_at >= $1 AND created_at < $2 GROUP BY workflow, decision, reasons",
        )
        .bind(from.as_secs())
        .bind(to.as_secs())
        .fetch_all(&self.pool)
        .await?;
        let mut counts: std::collections::BTreeMap<(String, String, String), i64> =
            Default::default();
        for row in &rows {
            let workflow: String = get(row, "workflow")?;
            let decision: String = get(row, "decision")?;
            let reasons: String = get(row, "reasons")?;
            let n: i64 = get(row, "n")?;
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
        let o = sqlx::query(
            "DELETE FROM outcomes WHERE id IN (SELECT id FROM outcomes WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        )
        .bind(outcomes_before.as_secs())
        .bind(limit)
        .execute(&self.pool)
        .await?;
        let c = sqlx::query(
            "DELETE FROM challenges WHERE id IN (SELECT id FROM challenges WHERE expires_at < $1 LIMIT $2)",
        )
        .bind(challenges_before.as_secs())
        .bind(limit)
        .execute(&self.pool)
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
        sqlx::query(
            "INSERT INTO replicas (id, policy_hash, started_at, seen_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET policy_hash = excluded.policy_hash, seen_at = excluded.seen_at",
        )
        .bind(replica)
        .bind(policy_hash)
        .bind(started_at.as_secs())
        .bind(at.as_secs())
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM replicas WHERE seen_at < $1")
            .bind(forget_before.as_secs())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The replicas seen since `since`: (id, policy hash), by id.
    pub async fn replicas(&self, since: UnixTime) -> Result<Vec<(String, String)>> {
        sqlx::query("SELECT id, policy_hash FROM replicas WHERE seen_at >= $1 ORDER BY id")
            .bind(since.as_secs())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((get(r, "id")?, get(r, "policy_hash")?)))
            .collect()
    }

    /// Records a DPoP proof id until `expires_at`; `false` when it was already seen (a replay).
    /// One statement, so two replicas or requests racing with the same id cannot both win.
    pub async fn spend_jti(&self, jti: &str, expires_at: UnixTime) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO dpop_jtis (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at.as_secs())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Drops proof ids whose window ended before `before`, at most `limit` of them.
    pub async fn purge_jtis(&self, before: UnixTime, limit: i64) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM dpop_jtis WHERE jti IN (SELECT jti FROM dpop_jtis WHERE expires_at < $1 LIMIT $2)",
        )
        .bind(before.as_secs())
        .bind(limit)
        .execute(&self.pool)
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
        let mut tx = self.write_transaction().await?;
        // Another product: the channels joined for the old one do not carry over.
        sqlx::query(
            "DELETE FROM channel_members WHERE handle = $1 AND EXISTS (SELECT 1 FROM registrations WHERE handle = $1 AND product <> $2)",
        )
        .bind(handle)
        .bind(product)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO registrations (handle, product, registered_at) VALUES ($1, $2, $3) ON CONFLICT (handle) DO UPDATE SET product = excluded.product",
        )
        .bind(handle)
        .bind(product)
        .bind(at.as_secs())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.registration(handle)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// A device's registration with its channels.
    pub async fn registration(&self, handle: &str) -> Result<Option<Registration>> {
        let Some(row) = sqlx::query(
            "SELECT handle, product, registered_at FROM registrations WHERE handle = $1",
        )
        .bind(handle)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let channels =
            sqlx::query("SELECT channel FROM channel_members WHERE handle = $1 ORDER BY channel")
                .bind(handle)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| get::<String>(r, "channel"))
                .collect::<Result<Vec<_>>>()?;
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
        sqlx::query(
            "INSERT INTO channel_members (handle, channel, joined_at) SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM registrations WHERE handle = $1 AND product = $4) ON CONFLICT (handle, channel) DO NOTHING",
        )
        .bind(handle)
        .bind(channel)
        .bind(at.as_secs())
        .bind(product)
        .execute(&self.pool)
        .await?;
        Ok(self
            .registration(handle)
            .await?
            .is_some_and(|r| r.product == product))
    }

    /// Closes the pool (and, for SQLite, checkpoints the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn insert_outcome(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    o: &OutcomeRecord,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outcomes (device_handle, workflow, resource, decision, reasons, policy_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&o.device_handle)
    .bind(&o.workflow)
    .bind(&o.resource)
    .bind(&o.decision)
    .bind(o.reasons.join(","))
    .bind(&o.policy_hash)
    .bind(o.created_at.as_secs())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub mod testing;
#[cfg(test)]
mod tests;
