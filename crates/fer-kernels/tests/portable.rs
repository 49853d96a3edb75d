//! The portable path of the convolutions and dense layers (im2col and the `gemm` crate, what
//! CPUs without AVX-512 run) against the direct loops, on any CPU: a test binary of its own because the switch that
//! selects it is process-wide.

mod common;

use common::{assert_close, reference_backward, reference_dense, reference_forward, shapes, values};
use fer_kernels::conv::{self, GradientsWanted};
use fer_kernels::dense::{self, DenseShape, Epilogue};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn portable_convolutions_match_the_direct_loops(s in shapes(), seed in any::<u64>()) {
        fer_kernels::set_panel_f32(false);
        prop_assert_eq!(fer_kernels::gemm::kernel(), None);
        let (x, w) = (values(s.input_len(), seed), values(s.weight_len(), seed ^ 1));
        let (b, dy) = (values(s.cout, seed ^ 2), values(s.output_len(), seed ^ 3));
        assert_close("y", &conv::forward(&x, &w, Some(&b), &s), &reference_forward(&x, &w, &b, &s), 1e-5);
        let g = conv::backward(&x, &w, &dy, &s, GradientsWanted::ALL);
        let (dx, dw, db) = reference_backward(&x, &w, &dy, &s);
        assert_close("dx", g.dx.as_deref().unwrap_or_default(), &dx, 1e-5);
        assert_close("dw", g.dw.as_deref().unwrap_or_default(), &dw, 1e-5);
        assert_close("db", g.db.as_deref().unwrap_or_default(), &db, 1e-5);
    }

    #[test]
    fn portable_dense_layers_match_the_direct_loops(
        batch in 1usize..80, inputs in 1usize..100, outputs in 1usize..100, seed in any::<u64>()
    ) {
        fer_kernels::set_panel_f32(false);
        let s = DenseShape { batch, inputs, outputs };
        let (x, w) = (values(batch * inputs, seed), values(inputs * outputs, seed ^ 1));
        let (b, dy) = (values(outputs, seed ^ 2), values(batch * outputs, seed ^ 3));
        let (y, dx, dw, db) = reference_dense(&x, &w, &b, &dy, &s);
        assert_close("y", &dense::forward(&x, &w, &b, &s, &Epilogue::default()), &y, 1e-5);
        let g = dense::backward(&x, &w, &[], &dy, &s, &Epilogue::default(), GradientsWanted::ALL);
        assert_close("dx", g.dx.as_deref().unwrap_or_default(), &dx, 1e-5);
        assert_close("dw", g.dw.as_deref().unwrap_or_default(), &dw, 1e-5);
        assert_close("db", g.db.as_deref().unwrap_or_default(), &db, 1e-5);
    }
}
