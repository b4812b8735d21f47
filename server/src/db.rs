//! The database: SQLite (embedded default) or PostgreSQL, through sqlx's `Any` driver so that
//! one set of portable queries serves both.

use std::time::Duration;

use app::domain::{ContentLength, ImageContentType, PhotoKey, UserId};
use app::service::ports::{IssuedUpload, NewUser, Part, PortError, PortResult, UserRecord, UserStore};
use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use time::OffsetDateTime;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn db_error(e: impl Into<app::service::ports::BoxError>) -> PortError {
    PortError::new(Part::Database, e)
}

/// Opens the pool and brings the schema up to date.
pub async fn connect(url: &str) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        // SQLite has one writer at a time anyway; more connections only add lock contention.
        .max_connections(if is_sqlite { 4 } else { 16 })
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if is_sqlite {
                    // WAL lets readers run beside the writer; NORMAL sync in WAL mode loses at most
                    // the last transactions on power loss, never consistency.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

pub struct SqlUserStore {
    pool: AnyPool,
}

impl SqlUserStore {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }
}

/// A `SELECT` of every user column, as a literal (sqlx only takes literal SQL without ceremony).
macro_rules! select_users {
    ($rest:literal) => {
        concat!(
            "SELECT id, email, name, phone, role, status, joined_at, photo_key FROM users ",
            $rest
        )
    };
}

fn user_from_row(row: &AnyRow) -> PortResult<UserRecord> {
    let photo_key: Option<String> = row.try_get("photo_key").map_err(db_error)?;
    Ok(UserRecord {
        id: UserId::parse(row.try_get::<String, _>("id").map_err(db_error)?).map_err(db_error)?,
        email: row.try_get("email").map_err(db_error)?,
        name: row.try_get("name").map_err(db_error)?,
        phone: row.try_get("phone").map_err(db_error)?,
        role: row.try_get("role").map_err(db_error)?,
        status: row.try_get("status").map_err(db_error)?,
        joined_at: row.try_get("joined_at").map_err(db_error)?,
        photo_key: photo_key
            .map(|k| PhotoKey::parse(&k))
            .transpose()
            .map_err(db_error)?,
    })
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// How often a picture change retries when another one won the compare-and-swap.
const CAS_ATTEMPTS: usize = 16;

#[async_trait]
impl UserStore for SqlUserStore {
    async fn ping(&self) -> PortResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn get(&self, id: &UserId) -> PortResult<Option<UserRecord>> {
        let row = sqlx::query(select_users!("WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list(&self) -> PortResult<Vec<UserRecord>> {
        let rows = sqlx::query(select_users!("ORDER BY name, id"))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn ensure(&self, user: &NewUser) -> PortResult<()> {
        let joined = OffsetDateTime::now_utc().date().to_string();
        sqlx::query(
            "INSERT INTO users (id, email, name, phone, joined_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(user.id.as_str())
        .bind(&user.email)
        .bind(&user.name)
        .bind(user.phone.as_deref())
        .bind(joined)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn record_upload(&self, upload: &IssuedUpload) -> PortResult<()> {
        sqlx::query(
            "INSERT INTO uploads (photo_key, user_id, content_type, content_length, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(upload.key.as_str())
        .bind(upload.user_id.as_str())
        .bind(upload.content_type.mime())
        .bind(upload.content_length.get() as i64)
        .bind(unix(upload.expires_at))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn find_upload(&self, key: &PhotoKey) -> PortResult<Option<IssuedUpload>> {
        let row = sqlx::query(
            "SELECT user_id, content_type, content_length, expires_at, confirmed_at \
             FROM uploads WHERE photo_key = $1",
        )
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let user_id: String = row.try_get("user_id").map_err(db_error)?;
        let content_type: String = row.try_get("content_type").map_err(db_error)?;
        let length: i64 = row.try_get("content_length").map_err(db_error)?;
        let expires_at: i64 = row.try_get("expires_at").map_err(db_error)?;
        let confirmed_at: Option<i64> = row.try_get("confirmed_at").map_err(db_error)?;
        Ok(Some(IssuedUpload {
            key: key.clone(),
            user_id: UserId::parse(user_id).map_err(db_error)?,
            content_type: ImageContentType::parse(&content_type).map_err(db_error)?,
            content_length: ContentLength::parse(length as u64).map_err(db_error)?,
            expires_at: OffsetDateTime::from_unix_timestamp(expires_at).map_err(db_error)?,
            confirmed: confirmed_at.is_some(),
        }))
    }

    async fn replace_picture(
        &self,
        id: &UserId,
        new: Option<&PhotoKey>,
    ) -> PortResult<Option<PhotoKey>> {
        // Compare-and-swap on `version` instead of holding a row lock across a read: it works the
        // same on SQLite (which has no SELECT ... FOR UPDATE) and PostgreSQL, and two confirms
        // racing each other both see exactly which key they replaced.
        for _ in 0..CAS_ATTEMPTS {
            let row = sqlx::query("SELECT photo_key, version FROM users WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?
                .ok_or_else(|| db_error(format!("user {id} has no row")))?;
            let previous: Option<String> = row.try_get("photo_key").map_err(db_error)?;
            let version: i64 = row.try_get("version").map_err(db_error)?;

            let mut tx = self.pool.begin().await.map_err(db_error)?;
            let swapped = sqlx::query(
                "UPDATE users SET photo_key = $1, version = version + 1 \
                 WHERE id = $2 AND version = $3",
            )
            .bind(new.map(PhotoKey::as_str))
            .bind(id.as_str())
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            if swapped == 0 {
                tx.rollback().await.map_err(db_error)?;
                continue;
            }
            if let Some(key) = new {
                sqlx::query(
                    "UPDATE uploads SET confirmed_at = $1 \
                     WHERE photo_key = $2 AND confirmed_at IS NULL",
                )
                .bind(unix(OffsetDateTime::now_utc()))
                .bind(key.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            tx.commit().await.map_err(db_error)?;
            return previous
                .map(|k| PhotoKey::parse(&k))
                .transpose()
                .map_err(db_error);
        }
        Err(db_error("too much contention on the user row"))
    }
}
