//! The per-user allowance of upload URLs kept in PostgreSQL, so that every server behind the
//! load balancer takes from the same one. It is the same algorithm as `governor`'s in-memory
//! limiter (GCRA, bursts up to a minute's worth), as one atomic upsert per request, timed by
//! the database's clock: servers whose clocks drift apart still agree.

use std::time::Duration;

use app::domain::UserId;
use app::service::ports::{Part, PortError, PortResult, UploadAllowance};
use async_trait::async_trait;
use sqlx::AnyPool;

pub struct SqlUploadAllowance {
    pool: AnyPool,
    /// One URL's worth of time: a minute divided by the allowance.
    interval_ms: i64,
    /// How far ahead of now a user's allowance may already be spent: a burst of the rest.
    tolerance_ms: i64,
}

impl SqlUploadAllowance {
    pub fn new(pool: AnyPool, per_minute: u32) -> Self {
        let per_minute = i64::from(per_minute.max(1));
        let interval_ms = (60_000 / per_minute).max(1);
        Self {
            pool,
            interval_ms,
            tolerance_ms: interval_ms * (per_minute - 1),
        }
    }
}

/// The database's clock in milliseconds (PostgreSQL).
macro_rules! now_ms {
    () => {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

#[async_trait]
impl UploadAllowance for SqlUploadAllowance {
    async fn take(&self, user: &UserId) -> PortResult<Result<(), Duration>> {
        let db = |e| PortError::new(Part::Database, e);
        // A new user's row starts spent by one interval. An existing row advances by one
        // interval from whichever is later, its time or now, unless it is already more than
        // the tolerance ahead: then the row stays as it is and nothing is returned. The row
        // lock of the upsert serialises concurrent requests of one user across servers.
        let taken: Option<i64> = sqlx::query_scalar(concat!(
            "INSERT INTO upload_rate (user_id, tat_ms) VALUES ($1, ",
            now_ms!(),
            " + $2) ON CONFLICT (user_id) DO UPDATE \
             SET tat_ms = GREATEST(upload_rate.tat_ms + $2, EXCLUDED.tat_ms) \
             WHERE upload_rate.tat_ms <= EXCLUDED.tat_ms - $2 + $3 \
             RETURNING tat_ms"
        ))
        .bind(user.as_str())
        .bind(self.interval_ms)
        .bind(self.tolerance_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        let ahead: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT tat_ms - ",
            now_ms!(),
            " - $2 FROM upload_rate WHERE user_id = $1"
        ))
        .bind(user.as_str())
        .bind(self.tolerance_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let wait = ahead.unwrap_or(0).max(0);
        Ok(Err(Duration::from_millis(wait.unsigned_abs())))
    }
}
