//! The sign-in throttle: wrong passwords cost more and more time, per account and per client
//! address, and an account that keeps failing is locked for a while. It sits in the use case,
//! in front of whichever directory runs (the embedded issuer or Cognito), so both get it.
//!
//! State lives in this server's memory: behind a load balancer each server keeps its own
//! counts, so N servers allow up to N times the attempts below (Cognito's own lockout still
//! applies on top, per account and across servers). Attempts are counted when they start, not
//! when they fail, so 200 concurrent guesses cannot all slip through before the first failure
//! is recorded.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many attempts a key gets before each further one waits, and what happens after.
#[derive(Debug, Clone, Copy)]
struct Rule {
    /// Attempts in a row (with no success) that cost nothing.
    free: u32,
    /// Beyond the free ones, each attempt makes the next wait this, doubling, up to `max_delay`.
    first_delay: Duration,
    max_delay: Duration,
    /// After this many attempts the key is locked for `LOCK_FOR` (accounts only).
    lock_after: Option<u32>,
}

/// Per account (the email as typed, case-folded, whether or not such an account exists).
const ACCOUNT: Rule = Rule {
    free: 5,
    first_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(30),
    lock_after: Some(10),
};

/// Per client address: more room, since one office or phone network may share an address, and
/// no lock, which would lock out everyone behind it.
const ADDRESS: Rule = Rule {
    free: 20,
    first_delay: Duration::from_secs(1),
    max_delay: Duration::from_secs(60),
    lock_after: None,
};

/// How long a locked account stays locked.
pub const LOCK_FOR: Duration = Duration::from_secs(15 * 60);
/// A key without attempts for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Keys remembered at most per table; past this, forgotten and harmless ones are dropped.
const CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    attempts: u32,
    last: Instant,
    not_before: Instant,
    locked_until: Option<Instant>,
}

impl Record {
    fn new(now: Instant) -> Self {
        Self {
            attempts: 0,
            last: now,
            not_before: now,
            locked_until: None,
        }
    }

    fn locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    fn stale(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) > FORGET_AFTER && !self.locked(now)
    }

    fn wait(&self, now: Instant) -> Option<Duration> {
        Some(self.not_before.saturating_duration_since(now)).filter(|d| !d.is_zero())
    }

    fn count(&mut self, now: Instant, rule: Rule) {
        self.attempts = self.attempts.saturating_add(1);
        self.last = now;
        if let Some(beyond) = self.attempts.checked_sub(rule.free) {
            let delay = rule
                .first_delay
                .saturating_mul(2u32.saturating_pow(beyond.min(16)))
                .min(rule.max_delay);
            self.not_before = now + delay;
        }
        if rule.lock_after.is_some_and(|after| self.attempts >= after) {
            self.locked_until = Some(now + LOCK_FOR);
        }
    }
}

struct Table<K> {
    records: HashMap<K, Record>,
}

impl<K: Hash + Eq> Table<K> {
    fn new() -> Self {
        Self {
            records: HashMap::new(),
        }
    }

    fn entry(&mut self, key: K, now: Instant) -> &mut Record {
        if self.records.len() >= CAPACITY {
            self.records.retain(|_, r| !r.stale(now));
        }
        if self.records.len() >= CAPACITY {
            // A spray from very many addresses: keep the keys that are being held back.
            self.records
                .retain(|_, r| r.locked(now) || r.wait(now).is_some());
        }
        let record = self.records.entry(key).or_insert_with(|| Record::new(now));
        if record.stale(now) {
            *record = Record::new(now);
        }
        record
    }
}

/// What the throttle says about an attempt that is about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (the attempt is counted).
    Go,
    /// Come back after this long (429 with `Retry-After`); the attempt is not counted.
    Wait(Duration),
    /// The account is locked: answer exactly as for a wrong password, without asking the
    /// directory (so even the right password gets nothing until the lock ends).
    Locked,
}

pub struct SignInThrottle {
    accounts: Mutex<Table<String>>,
    addresses: Mutex<Table<IpAddr>>,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self {
            accounts: Mutex::new(Table::new()),
            addresses: Mutex::new(Table::new()),
        }
    }
}

/// The account key: what was typed, trimmed and case-folded, bounded in length.
fn account_key(email: &str) -> String {
    email
        .trim()
        .chars()
        .take(320)
        .collect::<String>()
        .to_lowercase()
}

impl SignInThrottle {
    /// Decides about an attempt for `email` from `client` (None when the address is not known,
    /// which then limits by account only) at `now`, and counts it when it may go ahead.
    pub fn begin(&self, email: &str, client: Option<IpAddr>, now: Instant) -> Verdict {
        // Always accounts, then addresses: one order, so two attempts cannot deadlock.
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        let account = accounts.entry(account_key(email), now);
        let mut address = client.map(|ip| addresses.entry(ip, now));

        let wait = [
            address.as_ref().and_then(|a| a.wait(now)),
            account.wait(now),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(wait) = wait.filter(|_| !account.locked(now)) {
            return Verdict::Wait(wait);
        }
        if let Some(address) = address.as_mut() {
            address.count(now, ADDRESS);
        }
        if account.locked(now) {
            return Verdict::Locked;
        }
        account.count(now, ACCOUNT);
        Verdict::Go
    }

    /// A sign-in succeeded: the account starts afresh, and the address gets its attempt back
    /// (so a shared address is not held back by its users' own successes).
    pub fn succeeded(&self, email: &str, client: Option<IpAddr>) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.records.remove(&account_key(email));
        drop(accounts);
        if let Some(ip) = client {
            let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(record) = addresses.records.get_mut(&ip) {
                record.attempts = record.attempts.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn an_account_gets_five_free_attempts_then_a_doubling_delay_then_a_lock() {
        let throttle = SignInThrottle::default();
        let mut now = Instant::now();
        for _ in 0..5 {
            assert_eq!(throttle.begin("Ada@Example.com", ip(1), now), Verdict::Go);
        }
        // Case and spaces do not make another account; another address does not help.
        assert_eq!(
            throttle.begin(" ada@example.COM", ip(2), now),
            Verdict::Wait(SECOND)
        );
        let mut waits = Vec::new();
        while let Verdict::Wait(wait) = throttle.begin("ada@example.com", ip(3), now) {
            now += wait;
            assert_eq!(throttle.begin("ada@example.com", ip(3), now), Verdict::Go);
            waits.push(wait.as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        // The tenth attempt locked it: every attempt now looks like a wrong password, and
        // waiting out the delay does not help.
        assert_eq!(
            throttle.begin("ada@example.com", ip(4), now),
            Verdict::Locked
        );
        now += Duration::from_secs(60);
        assert_eq!(
            throttle.begin("ada@example.com", ip(4), now),
            Verdict::Locked
        );
        assert_eq!(throttle.begin("grace@example.com", ip(4), now), Verdict::Go);
        // Until the lock ends.
        now += LOCK_FOR;
        assert_eq!(throttle.begin("ada@example.com", ip(5), now), Verdict::Go);
    }

    #[test]
    fn a_success_starts_the_account_afresh() {
        let throttle = SignInThrottle::default();
        let now = Instant::now();
        for _ in 0..5 {
            throttle.begin("ada@example.com", ip(1), now);
        }
        throttle.succeeded("ada@example.com", ip(1));
        for _ in 0..5 {
            assert_eq!(throttle.begin("ada@example.com", ip(1), now), Verdict::Go);
        }
    }

    #[test]
    fn an_address_gets_twenty_attempts_across_accounts_and_is_never_locked() {
        let throttle = SignInThrottle::default();
        let mut now = Instant::now();
        for n in 0..20 {
            let email = format!("user{n}@example.com");
            assert_eq!(throttle.begin(&email, ip(9), now), Verdict::Go);
        }
        assert_eq!(
            throttle.begin("new@example.com", ip(9), now),
            Verdict::Wait(SECOND)
        );
        // Other addresses are not held back.
        assert_eq!(throttle.begin("new@example.com", ip(8), now), Verdict::Go);
        for n in 0..30 {
            match throttle.begin(&format!("spray{n}@example.org"), ip(9), now) {
                Verdict::Wait(wait) => {
                    assert!(wait <= ADDRESS.max_delay);
                    now += wait;
                }
                Verdict::Go => {}
                Verdict::Locked => panic!("an address is never locked"),
            }
        }
        // Without an address, only the account counts.
        assert_eq!(throttle.begin("other@example.com", None, now), Verdict::Go);
    }

    #[test]
    fn attempts_are_forgotten_after_a_quiet_quarter_hour() {
        let throttle = SignInThrottle::default();
        let mut now = Instant::now();
        for _ in 0..5 {
            throttle.begin("ada@example.com", ip(1), now);
        }
        now += FORGET_AFTER + SECOND;
        for _ in 0..5 {
            assert_eq!(throttle.begin("ada@example.com", ip(1), now), Verdict::Go);
        }
    }
}
