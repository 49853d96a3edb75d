//! GEMM throughput on this machine, at square sizes and at the CNN's convolution shapes: the `gemm`
//! crate's f32 (one thread and all) and fer's bf16 GEMM (one thread, on AVX512-BF16 CPUs): the
//! ceiling the convolutions' GEMMs work against.
//!
//! `cargo run --release -p fer-kernels --example gemm_peak`

use std::time::Instant;

/// GFLOP/s of the best of 5 runs of `product(a, b, c)` on row-major a [m,k], b [k,n], c [m,n].
fn gflops(m: usize, n: usize, k: usize, product: impl Fn(&[f32], &[f32], &mut [f32])) -> f64 {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        product(&a, &b, &mut c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

/// The `gemm` crate's f32 product (what the f32 path runs).
fn f32_gemm(m: usize, n: usize, k: usize, threads: gemm::Parallelism) -> impl Fn(&[f32], &[f32], &mut [f32]) {
    move |a, b, c| {
        assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
        // SAFETY: row-major a [m,k], b [k,n], c [m,n], sizes asserted above.
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
            )
        }
    }
}

/// fer's bf16 product (one thread).
fn bf16_gemm(m: usize, n: usize, k: usize) -> impl Fn(&[f32], &[f32], &mut [f32]) {
    use fer_kernels::gemm::{Dims, Out, Strided, gemm_bf16};
    move |a, b, c| {
        gemm_bf16(
            Dims { m, n, k },
            Strided { data: a, rs: k, cs: 1 },
            Strided { data: b, rs: n, cs: 1 },
            Out::write(c, n),
        )
    }
}

fn main() {
    let bf16 = fer_kernels::cpu::avx512_bf16();
    // Square sizes, then the CNN's forward GEMMs per group of images (cout x columns x patch).
    for (m, n, k) in [
        (1024, 1024, 1024),
        (2048, 2048, 2048),
        (64, 2304, 25),
        (64, 2304, 576),
        (128, 576 * 4, 576),
        (256, 144 * 4, 1152),
        (512, 540, 2304),
    ] {
        let bf = if bf16 {
            format!(", bf16 1 thread {:.0} GFLOP/s", gflops(m, n, k, bf16_gemm(m, n, k)))
        } else {
            String::new()
        };
        println!(
            "m={m} n={n} k={k}: f32 1 thread {:.0} GFLOP/s, all threads {:.0} GFLOP/s{bf}",
            gflops(m, n, k, f32_gemm(m, n, k, gemm::Parallelism::None)),
            gflops(m, n, k, f32_gemm(m, n, k, gemm::Parallelism::Rayon(0)))
        );
    }
}
