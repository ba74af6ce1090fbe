//! What the two SQL stores ([`PostgresStore`](crate::PostgresStore) and
//! [`SqliteStore`](crate::SqliteStore)) share: a row read the same way
//! from either database ([`Columns`]), the domain's types read back from
//! rows (here and in `inbox`, `delivery_log`, `sources`), the sealing of
//! source secrets (`sealing`), and the bound on each operation. Each
//! store's folder holds only what its dialect says differently.

pub(crate) mod cache;
pub(crate) mod delivery_log;
pub(crate) mod inbox;
pub(crate) mod sealing;
pub(crate) mod sources;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde_json::Value;

use crate::id::{DeploymentId, EnvironmentId, OrganizationId, ProcessUuid};
use crate::model::{Deployment, Environment, ProcessModel, VersionTag};
use crate::signature::SigningSecret;
use crate::store::StoreError;

/// A row, read by column name into the few types the stores keep. Each
/// method names the column in its error.
pub(crate) trait Columns {
    /// The database's name in errors: `postgres` or `sqlite`.
    const DATABASE: &'static str;
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i32, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i32>, StoreError>;
    fn long(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_long(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn real(&self, column: &str) -> Result<f64, StoreError>;
    fn uuid(&self, column: &str) -> Result<uuid::Uuid, StoreError>;
    fn opt_uuid(&self, column: &str) -> Result<Option<uuid::Uuid>, StoreError>;
    fn json(&self, column: &str) -> Result<Value, StoreError>;
    fn opt_json(&self, column: &str) -> Result<Option<Value>, StoreError>;
}

/// [`Columns`] for a sqlx row type, by `sqlx::Row::try_get`.
macro_rules! columns_for {
    ($row:ty, $database:literal) => {
        impl $crate::store::sql::Columns for $row {
            const DATABASE: &'static str = $database;
            fn text(&self, c: &str) -> Result<String, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn opt_text(&self, c: &str) -> Result<Option<String>, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn int(&self, c: &str) -> Result<i32, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn opt_int(&self, c: &str) -> Result<Option<i32>, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn long(&self, c: &str) -> Result<i64, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn opt_long(&self, c: &str) -> Result<Option<i64>, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn real(&self, c: &str) -> Result<f64, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn uuid(&self, c: &str) -> Result<uuid::Uuid, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn opt_uuid(&self, c: &str) -> Result<Option<uuid::Uuid>, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn json(&self, c: &str) -> Result<serde_json::Value, StoreError> {
                $crate::store::sql::column(self, c)
            }
            fn opt_json(&self, c: &str) -> Result<Option<serde_json::Value>, StoreError> {
                $crate::store::sql::column(self, c)
            }
        }
    };
}
pub(crate) use columns_for;

/// Column `name` of `row` as a `T`.
pub(crate) fn column<'r, R, T>(row: &'r R, name: &str) -> Result<T, StoreError>
where
    R: sqlx::Row + Columns,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get(name)
        .map_err(|e| StoreError::new(format!("{}: reading column {name}", R::DATABASE)).with_source(e))
}

/// `operation` of database `database`, bounded by `limit`; a failure names
/// `what` was being done.
pub(crate) async fn bounded<T>(
    database: &'static str,
    what: &'static str,
    operation: impl Future<Output = Result<T, sqlx::Error>>,
    limit: Duration,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(StoreError::new(format!("{database}: {what}")).with_source(error)),
        Err(_) => Err(StoreError::new(format!(
            "{database}: {what}: no answer within {} ms",
            limit.as_millis()
        ))),
    }
}

/// The model of `uuid` from a row's `organization` and `name`.
pub(crate) fn model_from<R: Columns>(row: &R, uuid: ProcessUuid) -> Result<ProcessModel, StoreError> {
    Ok(ProcessModel::new(
        uuid,
        OrganizationId::new(row.text("organization")?),
        row.text("name")?,
    ))
}

/// A deployment from a row's `id`, `version` (`NULL` for a draft),
/// `start_form` and `definition_key`.
pub(crate) fn deployment_from<R: Columns>(
    row: &R,
    process: ProcessUuid,
    environment: EnvironmentId,
) -> Result<Deployment, StoreError> {
    let id = row.uuid("id")?;
    let version = match row.opt_int("version")? {
        None => VersionTag::Draft,
        Some(n) => VersionTag::Released(
            u32::try_from(n)
                .map_err(|_| StoreError::new(format!("{}: a stored version is negative", R::DATABASE)))?,
        ),
    };
    let form = serde_json::from_value(row.json("start_form")?).map_err(|e| {
        StoreError::new(format!("{}: a stored start form could not be read", R::DATABASE)).with_source(e)
    })?;
    Ok(Deployment::new(process, version, environment, form)
        .with_id(DeploymentId::from(id))
        .with_definition_key(row.text("definition_key")?))
}

/// A row of a model with its latest deployment in an environment (the
/// deployment's columns `NULL` when there is none).
pub(crate) fn model_with_deployment_from<R: Columns>(
    row: &R,
    uuid: ProcessUuid,
    environment: &EnvironmentId,
) -> Result<(ProcessModel, Option<Deployment>), StoreError> {
    let model = model_from(row, uuid)?;
    let deployment = match row.opt_uuid("id")? {
        Some(_) => Some(deployment_from(row, uuid, environment.clone())?),
        None => None,
    };
    Ok((model, deployment))
}

/// A deployment's version as a column holds it: `NULL` for a draft.
pub(crate) fn stored_version(version: VersionTag) -> Result<Option<i32>, StoreError> {
    match version {
        VersionTag::Draft => Ok(None),
        VersionTag::Released(n) => i32::try_from(n)
            .map(Some)
            .map_err(|_| StoreError::new("a version number must fit in 31 bits")),
    }
}

/// The signing secrets of environments a store holds in memory, never in
/// its database (a stored secret must be a digest, and a signature check
/// needs the key itself): each process is given them by its host.
#[derive(Debug, Default)]
pub(crate) struct SigningSecrets(RwLock<Keyring>);

/// The signing secrets held, by environment.
type Keyring = HashMap<(OrganizationId, EnvironmentId), Arc<[SigningSecret]>>;

impl SigningSecrets {
    /// Holds the secrets `environment` carries from now on (none removes
    /// them).
    pub(crate) fn load(&self, environment: &Environment) {
        let key = (environment.organization().clone(), environment.id().clone());
        let mut secrets = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if environment.signing_secrets().is_empty() {
            secrets.remove(&key);
        } else {
            secrets.insert(key, environment.signing_secrets().into());
        }
    }

    /// `environment` as read from a row, with the secrets held for it.
    pub(crate) fn attach(&self, environment: Environment) -> Environment {
        let secrets = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let key = (environment.organization().clone(), environment.id().clone());
        match secrets.get(&key) {
            Some(list) => list
                .iter()
                .cloned()
                .fold(environment, Environment::with_signing_secret),
            None => environment,
        }
    }
}
