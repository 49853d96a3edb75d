//! The branch-free element-wise kernels against their plain scalar definitions, on inputs full
//! of ties, zeros of both signs and odd sizes.

use fer_kernels::pointwise;
use proptest::prelude::*;

/// The first maximum of each 2x2 window in row-major order takes the window's gradient.
fn max_pool_backward_reference(x: &[f32], dy: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = vec![0.0f32; x.len()];
    for p in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let at = |dy_: usize, dx_: usize| p * h * w + (2 * oy + dy_) * w + 2 * ox + dx_;
                let mut best = at(0, 0);
                for k in [at(0, 1), at(1, 0), at(1, 1)] {
                    if x[k] > x[best] {
                        best = k;
                    }
                }
                dx[best] += dy[p * oh * ow + oy * ow + ox];
            }
        }
    }
    dx
}

fn leaky_backward_reference(x: &[f32], dy: &[f32], slope: f32) -> Vec<f32> {
    x.iter().zip(dy).map(|(&v, &d)| if v < 0.0 { d * slope } else { d }).collect()
}

/// Few distinct values, so windows tie often; both zeros.
/// The bit patterns of `v`: the loops must agree to the bit, signed zeros and ties included.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn tie_prone() -> impl Strategy<Value = f32> {
    prop_oneof![Just(-1.0f32), Just(-0.0f32), Just(0.0f32), Just(0.5f32), Just(2.0f32)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn max_pool_backward_matches_the_scalar_definition(
        (planes, h, w, x, dy) in (1usize..4, 1usize..10, 1usize..10).prop_flat_map(|(p, h, w)| {
            let x = prop::collection::vec(tie_prone(), p * h * w);
            let dy = prop::collection::vec(-4.0f32..4.0, p * (h / 2) * (w / 2));
            (Just(p), Just(h), Just(w), x, dy)
        })
    ) {
        let got = pointwise::max_pool2x2_backward(&x, &dy, planes, h, w);
        let want = max_pool_backward_reference(&x, &dy, planes, h, w);
        prop_assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn leaky_relu_passes_match_the_scalar_definition(
        x in prop::collection::vec(prop_oneof![tie_prone(), -3.0f32..3.0], 0..200),
        slope in 0.0f32..0.5,
    ) {
        let dy: Vec<f32> = x.iter().enumerate().map(|(i, _)| i as f32 * 0.25 - 7.0).collect();
        let got = pointwise::leaky_relu_backward(&x, &dy, slope);
        let want = leaky_backward_reference(&x, &dy, slope);
        prop_assert_eq!(bits(&got), bits(&want));
        let y = pointwise::leaky_relu(&x, slope);
        let want_y: Vec<f32> = x.iter().map(|&v| if v < 0.0 { v * slope } else { v }).collect();
        prop_assert_eq!(bits(&y), bits(&want_y));
    }
}

#[test]
fn max_pool_backward_sends_a_tied_window_to_its_first_element_and_zeroes_odd_edges() {
    // One 3x3 plane: the window [[1, 1], [1, 1]] ties everywhere; row 2 and column 2 are in no window.
    let x = [1.0, 1.0, 9.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0];
    let dx = pointwise::max_pool2x2_backward(&x, &[5.0], 1, 3, 3);
    assert_eq!(dx, vec![5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
}
