//! Per-run measurements: latencies, outcomes by status, and the summary written as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one client thread (or event loop) saw during a run.
#[derive(Debug, Default)]
pub struct Sample {
    /// Latency of every successful request, in microseconds.
    pub ok_us: Vec<u32>,
    /// Unexpected outcomes (an HTTP status, or e.g. `200-partial`) and how often each came back.
    pub statuses: BTreeMap<String, u64>,
    /// Requests that got no HTTP answer at all (connect, read or protocol failure).
    pub transport: u64,
    /// The first few transport error messages, for the operator.
    pub transport_msgs: Vec<String>,
}

impl Sample {
    /// Records one successful request.
    pub fn ok(&mut self, took: Duration) {
        self.ok_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
    }

    /// Records one unexpected outcome under `what`.
    pub fn error(&mut self, what: String) {
        *self.statuses.entry(what).or_insert(0) += 1;
    }

    /// Records one request that got no answer.
    pub fn transport(&mut self, msg: String) {
        self.transport += 1;
        if self.transport_msgs.len() < 3 {
            self.transport_msgs.push(msg);
        }
    }

    /// Folds another thread's sample into this one.
    pub fn merge(&mut self, other: Sample) {
        self.ok_us.extend(other.ok_us);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_insert(0) += n;
        }
        self.transport += other.transport;
        for m in other.transport_msgs {
            if self.transport_msgs.len() < 3 {
                self.transport_msgs.push(m);
            }
        }
    }
}

/// Latency percentiles of the successful requests, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// The summary of one (workload, concurrency) run, as written to the JSON output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Workload name (`info`, `batch`, …, or `plain` for a ceiling run).
    pub workload: String,
    /// Keep-alive connections (each with its own simulated client).
    pub concurrency: usize,
    /// Measured wall time in seconds.
    pub seconds: f64,
    /// Requests answered with an expected status.
    pub ok: u64,
    /// Successful requests per second.
    pub throughput: f64,
    /// Latency of the successful requests.
    pub latency_ms: Latency,
    /// Unexpected outcomes (HTTP status, or a status with a suffix) and their counts.
    pub errors: BTreeMap<String, u64>,
    /// Requests that got no HTTP answer.
    pub transport_errors: u64,
    /// A few transport error messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transport_messages: Vec<String>,
}

impl RunResult {
    /// Summarises a merged sample measured over `elapsed`.
    pub fn from_sample(
        workload: &str,
        concurrency: usize,
        elapsed: Duration,
        mut s: Sample,
    ) -> RunResult {
        s.ok_us.sort_unstable();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ok = s.ok_us.len() as u64;
        RunResult {
            workload: workload.to_string(),
            concurrency,
            seconds: round3(secs),
            ok,
            throughput: round3(ok as f64 / secs),
            latency_ms: latency(&s.ok_us),
            errors: s.statuses,
            transport_errors: s.transport,
            transport_messages: s.transport_msgs,
        }
    }

    /// All failed requests, whatever the reason.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.transport_errors
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    sorted
        .get(i)
        .map_or(0.0, |us| round3(f64::from(*us) / 1000.0))
}

fn latency(sorted: &[u32]) -> Latency {
    let sum: u64 = sorted.iter().map(|x| u64::from(*x)).sum();
    let mean = if sorted.is_empty() {
        0.0
    } else {
        round3(sum as f64 / sorted.len() as f64 / 1000.0)
    };
    Latency {
        p50: pct(sorted, 50.0),
        p90: pct(sorted, 90.0),
        p99: pct(sorted, 99.0),
        max: sorted
            .last()
            .map_or(0.0, |us| round3(f64::from(*us) / 1000.0)),
        mean,
    }
}

/// The whole JSON document one invocation writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The base URL (or token server) that was measured.
    pub target: String,
    /// A free-form label (`--label`), e.g. `ours` or `hello`.
    pub label: String,
    /// Unix time the invocation started.
    pub started: u64,
    /// One entry per (workload, concurrency).
    pub results: Vec<RunResult>,
    /// Requests made before the timed runs (read-page's walk to learn the pages), which
    /// `results` leaves out: bench/cost.sh divides the server's whole work by all of them.
    #[serde(default)]
    pub setup_requests: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        let l = latency(&v);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(latency(&[]).p99, 0.0);
    }

    #[test]
    fn summary_counts_errors_and_throughput() {
        let mut a = Sample::default();
        a.ok(Duration::from_millis(2));
        a.error("503".into());
        let mut b = Sample::default();
        b.ok(Duration::from_millis(4));
        b.transport("refused".into());
        a.merge(b);
        let r = RunResult::from_sample("info", 2, Duration::from_secs(2), a);
        assert_eq!((r.ok, r.throughput), (2, 1.0));
        assert_eq!(r.errors.get("503"), Some(&1));
        assert_eq!(r.error_count(), 2);
        let back: RunResult = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
