-- Challenges: single use; consumed by one DELETE ... RETURNING.
CREATE TABLE challenges (
    id            TEXT PRIMARY KEY,
    nonce         BYTEA NOT NULL,
    workflow      TEXT NOT NULL,
    resource      TEXT NOT NULL,
    device_handle TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX challenges_expires_at ON challenges (expires_at);

-- Enrolled devices: pins and high-water marks, no evidence. key_spki is the device key's public
-- key (needed to verify its proofs); patch levels are normalised YYYYMMDD, 0 when absent.
CREATE TABLE devices (
    handle             TEXT PRIMARY KEY,
    key_spki           BYTEA NOT NULL UNIQUE,
    boot_key           BYTEA NOT NULL,
    security_level     BIGINT NOT NULL,
    os_version         BIGINT NOT NULL,
    os_patch_level     BIGINT NOT NULL,
    vendor_patch_level BIGINT NOT NULL,
    boot_patch_level   BIGINT NOT NULL,
    model              TEXT,
    status             TEXT NOT NULL,
    enrolled_at        BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

-- Outcomes: what was decided, never what was presented.
CREATE TABLE outcomes (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_handle TEXT,
    workflow      TEXT NOT NULL,
    resource      TEXT NOT NULL,
    decision      TEXT NOT NULL,
    reasons       TEXT NOT NULL,
    policy_hash   TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX outcomes_created_at ON outcomes (created_at);
