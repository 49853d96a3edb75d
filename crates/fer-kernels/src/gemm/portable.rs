//! The portable GEMM: the `gemm` crate, in `f32` on any CPU. What the convolutions and dense
//! layers run where fer's own GEMM does not (CPUs without AVX-512, or `set_panel_f32(false)`).

use super::layout::{Dims, Out, Strided, Sum, Threads};

/// `c = a · b` (or `c += a · b`) through the `gemm` crate.
pub(crate) fn multiply(dims: Dims, a: Strided, b: Strided, out: Out, threads: Threads) {
    let Dims { m, n, k } = dims;
    if m == 0 || n == 0 {
        return;
    }
    let Out { c, ldc, sum } = out;
    assert!(c.len() >= (m - 1) * ldc + n, "sgemm: destination too small");
    a.check(m, k, "a");
    b.check(k, n, "b");
    let threads = match threads {
        Threads::All => gemm::Parallelism::Rayon(0),
        Threads::One => gemm::Parallelism::None,
    };
    // SAFETY: the checks above keep every index in bounds: `a` spans (m-1)*rs + (k-1)*cs and `b`
    // (k-1)*rs + (n-1)*cs elements, and `c` (m-1)*ldc + n.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            sum == Sum::Accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            threads,
        );
    }
}
