//! The CNN's 3x3 convolutions at batch 128, forward, input gradient (a convolution with the
//! channels swapped) and weight gradient, by Winograd's F(2x2, 3x3) and by the direct GEMM,
//! alternated in one process: milliseconds (best of 3) and the ratio.
//!
//! `cargo run --release -p fer-kernels --example conv_bench` (`CONV_BENCH_LAYER=0..3` for one layer,
//! `CONV_BENCH_PRECISION=bf16` for the bf16 products, `CONV_BENCH_TILES=0` to keep them off AMX)

mod common;

use common::best_ms;
use fer_kernels::conv::{self, ConvShape};

fn main() {
    fer_kernels::tune_allocator();
    if std::env::var("CONV_BENCH_PRECISION").is_ok_and(|p| p == "bf16") {
        fer_kernels::set_precision(fer_kernels::Precision::Bf16);
    }
    let tiles = fer_kernels::cpu::amx_tiles() && !std::env::var("CONV_BENCH_TILES").is_ok_and(|t| t == "0");
    fer_kernels::set_tiles(tiles);
    println!("panel mode: {:?} (Winograd needs fer's GEMM); AMX tiles for bf16: {tiles}", fer_kernels::gemm::kernel());
    let layers = [(64, 64, 48), (64, 128, 24), (128, 256, 12), (256, 512, 6)];
    let only: Option<usize> = std::env::var("CONV_BENCH_LAYER").ok().and_then(|v| v.parse().ok());
    for (cin, cout, side) in
        layers.into_iter().enumerate().filter(|(i, _)| only.is_none_or(|o| o == *i)).map(|(_, l)| l)
    {
        for (what, cin, cout) in [("forward", cin, cout), ("input gradient", cout, cin), ("weight gradient", cin, cout)]
        {
            let s = ConvShape { n: 128, cin, h: side, w: side, cout, kh: 3, kw: 3, pad_h: 1, pad_w: 1 };
            let x: Vec<f32> = (0..s.input_len()).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0).collect();
            let w: Vec<f32> = (0..s.weight_len()).map(|i| ((i * 104_729 % 1000) as f32 - 500.0) / 5000.0).collect();
            let b = vec![0.1f32; cout];
            let dy: Vec<f32> = (0..s.output_len()).map(|i| ((i * 6007 % 1000) as f32 - 500.0) / 500.0).collect();
            let run = || {
                if what == "weight gradient" {
                    std::hint::black_box(conv::backward(
                        &x,
                        &w,
                        &dy,
                        &s,
                        conv::GradientsWanted { input: false, weight: true, bias: false },
                    ));
                } else {
                    std::hint::black_box(conv::forward(&x, &w, Some(&b), &s));
                }
            };
            let flops = 2.0 * (s.n * s.cout * s.plane() * s.patch()) as f64;
            let (mut direct, mut winograd) = (f64::INFINITY, f64::INFINITY);
            for _ in 0..2 {
                fer_kernels::set_winograd(false);
                direct = direct.min(best_ms(3, run));
                fer_kernels::set_winograd(true);
                winograd = winograd.min(best_ms(3, run));
            }
            println!(
                "{cin:>3}->{cout:<3} @{side:>2}x{side:<2} {what:<15} direct {direct:7.1} ms ({:4.0} GFLOP/s)  \
                    winograd {winograd:7.1} ms  ratio {:.2}x",
                flops / direct / 1e6,
                direct / winograd
            );
        }
    }
}
