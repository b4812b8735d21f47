//! The work that follows picture changes, and the sweeper. Runs right after each change and in
//! a periodic background pass; every task is idempotent, so two servers running the same task
//! (or a retry of one that half-succeeded) do no harm.

use std::time::Duration;

use time::OffsetDateTime;

use super::ports::{Part, PortError, PortResult, QueuedTask, Task};
use super::AppState;

/// How many tasks and abandoned uploads one pass handles at most, so a long outage's backlog
/// drains over a few passes instead of in one burst.
const PASS_LIMIT: u32 = 100;
/// Abandoned uploads are swept this long after their URL expired: well past the grace a late
/// confirm gets, so the sweeper never races a confirm that could still succeed.
const SWEEP_AFTER: Duration = Duration::from_secs(10 * 60);

/// Writes one attribute sync makes at most before it leaves the rest to a retry.
const SYNC_ROUNDS: u32 = 5;

/// What one maintenance pass did (also logged).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub tasks_done: u32,
    pub tasks_failed: u32,
    pub uploads_swept: u32,
}

/// Retry delay after `attempts` failures: 5 s doubling to at most an hour.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << attempts.min(10)).min(3600))
}

impl AppState {
    /// Runs freshly queued tasks in order. A failed attribute sync leaves the user's deletions
    /// queued behind it; everything failed is retried later.
    pub(super) async fn run_tasks(&self, tasks: &[QueuedTask]) -> (u32, u32) {
        let (mut done, mut failed) = (0, 0);
        let mut sync_failed = false;
        for task in tasks {
            if sync_failed && matches!(task.task, Task::DeleteObject { .. }) {
                continue;
            }
            if self.run_task(task).await {
                done += 1;
            } else {
                failed += 1;
                sync_failed |= matches!(task.task, Task::SyncPicture { .. });
            }
        }
        (done, failed)
    }

    async fn run_task(&self, queued: &QueuedTask) -> bool {
        let outcome = match &queued.task {
            Task::SyncPicture { user_id } => self.sync_picture(user_id).await,
            Task::DeleteObject { key, .. } => self.storage.delete(key).await,
        };
        self.metrics.task(outcome.is_ok());
        let recorded = match &outcome {
            Ok(()) => self.users.finish_task(&queued.id).await,
            Err(e) => {
                tracing::warn!(task = ?queued.task, attempts = queued.attempts + 1, error = %e,
                    "queued task failed; will retry");
                let retry_at = OffsetDateTime::now_utc() + backoff(queued.attempts);
                self.users
                    .postpone_task(&queued.id, retry_at, &e.to_string())
                    .await
            }
        };
        if let Err(e) = recorded {
            // The task stays queued as it was and simply runs again.
            tracing::warn!(error = %e, "could not record a task's outcome");
        }
        outcome.is_ok()
    }

    /// Makes the directory attribute match what the database holds, whatever happened in
    /// between: syncs can run late, twice, out of order or side by side and still converge.
    ///
    /// Reading the picture and writing it are two steps, so two syncs running together can
    /// write in the wrong order (seen with Cognito under 50 parallel confirms): a sync that read
    /// the older key may write last. So each sync reads again after writing, and writes again
    /// until what it wrote is still what the database holds. The last write is then always
    /// checked against the database, and a later change queues a sync of its own.
    async fn sync_picture(&self, user_id: &crate::domain::UserId) -> PortResult<()> {
        let current = || async {
            let user = self.users.get(user_id).await?;
            Ok::<_, PortError>(user.and_then(|u| u.photo_key))
        };
        let mut written = current().await?;
        for _ in 0..SYNC_ROUNDS {
            match &written {
                Some(key) => self.directory.set_picture(user_id, key).await?,
                None => self.directory.remove_picture(user_id).await?,
            }
            let now = current().await?;
            if now == written {
                return Ok(());
            }
            written = now;
        }
        // Still moving: the task stays queued and runs again later.
        Err(PortError::new(
            Part::Directory,
            "the picture kept changing while its attribute was written",
        ))
    }

    /// One bounded pass: retries due tasks, then deletes the objects of uploads that were never
    /// confirmed. `now` is a parameter so that tests can run a pass "later" without waiting.
    pub async fn maintenance_pass(&self, now: OffsetDateTime) -> PortResult<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        let due = self.users.due_tasks(now, PASS_LIMIT).await?;
        let (done, failed) = self.run_tasks(&due).await;
        report.tasks_done = done;
        report.tasks_failed = failed;

        for key in self
            .users
            .abandoned_uploads(now - SWEEP_AFTER, PASS_LIMIT)
            .await?
        {
            // Mark first: if a confirm claimed the upload meanwhile, its object must stay.
            if !self.users.mark_swept(&key).await? {
                continue;
            }
            if let Err(e) = self.storage.delete(&key).await {
                // Swept in the ledger but still stored: queue it like any other deletion.
                tracing::warn!(key = %key, error = %e, "could not delete an abandoned upload");
                self.users.queue_delete(&key).await?;
            }
            report.uploads_swept += 1;
            self.metrics.swept.inc();
        }
        self.metrics.queue_depth.set(
            self.users
                .queue_depth()
                .await?
                .try_into()
                .unwrap_or(i64::MAX),
        );
        if report != MaintenanceReport::default() {
            tracing::info!(?report, "maintenance pass");
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(5), Duration::from_secs(160));
        assert_eq!(backoff(50), Duration::from_secs(3600));
    }
}
