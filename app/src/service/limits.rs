//! Per-user limits on issuing upload URLs. Signing is cheap, but every URL is a slot in the
//! ledger and a possible object to sweep: one account must not be able to flood either.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::UserId;
use crate::error::ApiError;

pub struct UploadLimits {
    /// Upload URLs a user may get per minute (GCRA: bursts up to the whole minute's worth),
    /// counted here in memory; `None` where the ledger counts them instead (a database that
    /// several servers share: see `UserStore::record_upload`).
    in_memory: Option<DefaultKeyedRateLimiter<UserId>>,
    /// Issued-but-unconfirmed, unexpired uploads a user may have at once (None: no cap, for
    /// load tests where one account stands for many).
    pub max_pending: Option<u64>,
}

impl UploadLimits {
    /// The allowance kept in this process's memory: right for one server.
    pub fn in_memory(per_minute: u32, max_pending: Option<u64>) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            in_memory: Some(RateLimiter::keyed(Quota::per_minute(per_minute))),
            max_pending,
        }
    }

    /// The allowance taken by the ledger, in the same step that records each upload.
    pub fn kept_by_ledger(max_pending: Option<u64>) -> Self {
        Self {
            in_memory: None,
            max_pending,
        }
    }

    /// Takes one URL from the user's allowance, or says when to come back (when it is counted
    /// in memory; otherwise the ledger says so: `Recorded::TooFast`).
    pub fn check_rate(&self, user: &UserId) -> Result<(), ApiError> {
        let Some(rate) = &self.in_memory else {
            return Ok(());
        };
        let taken = rate
            .check_key(user)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()));
        // Keys of users who stopped uploading would otherwise stay forever.
        if rate.len() > 10_000 {
            rate.retain_recent();
        }
        taken.map_err(too_fast)
    }
}

/// The 429 for a user who asked for upload URLs faster than the allowance.
pub fn too_fast(wait: Duration) -> ApiError {
    too_many(
        "Too many upload requests. Please wait a moment and try again.",
        wait,
    )
}

/// A 429 with a Retry-After of at least one second.
pub fn too_many(message: &str, wait: Duration) -> ApiError {
    let mut error = ApiError::new(429, message);
    error.retry_after = Some(wait.as_secs().max(1));
    error
}
