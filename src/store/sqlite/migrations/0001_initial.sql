-- process-webhook's SQLite store, schema version 1: the tables of
-- PostgresStore's five migrations in SQLite's words. UUIDs are 16-byte
-- blobs, JSON is text, times are seconds (REAL) or, in the delivery log,
-- microseconds (INTEGER) since the Unix epoch.

CREATE TABLE models (
    uuid BLOB PRIMARY KEY,
    organization TEXT NOT NULL,
    name TEXT NOT NULL
);

-- Every deployment ever made; the latest of a process in an environment
-- (highest seq) is the one webhook starts use.
CREATE TABLE deployments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id BLOB NOT NULL UNIQUE,
    process BLOB NOT NULL REFERENCES models (uuid),
    environment TEXT NOT NULL,
    -- NULL for a draft, else the released version number.
    version INTEGER CHECK (version >= 0),
    start_form TEXT NOT NULL,
    definition_key TEXT NOT NULL,
    deployed_at REAL NOT NULL
);
CREATE INDEX deployments_latest ON deployments (process, environment, seq DESC);

CREATE TABLE environments (
    organization TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (organization, id)
);

-- SHA-256 digests of tokens, never tokens.
CREATE TABLE tokens (
    digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
    organization TEXT NOT NULL,
    environment TEXT NOT NULL,
    created_at REAL NOT NULL,
    FOREIGN KEY (organization, environment) REFERENCES environments (organization, id)
);

CREATE TABLE idempotency_keys (
    environment TEXT NOT NULL,
    process BLOB NOT NULL,
    key TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    -- NULL while the start is in progress.
    outcome TEXT,
    reserved_at REAL NOT NULL,
    PRIMARY KEY (environment, process, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (reserved_at);

-- Webhook sources, their secrets sealed as in PostgreSQL (AES-256-GCM
-- under a key the host holds; each element of `secrets` names its key).
-- `events` is a JSON array of text, or NULL.
CREATE TABLE sources (
    id TEXT PRIMARY KEY,
    organization TEXT NOT NULL,
    environment TEXT NOT NULL,
    process BLOB NOT NULL,
    scheme TEXT NOT NULL,
    events TEXT,
    secrets TEXT NOT NULL,
    rules TEXT,
    updated_at REAL NOT NULL
);

-- The inbox: starts that passed every check, kept to be started by a
-- dispatcher. `lease` is the newest claim's number (from
-- `delivery_leases`); a claim holds the row until `leased_until`.
CREATE TABLE deliveries (
    id BLOB PRIMARY KEY,
    environment TEXT NOT NULL,
    process BLOB NOT NULL,
    version INTEGER NOT NULL,
    caller_key TEXT,
    source TEXT,
    command TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'started', 'dead', 'discarded')),
    kept_at REAL NOT NULL,
    due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease INTEGER,
    leased_until REAL,
    last_error TEXT,
    instance TEXT
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'queued';
CREATE INDEX deliveries_held ON deliveries (environment) WHERE status IN ('queued', 'dead');
CREATE INDEX deliveries_key ON deliveries (environment, process, caller_key, kept_at DESC)
    WHERE caller_key IS NOT NULL;
CREATE INDEX deliveries_kept ON deliveries (kept_at DESC, id DESC);
CREATE TABLE delivery_leases (n INTEGER NOT NULL);
INSERT INTO delivery_leases (n) VALUES (0);

-- The delivery log: every authenticated call and what became of it.
CREATE TABLE delivery_log (
    id BLOB PRIMARY KEY,
    received_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    environment TEXT NOT NULL,
    process BLOB NOT NULL,
    version INTEGER,
    source TEXT,
    sender_id TEXT,
    event TEXT,
    outcome TEXT NOT NULL,
    status INTEGER,
    code TEXT,
    problem TEXT,
    instance TEXT,
    attempts TEXT NOT NULL DEFAULT '[]',
    duration_us INTEGER,
    headers TEXT,
    payload TEXT
);
CREATE INDEX delivery_log_received ON delivery_log (received_us DESC, id DESC);
CREATE INDEX delivery_log_failures ON delivery_log (outcome, received_us DESC, id DESC)
    WHERE outcome IN ('refused', 'queued', 'dead');
