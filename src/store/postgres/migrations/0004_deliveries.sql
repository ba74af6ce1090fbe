-- The inbox: starts that passed every check, kept to be started by a
-- dispatcher. `command` is what the engine gets (the deployment it was
-- checked against, its start form, the variables, the key). `lease` is the
-- newest claim's number; a claim holds the row until `leased_until`.
CREATE TABLE __SCHEMA__.deliveries (
    id uuid PRIMARY KEY,
    environment text NOT NULL,
    process uuid NOT NULL,
    version integer NOT NULL,
    caller_key text,
    source text,
    command jsonb NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'started', 'dead', 'discarded')),
    kept_at timestamptz NOT NULL,
    due_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    lease bigint,
    leased_until timestamptz,
    last_error text,
    instance text
);
CREATE INDEX deliveries_due ON __SCHEMA__.deliveries (due_at) WHERE status = 'queued';
CREATE INDEX deliveries_held ON __SCHEMA__.deliveries (environment) WHERE status IN ('queued', 'dead');
CREATE INDEX deliveries_key ON __SCHEMA__.deliveries (environment, process, caller_key, kept_at DESC)
    WHERE caller_key IS NOT NULL;
CREATE INDEX deliveries_kept ON __SCHEMA__.deliveries (kept_at DESC, id DESC);
CREATE INDEX deliveries_source ON __SCHEMA__.deliveries (source, kept_at DESC) WHERE source IS NOT NULL;
CREATE SEQUENCE __SCHEMA__.delivery_leases;
