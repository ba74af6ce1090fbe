-- The delivery log: every authenticated call and what became of it, for
-- the operator. Times are microseconds since the Unix epoch (exact, so that
-- a page's cursor is too). Purged by age (`PostgresStore::purge`).
CREATE TABLE __SCHEMA__.delivery_log (
    id uuid PRIMARY KEY,
    received_us bigint NOT NULL,
    updated_us bigint NOT NULL,
    environment text NOT NULL,
    process uuid NOT NULL,
    version integer,
    source text,
    sender_id text,
    event text,
    outcome text NOT NULL,
    status integer,
    code text,
    problem jsonb,
    instance text,
    attempts jsonb NOT NULL DEFAULT '[]',
    duration_us bigint,
    headers jsonb,
    payload text
);
CREATE INDEX delivery_log_received ON __SCHEMA__.delivery_log (received_us DESC, id DESC);
-- Failures are few and looked for: an index of their own. Other filters
-- walk the received order (the outcomes and sources they ask for are
-- common), which keeps each write to two indexes.
CREATE INDEX delivery_log_failures ON __SCHEMA__.delivery_log (outcome, received_us DESC, id DESC)
    WHERE outcome IN ('refused', 'queued', 'dead');
