pub mod bench;
pub mod data;
pub mod eval;
pub mod explain;
pub mod model;
pub mod predict;
pub mod serve;
pub mod train;

/// `--precision`: what the convolutions and dense layers multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// 32-bit floats throughout.
    F32,
    /// bfloat16 operands, f32 sums, f32 weights and optimizer state (CPUs with AVX512-BF16:
    /// Zen 4 and later, Sapphire Rapids and later, which run the products on AMX tiles; f32 on
    /// other CPUs).
    Bf16,
}

impl From<PrecisionArg> for fer_train::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => fer_train::Precision::F32,
            PrecisionArg::Bf16 => fer_train::Precision::Bf16,
        }
    }
}
