//! The SQL connection pool.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which SQL engine a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL (production, shared by replicas).
    Postgres,
    /// SQLite file (the embedded default).
    Sqlite,
}

/// Storage failures. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is neither `postgres://` nor `sqlite:`.
    #[error("unsupported database URL scheme `{0}`; expected postgres:// or sqlite:")]
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

/// A pool over PostgreSQL or SQLite. Cheap to clone.
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

impl Database {
    /// Connects to `url` (`postgres://...` or `sqlite:...`), or, when `url` is `None`, to the
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
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            let scheme = url.split(':').next().unwrap_or_default().to_owned();
            return Err(Error::Scheme(scheme));
        };
        let options: AnyConnectOptions = url.parse().map_err(|e: sqlx::Error| Error::Connect {
            backend,
            message: e.to_string().replace(&url, &redact_url(&url)),
        })?;
        let mut pool_options =
            AnyPoolOptions::new().max_connections(max_connections.max(1)).acquire_timeout(connect_timeout);
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                        .await?;
                    Ok(())
                })
            });
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
    use super::redact_url;

    #[test]
    fn redact_url_hides_the_password_only() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }
}
