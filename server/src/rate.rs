//! The per-user allowance of upload URLs kept in PostgreSQL, so that every server behind the
//! load balancer takes from the same one. It is the same algorithm as `governor`'s in-memory
//! limiter (GCRA, bursts up to a minute's worth), timed by the database's clock: servers whose
//! clocks drift apart still agree.
//!
//! The ledger's writer takes from it for each batch of uploads it records (`db.rs`): one
//! statement that locks the rows of the batch's users and moves each row once, by as many
//! takes as it grants. One user asking from many connections at once then costs one row update
//! per batch, not one per request each waiting for the previous one's row lock, and no stage of
//! its own that would split the batches in two.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::{AnyPool, Row};

/// The generic cell rate algorithm on one user's "theoretical arrival time" (`tat`) of their
/// next URL, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Gcra {
    /// One URL's worth of time: a minute divided by the allowance.
    interval_ms: i64,
    /// How far ahead of now a user's allowance may already be spent: a burst of the rest.
    tolerance_ms: i64,
}

impl Gcra {
    pub fn per_minute(per_minute: u32) -> Self {
        let per_minute = i64::from(per_minute.max(1));
        let interval_ms = (60_000 / per_minute).max(1);
        Self {
            interval_ms,
            tolerance_ms: interval_ms * (per_minute - 1),
        }
    }

    /// One take at `now`: the new `tat`, or how long until a take would succeed. The rule as
    /// `governor` states it, one take at a time; `take_many` decides many at once, and the
    /// tests hold its closed form to this.
    #[cfg(test)]
    fn take(self, tat: i64, now: i64) -> Result<i64, Duration> {
        let ahead = tat - now - self.tolerance_ms;
        if ahead > 0 {
            Err(Duration::from_millis(ahead.unsigned_abs()))
        } else {
            Ok(tat.max(now) + self.interval_ms)
        }
    }
}

/// Takes one URL for each of `takers` (a user once per URL asked for): one outcome each, in
/// order. One statement when every user has a row (the steady state); a user's first take
/// creates the row, then decides again.
pub async fn take(
    pool: &AnyPool,
    rule: Gcra,
    takers: &[&str],
) -> Result<Vec<Result<(), Duration>>, sqlx::Error> {
    let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
    for user in takers {
        *wanted.entry(*user).or_default() += 1;
    }
    let mut decided = take_many(pool, rule, &wanted).await?;
    let missing: Vec<&str> = wanted
        .keys()
        .copied()
        .filter(|user| !decided.contains_key(*user))
        .collect();
    if !missing.is_empty() {
        create_rows(pool, &missing).await?;
        wanted.retain(|user, _| missing.contains(user));
        decided.extend(take_many(pool, rule, &wanted).await?);
    }
    // Each user's first `granted` takes, in arrival order, are the ones granted.
    Ok(takers
        .iter()
        .map(|user| match decided.get_mut(*user) {
            Some(Decided { granted, .. }) if *granted > 0 => {
                *granted -= 1;
                Ok(())
            }
            Some(Decided { wait, .. }) => Err(*wait),
            // A row that vanished between its insert and the decision: nothing to grant from.
            None => Err(Duration::from_secs(1)),
        })
        .collect())
}

/// What the database decided for one user's takes.
struct Decided {
    granted: i64,
    /// For the takes beyond those: how long until one would succeed.
    wait: Duration,
}

/// Takes `n` URLs per user at once, in one statement, on the users that have a row (whose rows
/// it locks, in id order, so that two servers' batches cannot deadlock). For a user whose
/// allowance is due at `tat`, at the database's `now`, with `base = max(tat, now)`: the takes
/// `0..n` succeed while `base + j * interval - now <= tolerance`, so `k` of them succeed, with
/// `k = min(n, (now + tolerance - base) / interval + 1)` (none once `base - now` exceeds the
/// tolerance), and the row moves to `base + k * interval`. That is `Gcra::take` applied `n`
/// times, and the unit tests hold the two to each other.
async fn take_many(
    pool: &AnyPool,
    rule: Gcra,
    wanted: &BTreeMap<&str, i64>,
) -> Result<BTreeMap<String, Decided>, sqlx::Error> {
    let rows: Vec<String> = (0..wanted.len())
        .map(|row| format!("(${}, CAST(${} AS BIGINT))", 2 * row + 1, 2 * row + 2))
        .collect();
    let (interval, tolerance) = (2 * wanted.len() + 1, 2 * wanted.len() + 2);
    let sql = format!(
        "WITH wanted (user_id, n) AS (VALUES {rows}), \
         clock (now_ms) AS (SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)), \
         held AS (SELECT user_id, tat_ms FROM upload_rate \
                  WHERE user_id IN (SELECT user_id FROM wanted) ORDER BY user_id FOR UPDATE), \
         based AS (SELECT held.user_id, held.tat_ms, clock.now_ms, wanted.n, \
                          GREATEST(held.tat_ms, clock.now_ms) AS base \
                   FROM held JOIN wanted ON wanted.user_id = held.user_id CROSS JOIN clock), \
         decided AS (SELECT user_id, tat_ms, now_ms, base, \
                            CASE WHEN base - now_ms > ${tolerance} THEN 0 \
                                 ELSE LEAST(n, (now_ms + ${tolerance} - base) / ${interval} + 1) \
                            END AS granted \
                     FROM based) \
         UPDATE upload_rate SET tat_ms = CASE WHEN decided.granted > 0 \
             THEN decided.base + decided.granted * ${interval} ELSE decided.tat_ms END \
         FROM decided WHERE upload_rate.user_id = decided.user_id \
         RETURNING upload_rate.user_id, decided.granted, \
             upload_rate.tat_ms - decided.now_ms - ${tolerance} AS ahead_ms",
        rows = rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (user, n) in wanted {
        query = query.bind(*user).bind(*n);
    }
    let query = query.bind(rule.interval_ms).bind(rule.tolerance_ms);
    let mut decided = BTreeMap::new();
    for row in query.fetch_all(pool).await? {
        let ahead: i64 = row.try_get("ahead_ms")?;
        decided.insert(
            row.try_get("user_id")?,
            Decided {
                granted: row.try_get("granted")?,
                wait: Duration::from_millis(ahead.max(0).unsigned_abs()),
            },
        );
    }
    Ok(decided)
}

/// First rows, fully unspent (a `tat` of 0 is long past); rows that exist are left alone.
async fn create_rows(pool: &AnyPool, users: &[&str]) -> Result<(), sqlx::Error> {
    let rows: Vec<String> = (1..=users.len()).map(|n| format!("(${n}, 0)")).collect();
    let sql = format!(
        "INSERT INTO upload_rate (user_id, tat_ms) VALUES {} ON CONFLICT (user_id) DO NOTHING",
        rows.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for user in users {
        query = query.bind(*user);
    }
    query.execute(pool).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_whole_minute_then_one_per_interval() {
        let rule = Gcra::per_minute(30); // one every 2 s, 30 at once
        let mut tat = 0;
        let now = 1_000_000;
        for _ in 0..30 {
            tat = rule.take(tat, now).expect("within the burst");
        }
        assert_eq!(rule.take(tat, now), Err(Duration::from_millis(2_000)));
        assert!(rule.take(tat, now + 2_000).is_ok());
    }

    /// `take_many`'s closed form, as its SQL computes it (integer division of a non-negative
    /// number), against `Gcra::take` applied once per take.
    fn closed_form(rule: Gcra, tat: i64, now: i64, n: i64) -> (i64, i64) {
        let base = tat.max(now);
        let granted = if base - now > rule.tolerance_ms {
            0
        } else {
            n.min((now + rule.tolerance_ms - base) / rule.interval_ms + 1)
        };
        let next = if granted > 0 {
            base + granted * rule.interval_ms
        } else {
            tat
        };
        (granted, next)
    }

    #[test]
    fn the_batch_statement_decides_as_one_take_after_another() {
        for per_minute in [1, 7, 30, 1_000, 100_000_000] {
            let rule = Gcra::per_minute(per_minute);
            let now = 1_700_000_000_000;
            for offset in [-120_000, -1, 0, 1, 2_000, 59_000, 60_000, 61_000] {
                for n in [1, 2, 5, 31, 300] {
                    let tat = (now + offset).max(0);
                    let (mut granted, mut next) = (0, tat);
                    for _ in 0..n {
                        if let Ok(after) = rule.take(next, now) {
                            granted += 1;
                            next = after;
                        }
                    }
                    assert_eq!(
                        closed_form(rule, tat, now, n),
                        (granted, next),
                        "{per_minute}/min, tat now{offset:+}, {n} takes"
                    );
                }
            }
        }
    }
}
