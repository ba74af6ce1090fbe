//! The SQL of [`PostgresStore`], written once per schema, and reading its
//! rows back into the domain's types.

use sqlx::Row as _;
use sqlx::postgres::PgRow;

use crate::store::StoreError;

/// The statements, with the schema put in once.
#[derive(Debug)]
pub(super) struct Statements {
    pub(super) schema: String,
    pub(super) quoted: String,
    pub(super) channel: String,
    /// Where a kept start is announced to dispatchers (not `channel`: the
    /// cache empties on each of its notifications).
    pub(super) inbox_channel: String,
    pub(super) model: String,
    pub(super) model_with_deployment: String,
    pub(super) deployments: String,
    pub(super) token: String,
    pub(super) insert_model: String,
    pub(super) deploy: String,
    pub(super) insert_token: String,
    pub(super) revoke: String,
    pub(super) reserve: String,
    pub(super) complete: String,
    pub(super) release: String,
    pub(super) purge: String,
    pub(super) source: String,
    pub(super) put_source: String,
    pub(super) remove_source: String,
    pub(super) inbox: super::inbox::InboxStatements,
}

impl Statements {
    /// `schema` is a validated identifier (see `with_schema`).
    pub(super) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        Self {
            schema: schema.to_owned(),
            channel: channel_name("process_webhook_", schema),
            inbox_channel: channel_name("process_webhook_inbox_", schema),
            model: format!("SELECT organization, name FROM {s}.models WHERE uuid = $1"),
            model_with_deployment: format!(
                "SELECT m.organization, m.name, d.id, d.version, d.start_form, d.definition_key \
                 FROM {s}.models m LEFT JOIN LATERAL ( \
                   SELECT id, version, start_form, definition_key FROM {s}.deployments \
                   WHERE process = m.uuid AND environment = $2 ORDER BY seq DESC LIMIT 1 \
                 ) d ON true WHERE m.uuid = $1"
            ),
            deployments: format!(
                "SELECT id, version, start_form, definition_key FROM {s}.deployments \
                 WHERE process = $1 AND environment = $2 ORDER BY seq"
            ),
            token: format!("SELECT organization, environment FROM {s}.tokens WHERE digest = $1"),
            insert_model: format!(
                "INSERT INTO {s}.models (uuid, organization, name) VALUES ($1, $2, $3) \
                 ON CONFLICT (uuid) DO UPDATE SET organization = EXCLUDED.organization, name = EXCLUDED.name"
            ),
            deploy: format!(
                "INSERT INTO {s}.deployments (id, process, environment, version, start_form, definition_key) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING"
            ),
            insert_token: format!(
                "WITH env AS (INSERT INTO {s}.environments (organization, id) VALUES ($2, $3) ON CONFLICT DO NOTHING) \
                 INSERT INTO {s}.tokens (digest, organization, environment) VALUES ($1, $2, $3) \
                 ON CONFLICT (digest) DO UPDATE SET organization = EXCLUDED.organization, environment = EXCLUDED.environment"
            ),
            revoke: format!("DELETE FROM {s}.tokens WHERE digest = $1"),
            reserve: format!(
                "WITH taken AS ( \
                   INSERT INTO {s}.idempotency_keys AS k (environment, process, key, fingerprint, outcome, reserved_at) \
                   VALUES ($1, $2, $3, $4, NULL, clock_timestamp()) \
                   ON CONFLICT (environment, process, key) DO UPDATE \
                     SET fingerprint = EXCLUDED.fingerprint, outcome = NULL, reserved_at = clock_timestamp() \
                     WHERE k.reserved_at <= clock_timestamp() - make_interval(secs => $5) \
                        OR (k.outcome IS NULL AND k.reserved_at <= clock_timestamp() - make_interval(secs => $6)) \
                        OR (k.outcome IS NULL AND k.fingerprint = EXCLUDED.fingerprint \
                            AND k.reserved_at <= clock_timestamp() - make_interval(secs => $7)) \
                   RETURNING 1 \
                 ) \
                 SELECT true AS reserved, NULL::bytea AS fingerprint, NULL::jsonb AS outcome FROM taken \
                 UNION ALL \
                 SELECT false, k.fingerprint, k.outcome FROM {s}.idempotency_keys k \
                 WHERE k.environment = $1 AND k.process = $2 AND k.key = $3 AND NOT EXISTS (SELECT 1 FROM taken)"
            ),
            complete: format!(
                "UPDATE {s}.idempotency_keys SET outcome = $4 \
                 WHERE environment = $1 AND process = $2 AND key = $3 AND outcome IS NULL"
            ),
            release: format!(
                "DELETE FROM {s}.idempotency_keys \
                 WHERE environment = $1 AND process = $2 AND key = $3 AND outcome IS NULL"
            ),
            purge: format!(
                "DELETE FROM {s}.idempotency_keys WHERE ctid = ANY(ARRAY( \
                   SELECT ctid FROM {s}.idempotency_keys \
                   WHERE reserved_at <= clock_timestamp() - make_interval(secs => $1) \
                   LIMIT $2 FOR UPDATE SKIP LOCKED))"
            ),
            source: format!(
                "SELECT organization, environment, process, scheme, events, secrets, rules FROM {s}.sources WHERE id = $1"
            ),
            put_source: format!(
                "INSERT INTO {s}.sources (id, organization, environment, process, scheme, events, secrets, rules) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET \
                 organization = EXCLUDED.organization, environment = EXCLUDED.environment, \
                 process = EXCLUDED.process, scheme = EXCLUDED.scheme, events = EXCLUDED.events, \
                 secrets = EXCLUDED.secrets, rules = EXCLUDED.rules, updated_at = now()"
            ),
            remove_source: format!("DELETE FROM {s}.sources WHERE id = $1"),
            inbox: super::inbox::InboxStatements::new(&s),
            quoted: s,
        }
    }
}

/// A `NOTIFY` channel of `schema`: `{prefix}{schema}`, or, where that
/// would pass PostgreSQL's 63 bytes, `{prefix}` and the start of the
/// schema's SHA-256 (a longer name is refused by `pg_notify`).
fn channel_name(prefix: &str, schema: &str) -> String {
    let name = format!("{prefix}{schema}");
    if name.len() <= 63 {
        return name;
    }
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(schema.as_bytes()));
    format!("{prefix}{}", &digest[..(63 - prefix.len()).min(digest.len())])
}

/// PostgreSQL text cannot hold U+0000: such text is refused before it is
/// sent, with an error that says so.
pub(super) fn storable(what: &'static str, text: &str) -> Result<(), StoreError> {
    if text.contains('\0') {
        Err(nul_refused(what))
    } else {
        Ok(())
    }
}

pub(super) fn nul_refused(what: &str) -> StoreError {
    StoreError::new(format!(
        "postgres cannot store text containing U+0000 ({what} has one)"
    ))
}

pub(super) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column)
        .map_err(|e| StoreError::new(format!("postgres: reading column {column}")).with_source(e))
}

crate::store::sql::columns_for!(PgRow, "postgres");

pub(super) use crate::store::sql::{deployment_from, model_from};

#[cfg(test)]
mod tests {
    use super::channel_name;

    #[test]
    fn a_channel_name_fits_postgres_63_bytes_and_differs_per_schema() {
        assert_eq!(
            channel_name("process_webhook_", "orders"),
            "process_webhook_orders"
        );
        let long = "s".repeat(48);
        let other = format!("{}t", "s".repeat(47));
        for prefix in ["process_webhook_", "process_webhook_inbox_"] {
            let (a, b) = (channel_name(prefix, &long), channel_name(prefix, &other));
            assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
            assert!(a.starts_with(prefix));
            assert_ne!(a, b);
        }
    }
}
