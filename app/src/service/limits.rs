//! Per-user limits on issuing upload URLs. Signing is cheap, but every URL is a slot in the
//! ledger and a possible object to sweep: one account must not be able to flood either.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::UserId;
use crate::error::ApiError;

pub struct UploadLimits {
    /// Upload URLs a user may get per minute (GCRA: bursts up to the whole minute's worth).
    rate: DefaultKeyedRateLimiter<UserId>,
    /// Issued-but-unconfirmed, unexpired uploads a user may have at once (None: no cap, for
    /// load tests where one account stands for many).
    pub max_pending: Option<u64>,
}

impl UploadLimits {
    pub fn new(per_minute: u32, max_pending: Option<u64>) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            rate: RateLimiter::keyed(Quota::per_minute(per_minute)),
            max_pending,
        }
    }

    /// Takes one URL from the user's allowance, or says when to come back.
    pub fn check_rate(&self, user: &UserId) -> Result<(), ApiError> {
        self.rate.check_key(user).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            too_many(
                "Too many upload requests. Please wait a moment and try again.",
                wait,
            )
        })?;
        // Keys of users who stopped uploading would otherwise stay forever.
        if self.rate.len() > 10_000 {
            self.rate.retain_recent();
        }
        Ok(())
    }
}

/// A 429 with a Retry-After of at least one second.
pub fn too_many(message: &str, wait: Duration) -> ApiError {
    let mut error = ApiError::new(429, message);
    error.retry_after = Some(wait.as_secs().max(1));
    error
}
