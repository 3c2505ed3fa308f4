//! refinery migrations over a sqlx connection.
//!
//! refinery has no sqlx driver, so [`SqlxMigrator`] implements its async traits over a sqlx
//! `AnyConnection`: each migration runs unprepared inside a transaction, and the history table
//! (`flowgate_schema_history`) is read back into refinery's `Migration::applied`. One stream of
//! migrations per backend lives in `migrations/postgres`, `migrations/mysql` and
//! `migrations/sqlite`, with the same versions and names.
//!
//! On MySQL and MariaDB a DDL statement commits by itself, so a migration that fails half way
//! leaves its first statements applied and is not recorded: the operator repairs the schema by
//! hand before running `migrate` again. The migrations keep one table change per statement so
//! the error names the one that failed.

use refinery_core::traits::r#async::{AsyncQuery, AsyncTransaction};
use refinery_core::{AsyncMigrate, Migration};
use sqlx::{AnyConnection, Connection, Executor, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Backend, Database, Error};

/// Name of the migration history table.
pub const HISTORY_TABLE: &str = "flowgate_schema_history";

mod postgres {
    refinery::embed_migrations!("migrations/postgres");
}

mod sqlite {
    refinery::embed_migrations!("migrations/sqlite");
}

mod mysql {
    refinery::embed_migrations!("migrations/mysql");
}

/// The migrations of `backend`'s stream.
fn runner(backend: Backend) -> refinery::Runner {
    match backend {
        Backend::Postgres => postgres::migrations::runner(),
        Backend::Sqlite => sqlite::migrations::runner(),
        Backend::MySql => mysql::migrations::runner(),
    }
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `V{n}__{name}` of each migration applied by this run, in order; empty when up to date.
    pub applied: Vec<String>,
}

/// Applies every pending migration of `database`'s backend. Running it again applies nothing.
pub async fn run(database: &Database) -> Result<Outcome, Error> {
    let mut runner = runner(database.backend());
    runner.set_migration_table_name(HISTORY_TABLE);
    let mut conn = database.pool().acquire().await?;
    let mut migrator = SqlxMigrator(&mut conn);
    let report = runner.run_async(&mut migrator).await.map_err(|error| Error::Migrate(error.to_string()))?;
    let applied = report.applied_migrations().iter().map(|m| format!("V{}__{}", m.version(), m.name())).collect();
    Ok(Outcome { applied })
}

/// Fails unless every migration of this build has been applied: services call it at start so a
/// forgotten `flowgate migrate` is a clear error, not a missing table at the first request.
pub async fn check_current(database: &Database) -> Result<(), Error> {
    let runner = runner(database.backend());
    let latest = runner.get_migrations().iter().map(Migration::version).max().unwrap_or(0);
    let sql = "SELECT MAX(version) FROM flowgate_schema_history";
    let applied: Option<i64> = match sqlx::query_scalar::<_, Option<i64>>(sql).fetch_one(database.pool()).await {
        Ok(v) => v,
        Err(_) => sqlx::query_scalar::<_, Option<i32>>(sql)
            .fetch_one(database.pool())
            .await
            .map(|v| v.map(i64::from))
            .unwrap_or(None),
    };
    match applied {
        Some(version) if version >= i64::from(latest) => Ok(()),
        Some(version) => Err(Error::Migrate(format!(
            "database schema is at version {version}, this build needs {latest}: run `flowgate migrate`"
        ))),
        None => Err(Error::Migrate("database has no Flowgate schema: run `flowgate migrate` first".to_owned())),
    }
}

/// Adapter that lets refinery drive a sqlx connection.
struct SqlxMigrator<'c>(&'c mut AnyConnection);

impl AsyncTransaction for SqlxMigrator<'_> {
    type Error = sqlx::Error;

    fn execute<'a, T: Iterator<Item = &'a str> + Send + 'a>(
        &'a mut self,
        queries: T,
    ) -> impl Future<Output = Result<usize, Self::Error>> + Send + 'a {
        let queries: Vec<String> = queries.map(str::to_owned).collect();
        let conn: &'a mut AnyConnection = self.0;
        async move {
            conn.transaction(move |tx| {
                Box::pin(async move {
                    for query in &queries {
                        tx.execute(query.as_str()).await?;
                    }
                    Ok::<usize, sqlx::Error>(queries.len())
                })
            })
            .await
        }
    }
}

impl AsyncQuery<Vec<Migration>> for SqlxMigrator<'_> {
    async fn query<'a>(&'a mut self, query: &'a str) -> Result<Vec<Migration>, Self::Error> {
        let rows = sqlx::query(query).fetch_all(&mut *self.0).await?;
        rows.iter().map(row_to_migration).collect()
    }
}

impl AsyncMigrate for SqlxMigrator<'_> {}

fn decode_error(column: &str, message: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: message.to_string().into() }
}

fn row_to_migration(row: &sqlx::any::AnyRow) -> Result<Migration, sqlx::Error> {
    // int4 on PostgreSQL, INTEGER (i64) on SQLite.
    let version: i64 = match row.try_get::<i64, _>(0) {
        Ok(v) => v,
        Err(_) => i64::from(row.try_get::<i32, _>(0)?),
    };
    let version = i32::try_from(version).map_err(|e| decode_error("version", e))?;
    let name: String = row.try_get(1)?;
    let applied_on: String = row.try_get(2)?;
    let applied_on = OffsetDateTime::parse(&applied_on, &Rfc3339).map_err(|e| decode_error("applied_on", e))?;
    let checksum: String = row.try_get(3)?;
    let checksum: u64 = checksum.parse().map_err(|e| decode_error("checksum", e))?;
    Ok(Migration::applied(version, name, applied_on, checksum))
}
