//! The database: SQLite (embedded default) or PostgreSQL, through sqlx's `Any` driver so that
//! one set of portable queries serves both.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use app::domain::{
    search_key, ContentLength, DirectoryCursor, ImageContentType, PhotoKey, Rendition, UserId,
};
use app::service::ports::{
    DirectoryEntry, DirectoryQuery, ExpiredUpload, IssuedUpload, NewPicture, NewUser, Part,
    PictureChange, PortError, PortResult, QueuedTask, Recorded, Task, UserRecord, UserStore,
};
use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::rate::SharedAllowance;

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
    /// PostgreSQL rather than SQLite: the one place the SQL differs is row locking.
    pub postgres: bool,
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
        Database {
            read,
            write,
            postgres: false,
        }
    } else {
        let shared = pool(16).await?;
        MIGRATOR.run(&shared).await?;
        Database {
            read: shared.clone(),
            write: shared,
            postgres: true,
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
    /// Needs a Tokio runtime: it starts the ledger writer. With `allowance`, the ledger also
    /// keeps each user's allowance of upload URLs, in the database (see `rate.rs`).
    pub fn new(db: Database, allowance: Option<SharedAllowance>) -> Self {
        let (ledger, writes) = mpsc::channel(LEDGER_BATCH * 4);
        tokio::spawn(write_ledger(db.clone(), allowance, writes));
        Self { db, ledger }
    }
}

/// One ledger insert waiting for its batch, and where to say how it went.
struct LedgerWrite {
    upload: IssuedUpload,
    /// When the request was made: uploads expired by then do not count against the cap.
    now: OffsetDateTime,
    max_pending: Option<u64>,
    reply: oneshot::Sender<PortResult<Recorded>>,
}

/// Most inserts one ledger transaction takes.
const LEDGER_BATCH: usize = 256;

/// Group commit for the ledger, the one write on the hot path. Inserts that arrive while a
/// batch is being written wait for the next one, and each batch is a single multi-row INSERT:
/// one round trip to the database and one commit for all of them, instead of one per request.
/// Under no load a batch is a single row, so nothing waits.
async fn write_ledger(
    db: Database,
    mut allowance: Option<SharedAllowance>,
    mut writes: mpsc::Receiver<LedgerWrite>,
) {
    let mut batch = Vec::with_capacity(LEDGER_BATCH);
    while writes.recv_many(&mut batch, LEDGER_BATCH).await > 0 {
        if let Some(allowance) = &mut allowance {
            take_allowance(&db, allowance, &mut batch).await;
            if batch.is_empty() {
                continue;
            }
        }
        if batch.iter().any(|write| write.max_pending.is_some()) {
            let outcomes = insert_capped(&db, &batch).await;
            for (write, outcome) in batch.drain(..).zip(outcomes) {
                let _ = write.reply.send(outcome);
            }
            continue;
        }
        let uploads: Vec<&IssuedUpload> = batch.iter().map(|write| &write.upload).collect();
        match insert_uploads(&db.write, &uploads).await {
            Ok(()) => {
                for write in batch.drain(..) {
                    let _ = write.reply.send(Ok(Recorded::Recorded));
                }
            }
            // One bad row (a user without a row) fails the statement: redo the rows one by
            // one, so that each caller gets its own answer.
            Err(_) if batch.len() > 1 => {
                for write in batch.drain(..) {
                    let outcome = insert_uploads(&db.write, &[&write.upload]).await;
                    let _ = write.reply.send(ledger_outcome(outcome));
                }
            }
            Err(e) => {
                for write in batch.drain(..) {
                    let _ = write.reply.send(ledger_outcome(Err(e.clone())));
                }
            }
        }
    }
}

/// Takes one URL from each write's user's allowance, answers the writes it refuses (or all of
/// them, if the database fails) and leaves the rest in `batch`.
async fn take_allowance(
    db: &Database,
    allowance: &mut SharedAllowance,
    batch: &mut Vec<LedgerWrite>,
) {
    let users: Vec<&str> = batch.iter().map(|w| w.upload.user_id.as_str()).collect();
    let outcomes = match allowance.take(&db.write, &users).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            let e = e.to_string();
            for write in batch.drain(..) {
                let _ = write.reply.send(Err(db_error(e.clone())));
            }
            return;
        }
    };
    let mut granted = Vec::with_capacity(batch.len());
    for (write, outcome) in batch.drain(..).zip(outcomes) {
        match outcome {
            Ok(()) => granted.push(write),
            Err(wait) => {
                let _ = write.reply.send(Ok(Recorded::TooFast(wait)));
            }
        }
    }
    *batch = granted;
}

/// A batch with a cap on uploads in progress: in one transaction, the users' rows are locked
/// (PostgreSQL; on SQLite the one writer connection already serialises every write), their
/// uploads in progress counted, and only the rows under the cap inserted. Another server's batch
/// for the same user waits for the lock and then counts these rows too, so no number of
/// parallel requests, on any number of servers, gets past the cap. One answer per write.
async fn insert_capped(db: &Database, batch: &[LedgerWrite]) -> Vec<PortResult<Recorded>> {
    match try_insert_capped(db, batch).await {
        Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
        Err(e) => {
            let e = e.to_string();
            batch.iter().map(|_| Err(db_error(e.clone()))).collect()
        }
    }
}

async fn try_insert_capped(
    db: &Database,
    batch: &[LedgerWrite],
) -> Result<Vec<Recorded>, sqlx::Error> {
    let users: BTreeSet<&str> = batch.iter().map(|w| w.upload.user_id.as_str()).collect();
    let placeholders = |from: usize| -> String {
        (from..from + users.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut tx = db.write.begin().await?;
    // In id order, so that two servers locking overlapping sets cannot deadlock.
    let lock = format!(
        "SELECT id FROM users WHERE id IN ({}) ORDER BY id{}",
        placeholders(1),
        if db.postgres { " FOR UPDATE" } else { "" }
    );
    let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(lock));
    for user in &users {
        query = query.bind(*user);
    }
    let existing: BTreeSet<String> = query.fetch_all(&mut *tx).await?.into_iter().collect();

    // Counted after the lock, in a statement of its own: it sees every row committed by a batch
    // that held the lock before.
    let now = batch
        .iter()
        .map(|w| w.now)
        .min()
        .unwrap_or_else(OffsetDateTime::now_utc);
    let count = format!(
        "SELECT user_id, COUNT(*) AS pending FROM uploads \
         WHERE user_id IN ({}) AND confirmed_at IS NULL AND expires_at > $1 GROUP BY user_id",
        placeholders(2)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(count)).bind(unix(now));
    for user in &users {
        query = query.bind(*user);
    }
    let mut pending: HashMap<String, u64> = HashMap::new();
    for row in query.fetch_all(&mut *tx).await? {
        let count: i64 = row.try_get("pending")?;
        pending.insert(row.try_get("user_id")?, count.max(0) as u64);
    }

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut accepted = Vec::new();
    for write in batch {
        let user = write.upload.user_id.as_str();
        let outcome = if !existing.contains(user) {
            Recorded::NoUser
        } else {
            let count = pending.entry(user.to_owned()).or_default();
            if write.max_pending.is_some_and(|max| *count >= max) {
                Recorded::TooManyPending
            } else {
                *count += 1;
                accepted.push(&write.upload);
                Recorded::Recorded
            }
        };
        outcomes.push(outcome);
    }
    if !accepted.is_empty() {
        insert_statement(&accepted).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The VALUES of a multi-row INSERT: `rows` rows of `columns` parameters each, numbered in
/// order, and `constants` (SQL, such as `, 'Member'`) after each row's parameters. Numbered
/// placeholders, which both SQLite and PostgreSQL read (the Any driver's query builder writes
/// `?`, which PostgreSQL does not).
pub(crate) fn value_rows(rows: usize, columns: usize, constants: &str) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|row| {
            let cells: Vec<String> = (1..=columns)
                .map(|c| format!("${}", row * columns + c))
                .collect();
            format!("({}{constants})", cells.join(", "))
        })
        .collect();
    rows.join(", ")
}

/// One multi-row INSERT of the uploads.
fn insert_statement<'q>(
    uploads: &[&'q IssuedUpload],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let sql = format!(
        "INSERT INTO uploads \
         (photo_key, user_id, content_type, content_length, small_length, expires_at) VALUES {}",
        value_rows(uploads.len(), 6, "")
    );
    let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
    for upload in uploads {
        insert = insert
            .bind(upload.key.as_str())
            .bind(upload.user_id.as_str())
            .bind(upload.content_type.mime())
            .bind(upload.content_length.map(|n| n.get() as i64))
            .bind(upload.small_length.map(|n| n.get() as i64))
            .bind(unix(upload.expires_at));
    }
    insert
}

async fn insert_uploads(pool: &AnyPool, uploads: &[&IssuedUpload]) -> Result<(), LedgerError> {
    match insert_statement(uploads).execute(pool).await {
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

fn ledger_outcome(outcome: Result<(), LedgerError>) -> PortResult<Recorded> {
    match outcome {
        Ok(()) => Ok(Recorded::Recorded),
        Err(LedgerError::NoUser) => Ok(Recorded::NoUser),
        Err(LedgerError::Other(e)) => Err(db_error(e)),
    }
}

/// A `SELECT` of every user column, as a literal (sqlx only takes literal SQL without ceremony).
macro_rules! select_users {
    ($rest:literal) => {
        concat!(
            "SELECT id, email, name, phone, role, status, joined_at, photo_key, photo_small \
             FROM users ",
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
        photo_small: photo_small(row)?,
    })
}

fn photo_small(row: &AnyRow) -> PortResult<bool> {
    Ok(row.try_get::<i64, _>("photo_small").map_err(db_error)? != 0)
}

fn directory_entry(row: &AnyRow) -> PortResult<DirectoryEntry> {
    let id = UserId::parse(row.try_get::<String, _>("id").map_err(db_error)?).map_err(db_error)?;
    let photo_key: Option<String> = row.try_get("photo_key").map_err(db_error)?;
    Ok(DirectoryEntry {
        name: row.try_get("name").map_err(db_error)?,
        photo_key: photo_key
            .map(|k| PhotoKey::parse(&k))
            .transpose()
            .map_err(db_error)?,
        photo_small: photo_small(row)?,
        position: DirectoryCursor {
            name_key: row.try_get("name_key").map_err(db_error)?,
            id: id.clone(),
        },
        id,
    })
}

// The directory's queries, named so that `docs/operations.md` can show their plans. `$1`, `$2`:
// the cursor's name key and id (both empty for the first page); `$3`: the limit.

/// A page: a range of `users_directory` from the cursor, in order. The range starts at the
/// cursor's name key; rows of that same key come after it by id.
const DIRECTORY_PAGE: &str = "SELECT id, name, photo_key, photo_small, name_key FROM users \
     WHERE name_key >= $1 AND (name_key > $1 OR id > $2) ORDER BY name_key, id LIMIT $3";

/// A search (`$4` the folded prefix, `$5` its LIKE pattern, `$6` an upper bound when there is
/// one): the page of name matches (a range of `users_directory`) and the page of email matches
/// (a range of `users_by_email_key`), merged. The range starts at the later of the prefix and
/// the cursor, compared by the database in its own collation.
fn directory_search(bounded: bool) -> String {
    // One lower bound per range: SQLite starts an index range from one of them only.
    let part = |key: &str, start: &str, after: &str| {
        let end = if bounded {
            format!(" AND {key} < $6")
        } else {
            String::new()
        };
        format!(
            "SELECT id, name, photo_key, photo_small, name_key FROM users \
             WHERE {key} >= {start}{end} AND {key} LIKE $5 ESCAPE '\\' \
             AND {after}(name_key > $1 OR id > $2) ORDER BY name_key, id LIMIT $3"
        )
    };
    format!(
        "SELECT id, name, photo_key, photo_small, name_key FROM ({}) AS by_name \
         UNION SELECT id, name, photo_key, photo_small, name_key FROM ({}) AS by_email \
         ORDER BY name_key, id LIMIT $3",
        part("name_key", "(CASE WHEN $1 > $4 THEN $1 ELSE $4 END)", ""),
        part("email_key", "$4", "name_key >= $1 AND ")
    )
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

impl SqlUserStore {
    /// Counts a failed try of a task, with its error, and sets `column` (when to retry, or
    /// when it was parked) to `time`.
    async fn record_failure(
        &self,
        column: &'static str,
        id: &str,
        time: OffsetDateTime,
        error: &str,
    ) -> PortResult<()> {
        let sql = format!(
            "UPDATE outbox SET attempts = attempts + 1, {column} = $1, last_error = $2 \
             WHERE id = $3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(unix(time))
            .bind(error)
            .bind(id)
            .execute(&self.db.write)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// The rows of one of the maintenance pass's reads: a time, then a limit.
    async fn up_to(
        &self,
        sql: &'static str,
        time: OffsetDateTime,
        limit: u32,
    ) -> PortResult<Vec<AnyRow>> {
        sqlx::query(sql)
            .bind(unix(time))
            .bind(i64::from(limit))
            .fetch_all(&self.db.read)
            .await
            .map_err(db_error)
    }
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

    async fn directory(&self, query: DirectoryQuery<'_>) -> PortResult<Vec<DirectoryEntry>> {
        // Without a cursor the page starts before every row: no id is empty.
        let (after_key, after_id) = query.after.map_or(("", ""), |after| {
            (after.name_key.as_str(), after.id.as_str())
        });
        let limit = i64::from(query.limit);
        let rows = match query.search {
            None => {
                sqlx::query(DIRECTORY_PAGE)
                    .bind(after_key)
                    .bind(after_id)
                    .bind(limit)
                    .fetch_all(&self.db.read)
                    .await
            }
            Some(search) => {
                let bound = search.upper_bound();
                let sql = directory_search(bound.is_some());
                let mut select = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(after_key)
                    .bind(after_id)
                    .bind(limit)
                    .bind(search.as_str())
                    .bind(search.like_pattern());
                if let Some(bound) = bound {
                    select = select.bind(bound);
                }
                select.fetch_all(&self.db.read).await
            }
        }
        .map_err(db_error)?;
        rows.iter().map(directory_entry).collect()
    }

    async fn ensure(&self, user: &NewUser) -> PortResult<()> {
        let joined = OffsetDateTime::now_utc().date().to_string();
        sqlx::query(
            "INSERT INTO users (id, email, name, phone, role, joined_at, name_key, email_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name, \
             phone = excluded.phone, role = excluded.role, name_key = excluded.name_key, \
             email_key = excluded.email_key",
        )
        .bind(user.id.as_str())
        .bind(&user.email)
        .bind(&user.name)
        .bind(user.phone.as_deref())
        .bind(&user.role)
        .bind(joined)
        .bind(search_key(&user.name))
        .bind(search_key(&user.email))
        .execute(&self.db.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn record_upload(
        &self,
        upload: &IssuedUpload,
        now: OffsetDateTime,
        max_pending: Option<u64>,
    ) -> PortResult<Recorded> {
        let (reply, answer) = oneshot::channel();
        let write = LedgerWrite {
            upload: upload.clone(),
            now,
            max_pending,
            reply,
        };
        self.ledger
            .send(write)
            .await
            .map_err(|_| db_error("the ledger writer stopped"))?;
        answer
            .await
            .map_err(|_| db_error("the ledger writer dropped a write"))?
    }

    async fn find_upload(&self, key: &PhotoKey) -> PortResult<Option<IssuedUpload>> {
        let row = sqlx::query(
            "SELECT user_id, content_type, content_length, small_length, expires_at, picture_key \
             FROM uploads WHERE photo_key = $1",
        )
        .bind(key.as_str())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let user_id: String = row.try_get("user_id").map_err(db_error)?;
        let content_type: String = row.try_get("content_type").map_err(db_error)?;
        let length: Option<i64> = row.try_get("content_length").map_err(db_error)?;
        let small_length: Option<i64> = row.try_get("small_length").map_err(db_error)?;
        let expires_at: i64 = row.try_get("expires_at").map_err(db_error)?;
        let picture: Option<String> = row.try_get("picture_key").map_err(db_error)?;
        Ok(Some(IssuedUpload {
            key: key.clone(),
            user_id: UserId::parse(user_id).map_err(db_error)?,
            content_type: ImageContentType::parse(&content_type).map_err(db_error)?,
            content_length: length
                .map(|n| ContentLength::parse(n.max(0) as u64))
                .transpose()
                .map_err(db_error)?,
            small_length: small_length
                .map(|n| ContentLength::parse_for(Rendition::Small, n.max(0) as u64))
                .transpose()
                .map_err(db_error)?,
            expires_at: OffsetDateTime::from_unix_timestamp(expires_at).map_err(db_error)?,
            stored_as: picture
                .map(|k| PhotoKey::parse(&k))
                .transpose()
                .map_err(db_error)?,
        }))
    }

    async fn replace_picture(
        &self,
        id: &UserId,
        new: Option<&NewPicture>,
    ) -> PortResult<Option<PictureChange>> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.db.write.begin().await.map_err(db_error)?;
        if let Some(new) = new {
            // Claiming the upload first also takes SQLite's write lock at once, and makes a
            // confirm and the sweeper mutually exclusive: only one of them can win this row.
            let claimed = sqlx::query(
                "UPDATE uploads SET confirmed_at = $1, picture_key = $2 \
                 WHERE photo_key = $3 AND user_id = $4 AND confirmed_at IS NULL AND swept_at IS NULL",
            )
            .bind(unix(now))
            .bind(new.picture.as_str())
            .bind(new.upload.as_str())
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
            "UPDATE users SET replaced_photo_key = photo_key, photo_key = $1, photo_small = $3, \
             version = version + 1 WHERE id = $2 RETURNING replaced_photo_key",
        )
        .bind(new.map(|new| new.picture.as_str()))
        .bind(id.as_str())
        .bind(i64::from(new.is_some_and(|new| new.small)))
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
            .filter(|old| Some(old) != new.map(|new| &new.picture));

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
            queued.push(enqueue(&mut tx, task, now).await?);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Some(PictureChange {
            replaced,
            tasks: queued,
        }))
    }

    async fn due_tasks(&self, now: OffsetDateTime, limit: u32) -> PortResult<Vec<QueuedTask>> {
        let rows = self.up_to(DUE_TASKS, now, limit).await?;
        rows.iter().map(task_from_row).collect()
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
        self.record_failure("next_attempt_at", id, until, error)
            .await
    }

    async fn park_task(&self, id: &str, error: &str) -> PortResult<()> {
        let now = OffsetDateTime::now_utc();
        self.record_failure("parked_at", id, now, error).await
    }

    async fn queue_depth(&self) -> PortResult<u64> {
        // Due times are never negative: the range lets both databases count from the index of
        // unparked tasks rather than read the whole table, which keeps parked tasks.
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE parked_at IS NULL AND next_attempt_at >= 0",
        )
        .fetch_one(&self.db.read)
        .await
        .map_err(db_error)?;
        Ok(count.max(0) as u64)
    }

    async fn expired_uploads(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> PortResult<Vec<ExpiredUpload>> {
        let rows = self.up_to(EXPIRED_UPLOADS, before, limit).await?;
        rows.iter()
            .map(|row| {
                let key: String = row.try_get("photo_key").map_err(db_error)?;
                let confirmed: Option<i64> = row.try_get("confirmed_at").map_err(db_error)?;
                let swept: Option<i64> = row.try_get("swept_at").map_err(db_error)?;
                Ok(ExpiredUpload {
                    key: PhotoKey::parse(&key).map_err(db_error)?,
                    abandoned: confirmed.is_none() && swept.is_none(),
                })
            })
            .collect()
    }

    async fn sweep_upload(&self, key: &PhotoKey) -> PortResult<Option<QueuedTask>> {
        let now = OffsetDateTime::now_utc();
        let mut tx = self.db.write.begin().await.map_err(db_error)?;
        // The same claim as a confirm's: only one of the two can win this row.
        let marked = sqlx::query(
            "UPDATE uploads SET swept_at = $1 \
             WHERE photo_key = $2 AND confirmed_at IS NULL AND swept_at IS NULL",
        )
        .bind(unix(now))
        .bind(key.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?
        .rows_affected();
        if marked == 0 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(None);
        }
        let task = Task::DeleteObject {
            user_id: key.owner().clone(),
            key: key.clone(),
        };
        let queued = enqueue(&mut tx, task, now).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(queued))
    }

    async fn known_keys(&self, id: &UserId) -> PortResult<Vec<String>> {
        sqlx::query_scalar(KNOWN_KEYS)
            .bind(id.as_str())
            .fetch_all(&self.db.read)
            .await
            .map_err(db_error)
    }

    async fn mark_audited(
        &self,
        id: &UserId,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> PortResult<()> {
        // Entries still waiting to be swept are left for the pass that sweeps them.
        sqlx::query(
            "UPDATE uploads SET audited_at = $1 \
             WHERE user_id = $2 AND audited_at IS NULL AND expires_at < $3 \
             AND (confirmed_at IS NOT NULL OR swept_at IS NOT NULL)",
        )
        .bind(unix(now))
        .bind(id.as_str())
        .bind(unix(before))
        .execute(&self.db.write)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn prune_ledger(&self, before: OffsetDateTime, limit: u32) -> PortResult<u64> {
        let pruned = sqlx::query(PRUNE_LEDGER)
            .bind(unix(before))
            .bind(i64::from(limit))
            .execute(&self.db.write)
            .await
            .map_err(db_error)?
            .rows_affected();
        Ok(pruned)
    }
}

// The maintenance pass's queries, named so that `docs/notes/storage.md` can show their plans.

/// Due, unparked tasks; a user's deletions only once no unparked sync of theirs is queued.
const DUE_TASKS: &str = "SELECT id, kind, user_id, photo_key, attempts FROM outbox o \
     WHERE parked_at IS NULL AND next_attempt_at <= $1 AND (kind = 'sync_picture' OR NOT EXISTS ( \
         SELECT 1 FROM outbox s WHERE s.user_id = o.user_id AND s.kind = 'sync_picture' \
         AND s.parked_at IS NULL)) \
     ORDER BY CASE WHEN kind = 'sync_picture' THEN 0 ELSE 1 END, next_attempt_at \
     LIMIT $2";

const EXPIRED_UPLOADS: &str = "SELECT photo_key, confirmed_at, swept_at FROM uploads \
     WHERE audited_at IS NULL AND expires_at < $1 ORDER BY expires_at LIMIT $2";

/// The picture, the uploads in progress, and the objects queued for deletion.
const KNOWN_KEYS: &str = "SELECT photo_key FROM users WHERE id = $1 AND photo_key IS NOT NULL \
     UNION ALL SELECT photo_key FROM uploads \
         WHERE user_id = $1 AND confirmed_at IS NULL AND swept_at IS NULL \
     UNION ALL SELECT photo_key FROM outbox \
         WHERE user_id = $1 AND kind = 'delete_object' AND photo_key IS NOT NULL";

const PRUNE_LEDGER: &str = "DELETE FROM uploads WHERE photo_key IN ( \
     SELECT photo_key FROM uploads WHERE audited_at IS NOT NULL AND audited_at < $1 LIMIT $2)";
