//! Times fer-kernels' element-wise passes on the CNN's largest activation (block 1/2:
//! 128 x 64 x 48 x 48, 75 MB) against a plain copy of the same buffer in the same process, the
//! memory-bandwidth floor a one-pass kernel can approach.
//!
//! `cargo run --release -p fer-kernels --example pointwise_bench`

mod common;

use common::best_ms;
use fer_kernels::pointwise;

fn main() {
    // As the binaries do: freed activations are reused instead of mapped and faulted in again.
    fer_kernels::tune_allocator();
    let (n, c, plane) = (128usize, 64usize, 48 * 48);
    let len = n * c * plane;
    // Signs and magnitudes as unpredictable as real activations and gradients (a patterned
    // input let branchy code look fast here that was slow inside a real step).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let x: Vec<f32> = (0..len).map(|_| uniform() * 2.0).collect();
    let dy: Vec<f32> = (0..len).map(|_| uniform() * 1e-4).collect();
    let gamma = vec![1.1f32; c];
    let beta = vec![0.05f32; c];
    let runs = 5;
    let copy = best_ms(runs, || {
        let y = x.clone();
        std::hint::black_box(y);
    });
    let (mean, var) = pointwise::channel_stats(&x, n, c, plane);
    let layout = pointwise::Planes { n, c, plane };
    let bn =
        pointwise::BatchNormParams { mean: &mean, var: &var, gamma: &gamma, beta: &beta, eps: 1e-3, slope: Some(0.01) };
    let rows: Vec<(&str, f64)> = vec![
        ("copy (baseline: read + write)", copy),
        (
            "channel stats",
            best_ms(runs, || {
                std::hint::black_box(pointwise::channel_stats(&x, n, c, plane));
            }),
        ),
        (
            "batchnorm+leaky forward",
            best_ms(runs, || {
                std::hint::black_box(pointwise::batch_norm(&x, layout, &bn));
            }),
        ),
        (
            "batchnorm+leaky backward",
            best_ms(runs, || {
                std::hint::black_box(pointwise::batch_norm_backward(&x, &dy, layout, &bn));
            }),
        ),
        (
            "leaky relu backward",
            best_ms(runs, || {
                std::hint::black_box(pointwise::leaky_relu_backward(&x, &dy, 0.01));
            }),
        ),
        (
            "dropout",
            best_ms(runs, || {
                std::hint::black_box(pointwise::dropout(&x, 7, 0.25));
            }),
        ),
        (
            "max pool 2x2 backward",
            best_ms(runs, || {
                std::hint::black_box(pointwise::max_pool2x2_backward(&x, &dy[..len / 4], n * c, 48, 48));
            }),
        ),
    ];
    println!(
        "{n} x {c} x {plane} f32 ({:.0} MB), {} threads, best of {runs}:",
        (len * 4) as f64 / 1e6,
        rayon::current_num_threads()
    );
    for (name, ms) in rows {
        println!("{name:<32} {ms:8.1} ms  {:5.2}x copy", ms / copy);
    }
}
