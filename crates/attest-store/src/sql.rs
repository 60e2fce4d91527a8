//! Every statement the store runs, shared by both engines (SQLite through rusqlite,
//! PostgreSQL through sqlx): `$n` placeholders, `BIGINT` times, `DELETE ... RETURNING` and
//! `INSERT ... ON CONFLICT` (SQLite 3.35+ and PostgreSQL both have them). One definition, so the
//! engines cannot drift apart; the conformance suite runs each on both.

pub(crate) const INSERT_CHALLENGE: &str = "INSERT INTO challenges (id, nonce, workflow, resource, device_handle, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const CONSUME_CHALLENGE: &str = "DELETE FROM challenges WHERE id = $1 RETURNING id, nonce, workflow, resource, device_handle, created_at, expires_at";

pub(crate) const DEVICE: &str = "SELECT * FROM devices WHERE handle = $1";

pub(crate) const INSERT_DEVICE: &str = "INSERT INTO devices (handle, key_spki, boot_key, security_level, os_version, os_patch_level, vendor_patch_level, boot_patch_level, model, status, enrolled_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING";

pub(crate) const RAISE_MARKS: &str = "UPDATE devices SET \
                 os_version = CASE WHEN $2 > os_version THEN $2 ELSE os_version END, \
                 os_patch_level = CASE WHEN $3 > os_patch_level THEN $3 ELSE os_patch_level END, \
                 vendor_patch_level = CASE WHEN $4 > vendor_patch_level THEN $4 ELSE vendor_patch_level END, \
                 boot_patch_level = CASE WHEN $5 > boot_patch_level THEN $5 ELSE boot_patch_level END, \
                 updated_at = $6 WHERE handle = $1 AND status = 'active'";

pub(crate) const SET_STATUS: &str =
    "UPDATE devices SET status = $2, updated_at = $3 WHERE handle = $1";

pub(crate) const OUTCOME_COUNTS: &str = "SELECT workflow, decision, reasons, COUNT(*) AS n FROM outcomes WHERE created_at >= $1 AND created_at < $2 GROUP BY workflow, decision, reasons";

pub(crate) const PURGE_OUTCOMES: &str = "DELETE FROM outcomes WHERE id IN (SELECT id FROM outcomes WHERE created_at < $1 ORDER BY created_at LIMIT $2)";

pub(crate) const PURGE_CHALLENGES: &str =
    "DELETE FROM challenges WHERE id IN (SELECT id FROM challenges WHERE expires_at < $1 LIMIT $2)";

pub(crate) const HEARTBEAT: &str = "INSERT INTO replicas (id, policy_hash, started_at, seen_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET policy_hash = excluded.policy_hash, seen_at = excluded.seen_at";

pub(crate) const FORGET_REPLICAS: &str = "DELETE FROM replicas WHERE seen_at < $1";

pub(crate) const REPLICAS: &str =
    "SELECT id, policy_hash FROM replicas WHERE seen_at >= $1 ORDER BY id";

pub(crate) const SPEND_JTI: &str =
    "INSERT INTO dpop_jtis (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING";

pub(crate) const PURGE_JTIS: &str =
    "DELETE FROM dpop_jtis WHERE jti IN (SELECT jti FROM dpop_jtis WHERE expires_at < $1 LIMIT $2)";

pub(crate) const DROP_OTHER_PRODUCT_CHANNELS: &str = "DELETE FROM channel_members WHERE handle = $1 AND EXISTS (SELECT 1 FROM registrations WHERE handle = $1 AND product <> $2)";

pub(crate) const UPSERT_REGISTRATION: &str = "INSERT INTO registrations (handle, product, registered_at) VALUES ($1, $2, $3) ON CONFLICT (handle) DO UPDATE SET product = excluded.product";

pub(crate) const REGISTRATION: &str =
    "SELECT handle, product, registered_at FROM registrations WHERE handle = $1";

pub(crate) const CHANNELS: &str =
    "SELECT channel FROM channel_members WHERE handle = $1 ORDER BY channel";

pub(crate) const JOIN_CHANNEL: &str = "INSERT INTO channel_members (handle, channel, joined_at) SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM registrations WHERE handle = $1 AND product = $4) ON CONFLICT (handle, channel) DO NOTHING";

pub(crate) const INSERT_OUTCOME: &str = "INSERT INTO outcomes (device_handle, workflow, resource, decision, reasons, policy_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

// PostgreSQL only: the same effects in fewer round trips (each statement is one; a transaction
// of three statements is five). Data-modifying CTEs run as one atomic statement.

/// [`RAISE_MARKS`] and [`INSERT_OUTCOME`] as one statement: the outcome is written only when the
/// device was still active and its marks were raised ($1-$6 as RAISE_MARKS, $7-$13 as
/// INSERT_OUTCOME).
pub(crate) const PG_RECORD_RAISED: &str = "WITH raised AS (UPDATE devices SET \
    os_version = CASE WHEN $2 > os_version THEN $2 ELSE os_version END, \
    os_patch_level = CASE WHEN $3 > os_patch_level THEN $3 ELSE os_patch_level END, \
    vendor_patch_level = CASE WHEN $4 > vendor_patch_level THEN $4 ELSE vendor_patch_level END, \
    boot_patch_level = CASE WHEN $5 > boot_patch_level THEN $5 ELSE boot_patch_level END, \
    updated_at = $6 WHERE handle = $1 AND status = 'active' RETURNING handle) \
    INSERT INTO outcomes (device_handle, workflow, resource, decision, reasons, policy_hash, created_at) \
    SELECT $7, $8, $9, $10, $11, $12, $13 FROM raised";

/// [`DROP_OTHER_PRODUCT_CHANNELS`] and [`UPSERT_REGISTRATION`] as one statement (both see the
/// registration as it was before).
pub(crate) const PG_REGISTER: &str = "WITH dropped AS (DELETE FROM channel_members WHERE handle = $1 \
    AND EXISTS (SELECT 1 FROM registrations WHERE handle = $1 AND product <> $2)) \
    INSERT INTO registrations (handle, product, registered_at) VALUES ($1, $2, $3) \
    ON CONFLICT (handle) DO UPDATE SET product = excluded.product";

/// [`REGISTRATION`] and [`CHANNELS`] in one query (channel names never contain a comma).
pub(crate) const PG_REGISTRATION: &str = "SELECT r.handle, r.product, r.registered_at, \
    COALESCE(string_agg(m.channel, ',' ORDER BY m.channel), '') AS channels \
    FROM registrations r LEFT JOIN channel_members m ON m.handle = r.handle \
    WHERE r.handle = $1 GROUP BY r.handle, r.product, r.registered_at";
