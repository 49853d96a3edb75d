//! Direct-loop references shared by the convolution tests (f64 sums, no tricks).

#![allow(dead_code)]

use fer_kernels::conv::ConvShape;
use fer_kernels::dense::DenseShape;
use proptest::prelude::*;

pub fn reference_forward(x: &[f32], w: &[f32], b: &[f32], s: &ConvShape) -> Vec<f32> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut y = vec![0.0f32; s.output_len()];
    for n in 0..s.n {
        for co in 0..s.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b[co] as f64;
                    for c in 0..s.cin {
                        for i in 0..s.kh {
                            for j in 0..s.kw {
                                let (iy, ix) =
                                    ((oy + i) as isize - s.pad_h as isize, (ox + j) as isize - s.pad_w as isize);
                                if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w {
                                    acc += x[((n * s.cin + c) * s.h + iy as usize) * s.w + ix as usize] as f64
                                        * w[((co * s.cin + c) * s.kh + i) * s.kw + j] as f64;
                                }
                            }
                        }
                    }
                    y[((n * s.cout + co) * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
    }
    y
}

/// Gradients of sum(y ⊙ dy) by the same loops: dx, dw, db.
pub fn reference_backward(x: &[f32], w: &[f32], dy: &[f32], s: &ConvShape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let (mut dx, mut dw, mut db) = (vec![0.0f64; x.len()], vec![0.0f64; w.len()], vec![0.0f64; s.cout]);
    for n in 0..s.n {
        for co in 0..s.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = dy[((n * s.cout + co) * oh + oy) * ow + ox] as f64;
                    db[co] += g;
                    for c in 0..s.cin {
                        for i in 0..s.kh {
                            for j in 0..s.kw {
                                let (iy, ix) =
                                    ((oy + i) as isize - s.pad_h as isize, (ox + j) as isize - s.pad_w as isize);
                                if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w {
                                    let xi = ((n * s.cin + c) * s.h + iy as usize) * s.w + ix as usize;
                                    let wi = ((co * s.cin + c) * s.kh + i) * s.kw + j;
                                    dx[xi] += g * w[wi] as f64;
                                    dw[wi] += g * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f(dx), f(dw), f(db))
}

/// `x · w + b` and the gradients of `sum(y ⊙ dy)` by plain loops summed in f64.
#[allow(clippy::type_complexity)]
pub fn reference_dense(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    dy: &[f32],
    s: &DenseShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (m, k, n) = (s.batch, s.inputs, s.outputs);
    let mut y = vec![0.0f32; m * n];
    let (mut dx, mut dw, mut db) = (vec![0.0f32; m * k], vec![0.0f32; k * n], vec![0.0f32; n]);
    for r in 0..m {
        for j in 0..n {
            y[r * n + j] =
                (b[j] as f64 + (0..k).map(|p| x[r * k + p] as f64 * w[p * n + j] as f64).sum::<f64>()) as f32;
        }
        for p in 0..k {
            dx[r * k + p] = (0..n).map(|j| dy[r * n + j] as f64 * w[p * n + j] as f64).sum::<f64>() as f32;
        }
    }
    for p in 0..k {
        for j in 0..n {
            dw[p * n + j] = (0..m).map(|r| x[r * k + p] as f64 * dy[r * n + j] as f64).sum::<f64>() as f32;
        }
    }
    for (j, d) in db.iter_mut().enumerate() {
        *d = (0..m).map(|r| dy[r * n + j] as f64).sum::<f64>() as f32;
    }
    (y, dx, dw, db)
}

pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{name}[{i}]: got {g}, want {w}");
    }
}

/// Small convolution shapes with every padding that leaves an output.
pub fn shapes() -> impl Strategy<Value = ConvShape> {
    (1usize..5, 1usize..4, 1usize..9, 1usize..9, 1usize..5, 1usize..4, 1usize..4)
        .prop_flat_map(|(n, cin, h, w, cout, kh, kw)| (Just((n, cin, h, w, cout, kh, kw)), 0..kh, 0..kw))
        .prop_filter("output must not be empty", |((_, _, h, w, _, kh, kw), ph, pw)| {
            h + 2 * ph >= *kh && w + 2 * pw >= *kw
        })
        .prop_map(|((n, cin, h, w, cout, kh, kw), pad_h, pad_w)| ConvShape { n, cin, h, w, cout, kh, kw, pad_h, pad_w })
}
