//! The schema of [`PostgresStore`]: its migrations, run in order under an
//! advisory lock.

use std::time::Duration;

use sqlx::Executor as _;

use super::PostgresStore;
use crate::store::StoreError;

/// The migrations, in order; the schema version is their count.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_sources.sql"),
    include_str!("migrations/0003_source_rules.sql"),
    include_str!("migrations/0004_deliveries.sql"),
    include_str!("migrations/0005_delivery_log.sql"),
];

impl PostgresStore {
    /// Creates or upgrades the tables. Safe to run from several replicas at
    /// once (they take turns on a transaction-scoped advisory lock); a
    /// database already migrated by a newer version of this crate is refused.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot be migrated, or its schema
    /// is newer than this crate knows.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let schema = self.sql.schema.clone();
        let quoted = self.sql.quoted.clone();
        let work = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("process_webhook migrate {schema}"))
                .execute(&mut *tx)
                .await?;
            tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {quoted}").as_str())
                .await?;
            tx.execute(
                format!("CREATE TABLE IF NOT EXISTS {quoted}.schema_version (version integer NOT NULL)")
                    .as_str(),
            )
            .await?;
            let found: Option<i32> =
                sqlx::query_scalar(&format!("SELECT max(version) FROM {quoted}.schema_version"))
                    .fetch_one(&mut *tx)
                    .await?;
            let found = usize::try_from(found.unwrap_or(0)).unwrap_or(0);
            if found > MIGRATIONS.len() {
                tx.rollback().await?;
                return Ok(Err(found));
            }
            for migration in &MIGRATIONS[found..] {
                tx.execute(migration.replace("__SCHEMA__", &quoted).as_str())
                    .await?;
            }
            tx.execute(format!("DELETE FROM {quoted}.schema_version").as_str())
                .await?;
            sqlx::query(&format!(
                "INSERT INTO {quoted}.schema_version (version) VALUES ($1)"
            ))
            .bind(MIGRATIONS.len() as i32)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Ok(()))
        };
        match self
            .bounded("migrating the schema", work, Duration::from_secs(60))
            .await?
        {
            Ok(()) => Ok(()),
            Err(found) => Err(StoreError::new(format!(
                "schema {schema} is at version {found}, newer than this version of process-webhook knows ({}): upgrade the crate",
                MIGRATIONS.len()
            ))),
        }
    }
}
