-- The OTA gate: DPoP proof ids seen (single use until they leave the iat window), devices
-- registered for updates, and channel memberships.
CREATE TABLE dpop_jtis (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
-- Purged by expiry.
CREATE INDEX dpop_jtis_expires ON dpop_jtis (expires_at);
CREATE TABLE registrations (
    handle TEXT PRIMARY KEY,
    product TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);
CREATE TABLE channel_members (
    handle TEXT NOT NULL,
    channel TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (handle, channel)
);
