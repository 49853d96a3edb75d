//! What the benchmark examples share.

use std::time::Instant;

/// The fastest of `runs` runs of `f`, in milliseconds.
pub fn best_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}
