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
//!
//! A user whose allowance is two URLs a second or more (an API client with a raised limit) and
//! who keeps asking is also given a lease: the server asks the database for more takes than
//! the batch needs and hands the spare ones out itself for up to a second. Each next ask doubles
//! the spare part, up to one second of the user's steady allowance, so a busy user costs about
//! one row update per server per second instead of one per batch. The database still grants
//! every take, so servers together never exceed the limit; what a lease costs is that spare
//! takes a server did not hand out within its second are lost (for each user, at most one
//! second's allowance per server). Below 120 URLs a minute (the default is 30) no lease is ever taken and each
//! take is the database's own decision.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use sqlx::{AnyPool, Row};

/// The generic cell rate algorithm on one user's "theoretical arrival time" (`tat`) of their
/// next URL, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    /// One URL's worth of time: a minute divided by the allowance.
    interval_ms: i64,
    /// How far ahead of now a user's allowance may already be spent: a burst of the rest.
    tolerance_ms: i64,
}

impl Gcra {
    fn per_minute(per_minute: u32) -> Self {
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

/// How long a server may hand out the spare takes of a lease; it remembers the size of its last
/// ask for as long again, so that a user who keeps asking gets a growing lease.
const LEASE: Duration = Duration::from_secs(1);

/// One server's view of the shared allowance: the rule, and its leases.
pub struct SharedAllowance {
    rule: Gcra,
    /// Most takes asked for ahead of need: one second of the steady allowance, less one (0
    /// below 120 a minute, which turns leasing off).
    most_ahead: i64,
    leases: HashMap<String, Lease>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Lease {
    /// Takes the database granted and this server has not handed out yet.
    spare: i64,
    /// How many takes the last ask was ahead of need; the next one asks twice as many.
    ahead: i64,
    /// Until when the spare takes may be handed out.
    until: Instant,
}

/// What one user of a batch needs from the database: `short` takes for the batch, `ahead` more
/// for the lease.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ask {
    short: i64,
    ahead: i64,
}

impl SharedAllowance {
    pub fn new(per_minute: u32) -> Self {
        Self {
            rule: Gcra::per_minute(per_minute),
            most_ahead: i64::from(per_minute / 60).saturating_sub(1).max(0),
            leases: HashMap::new(),
        }
    }

    /// Takes one URL for each of `takers` (a user once per URL asked for): one outcome each,
    /// in order. At most one statement when every user has a row (the steady state), none when
    /// leases cover the batch; a user's first take creates the row, then decides again.
    pub async fn take(
        &mut self,
        pool: &AnyPool,
        takers: &[&str],
    ) -> Result<Vec<Result<(), Duration>>, sqlx::Error> {
        let now = Instant::now();
        let mut wanted: BTreeMap<&str, i64> = BTreeMap::new();
        for user in takers {
            *wanted.entry(*user).or_default() += 1;
        }
        let (mut granted, asks) = self.lend(now, &wanted);
        let mut decided = BTreeMap::new();
        if !asks.is_empty() {
            let mut asked: BTreeMap<&str, i64> = asks
                .iter()
                .map(|(u, ask)| (*u, ask.short + ask.ahead))
                .collect();
            decided = take_many(pool, self.rule, &asked).await?;
            let missing: Vec<&str> = asked
                .keys()
                .copied()
                .filter(|user| !decided.contains_key(*user))
                .collect();
            if !missing.is_empty() {
                create_rows(pool, &missing).await?;
                asked.retain(|user, _| missing.contains(user));
                decided.extend(take_many(pool, self.rule, &asked).await?);
            }
            for (user, ask) in &asks {
                let from_db = decided.get(*user).map_or(0, |d| d.granted);
                *granted.entry(user).or_default() += self.settle(now, user, *ask, from_db);
            }
        }
        // Each user's first `granted` takes, in arrival order, are the ones granted; the rest
        // wait as long as the database said (or a second, for a row that vanished between its
        // insert and the decision).
        Ok(takers
            .iter()
            .map(|user| match granted.get_mut(*user) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    Ok(())
                }
                _ => Err(decided
                    .get(*user)
                    .map_or(Duration::from_secs(1), |d| d.wait)),
            })
            .collect())
    }

    /// Hands out spare takes of the leases: how many each user gets from them, and what the
    /// others must ask the database for.
    fn lend<'a>(
        &mut self,
        now: Instant,
        wanted: &BTreeMap<&'a str, i64>,
    ) -> (BTreeMap<&'a str, i64>, BTreeMap<&'a str, Ask>) {
        self.leases.retain(|_, lease| now < lease.until + LEASE);
        let mut lent = BTreeMap::new();
        let mut asks = BTreeMap::new();
        for (&user, &n) in wanted {
            let (used, ahead) = match self.leases.get_mut(user) {
                Some(lease) => {
                    let used = if now < lease.until {
                        n.min(lease.spare)
                    } else {
                        0
                    };
                    lease.spare -= used;
                    // (`clamp` would panic where leasing is off: `most_ahead` is 0 there.)
                    (used, (lease.ahead * 2).max(1).min(self.most_ahead))
                }
                None => (0, 0),
            };
            lent.insert(user, used);
            if used < n {
                asks.insert(
                    user,
                    Ask {
                        short: n - used,
                        ahead,
                    },
                );
            }
        }
        (lent, asks)
    }

    /// Books what the database granted for `ask`: the batch's share (returned), and the rest as
    /// the user's new lease.
    fn settle(&mut self, now: Instant, user: &str, ask: Ask, granted: i64) -> i64 {
        let for_batch = granted.min(ask.short);
        if self.most_ahead > 0 {
            let lease = Lease {
                spare: granted - for_batch,
                ahead: ask.ahead,
                until: now + LEASE,
            };
            self.leases.insert(user.to_owned(), lease);
        }
        for_batch
    }
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

    fn one_user(n: i64) -> BTreeMap<&'static str, i64> {
        BTreeMap::from([("ada", n)])
    }

    #[test]
    fn below_two_a_second_every_take_is_asked_of_the_database() {
        let mut allowance = SharedAllowance::new(119);
        let now = Instant::now();
        for _ in 0..5 {
            let (lent, asks) = allowance.lend(now, &one_user(3));
            assert_eq!(lent["ada"], 0);
            assert_eq!(asks["ada"], Ask { short: 3, ahead: 0 });
            assert_eq!(allowance.settle(now, "ada", asks["ada"], 3), 3);
        }
        assert!(allowance.leases.is_empty());
    }

    #[test]
    fn a_user_who_keeps_asking_gets_a_growing_lease_for_a_second() {
        let mut allowance = SharedAllowance::new(600); // 10 a second: at most 9 ahead
        let start = Instant::now();
        let mut aheads = Vec::new();
        let mut lent_total = 0;
        for step in 0..12 {
            let now = start + Duration::from_millis(10 * step);
            let (lent, asks) = allowance.lend(now, &one_user(2));
            lent_total += lent["ada"];
            if let Some(ask) = asks.get("ada") {
                aheads.push(ask.ahead);
                // The database grants everything asked.
                let granted = ask.short + ask.ahead;
                assert_eq!(allowance.settle(now, "ada", *ask, granted), ask.short);
            }
        }
        assert_eq!(aheads[..5], [0, 1, 2, 4, 8]);
        assert!(aheads.iter().all(|ahead| *ahead <= 9), "{aheads:?}");
        assert!(lent_total > 0);

        // Spare takes are not handed out after their second, and the lease is forgotten a
        // second later: a user who comes back starts from nothing again.
        let spare = allowance.leases["ada"].spare;
        let later = start + Duration::from_millis(110) + LEASE;
        let (lent, asks) = allowance.lend(later, &one_user(1));
        assert_eq!((lent["ada"], asks["ada"].short), (0, 1), "{spare} spare");
        allowance.settle(later, "ada", asks["ada"], 0);
        let (_, asks) = allowance.lend(later + 2 * LEASE, &one_user(1));
        assert_eq!(asks["ada"], Ask { short: 1, ahead: 0 });
    }

    #[test]
    fn leases_never_hand_out_more_than_the_database_granted() {
        let mut allowance = SharedAllowance::new(6_000);
        let rule = allowance.rule;
        let (mut tat, mut from_db, mut handed) = (0, 0, 0);
        let start = Instant::now();
        for step in 0..2_000u64 {
            let now = start + Duration::from_millis(step);
            let clock = 1_700_000_000_000 + step as i64;
            let (lent, asks) = allowance.lend(now, &one_user(1 + (step % 7) as i64));
            handed += lent["ada"];
            if let Some(ask) = asks.get("ada") {
                let (granted, next) = closed_form(rule, tat, clock, ask.short + ask.ahead);
                tat = next;
                from_db += granted;
                handed += allowance.settle(now, "ada", *ask, granted);
            }
        }
        let spare = allowance.leases.get("ada").map_or(0, |lease| lease.spare);
        assert_eq!(handed + spare, from_db);
    }
}
