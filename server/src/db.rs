//! The database: SQLite (embedded default) or PostgreSQL, through sqlx's `Any` driver so that
//! one set of portable queries serves both.

use std::time::Duration;

use app::domain::{ContentLength, ImageContentType, PhotoKey, UserId};
use app::service::ports::{
    IssuedUpload, NewUser, Part, PictureChange, PortError, PortResult, QueuedTask, Task,
    UserRecord, UserStore,
};
use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

fn db_error(e: impl Into<app::service::ports::BoxError>) -> PortError {
    PortError::new(Part::Database, e)
}

/// The connection pools. With SQLite, writes get a pool of one connection: SQLite allows one
/// writer at a time, and writers waiting in the pool's queue are cheaper and fairer than
/// SQLite's busy handler, which sleeps and retries. Reads get their own connections, which WAL
/// lets run beside the writer. With PostgreSQL both are the same pool.
#[derive(Clone)]
pub struct Database {
    pub read: AnyPool,
    pub write: AnyPool,
}

/// Opens the pools and brings the schema up to date.
pub async fn connect(url: &str) -> Result<Database, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    if is_sqlite {
        create_private_sqlite_file(url)?;
    }
    let pool = |connections: u32| {
        AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_sqlite {
                        // WAL lets readers run beside the writer. synchronous = NORMAL in WAL mode
                        // syncs at checkpoints, not at every commit: a power cut can lose the last
                        // commits but never corrupts the database. Pictures are re-uploadable, so
                        // we trade that window for commits that cost no fsync.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // Checkpoints fsync. Left automatic, they run inside a commit on the one
                        // writer and stall every insert queued behind it; `checkpoint_wal`
                        // does them in the background instead.
                        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
    };
    let database = if is_sqlite {
        let write = pool(1).await?;
        MIGRATOR.run(&write).await?;
        let read = pool(4).await?;
        tokio::spawn(checkpoint_wal(read.clone()));
        Database { read, write }
    } else {
        let shared = pool(16).await?;
        MIGRATOR.run(&shared).await?;
        Database {
            read: shared.clone(),
            write: shared,
        }
    };
    Ok(database)
}

/// Creates the SQLite file, when missing and the URL asks for that (`mode=rwc`, as the default
/// does), readable and writable by this user alone. SQLite gives its `-wal` and `-shm` files
/// the database file's mode, so they are private too.
fn create_private_sqlite_file(url: &str) -> std::io::Result<()> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let creates = query.split('&').any(|pair| pair == "mode=rwc");
    if !creates || path.is_empty() || path.starts_with(':') {
        return Ok(()); // sqlx opens it, or says why not; or in memory
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// Copies the SQLite write-ahead log into the database file once a second. PASSIVE never waits
/// for, or blocks, the writer or readers; it does what it can, and the next pass the rest.
async fn checkpoint_wal(pool: AnyPool) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint failed; retrying in a second");
        }
    }
}

pub struct SqlUserStore {
    db: Database,
    ledger: mpsc::Sender<LedgerWrite>,
}

impl SqlUserStore {
    /// Needs a Tokio runtime: it starts the ledger writer.
    pub fn new(db: Database) -> Self {
        let (ledger, writes) = mpsc::channel(LEDGER_BATCH * 4);
        tokio::spawn(write_ledger(db.write.clone(), writes));
        Self { db, ledger }
    }
}

/// One ledger insert waiting for its batch, and where to say how it went.
type LedgerWrite = (IssuedUpload, oneshot::Sender<PortResult<bool>>);

/// Most inserts one ledger transaction takes.
const LEDGER_BATCH: usize = 256;

/// Group commit for the ledger, the one write on the hot path. Inserts that arrive while a
/// batch is being written wait for the next one, and each batch is a single multi-row INSERT:
/// one round trip to the database and one commit for all of them, instead of one per request.
/// Under no load a batch is a single row, so nothing waits.
async fn write_ledger(pool: AnyPool, mut writes: mpsc::Receiver<LedgerWrite>) {
    let mut batch = Vec::with_capacity(LEDGER_BATCH);
    while writes.recv_many(&mut batch, LEDGER_BATCH).await > 0 {
        let uploads: Vec<&IssuedUpload> = batch.iter().map(|(upload, _)| upload).collect();
        match insert_uploads(&pool, &uploads).await {
            Ok(()) => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Ok(true));
                }
            }
            // One bad row (a user without a row) fails the statement: redo the rows one by
            // one, so that each caller gets its own answer.
            Err(_) if batch.len() > 1 => {
                for (upload, reply) in batch.drain(..) {
                    let outcome = insert_uploads(&pool, &[&upload]).await;
                    let _ = reply.send(ledger_outcome(outcome));
                }
            }
            Err(e) => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(ledger_outcome(Err(e.clone())));
                }
            }
        }
    }
}

async fn insert_uploads(pool: &AnyPool, uploads: &[&IssuedUpload]) -> Result<(), LedgerError> {
    // Numbered placeholders, which both SQLite and PostgreSQL read (the Any driver's query
    // builder writes `?`, which PostgreSQL does not).
    const COLUMNS: usize = 5;
    let rows: Vec<String> = (0..uploads.len())
        .map(|row| {
            let cells: Vec<String> = (1..=COLUMNS)
                .map(|c| format!("${}", row * COLUMNS + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO uploads (photo_key, user_id, content_type, content_length, expires_at) VALUES {}",
        rows.join(", ")
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for upload in uploads {
        insert = insert
            .bind(upload.key.as_str())
            .bind(upload.user_id.as_str())
            .bind(upload.content_type.mime())
            .bind(upload.content_length.get() as i64)
            .bind(unix(upload.expires_at));
    }
    match insert.execute(pool).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(LedgerError::NoUser),
        Err(e) => Err(LedgerError::Other(e.to_string())),
    }
}

#[derive(Debug, Clone)]
enum LedgerError {
    NoUser,
    Other(String),
}

fn ledger_outcome(outcome: Result<(), LedgerError>) -> PortResult<bool> {
    match outcome {
        Ok(()) => Ok(true),
        Err(LedgerError::NoUser) => Ok(false),
        Err(LedgerError::Other(e)) => Err(db_error(e)),
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

const SYNC_PICTURE: &str = "sync_picture";
const DELETE_OBJECT: &str = "delete_object";

/// Adds a task to the outbox, due at once.
async fn enqueue(
    conn: &mut sqlx::AnyConnection,
    task: Task,
    now: OffsetDateTime,
) -> PortResult<QueuedTask> {
    let id = uuid::Uuid::new_v4().to_string();
    let (kind, user_id, key) = match &task {
        Task::SyncPicture { user_id } => (SYNC_PICTURE, user_id, None),
        Task::DeleteObject { user_id, key } => (DELETE_OBJECT, user_id, Some(key.as_str())),
    };
    sqlx::query(
        "INSERT INTO outbox (id, kind, user_id, photo_key, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(kind)
    .bind(user_id.as_str())
    .bind(key)
    .bind(unix(now))
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(QueuedTask {
        id,
        task,
        attempts: 0,
    })
}

fn task_from_row(row: &AnyRow) -> PortResult<QueuedTask> {
    let id: String = row.try_get("id").map_err(db_error)?;
    let kind: String = row.try_get("kind").map_err(db_error)?;
    let user_id =
        UserId::parse(row.try_get::<String, _>("user_id").map_err(db_error)?).map_err(db_error)?;
    let key: Option<String> = row.try_get("photo_key").map_err(db_error)?;
    let attempts: i64 = row.try_get("attempts").map_err(db_error)?;
    let task = match (kind.as_str(), key) {
        (SYNC_PICTURE, _) => Task::SyncPicture { user_id },
        (DELETE_OBJECT, Some(key)) => Task::DeleteObject {
            user_id,
            key: PhotoKey::parse(&key).map_err(db_error)?,
        },
        _ => return Err(db_error(format!("malformed outbox row {id}"))),
    };
    Ok(QueuedTask {
        id,
        task,
        attempts: attempts.clamp(0, i64::from(u32::MAX)) as u32,
    })
}

#[async_trait]
impl UserStore for SqlUserStore {
    async fn ping(&self) -> PortResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.db.read)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn get(&self, id: &UserId) -> PortResult<Option<UserRecord>> {
        let row = sqlx::query(select_users!("WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_error)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list(&self) -> PortResult<Vec<UserRecord>> {
        let rows = sqlx::query(select_users!("ORDER BY name, id"))
            .fetch_all(&self.db.read)
            .await
            .map_err(db_error)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn ensure(&self, user: &NewUser) -> PortResult<()> {
        let joined = OffsetDateTime::now_utc().date().to_string();
        sqlx::query(
            "INSERT INTO users (id, email, name, phone, role, joined_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name, \
             phone = excluded.phone, role = excluded.role",
        )
        .bind(user.id.as_str())
        .bind(&user.email)
        .bind(&user.name)
        .bind(user.phone.as_deref())
        .bind(&user.role)
        .bind(joined)
        .execute(&self.db.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn record_upload(&self, upload: &IssuedUpload) -> PortResult<bool> {
        let (reply, answer) = oneshot::channel();
        self.ledger
            .send((upload.clone(), reply))
            .await
            .map_err(|_| db_error("the ledger writer stopped"))?;
        answer
            .await
            .map_err(|_| db_error("the ledger writer dropped a write"))?
    }

    async fn find_upload(&self, key: &PhotoKey) -> PortResult<Option<IssuedUpload>> {
        let row = sqlx::query(
            "SELECT user_id, content_type, content_length, expires_at, confirmed_at \
             FROM uploads WHERE photo_key = $1",
        )
        .bind(key.as_str())
        .fetch_optional(&self.db.read)
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

    async fn pending_uploads(
        &self,
        id: &UserId,
        now: OffsetDateTime,
        limit: u64,
    ) -> PortResult<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM uploads \
             WHERE user_id = $1 AND confirmed_at IS NULL AND expires_at > $2 LIMIT $3) AS pending",
        )
        .bind(id.as_str())
        .bind(unix(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_one(&self.db.read)
        .await
        .map_err(db_error)?;
        Ok(count.max(0) as u64)
    }

    async fn replace_picture(
        &self,
        id: &UserId,
        new: Option<&PhotoKey>,
    ) -> PortResult<Option<PictureChange>> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.db.write.begin().await.map_err(db_error)?;
        if let Some(key) = new {
            // Claiming the upload first also takes SQLite's write lock at once, and makes a
            // confirm and the sweeper mutually exclusive: only one of them can win this row.
            let claimed = sqlx::query(
                "UPDATE uploads SET confirmed_at = $1 \
                 WHERE photo_key = $2 AND user_id = $3 AND confirmed_at IS NULL AND swept_at IS NULL",
            )
            .bind(unix(now))
            .bind(key.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
            if claimed == 0 {
                tx.rollback().await.map_err(db_error)?;
                return Ok(None);
            }
        }
        // One statement swaps the key and reports the old one: SET reads the row as it was, and
        // RETURNING shows it as it is. Concurrent changes serialise on the row, and each sees
        // exactly the key it replaced, so no update is lost and no replaced object is missed.
        let replaced: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE users SET replaced_photo_key = photo_key, photo_key = $1, version = version + 1 \
             WHERE id = $2 RETURNING replaced_photo_key",
        )
        .bind(new.map(PhotoKey::as_str))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let Some(replaced) = replaced else {
            tx.rollback().await.map_err(db_error)?;
            return Ok(None); // no such user
        };
        let replaced = replaced
            .map(|k| PhotoKey::parse(&k))
            .transpose()
            .map_err(db_error)?
            .filter(|old| Some(old) != new);

        let mut tasks = vec![Task::SyncPicture {
            user_id: id.clone(),
        }];
        if let Some(old) = &replaced {
            tasks.push(Task::DeleteObject {
                user_id: id.clone(),
                key: old.clone(),
            });
        }
        let mut queued = Vec::with_capacity(tasks.len());
        for task in tasks {
            queued.push(enqueue(&mut *tx, task, now).await?);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Some(PictureChange {
            replaced,
            tasks: queued,
        }))
    }

    async fn due_tasks(&self, now: OffsetDateTime, limit: u32) -> PortResult<Vec<QueuedTask>> {
        let rows = sqlx::query(
            "SELECT id, kind, user_id, photo_key, attempts FROM outbox o \
             WHERE next_attempt_at <= $1 AND (kind = 'sync_picture' OR NOT EXISTS ( \
                 SELECT 1 FROM outbox s WHERE s.kind = 'sync_picture' AND s.user_id = o.user_id)) \
             ORDER BY CASE WHEN kind = 'sync_picture' THEN 0 ELSE 1 END, next_attempt_at \
             LIMIT $2",
        )
        .bind(unix(now))
        .bind(i64::from(limit))
        .fetch_all(&self.db.read)
        .await
        .map_err(db_error)?;
        rows.iter().map(task_from_row).collect()
    }

    async fn queue_delete(&self, key: &PhotoKey) -> PortResult<()> {
        let task = Task::DeleteObject {
            user_id: key.owner().clone(),
            key: key.clone(),
        };
        let mut conn = self.db.write.acquire().await.map_err(db_error)?;
        enqueue(&mut *conn, task, OffsetDateTime::now_utc()).await?;
        Ok(())
    }

    async fn finish_task(&self, id: &str) -> PortResult<()> {
        sqlx::query("DELETE FROM outbox WHERE id = $1")
            .bind(id)
            .execute(&self.db.write)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn postpone_task(&self, id: &str, until: OffsetDateTime, error: &str) -> PortResult<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 \
             WHERE id = $3",
        )
        .bind(unix(until))
        .bind(error)
        .bind(id)
        .execute(&self.db.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn queue_depth(&self) -> PortResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
            .fetch_one(&self.db.read)
            .await
            .map_err(db_error)?;
        Ok(count.max(0) as u64)
    }

    async fn abandoned_uploads(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> PortResult<Vec<PhotoKey>> {
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT photo_key FROM uploads \
             WHERE confirmed_at IS NULL AND swept_at IS NULL AND expires_at < $1 \
             ORDER BY expires_at LIMIT $2",
        )
        .bind(unix(before))
        .bind(i64::from(limit))
        .fetch_all(&self.db.read)
        .await
        .map_err(db_error)?;
        keys.iter()
            .map(|k| PhotoKey::parse(k).map_err(db_error))
            .collect()
    }

    async fn mark_swept(&self, key: &PhotoKey) -> PortResult<bool> {
        let marked = sqlx::query(
            "UPDATE uploads SET swept_at = $1 \
             WHERE photo_key = $2 AND confirmed_at IS NULL AND swept_at IS NULL",
        )
        .bind(unix(OffsetDateTime::now_utc()))
        .bind(key.as_str())
        .execute(&self.db.write)
        .await
        .map_err(db_error)?
        .rows_affected();
        Ok(marked == 1)
    }
}
