//! Wall time of every fer-kernels call in the real training step, off unless switched on.
//!
//! Timing each operation on its own (`fer bench --breakdown` did that before) misleads: its
//! backward pass starts from `sum()`, whose gradient is a broadcast view that every kernel first
//! copies, and nothing is cold or warm as it is inside a step. Here the kernels record themselves
//! while the step itself runs; what the step took beyond their sum is burn's own work (graph,
//! gradient bookkeeping, the optimizer, the loss, dense layers).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<(String, String), Entry>> = Mutex::new(BTreeMap::new());

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Entry {
    calls: u64,
    seconds: f64,
}

/// Starts (clearing earlier records) or stops recording.
pub fn enable(on: bool) {
    if on {
        TOTALS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    ENABLED.store(on, Ordering::Relaxed);
}

/// One operation at one shape, over everything recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub op: String,
    pub shape: String,
    pub calls: u64,
    pub seconds: f64,
}

/// The records so far, in (operation, shape) order, and clears them.
pub fn take() -> Vec<Record> {
    std::mem::take(&mut *TOTALS.lock().unwrap_or_else(|e| e.into_inner()))
        .into_iter()
        .map(|((op, shape), e)| Record { op, shape, calls: e.calls, seconds: e.seconds })
        .collect()
}

/// Runs `f`, adding its wall time to `op` at `shape()` when recording (the shape is only
/// formatted then).
pub(crate) fn time<T>(op: &str, shape: impl FnOnce() -> String, f: impl FnOnce() -> T) -> T {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let out = f();
    let seconds = start.elapsed().as_secs_f64();
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    let entry = totals.entry((op.to_string(), shape())).or_default();
    entry.calls += 1;
    entry.seconds += seconds;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_while_enabled_and_sums_calls() {
        enable(true);
        time("op", || "a".into(), || std::thread::sleep(std::time::Duration::from_millis(2)));
        time("op", || "a".into(), || ());
        enable(false);
        time("op", || "b".into(), || ());
        let records = take();
        assert_eq!(records.len(), 1, "{records:?}");
        let r = &records[0];
        assert_eq!((r.op.as_str(), r.shape.as_str(), r.calls), ("op", "a", 2));
        assert!(r.seconds >= 0.002, "{r:?}");
        assert!(take().is_empty());
    }
}
