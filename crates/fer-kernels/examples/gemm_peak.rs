//! fp32 GEMM throughput of the `gemm` crate on this machine at a large square size and at the
//! CNN's block-2 shapes: the ceiling the convolutions' GEMMs work against.
//!
//! `cargo run --release -p fer-kernels --example gemm_peak`

use std::time::Instant;

fn gflops(m: usize, n: usize, k: usize, threads: gemm::Parallelism) -> f64 {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        // SAFETY: row-major a [m,k], b [k,n], c [m,n], all sized above.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                threads,
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

/// The same product through fer's bf16 GEMM (one thread).
fn gflops_bf16(m: usize, n: usize, k: usize) -> f64 {
    use fer_kernels::bf16::{Strided, gemm};
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        gemm(m, n, k, Strided { data: &a, rs: k, cs: 1 }, Strided { data: &b, rs: n, cs: 1 }, &mut c, n, false);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

fn main() {
    let bf16 = fer_kernels::bf16::available();
    // Square sizes, then the CNN's forward GEMMs per group of images (cout x columns x patch).
    for (m, n, k) in
        [(1024, 1024, 1024), (2048, 2048, 2048), (64, 2304, 25), (64, 2304, 576), (128, 576 * 4, 576), (256, 144 * 4, 1152), (512, 540, 2304)]
    {
        let bf = if bf16 { format!(", bf16 1 thread {:.0} GFLOP/s", gflops_bf16(m, n, k)) } else { String::new() };
        println!(
            "m={m} n={n} k={k}: f32 1 thread {:.0} GFLOP/s, all threads {:.0} GFLOP/s{bf}",
            gflops(m, n, k, gemm::Parallelism::None),
            gflops(m, n, k, gemm::Parallelism::Rayon(0))
        );
    }
}
