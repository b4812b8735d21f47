//! The work that follows picture changes, and the sweeper. Runs right after each change and in
//! a periodic background pass; every task is idempotent, so two servers running the same task
//! (or a retry of one that half-succeeded) do no harm.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use time::OffsetDateTime;

use super::ports::{Part, PortError, PortResult, QueuedTask, Task};
use super::AppState;
use crate::domain::{PhotoKey, UserId};

/// How many tasks and abandoned uploads one pass handles at most, so a long outage's backlog
/// drains over a few passes instead of in one burst.
const PASS_LIMIT: u32 = 100;
/// Abandoned uploads are swept this long after their URL expired: well past the grace a late
/// confirm gets, so the sweeper never races a confirm that could still succeed.
const SWEEP_AFTER: Duration = Duration::from_secs(10 * 60);

/// An object under a user's prefix that the database does not know is removed only once it is
/// this old: an upload whose ledger entry is being written, or a confirm's copy not yet
/// committed, is never taken for an orphan. Every URL of the user expired at least
/// `SWEEP_AFTER` before its audit, so whatever was PUT through one is older than this by then.
const ORPHAN_GRACE: Duration = Duration::from_secs(5 * 60);

/// Confirmed and swept ledger entries are kept this long after their prefix was audited (for
/// operators and for a late second confirm), then deleted.
pub const LEDGER_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Tries a queued task gets before it is parked: with the backoff (5 s doubling to an hour),
/// about eleven hours of retries, enough to ride out an outage of a part.
pub const MAX_TASK_ATTEMPTS: u32 = 20;

/// Writes one attribute sync makes at most before it leaves the rest to a retry.
const SYNC_ROUNDS: u32 = 5;

/// What one maintenance pass did (also logged).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub tasks_done: u32,
    pub tasks_failed: u32,
    /// Tasks that failed for the last time and were parked.
    pub tasks_parked: u32,
    pub uploads_swept: u32,
    /// Objects under a user's prefix that the database did not know (removed).
    pub orphans_removed: u32,
    pub ledger_pruned: u64,
}

/// How running a batch of tasks went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct TaskCounts {
    done: u32,
    failed: u32,
    parked: u32,
}

/// Retry delay after `attempts` failures: 5 s doubling to at most an hour.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << attempts.min(10)).min(3600))
}

impl AppState {
    /// Runs freshly queued tasks in order. A failed attribute sync leaves the user's deletions
    /// queued behind it; everything failed is retried later.
    pub(super) async fn run_tasks(&self, tasks: &[QueuedTask]) -> TaskCounts {
        let mut counts = TaskCounts::default();
        // Users whose attribute sync failed but may still succeed: their deletions wait.
        let mut unsynced = HashSet::new();
        for task in tasks {
            if let Task::DeleteObject { user_id, .. } = &task.task {
                if unsynced.contains(user_id) {
                    continue;
                }
            }
            match self.run_task(task).await {
                Outcome::Done => counts.done += 1,
                Outcome::Failed => {
                    counts.failed += 1;
                    if let Task::SyncPicture { user_id } = &task.task {
                        unsynced.insert(user_id.clone());
                    }
                }
                Outcome::Parked => counts.parked += 1,
            }
        }
        counts
    }

    async fn run_task(&self, queued: &QueuedTask) -> Outcome {
        let outcome = match &queued.task {
            Task::SyncPicture { user_id } => self.sync_picture(user_id).await,
            Task::DeleteObject { key, .. } => self.delete_renditions(key).await,
        };
        self.metrics.task(outcome.is_ok());
        let attempts = queued.attempts + 1;
        let (recorded, result) = match &outcome {
            Ok(()) => (self.users.finish_task(&queued.id).await, Outcome::Done),
            // A task that never succeeds (say, its user was deleted from the directory) must
            // not be retried forever, nor hold up the user's other tasks: it is parked, for an
            // operator to look at.
            Err(e) if attempts >= MAX_TASK_ATTEMPTS => {
                tracing::error!(task = ?queued.task, attempts, error = %e,
                    "queued task keeps failing; parked, it will not be retried");
                self.metrics.parked.inc();
                let parked = self.users.park_task(&queued.id, &e.to_string()).await;
                (parked, Outcome::Parked)
            }
            Err(e) => {
                tracing::warn!(task = ?queued.task, attempts, error = %e,
                    "queued task failed; will retry");
                let retry_at = OffsetDateTime::now_utc() + backoff(queued.attempts);
                let postponed = self
                    .users
                    .postpone_task(&queued.id, retry_at, &e.to_string())
                    .await;
                (postponed, Outcome::Failed)
            }
        };
        if let Err(e) = recorded {
            // The task stays queued as it was and simply runs again.
            tracing::warn!(error = %e, "could not record a task's outcome");
        }
        result
    }

    /// Deletes a picture's (or an upload's) objects, both renditions. S3 deletes idempotently,
    /// so a small rendition that was never stored costs only its request.
    pub(super) async fn delete_renditions(&self, key: &PhotoKey) -> PortResult<()> {
        let (full, small) = (key.full(), key.small());
        let (full, small) =
            futures::future::join(self.storage.delete(&full), self.storage.delete(&small)).await;
        full.and(small)
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

    /// One bounded pass: retries due tasks; then, for upload URLs that expired, deletes the
    /// objects of those never confirmed and audits their users' prefixes; then prunes the
    /// ledger. `now` is a parameter so that tests can run a pass "later" without waiting.
    pub async fn maintenance_pass(&self, now: OffsetDateTime) -> PortResult<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        let due = self.users.due_tasks(now, PASS_LIMIT).await?;
        let counts = self.run_tasks(&due).await;
        report.tasks_done = counts.done;
        report.tasks_failed = counts.failed;
        report.tasks_parked = counts.parked;

        let expired_before = now - SWEEP_AFTER;
        let mut owners = HashSet::new();
        for upload in self
            .users
            .expired_uploads(expired_before, PASS_LIMIT)
            .await?
        {
            if upload.abandoned {
                // Marked and queued in one transaction; a failed delete stays queued.
                if let Some(task) = self.users.sweep_upload(&upload.key).await? {
                    self.run_task(&task).await;
                    report.uploads_swept += 1;
                    self.metrics.swept.inc();
                }
            }
            owners.insert(upload.key.owner().clone());
        }
        // No URL of these users' that expired before `expired_before` can write any more: what
        // their prefix holds beyond what the database knows is left over (an upload PUT again
        // after its confirm, or to a replaced or removed picture's URL) and goes.
        for owner in owners {
            match self.audit_prefix(&owner, now).await {
                Ok(removed) => {
                    report.orphans_removed += removed;
                    self.users.mark_audited(&owner, expired_before, now).await?;
                }
                // Not marked: the next pass audits again.
                Err(e) => tracing::warn!(user = %owner, error = %e, "prefix audit failed"),
            }
        }
        report.ledger_pruned = self
            .users
            .prune_ledger(now - LEDGER_RETENTION, PASS_LIMIT)
            .await?;

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

    /// Deletes every object under the user's prefix that the database does not know and that
    /// is older than `ORPHAN_GRACE`; returns how many.
    async fn audit_prefix(&self, owner: &UserId, now: OffsetDateTime) -> PortResult<u32> {
        // Listed first, known second: an object that becomes known in between is kept.
        let listed = self.storage.list(&PhotoKey::user_prefix(owner)).await?;
        let known: BTreeSet<String> = self.users.known_keys(owner).await?.into_iter().collect();
        let mut removed = 0;
        for object in listed {
            let old_enough = object
                .last_modified
                .is_some_and(|modified| modified < now - ORPHAN_GRACE);
            if known.contains(&object.key) || !old_enough {
                continue;
            }
            let Ok(key) = PhotoKey::parse(&object.key) else {
                // Not a key this app makes, so not one any of its URLs could write.
                tracing::warn!(key = %object.key, "unexpected object under a user's prefix; left");
                continue;
            };
            // A small rendition is known with its picture (or its upload).
            if known.contains(key.full().as_str()) {
                continue;
            }
            self.storage.delete(&key).await?;
            tracing::info!(key = %key, "orphaned object removed");
            self.metrics.orphans.inc();
            removed += 1;
        }
        Ok(removed)
    }
}

/// How one task run ended.
enum Outcome {
    Done,
    Failed,
    Parked,
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
