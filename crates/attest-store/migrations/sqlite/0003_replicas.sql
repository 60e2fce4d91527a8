-- Replicas sharing this database: each writes its id and the policy hash it enforces every few
-- seconds, so that any replica can show operators whether the fleet agrees (/readyz "fleet").
CREATE TABLE replicas (
    id          TEXT PRIMARY KEY,
    policy_hash TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    seen_at     BIGINT NOT NULL
);
CREATE INDEX replicas_seen_at ON replicas (seen_at);
