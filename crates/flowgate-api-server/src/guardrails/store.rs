//! SQL for the guardrail catalog. The sealed bearer token is written here and never selected
//! back: reads only learn whether there is one.

use flowgate_contracts::GuardrailKind as Kind;
use flowgate_db::sqlx::any::AnyRow;
use flowgate_db::sqlx::{self, Row};
use flowgate_db::text::{opt_text, text};
use flowgate_db::{Database, now_millis};

use super::model::{GuardrailFields, GuardrailRow, StoredKind, stages_text};
use super::schema::{builtins, kind_schema};
use crate::fields::Change;
use crate::sql::update_by;

const COLUMNS: &str = "id, name, kind, description, stages, runtime_config, config_schema, default_on, fail_open, \
     http_url, http_timeout_ms, CASE WHEN http_token_sealed IS NULL THEN 0 ELSE 1 END AS has_token, \
     created_at, updated_at";

fn guardrail_row(row: &AnyRow) -> Result<GuardrailRow, sqlx::Error> {
    Ok(GuardrailRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: StoredKind::from_name(row.try_get("kind")?),
        description: text(row, "description")?,
        stages: text(row, "stages")?,
        runtime_config: text(row, "runtime_config")?,
        config_schema: text(row, "config_schema")?,
        default_on: row.try_get::<i64, _>("default_on")? != 0,
        fail_open: row.try_get::<i64, _>("fail_open")? != 0,
        http_url: opt_text(row, "http_url")?,
        http_timeout_ms: row.try_get("http_timeout_ms")?,
        has_token: row.try_get::<i64, _>("has_token")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A new guardrail id: a UUIDv7 (time-ordered).
fn new_guardrail_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Inserts the built-in guardrails that are missing; existing rows (and their configuration) are
/// left alone, so it is safe on every start and from many replicas at once. Returns how many
/// were added.
pub(crate) async fn seed_builtins(db: &Database) -> Result<u64, sqlx::Error> {
    let now = now_millis();
    // Counted, not summed from each insert's rows affected: MySQL reports a row left alone by
    // the conflict clause as affected.
    let count = || async {
        sqlx::query("SELECT COUNT(*) AS n FROM guardrails").fetch_one(db.pool()).await?.try_get::<i64, _>("n")
    };
    let before = count().await?;
    let sql = format!(
        "INSERT INTO guardrails (id, name, kind, description, stages, runtime_config, config_schema, default_on, \
         fail_open, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, $9){}",
        db.dialect().on_conflict_ignore(&["name"])
    );
    let sql = db.sql(&sql);
    for builtin in builtins() {
        let schema = kind_schema(builtin.kind).unwrap_or_default().to_string();
        sqlx::query(&sql)
            .bind(new_guardrail_id())
            .bind(builtin.name)
            .bind(builtin.kind.as_str())
            .bind(builtin.description)
            .bind(stages_text(builtin.stages))
            .bind(builtin.runtime_config.to_string())
            .bind(schema)
            .bind(now)
            .bind(now)
            .execute(db.pool())
            .await?;
    }
    Ok(u64::try_from(count().await? - before).unwrap_or(0))
}

/// The guardrail named `name`.
pub(crate) async fn get_guardrail(db: &Database, name: &str) -> Result<Option<GuardrailRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM guardrails WHERE name = $1");
    let found = sqlx::query(&db.sql(&sql)).bind(name).fetch_optional(db.pool()).await?;
    found.as_ref().map(guardrail_row).transpose()
}

/// The whole catalog, or the guardrails of one kind, by name.
pub(crate) async fn list_guardrails(db: &Database, kind: Option<Kind>) -> Result<Vec<GuardrailRow>, sqlx::Error> {
    let rows = match kind {
        Some(kind) => {
            let sql = format!("SELECT {COLUMNS} FROM guardrails WHERE kind = $1 ORDER BY name");
            sqlx::query(&db.sql(&sql)).bind(kind.as_str()).fetch_all(db.pool()).await?
        }
        None => {
            let sql = format!("SELECT {COLUMNS} FROM guardrails ORDER BY name");
            sqlx::query(&db.sql(&sql)).fetch_all(db.pool()).await?
        }
    };
    rows.iter().map(guardrail_row).collect()
}

/// Inserts a guardrail with its bearer token already sealed. A duplicate name is a unique
/// violation.
pub(crate) async fn insert_guardrail(
    db: &Database,
    fields: &GuardrailFields,
    sealed_token: Option<Vec<u8>>,
) -> Result<GuardrailRow, sqlx::Error> {
    let now = now_millis();
    sqlx::query(&db.sql(
        "INSERT INTO guardrails (id, name, kind, description, stages, runtime_config, config_schema, default_on, \
         fail_open, http_url, http_timeout_ms, http_token_sealed, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    ))
    .bind(new_guardrail_id())
    .bind(&fields.name)
    .bind(fields.kind.as_str())
    .bind(&fields.description)
    .bind(stages_text(&fields.stages))
    .bind(&fields.runtime_config)
    .bind(&fields.config_schema)
    .bind(i64::from(fields.default_on))
    .bind(i64::from(fields.fail_open))
    .bind(&fields.http_url)
    .bind(fields.http_timeout_ms)
    .bind(sealed_token)
    .bind(now)
    .bind(now)
    .execute(db.pool())
    .await?;
    get_guardrail(db, &fields.name).await?.ok_or(sqlx::Error::RowNotFound)
}

/// Applies `changes` to the guardrail named `name`; `None` when there is no such guardrail.
pub(crate) async fn update_guardrail(
    db: &Database,
    name: &str,
    changes: Vec<Change>,
) -> Result<Option<GuardrailRow>, sqlx::Error> {
    if !changes.is_empty() && update_by("guardrails", "name", name, changes).run(db).await? == 0 {
        return Ok(None);
    }
    get_guardrail(db, name).await
}

/// Deletes the guardrail named `name`; false when there was none.
pub(crate) async fn delete_guardrail(db: &Database, name: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(&db.sql("DELETE FROM guardrails WHERE name = $1")).bind(name).execute(db.pool()).await?;
    Ok(result.rows_affected() > 0)
}
