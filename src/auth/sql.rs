//! User profiles from the Rails app's own database: one query per user, run on a
//! small pool, against PostgreSQL, MySQL/MariaDB or SQLite (chosen by the URL scheme).
//!
//! The query takes the user id as its one parameter and is read by column name: `id`
//! (any integer width) is required, `name` and `avatar_url` are optional text columns
//! (missing or NULL is null in presence payloads). No row means no such user, and the
//! connection is refused, as the Rails app refuses a cookie naming a deleted user.
//!
//! # Invariants
//! - The URL's password is never logged or put in an error: [`DatabaseConfig`]'s
//!   `Debug` redacts it, and errors carry sqlx's message, which does not quote the URL.
//! - [`SqlProfiles::check`] prepares the query once, before the server binds, so a
//!   typo in the query or a missing table stops the server at startup, not at the first
//!   connection.
//! - Only `SELECT`-shaped use: ferrocable never writes to the app's database.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlPool, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgPool, PgRow, Postgres};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow};
use sqlx::{Column, ConnectOptions, Either, Executor, Row, Statement, TypeInfo};

use super::profile_cache::{CacheConfig, CachedProfiles};
use super::profiles::{ProfileError, ProfileSource, UserProfile};

/// Connections held at most: lookups are one indexed query each and are cached in
/// front, so a few connections serve thousands of connects per second without taking
/// many of the app's database connections.
pub const POOL_SIZE: u32 = 4;

/// How long a lookup waits for a pooled connection (including connecting) before it
/// fails.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `postgres://`, `postgresql://`, `postgis://`.
    Postgres,
    /// MySQL or MariaDB: `mysql://`, `mariadb://`, and Rails' `mysql2://`, `trilogy://`.
    MySql,
    /// SQLite: `sqlite:`, and Rails' `sqlite3:`.
    Sqlite,
}

impl Dialect {
    /// The dialect of `url`, and the URL rewritten to the scheme sqlx knows (Rails'
    /// adapter names, such as `mysql2://`, are accepted).
    ///
    /// # Errors
    /// When the scheme names no supported database.
    pub fn of_url(url: &str) -> Result<(Dialect, String), ProfileError> {
        let (scheme, rest) = url.split_once(':').ok_or_else(|| {
            ProfileError::Database("the database URL has no scheme (e.g. postgres://)".into())
        })?;
        let (dialect, canonical) = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" | "postgis" => (Dialect::Postgres, "postgres"),
            "mysql" | "mysql2" | "trilogy" | "mariadb" => (Dialect::MySql, "mysql"),
            "sqlite" | "sqlite3" => (Dialect::Sqlite, "sqlite"),
            other => {
                return Err(ProfileError::Database(format!(
                    "unsupported database URL scheme {other:?}: use postgres://, mysql:// (or mysql2://, mariadb://) or sqlite:"
                )))
            }
        };
        Ok((dialect, format!("{canonical}:{rest}")))
    }

    /// The default profile query, in this dialect's placeholder syntax.
    pub fn default_query(self) -> &'static str {
        match self {
            Dialect::Postgres => "SELECT id, name, avatar_url FROM users WHERE id = $1",
            Dialect::MySql | Dialect::Sqlite => {
                "SELECT id, name, avatar_url FROM users WHERE id = ?"
            }
        }
    }

    /// A name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

#[derive(Clone)]
enum Options {
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
    Sqlite(SqliteConnectOptions),
}

/// Where the profiles are and how to ask for one. Parsing it checks the URL, so a bad
/// one is reported before anything connects.
#[derive(Clone)]
pub struct DatabaseConfig {
    dialect: Dialect,
    options: Options,
    /// Where, for logs: the URL without its password.
    shown: String,
    /// The profile query; its one parameter is the user id.
    pub query: String,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.shown)
            .field("query", &self.query)
            .finish()
    }
}

impl DatabaseConfig {
    /// Parses `url` and takes `query`, or the dialect's default.
    ///
    /// # Errors
    /// When the scheme is unsupported or the URL is malformed (the message never
    /// quotes the URL, which may hold a password).
    pub fn parse(url: &str, query: Option<&str>) -> Result<Self, ProfileError> {
        let (dialect, url) = Dialect::of_url(url.trim())?;
        let bad =
            |e: sqlx::Error| ProfileError::Database(format!("invalid {} URL: {e}", dialect.name()));
        let options = match dialect {
            Dialect::Postgres => Options::Postgres(
                PgConnectOptions::from_str(&url)
                    .map_err(bad)?
                    .application_name("ferrocable")
                    .disable_statement_logging(),
            ),
            Dialect::MySql => Options::MySql(
                MySqlConnectOptions::from_str(&url)
                    .map_err(bad)?
                    .disable_statement_logging(),
            ),
            Dialect::Sqlite => Options::Sqlite(
                SqliteConnectOptions::from_str(&url)
                    .map_err(bad)?
                    .disable_statement_logging(),
            ),
        };
        let query = match query.map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => q.to_owned(),
            None => dialect.default_query().to_owned(),
        };
        Ok(DatabaseConfig {
            dialect,
            options,
            shown: redact(&url),
            query,
        })
    }

    /// The database kind.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL without its password, for logs.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// `scheme://user:secret@host/db?password=x` → `scheme://user:***@host/db`: the
/// query string goes too, as parameters such as `password` may hold secrets.
fn redact(url: &str) -> String {
    let url = url.split('?').next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// Profiles read from the app's database; users without a row are not users.
pub struct SqlProfiles {
    pool: Pool,
    query: Arc<str>,
    shown: String,
}

fn db_error(what: &str, e: sqlx::Error) -> ProfileError {
    ProfileError::Database(format!("{what}: {e}"))
}

impl SqlProfiles {
    /// A source over a pool that connects on first use (see [`SqlProfiles::check`]).
    ///
    /// # Errors
    /// When called outside a Tokio runtime (the pool's housekeeping runs on it).
    pub fn connect_lazy(cfg: &DatabaseConfig) -> Result<Self, ProfileError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ProfileError::Database(
                "the database pool needs a Tokio runtime".into(),
            ));
        }
        fn opts<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
            sqlx::pool::PoolOptions::new()
                .max_connections(POOL_SIZE)
                .min_connections(0)
                .acquire_timeout(ACQUIRE_TIMEOUT)
        }
        let pool = match &cfg.options {
            Options::Postgres(o) => Pool::Postgres(opts().connect_lazy_with(o.clone())),
            Options::MySql(o) => Pool::MySql(opts().connect_lazy_with(o.clone())),
            Options::Sqlite(o) => Pool::Sqlite(opts().connect_lazy_with(o.clone())),
        };
        Ok(SqlProfiles {
            pool,
            query: cfg.query.as_str().into(),
            shown: cfg.shown.clone(),
        })
    }

    /// Closes the pool's connections (in-flight lookups finish first).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(p) => p.close().await,
            Pool::MySql(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }
}

/// What preparing the query told us about its shape.
struct Shape {
    params: Option<usize>,
    columns: Vec<String>,
}

impl Shape {
    fn of<'q, S: Statement<'q>>(st: &S) -> Shape {
        Shape {
            params: st.parameters().map(|p| match p {
                Either::Left(types) => types.len(),
                Either::Right(n) => n,
            }),
            columns: st.columns().iter().map(|c| c.name().to_owned()).collect(),
        }
    }

    fn verify(&self, query: &str) -> Result<(), ProfileError> {
        if let Some(n) = self.params.filter(|&n| n != 1) {
            return Err(ProfileError::Database(format!(
                "the profile query must take exactly one parameter (the user id), it takes {n}: {query}"
            )));
        }
        if !self.columns.iter().any(|c| c == "id") {
            return Err(ProfileError::Database(format!(
                "the profile query must return a column named id (it returns {:?}): {query}",
                self.columns
            )));
        }
        for optional in ["name", "avatar_url"] {
            if !self.columns.iter().any(|c| c == optional) {
                tracing::warn!(
                    column = optional,
                    "the profile query returns no such column; presence payloads will show null"
                );
            }
        }
        Ok(())
    }
}

/// Reads `id` as an i64 whatever its integer width, naming the type when it is not
/// an integer.
fn pg_id(row: &PgRow) -> Result<i64, ProfileError> {
    let ty = row
        .try_column("id")
        .map(|c| c.type_info().name().to_owned());
    let got = match ty.as_deref() {
        Ok("INT2") => row.try_get::<i16, _>("id").map(i64::from),
        Ok("INT4") => row.try_get::<i32, _>("id").map(i64::from),
        _ => row.try_get::<i64, _>("id"),
    };
    got.map_err(|e| db_error("cannot read column id as an integer", e))
}

fn mysql_id(row: &MySqlRow) -> Result<i64, ProfileError> {
    match row.try_get::<i64, _>("id") {
        Ok(id) => Ok(id),
        // BIGINT UNSIGNED ids: fine while they fit.
        Err(signed) => match row.try_get::<u64, _>("id") {
            Ok(id) => i64::try_from(id).map_err(|_| {
                ProfileError::Database(format!("id {id} does not fit a signed 64-bit integer"))
            }),
            Err(_) => Err(db_error("cannot read column id as an integer", signed)),
        },
    }
}

fn sqlite_id(row: &SqliteRow) -> Result<i64, ProfileError> {
    row.try_get::<i64, _>("id")
        .map_err(|e| db_error("cannot read column id as an integer", e))
}

/// An optional text column: missing or NULL is `None`.
fn text<R: Row>(row: &R, column: &str) -> Result<Option<String>, ProfileError>
where
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    if row.try_column(column).is_err() {
        return Ok(None);
    }
    row.try_get::<Option<String>, _>(column)
        .map_err(|e| db_error(&format!("cannot read column {column} as text"), e))
}

fn profile<R: Row>(
    row: &R,
    want: i64,
    id: fn(&R) -> Result<i64, ProfileError>,
) -> Result<UserProfile, ProfileError>
where
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    let got = id(row)?;
    // A query missing its WHERE clause would otherwise name every user after the
    // first row of the table.
    if got != want {
        return Err(ProfileError::Database(format!(
            "the profile query for user {want} returned user {got}"
        )));
    }
    Ok(UserProfile::new(
        got,
        text(row, "name")?,
        text(row, "avatar_url")?,
    ))
}

#[async_trait]
impl ProfileSource for SqlProfiles {
    async fn lookup(&self, id: i64) -> Result<Option<Arc<UserProfile>>, ProfileError> {
        let q = &*self.query;
        let failed = |e| db_error(&format!("profile query for user {id} failed"), e);
        let found = match &self.pool {
            Pool::Postgres(p) => match sqlx::query(q).bind(id).fetch_optional(p).await {
                Ok(row) => row.map(|r| profile(&r, id, pg_id)).transpose()?,
                Err(e) => return Err(failed(e)),
            },
            Pool::MySql(p) => match sqlx::query(q).bind(id).fetch_optional(p).await {
                Ok(row) => row.map(|r| profile(&r, id, mysql_id)).transpose()?,
                Err(e) => return Err(failed(e)),
            },
            Pool::Sqlite(p) => match sqlx::query(q).bind(id).fetch_optional(p).await {
                Ok(row) => row.map(|r| profile(&r, id, sqlite_id)).transpose()?,
                Err(e) => return Err(failed(e)),
            },
        };
        tracing::debug!(user = id, found = found.is_some(), "profile queried");
        Ok(found.map(Arc::new))
    }

    /// Connects and prepares the query: the connection, the table and the query's
    /// shape (one parameter, an `id` column) are checked before the server binds.
    async fn check(&self) -> Result<(), ProfileError> {
        let q = &*self.query;
        let failed = |e| {
            db_error(
                &format!("cannot prepare the profile query on {}", self.shown),
                e,
            )
        };
        let shape = match &self.pool {
            // Declaring the parameter as BIGINT makes the cached statement match the
            // i64 that lookups bind, whatever width the id column has.
            Pool::Postgres(p) => p
                .prepare_with(q, &[<i64 as sqlx::Type<Postgres>>::type_info()])
                .await
                .map(|st| Shape::of(&st)),
            Pool::MySql(p) => p
                .prepare_with(q, &[<i64 as sqlx::Type<MySql>>::type_info()])
                .await
                .map(|st| Shape::of(&st)),
            Pool::Sqlite(p) => p.prepare(q).await.map(|st| Shape::of(&st)),
        }
        .map_err(failed)?;
        shape.verify(q)?;
        tracing::info!(database = %self.shown, query = q, "profile database ready");
        Ok(())
    }
}

/// The SQL source for `cfg`, behind a cache as `cache` says (none when it is off).
///
/// # Errors
/// As [`SqlProfiles::connect_lazy`].
pub fn cached_source(
    cfg: &DatabaseConfig,
    cache: CacheConfig,
) -> Result<Arc<dyn ProfileSource>, ProfileError> {
    let sql = SqlProfiles::connect_lazy(cfg)?;
    Ok(if cache.enabled() {
        Arc::new(CachedProfiles::new(sql, cache))
    } else {
        Arc::new(sql)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_map_to_dialects_as_rails_names_them() {
        for (url, dialect, canonical) in [
            ("postgres://u@h/db", Dialect::Postgres, "postgres://u@h/db"),
            ("postgresql://h/db", Dialect::Postgres, "postgres://h/db"),
            ("postgis://h/db", Dialect::Postgres, "postgres://h/db"),
            ("mysql2://root@h/db", Dialect::MySql, "mysql://root@h/db"),
            ("trilogy://h/db", Dialect::MySql, "mysql://h/db"),
            ("mariadb://h/db", Dialect::MySql, "mysql://h/db"),
            (
                "sqlite3:db/production.sqlite3",
                Dialect::Sqlite,
                "sqlite:db/production.sqlite3",
            ),
        ] {
            assert_eq!(
                Dialect::of_url(url).expect("supported"),
                (dialect, canonical.to_owned()),
                "{url}"
            );
        }
        for bad in ["redis://h", "users.db", "oracle://h/db"] {
            assert!(Dialect::of_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_queries_use_each_dialects_placeholder() {
        let pg = DatabaseConfig::parse("postgres://h/db", None).expect("valid");
        assert!(pg.query.ends_with("WHERE id = $1"));
        let my = DatabaseConfig::parse("mysql://h/db", Some("  ")).expect("valid");
        assert!(my.query.ends_with("WHERE id = ?"));
        let custom = DatabaseConfig::parse("sqlite::memory:", Some("SELECT 1 AS id WHERE ? = 1"))
            .expect("valid");
        assert_eq!(custom.query, "SELECT 1 AS id WHERE ? = 1");
    }

    #[test]
    fn the_password_is_never_shown() {
        let c = DatabaseConfig::parse("postgres://app:s3cr3t@db.internal:5432/app", None)
            .expect("valid");
        assert_eq!(c.shown(), "postgres://app:***@db.internal:5432/app");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(redact("mysql://root@h/db"), "mysql://root@h/db");
        assert_eq!(redact("sqlite:db.sqlite3?mode=ro"), "sqlite:db.sqlite3");
        assert_eq!(
            redact("postgres://h/db?user=app&password=s3cr3t"),
            "postgres://h/db"
        );
        let e = DatabaseConfig::parse("postgres://app:s3cr3t@h:notaport/db", None).unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[tokio::test]
    async fn sqlite_in_memory_lookups_and_a_bad_query() {
        // Every connection to `:memory:` is its own database, so one connection.
        let cfg = DatabaseConfig::parse(
            "sqlite::memory:",
            Some("SELECT 4 AS id, 'Dave' AS name, NULL AS avatar_url WHERE ? = 4"),
        )
        .expect("valid");
        let s = SqlProfiles::connect_lazy(&cfg).expect("in a runtime");
        s.check().await.expect("the query prepares");
        let dave = s.lookup(4).await.expect("no error").expect("dave");
        assert_eq!(dave.json(), br#"{"id":4,"name":"Dave","avatar_url":null}"#);
        assert!(s.lookup(5).await.expect("no error").is_none());

        for (query, why) in [
            ("SELECT id FROM nonexistent WHERE id = ?", "no such table"),
            ("SELECT 1 AS uid WHERE ? = 1", "column named id"),
            (
                "SELECT 1 AS id WHERE ? = 1 AND ? = 2",
                "exactly one parameter",
            ),
        ] {
            let cfg = DatabaseConfig::parse("sqlite::memory:", Some(query)).expect("valid");
            let e = SqlProfiles::connect_lazy(&cfg)
                .expect("in a runtime")
                .check()
                .await
                .unwrap_err();
            assert!(e.to_string().contains(why), "{query}: {e}");
        }
        // A query without its WHERE clause is caught at the first mismatching row.
        let cfg = DatabaseConfig::parse("sqlite::memory:", Some("SELECT 1 AS id, ? AS x"))
            .expect("valid");
        let s = SqlProfiles::connect_lazy(&cfg).expect("in a runtime");
        assert!(s.lookup(1).await.expect("user 1").is_some());
        let e = s.lookup(2).await.unwrap_err();
        assert!(e.to_string().contains("returned user 1"), "{e}");
    }

    #[test]
    fn outside_a_runtime_is_an_error_not_a_panic() {
        let cfg = DatabaseConfig::parse("sqlite::memory:", None).expect("valid");
        assert!(SqlProfiles::connect_lazy(&cfg).is_err());
    }
}
