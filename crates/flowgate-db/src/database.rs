//! The SQL connection pool.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::dialect::{self, Dialect};

/// Which SQL engine a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL (production, shared by replicas).
    Postgres,
    /// SQLite file (the embedded default).
    Sqlite,
    /// MySQL 8.0+ or MariaDB 10.6+, Galera clusters included.
    MySql,
}

impl Backend {
    /// The SQL spelling of this engine.
    pub fn dialect(self) -> &'static dyn Dialect {
        match self {
            Self::Postgres => &dialect::Postgres,
            Self::Sqlite => &dialect::Sqlite,
            Self::MySql => &dialect::MySql,
        }
    }
}

/// Storage failures. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is not one of the accepted schemes.
    #[error("unsupported database URL scheme `{0}`; expected postgres://, mysql://, mariadb:// or sqlite:")]
    Scheme(String),
    /// The database could not be reached or rejected the connection.
    #[error("cannot connect to the {backend:?} database: {message}")]
    Connect {
        /// Which backend.
        backend: Backend,
        /// The driver's message, with the URL's password removed.
        message: String,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(String),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A pool over PostgreSQL, MySQL/MariaDB or SQLite. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

fn install_drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
}

/// The URL with any password replaced, for error messages and logs.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The schemes accepted for MySQL and MariaDB besides `mysql://`: MariaDB's own and the
/// SQLAlchemy forms operators copy from their Python services.
const MYSQL_ALIASES: [&str; 4] = ["mariadb://", "mysql+asyncmy://", "mysql+pymysql://", "mysql+aiomysql://"];

/// SQLAlchemy's spellings of the TLS parameters, and the driver's.
const MYSQL_PARAMETERS: [(&str, &str); 4] =
    [("ssl_mode=", "ssl-mode="), ("ssl_ca=", "ssl-ca="), ("ssl_cert=", "ssl-cert="), ("ssl_key=", "ssl-key=")];

/// Which engine `url` names, and the URL the driver is given (a MySQL alias rewritten to
/// `mysql://`, with SQLAlchemy's `ssl_ca` style parameters in the driver's `ssl-ca` spelling).
/// The second value is the alias that was rewritten, for a log line.
fn classify(url: &str) -> Result<(Backend, Cow<'_, str>, Option<&'static str>), Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, Cow::Borrowed(url), None));
    }
    if url.starts_with("sqlite:") {
        return Ok((Backend::Sqlite, Cow::Borrowed(url), None));
    }
    let aliased = MYSQL_ALIASES.iter().copied().find_map(|alias| url.strip_prefix(alias).map(|rest| (alias, rest)));
    let (alias, rest) = match aliased {
        Some((alias, rest)) => (Some(alias), rest),
        None => match url.strip_prefix("mysql://") {
            Some(rest) => (None, rest),
            None => {
                let scheme = url.split(':').next().unwrap_or_default().to_owned();
                return Err(Error::Scheme(scheme));
            }
        },
    };
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    let Some(query) = query else {
        return Ok((
            Backend::MySql,
            if alias.is_some() { Cow::Owned(format!("mysql://{rest}")) } else { Cow::Borrowed(url) },
            alias,
        ));
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|pair| {
            MYSQL_PARAMETERS
                .iter()
                .find_map(|(python, driver)| pair.strip_prefix(python).map(|value| format!("{driver}{value}")))
                .unwrap_or_else(|| pair.to_owned())
        })
        .collect();
    Ok((Backend::MySql, Cow::Owned(format!("mysql://{location}?{}", parameters.join("&"))), alias))
}

impl Database {
    /// Connects to `url` (`postgres://…`, `mysql://…` and its aliases, or `sqlite:…`), or, when `url` is `None`, to the
    /// SQLite file `flowgate.db` in `data_dir`, creating both if needed.
    pub async fn connect(
        url: Option<&SecretString>,
        data_dir: &Path,
        max_connections: u32,
        connect_timeout: Duration,
    ) -> Result<Self, Error> {
        install_drivers();
        let url = match url {
            Some(url) => url.expose_secret().to_owned(),
            None => {
                std::fs::create_dir_all(data_dir)
                    .map_err(|source| Error::DataDir { path: data_dir.display().to_string(), source })?;
                format!("sqlite://{}?mode=rwc", data_dir.join("flowgate.db").display())
            }
        };
        let (backend, url, alias) = classify(&url)?;
        if let Some(alias) = alias {
            tracing::info!(
                scheme = alias.trim_end_matches("://"),
                "DATABASE_URL names MySQL/MariaDB through an alias; connecting with the mysql:// driver"
            );
        }
        let url = url.into_owned();
        let options: AnyConnectOptions = url.parse().map_err(|e: sqlx::Error| Error::Connect {
            backend,
            message: e.to_string().replace(&url, &redact_url(&url)),
        })?;
        let mut pool_options =
            AnyPoolOptions::new().max_connections(max_connections.max(1)).acquire_timeout(connect_timeout);
        match backend {
            Backend::Sqlite => {
                pool_options = pool_options.after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                        Ok(())
                    })
                });
            }
            // A value too long for its column or not valid in it is an error, never stored
            // truncated, whatever the server's default `sql_mode`; a backslash in a literal is a
            // backslash, as in standard SQL (PostgreSQL, SQLite).
            Backend::MySql => {
                pool_options = pool_options.after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute(
                            "SET SESSION sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES')",
                        )
                        .await?;
                        Ok(())
                    })
                });
            }
            Backend::Postgres => {}
        }
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|e| Error::Connect { backend, message: e.to_string().replace(&url, &redact_url(&url)) })?;
        Ok(Self { pool, backend })
    }

    /// The engine behind this pool.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQL spelling of this engine.
    pub fn dialect(&self) -> &'static dyn Dialect {
        self.backend.dialect()
    }

    /// `sql`, written with PostgreSQL's `$1, $2, …` placeholders (numbered in order), in this
    /// engine's spelling: borrowed unchanged on PostgreSQL and SQLite.
    pub fn sql<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        self.dialect().placeholders(sql)
    }

    /// Runs `attempt` until it succeeds, fails with an error the engine does not call
    /// transient ([`Dialect::retryable`]: a deadlock, a Galera certification failure, a busy
    /// file), or has failed five times; waits 20, 40, 80, 160 ms (with jitter) in between.
    /// `attempt` must be a whole transaction or one statement, safe to run again after such
    /// a failure (which means it was not applied).
    pub async fn retry<T, F, Fut>(&self, mut attempt: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut tries = 0_u32;
        loop {
            match attempt().await {
                Err(error) if tries < 4 && self.dialect().retryable(&error) => {
                    tries += 1;
                    let base = 10_u64 << tries;
                    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    let jitter = u64::from(nanos.subsec_nanos()) % base;
                    tracing::debug!(%error, tries, "transient database error; retrying");
                    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                }
                other => return other,
            }
        }
    }

    /// The sqlx pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Backend, classify, redact_url};

    #[test]
    fn mysql_aliases_and_python_parameters_are_normalised() {
        let (backend, url, alias) = classify("mysql+aiomysql://u:p@db:3306/gw?charset=utf8mb4&ssl_ca=/ca.pem").unwrap();
        assert_eq!(
            (backend, url.as_ref(), alias),
            (Backend::MySql, "mysql://u:p@db:3306/gw?charset=utf8mb4&ssl-ca=/ca.pem", Some("mysql+aiomysql://"))
        );
        let (backend, url, alias) = classify("mariadb://u@db/gw").unwrap();
        assert_eq!((backend, url.as_ref(), alias), (Backend::MySql, "mysql://u@db/gw", Some("mariadb://")));
        for scheme in ["mysql+asyncmy", "mysql+pymysql"] {
            let given = format!("{scheme}://db/gw?ssl_mode=REQUIRED");
            let (backend, url, _) = classify(&given).unwrap();
            assert_eq!((backend, url.as_ref()), (Backend::MySql, "mysql://db/gw?ssl-mode=REQUIRED"));
        }
        let (backend, url, alias) = classify("mysql://db/gw?ssl-mode=VERIFY_IDENTITY").unwrap();
        assert_eq!((backend, url.as_ref(), alias), (Backend::MySql, "mysql://db/gw?ssl-mode=VERIFY_IDENTITY", None));
        assert_eq!(classify("postgresql://h/db").unwrap().0, Backend::Postgres);
        assert_eq!(classify("sqlite::memory:").unwrap().0, Backend::Sqlite);
        assert!(matches!(classify("mssql://h/db"), Err(super::Error::Scheme(s)) if s == "mssql"));
    }

    #[test]
    fn redact_url_hides_the_password_only() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }
}
