//! What operators look at: counters and histograms kept with atomics on the request path and
//! rendered in Prometheus' text exposition format by `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds of the request latency buckets, in seconds (a face takes ~10 ms to classify and
/// ~100 ms to find on a 2-core CPU; a full queue waits seconds).
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds of the batch-size buckets, in faces per model call.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// A Prometheus histogram: cumulative counts per bucket, plus sum and count.
struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound, plus +Inf.
    counts: Vec<AtomicU64>,
    /// The sum in millionths, so it stays an atomic integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((value * 1e6).round() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// The server's counters. One per process, shared by the request handlers, the batcher and the
/// connection loop.
pub struct Metrics {
    responses: Mutex<BTreeMap<u16, u64>>,
    latency: Histogram,
    batch_faces: Histogram,
    batch_requests: Histogram,
    faces: AtomicU64,
    /// Requests admitted to the inference queue and not yet answered.
    pub queue_depth: AtomicUsize,
    pub queue_limit: usize,
    pub open_connections: AtomicUsize,
}

impl Metrics {
    pub fn new(queue_limit: usize) -> Metrics {
        Metrics {
            responses: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(&LATENCY_BUCKETS),
            batch_faces: Histogram::new(&BATCH_BUCKETS),
            batch_requests: Histogram::new(&BATCH_BUCKETS),
            faces: AtomicU64::new(0),
            queue_depth: AtomicUsize::new(0),
            queue_limit,
            open_connections: AtomicUsize::new(0),
        }
    }

    /// One answered request on the prediction path (its status, time and faces classified).
    pub fn record_request(&self, status: u16, elapsed: Duration, faces: usize) {
        *self.responses.lock().unwrap_or_else(|p| p.into_inner()).entry(status).or_insert(0) += 1;
        self.latency.observe(elapsed.as_secs_f64());
        self.faces.fetch_add(faces as u64, Ordering::Relaxed);
    }

    /// One model call of the batcher: how many requests and faces it carried.
    pub fn record_batch(&self, requests: usize, faces: usize) {
        self.batch_requests.observe(requests as f64);
        self.batch_faces.observe(faces as f64);
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP fer_requests_total Prediction requests answered, by HTTP status.\n# TYPE \
            fer_requests_total counter\n",
        );
        for (status, count) in self.responses.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "fer_requests_total{{status=\"{status}\"}} {count}");
        }
        self.latency.render(
            &mut out,
            "fer_request_duration_seconds",
            "Time from a prediction request's arrival to its answer.",
        );
        let _ = writeln!(
            out,
            "# HELP fer_faces_total Faces classified.\n# TYPE fer_faces_total counter\nfer_faces_total {}",
            self.faces.load(Ordering::Relaxed)
        );
        self.batch_faces.render(&mut out, "fer_batch_faces", "Faces per model call (dynamic batching, --batch-wait).");
        self.batch_requests.render(&mut out, "fer_batch_requests", "Requests per model call.");
        let gauges = [
            (
                "fer_queue_depth",
                "Requests admitted for inference and not yet answered.",
                self.queue_depth.load(Ordering::Relaxed),
            ),
            (
                "fer_queue_limit",
                "Queue depth past which requests are refused with 503 (--max-queue).",
                self.queue_limit,
            ),
            ("fer_open_connections", "Client connections open now.", self.open_connections.load(Ordering::Relaxed)),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_text_is_prometheus_format_with_cumulative_buckets() {
        let metrics = Metrics::new(32);
        metrics.record_request(200, Duration::from_millis(40), 3);
        metrics.record_request(200, Duration::from_millis(120), 1);
        metrics.record_request(503, Duration::from_micros(300), 0);
        metrics.record_batch(2, 4);
        insta::assert_snapshot!(metrics.render());
    }
}
