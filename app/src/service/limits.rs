//! Per-user limits on issuing upload URLs. Signing is cheap, but every URL is a slot in the
//! ledger and a possible object to sweep: one account must not be able to flood either.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ports::{PortResult, UploadAllowance};
use crate::domain::UserId;
use crate::error::ApiError;

pub struct UploadLimits {
    /// Upload URLs a user may get per minute (GCRA: bursts up to the whole minute's worth).
    rate: Arc<dyn UploadAllowance>,
    /// Issued-but-unconfirmed, unexpired uploads a user may have at once (None: no cap, for
    /// load tests where one account stands for many).
    pub max_pending: Option<u64>,
}

impl UploadLimits {
    /// The allowance kept in this process's memory: right for one server.
    pub fn new(per_minute: u32, max_pending: Option<u64>) -> Self {
        Self::with_allowance(Arc::new(InMemoryAllowance::new(per_minute)), max_pending)
    }

    /// The allowance kept elsewhere, such as in a database that several servers share.
    pub fn with_allowance(rate: Arc<dyn UploadAllowance>, max_pending: Option<u64>) -> Self {
        Self { rate, max_pending }
    }

    /// Takes one URL from the user's allowance, or says when to come back.
    pub async fn check_rate(&self, user: &UserId) -> Result<(), ApiError> {
        match self.rate.take(user).await? {
            Ok(()) => Ok(()),
            Err(wait) => Err(too_many(
                "Too many upload requests. Please wait a moment and try again.",
                wait,
            )),
        }
    }
}

/// `governor`'s keyed GCRA limiter, for a server that is the only one.
struct InMemoryAllowance {
    rate: DefaultKeyedRateLimiter<UserId>,
}

impl InMemoryAllowance {
    fn new(per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            rate: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }
}

#[async_trait]
impl UploadAllowance for InMemoryAllowance {
    async fn take(&self, user: &UserId) -> PortResult<Result<(), Duration>> {
        let taken = self
            .rate
            .check_key(user)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()));
        // Keys of users who stopped uploading would otherwise stay forever.
        if self.rate.len() > 10_000 {
            self.rate.retain_recent();
        }
        Ok(taken)
    }
}

/// A 429 with a Retry-After of at least one second.
pub fn too_many(message: &str, wait: Duration) -> ApiError {
    let mut error = ApiError::new(429, message);
    error.retry_after = Some(wait.as_secs().max(1));
    error
}
