//! The embedded SQLite engine, through rusqlite on the calling thread: one connection behind an
//! async lock, prepared statements cached. Every statement used to be handed to a worker thread
//! and back (two context switches each, a dozen statements a request), which cost more CPU than
//! the signatures of the request; see docs/decisions/0018-sqlite-on-the-calling-thread.md.
//!
//! SQLite has one writer at a time anyway, and these statements take microseconds, so one
//! connection serialises nothing that would otherwise run in parallel; waiting for it is an
//! `await`, never a blocked thread. The statements are the ones PostgreSQL runs (`sql.rs`).

use std::path::Path;

use attest_core::UnixTime;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, Statement};

use crate::{
    ChallengeRecord, DeviceRecord, HighWater, OutcomeRecord, Registration, Result, StoreError, sql,
};

/// `count` synthetic devices (random handles and keys that no device holds), generated inside
/// SQLite.
const SEED_DEVICES: &str = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $1) \
    INSERT INTO devices (handle, key_spki, boot_key, security_level, os_version, os_patch_level, vendor_patch_level, boot_patch_level, model, status, enrolled_at, updated_at) \
    SELECT 'dh_seed_' || lower(hex(randomblob(16))), randomblob(91), randomblob(32), 1, 160000, 20260905, 20260905, 20260905, NULL, 'active', $2, $2 FROM s";

/// The SQLite database.
pub(crate) struct Db {
    conn: tokio::sync::Mutex<Connection>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

/// Binds `values` to the statement's `$1`, `$2`, ... (by name, so `$2` used before `$1`, or
/// twice, binds as PostgreSQL does).
fn bind(stmt: &mut Statement<'_>, values: &[&dyn ToSql]) -> rusqlite::Result<()> {
    const NAMES: [&str; 12] = [
        "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12",
    ];
    for (i, v) in values.iter().enumerate() {
        let name = NAMES.get(i).ok_or(rusqlite::Error::InvalidParameterCount(
            values.len(),
            NAMES.len(),
        ))?;
        if let Some(idx) = stmt.parameter_index(name)? {
            stmt.raw_bind_parameter(idx, v)?;
        }
    }
    Ok(())
}

/// A write transaction (`BEGIN IMMEDIATE`) through cached statements, rolled back when dropped
/// uncommitted. rusqlite's own transactions parse `BEGIN`/`COMMIT` text every time, which
/// showed in profiles.
struct Tx<'c> {
    conn: &'c Connection,
    done: bool,
}

impl<'c> Tx<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Tx<'c>> {
        exec(conn, "BEGIN IMMEDIATE", &[])?;
        Ok(Tx { conn, done: false })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        // Only a COMMIT that succeeded ends it; after a failed one (SQLite keeps the
        // transaction open on BUSY) the drop rolls back.
        exec(self.conn, "COMMIT", &[])?;
        self.done = true;
        Ok(())
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = exec(self.conn, "ROLLBACK", &[]);
        }
    }
}

/// Runs a statement that returns no rows; the rows it changed.
fn exec(c: &Connection, sql: &str, values: &[&dyn ToSql]) -> rusqlite::Result<usize> {
    let mut stmt = c.prepare_cached(sql)?;
    bind(&mut stmt, values)?;
    stmt.raw_execute()
}

/// Runs a query; each row through `f`.
fn query<T>(
    c: &Connection,
    sql: &str,
    values: &[&dyn ToSql],
    mut f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    bind(&mut stmt, values)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(f(row)?);
    }
    Ok(out)
}

fn device_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let status: String = row.get("status")?;
    Ok(DeviceRecord {
        handle: row.get("handle")?,
        key_spki: row.get("key_spki")?,
        boot_key: row.get("boot_key")?,
        security_level: row.get("security_level")?,
        os_version: row.get("os_version")?,
        os_patch_level: row.get("os_patch_level")?,
        vendor_patch_level: row.get("vendor_patch_level")?,
        boot_patch_level: row.get("boot_patch_level")?,
        model: row.get("model")?,
        status: status.parse().map_err(|_| {
            rusqlite::Error::InvalidColumnType(9, "status".into(), rusqlite::types::Type::Text)
        })?,
        enrolled_at: UnixTime::from_secs(row.get("enrolled_at")?),
        updated_at: UnixTime::from_secs(row.get("updated_at")?),
    })
}

fn insert_outcome(c: &Connection, o: &OutcomeRecord) -> rusqlite::Result<()> {
    exec(
        c,
        sql::INSERT_OUTCOME,
        &[
            &o.device_handle,
            &o.workflow,
            &o.resource,
            &o.decision,
            &o.reasons.join(","),
            &o.policy_hash,
            &o.created_at.as_secs(),
        ],
    )?;
    Ok(())
}

fn registration(c: &Connection, handle: &str) -> rusqlite::Result<Option<Registration>> {
    let Some((h, product, at)) = query(c, sql::REGISTRATION, &[&handle], |r| {
        Ok((
            r.get::<_, String>("handle")?,
            r.get::<_, String>("product")?,
            r.get::<_, i64>("registered_at")?,
        ))
    })?
    .into_iter()
    .next() else {
        return Ok(None);
    };
    let channels = query(c, sql::CHANNELS, &[&handle], |r| {
        r.get::<_, String>("channel")
    })?;
    Ok(Some(Registration {
        handle: h,
        product,
        registered_at: UnixTime::from_secs(at),
        channels,
    }))
}

impl Db {
    /// Opens `path` (creating it when `create`), sets WAL and the pragmas, and migrates.
    pub(crate) fn open(path: &Path, create: bool, migrations: &[(i64, &str)]) -> Result<Db> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut c = Connection::open_with_flags(path, flags)?;
        // Only another process holds SQLite's lock (this one has one connection); wait for it
        // briefly rather than holding a runtime thread for long.
        c.busy_timeout(std::time::Duration::from_secs(2))?;
        // A corrupt or foreign file fails here, with SQLite's own message.
        c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        let mode: String = c.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(
                "SQLite could not use WAL here (journal_mode stayed elsewhere); put the data directory on a local file system",
            ));
        }
        // In WAL mode: durable across a process crash; a power loss may lose the last commits.
        c.pragma_update(None, "synchronous", "NORMAL")?;
        c.set_prepared_statement_cache_capacity(64);
        migrate(&mut c, migrations)?;
        Ok(Db {
            conn: tokio::sync::Mutex::new(c),
        })
    }

    async fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut c = self.conn.lock().await;
        let r = f(&mut c).map_err(StoreError::from);
        // Never hand the connection on inside a transaction (a failed ROLLBACK, say): the next
        // request's writes would silently join it and vanish with it.
        if !c.is_autocommit() {
            let _ = c.execute_batch("ROLLBACK");
            if !c.is_autocommit() {
                return Err(StoreError::Corrupt(
                    "the SQLite connection is stuck in a transaction",
                ));
            }
        }
        r
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    pub(crate) async fn insert_challenge(&self, ch: &ChallengeRecord) -> Result<()> {
        self.with(|c| {
            exec(
                c,
                sql::INSERT_CHALLENGE,
                &[
                    &ch.id,
                    &ch.nonce,
                    &ch.workflow,
                    &ch.resource,
                    &ch.device_handle,
                    &ch.created_at.as_secs(),
                    &ch.expires_at.as_secs(),
                ],
            )
            .map(drop)
        })
        .await
    }

    pub(crate) async fn consume_challenge(&self, id: &str) -> Result<Option<ChallengeRecord>> {
        self.with(|c| {
            Ok(query(c, sql::CONSUME_CHALLENGE, &[&id], |r| {
                Ok(ChallengeRecord {
                    id: r.get("id")?,
                    nonce: r.get("nonce")?,
                    workflow: r.get("workflow")?,
                    resource: r.get("resource")?,
                    device_handle: r.get("device_handle")?,
                    created_at: UnixTime::from_secs(r.get("created_at")?),
                    expires_at: UnixTime::from_secs(r.get("expires_at")?),
                })
            })?
            .into_iter()
            .next())
        })
        .await
    }

    pub(crate) async fn device(&self, handle: &str) -> Result<Option<DeviceRecord>> {
        let d = self
            .with(|c| {
                Ok(query(c, sql::DEVICE, &[&handle], device_from_row)?
                    .into_iter()
                    .next())
            })
            .await?;
        Ok(d)
    }

    pub(crate) async fn enroll(
        &self,
        d: &DeviceRecord,
        enrolled: &OutcomeRecord,
        refused: &OutcomeRecord,
    ) -> Result<bool> {
        self.with(|c| {
            let tx = Tx::begin(c)?;
            let inserted = exec(
                &tx,
                sql::INSERT_DEVICE,
                &[
                    &d.handle,
                    &d.key_spki,
                    &d.boot_key,
                    &d.security_level,
                    &d.os_version,
                    &d.os_patch_level,
                    &d.vendor_patch_level,
                    &d.boot_patch_level,
                    &d.model,
                    &d.status.as_str(),
                    &d.enrolled_at.as_secs(),
                    &d.updated_at.as_secs(),
                ],
            )? == 1;
            insert_outcome(&tx, if inserted { enrolled } else { refused })?;
            tx.commit()?;
            Ok(inserted)
        })
        .await
    }

    pub(crate) async fn record(
        &self,
        outcome: &OutcomeRecord,
        raise: Option<(&str, HighWater)>,
    ) -> Result<bool> {
        self.with(|c| {
            let tx = Tx::begin(c)?;
            if let Some((handle, hw)) = raise {
                let raised = exec(
                    &tx,
                    sql::RAISE_MARKS,
                    &[
                        &handle,
                        &hw.os_version,
                        &hw.os_patch_level,
                        &hw.vendor_patch_level,
                        &hw.boot_patch_level,
                        &outcome.created_at.as_secs(),
                    ],
                )?;
                if raised == 0 {
                    return Ok(false);
                }
            }
            insert_outcome(&tx, outcome)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn set_device_status(
        &self,
        handle: &str,
        status: &str,
        at: UnixTime,
    ) -> Result<bool> {
        self.with(|c| Ok(exec(c, sql::SET_STATUS, &[&handle, &status, &at.as_secs()])? > 0))
            .await
    }

    pub(crate) async fn outcome_rows(
        &self,
        from: UnixTime,
        to: UnixTime,
    ) -> Result<Vec<(String, String, String, i64)>> {
        self.with(|c| {
            query(
                c,
                sql::OUTCOME_COUNTS,
                &[&from.as_secs(), &to.as_secs()],
                |r| {
                    Ok((
                        r.get("workflow")?,
                        r.get("decision")?,
                        r.get("reasons")?,
                        r.get("n")?,
                    ))
                },
            )
        })
        .await
    }

    pub(crate) async fn purge(
        &self,
        outcomes_before: UnixTime,
        challenges_before: UnixTime,
        limit: i64,
    ) -> Result<(u64, u64)> {
        self.with(|c| {
            let o = exec(
                c,
                sql::PURGE_OUTCOMES,
                &[&outcomes_before.as_secs(), &limit],
            )?;
            let ch = exec(
                c,
                sql::PURGE_CHALLENGES,
                &[&challenges_before.as_secs(), &limit],
            )?;
            Ok((o as u64, ch as u64))
        })
        .await
    }

    pub(crate) async fn heartbeat(
        &self,
        replica: &str,
        policy_hash: &str,
        started_at: UnixTime,
        at: UnixTime,
        forget_before: UnixTime,
    ) -> Result<()> {
        self.with(|c| {
            exec(
                c,
                sql::HEARTBEAT,
                &[&replica, &policy_hash, &started_at.as_secs(), &at.as_secs()],
            )?;
            exec(c, sql::FORGET_REPLICAS, &[&forget_before.as_secs()])?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn replicas(&self, since: UnixTime) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            query(c, sql::REPLICAS, &[&since.as_secs()], |r| {
                Ok((r.get("id")?, r.get("policy_hash")?))
            })
        })
        .await
    }

    pub(crate) async fn spend_jti(&self, jti: &str, expires_at: UnixTime) -> Result<bool> {
        self.with(|c| Ok(exec(c, sql::SPEND_JTI, &[&jti, &expires_at.as_secs()])? == 1))
            .await
    }

    pub(crate) async fn purge_jtis(&self, before: UnixTime, limit: i64) -> Result<u64> {
        self.with(|c| Ok(exec(c, sql::PURGE_JTIS, &[&before.as_secs(), &limit])? as u64))
            .await
    }

    pub(crate) async fn register(
        &self,
        handle: &str,
        product: &str,
        at: UnixTime,
    ) -> Result<Option<Registration>> {
        self.with(|c| {
            let tx = Tx::begin(c)?;
            exec(&tx, sql::DROP_OTHER_PRODUCT_CHANNELS, &[&handle, &product])?;
            exec(
                &tx,
                sql::UPSERT_REGISTRATION,
                &[&handle, &product, &at.as_secs()],
            )?;
            let r = registration(&tx, handle)?;
            tx.commit()?;
            Ok(r)
        })
        .await
    }

    pub(crate) async fn seed_devices(&self, count: u64, at: UnixTime) -> Result<u64> {
        self.with(|c| {
            let tx = Tx::begin(c)?;
            let n = exec(
                &tx,
                SEED_DEVICES,
                &[&i64::try_from(count).unwrap_or(i64::MAX), &at.as_secs()],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn storage_bytes(&self) -> Result<i64> {
        self.with(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok(pages * size)
        })
        .await
    }

    pub(crate) async fn registration(&self, handle: &str) -> Result<Option<Registration>> {
        self.with(|c| registration(c, handle)).await
    }

    pub(crate) async fn join_channel(
        &self,
        handle: &str,
        product: &str,
        channel: &str,
        at: UnixTime,
    ) -> Result<bool> {
        self.with(|c| {
            exec(
                c,
                sql::JOIN_CHANNEL,
                &[&handle, &channel, &at.as_secs(), &product],
            )?;
            Ok(registration(c, handle)?.is_some_and(|r| r.product == product))
        })
        .await
    }
}

/// Applies pending migrations, each in one immediate transaction, recording versions in
/// `schema_migrations`.
fn migrate(c: &mut Connection, migrations: &[(i64, &str)]) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )?;
    for (version, code) in migrations {
        let tx = Tx::begin(c)?;
        let done = !query(
            &tx,
            "SELECT version FROM schema_migrations WHERE version = $1",
            &[version],
            |_| Ok(()),
        )?
        .is_empty();
        if done {
            continue;
        }
        tx.execute_batch(code)?;
        exec(
            &tx,
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &0_i64],
        )?;
        tx.commit()?;
    }
    Ok(())
}
