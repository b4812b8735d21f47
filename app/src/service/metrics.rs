//! Prometheus metrics: what the upload flow does, and how long requests take. The registry is
//! an ordinary value in `AppState` (no process-wide recorder), so every app instance, including
//! each one a test starts, counts on its own.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    /// The route pattern, never the raw path: one series per endpoint, not per key.
    pub endpoint: String,
    pub status: u16,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub upload_urls: Counter,
    pub confirms: Family<OutcomeLabel, Counter>,
    pub deletes: Counter,
    pub swept: Counter,
    pub orphans: Counter,
    pub tasks: Family<OutcomeLabel, Counter>,
    pub parked: Counter,
    pub queue_depth: Gauge,
    pub put_seconds: Histogram,
    pub put_bytes: Histogram,
    pub requests: HistogramFamily<RequestLabels>,
    /// Rounds of `/readyz` checks of the parts (answers in between come from its cache).
    pub readiness_checks: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portrait");
        let metrics = Self {
            upload_urls: Counter::default(),
            confirms: Family::default(),
            deletes: Counter::default(),
            swept: Counter::default(),
            orphans: Counter::default(),
            tasks: Family::default(),
            parked: Counter::default(),
            queue_depth: Gauge::default(),
            // Browser-measured PUT to storage: 10 ms to ~80 s; 1 KB to 16 MB.
            put_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            put_bytes: Histogram::new(exponential_buckets(1024.0, 2.0, 15)),
            requests: Family::new_with_constructor(latency_histogram),
            readiness_checks: Counter::default(),
            registry: Registry::default(),
        };
        macro_rules! register {
            ($($name:literal, $help:literal, $metric:ident;)*) => {
                $(registry.register($name, $help, metrics.$metric.clone());)*
            };
        }
        register! {
            "upload_urls_issued", "Upload URLs signed", upload_urls;
            "upload_confirms", "Upload confirmations by outcome", confirms;
            "picture_deletes", "Pictures removed by their owner", deletes;
            "sweeper_deletions", "Objects of abandoned uploads deleted", swept;
            "orphan_deletions", "Objects the database did not know, removed by the prefix audit", orphans;
            "queued_tasks_run", "Queued follow-up tasks run, by outcome", tasks;
            "queued_tasks_parked", "Queued tasks that kept failing and were parked", parked;
            "queue_depth", "Follow-up tasks waiting in the queue", queue_depth;
            "upload_put_seconds", "Browser-reported duration of the PUT to storage", put_seconds;
            "upload_put_bytes", "Browser-reported size of the PUT to storage", put_bytes;
            "http_request_duration_seconds", "Request latency by endpoint", requests;
            "readiness_checks", "Readiness checks of the parts (not cached answers)", readiness_checks;
        }
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    pub fn confirm(&self, outcome: &'static str) {
        self.confirms.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub fn task(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.tasks.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The Prometheus text exposition of everything.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
