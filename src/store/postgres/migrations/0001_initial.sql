-- process-webhook, schema version 1. `__SCHEMA__` is the store's schema
-- (a validated identifier, quoted).

CREATE TABLE __SCHEMA__.models (
    uuid uuid PRIMARY KEY,
    organization text NOT NULL,
    name text NOT NULL
);

-- Every deployment ever made; the latest of a process in an environment
-- (highest seq) is the one webhook starts use.
CREATE TABLE __SCHEMA__.deployments (
    seq bigserial PRIMARY KEY,
    id uuid NOT NULL UNIQUE,
    process uuid NOT NULL REFERENCES __SCHEMA__.models (uuid),
    environment text NOT NULL,
    -- NULL for a draft, else the released version number.
    version integer CHECK (version >= 0),
    start_form jsonb NOT NULL,
    definition_key text NOT NULL,
    deployed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployments_latest ON __SCHEMA__.deployments (process, environment, seq DESC);

CREATE TABLE __SCHEMA__.environments (
    organization text NOT NULL,
    id text NOT NULL,
    PRIMARY KEY (organization, id)
);

-- SHA-256 digests of tokens, never tokens.
CREATE TABLE __SCHEMA__.tokens (
    digest bytea PRIMARY KEY CHECK (length(digest) = 32),
    organization text NOT NULL,
    environment text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization, environment) REFERENCES __SCHEMA__.environments (organization, id)
);

CREATE TABLE __SCHEMA__.idempotency_keys (
    environment text NOT NULL,
    process uuid NOT NULL,
    key text NOT NULL,
    fingerprint bytea NOT NULL,
    -- NULL while the start is in progress.
    outcome jsonb,
    reserved_at timestamptz NOT NULL,
    PRIMARY KEY (environment, process, key)
);
CREATE INDEX idempotency_keys_age ON __SCHEMA__.idempotency_keys (reserved_at);
