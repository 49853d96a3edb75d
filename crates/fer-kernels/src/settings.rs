//! Every process-wide switch that chooses which code runs, in one place. Each defaults to the
//! fastest path this CPU has; the others exist so that `fer bench` can measure one path against
//! another in the same process, tests can check both, and a user chasing a numerical question
//! can rule a kernel out. Nothing else in the crate keeps global state that changes results.
//!
//! | switch | default | off means |
//! |---|---|---|
//! | [`set_fast_path`] | on | burn's own operations everywhere |
//! | [`set_precision`] | [`Precision::F32`] | (bf16 operands where the CPU has AVX512-BF16) |
//! | [`set_panel_f32`] | on | `f32` products through im2col and the `gemm` crate even on AVX-512 |
//! | [`set_winograd`] | on | 3x3 convolutions as direct GEMMs |
//! | [`set_tiles`] | on | bf16 products on AVX512-BF16 even where AMX tiles exist |

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cpu;

static FAST_PATH: AtomicBool = AtomicBool::new(true);
static BF16: AtomicBool = AtomicBool::new(false);
static PANEL_F32: AtomicBool = AtomicBool::new(true);
static WINOGRAD: AtomicBool = AtomicBool::new(true);
static TILES: AtomicBool = AtomicBool::new(true);

/// What the convolutions' and dense layers' GEMMs multiply. `f32` is the default everywhere;
/// weights, optimizer state and every other operation stay `f32` either way. The one precision
/// type from the kernels to the command line (a run's config records it, lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats throughout.
    #[default]
    F32,
    /// Operands rounded to bfloat16, products summed in `f32`, on CPUs with AVX512-BF16 (Zen 4
    /// and later, Sapphire Rapids and later, which run the products on AMX tiles); `f32` on any
    /// other CPU.
    Bf16,
}

impl Precision {
    /// Every precision, as `--precision` names them.
    pub const NAMES: [&'static str; 2] = ["f32", "bf16"];

    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision {s:?}: expected one of {}", Precision::NAMES.join(", "))),
        }
    }
}

/// Turns fer's own kernels on (the default) or off for the whole process.
pub fn set_fast_path(enabled: bool) {
    FAST_PATH.store(enabled, Ordering::Relaxed);
}

pub fn fast_path_enabled() -> bool {
    FAST_PATH.load(Ordering::Relaxed)
}

/// Sets the GEMMs' precision for the whole process (training and evaluation alike).
pub fn set_precision(precision: Precision) {
    BF16.store(precision == Precision::Bf16, Ordering::Relaxed);
}

/// The precision asked for with [`set_precision`].
pub fn precision() -> Precision {
    if BF16.load(Ordering::Relaxed) { Precision::Bf16 } else { Precision::F32 }
}

/// The precision the GEMMs actually run at: bf16 only where asked for and the CPU has it.
pub fn effective_precision() -> Precision {
    if precision() == Precision::Bf16 && cpu::avx512_bf16() { Precision::Bf16 } else { Precision::F32 }
}

/// Whether `f32` products use fer's own GEMM (`gemm`, packing straight from the input;
/// the default where the CPU has AVX-512F) or im2col and the `gemm` crate (the path for every
/// other CPU). For measuring one against the other, and for testing the portable path.
pub fn set_panel_f32(enabled: bool) {
    PANEL_F32.store(enabled, Ordering::Relaxed);
}

pub fn panel_f32() -> bool {
    PANEL_F32.load(Ordering::Relaxed)
}

/// Whether 3x3 convolutions with padding 1 in fer's GEMM run by Winograd's F(2x2, 3x3)
/// (`conv::winograd`, the default; forward and input gradient in `f32` and bf16, the
/// weight gradient in `f32`) or as direct GEMMs. For measuring one against the other and testing
/// both.
pub fn set_winograd(enabled: bool) {
    WINOGRAD.store(enabled, Ordering::Relaxed);
}

pub fn winograd() -> bool {
    WINOGRAD.load(Ordering::Relaxed)
}

/// Whether bf16 products run on AMX tiles where [`cpu::amx_tiles`] (the default) or on
/// AVX512-BF16 everywhere. For measuring one against the other and testing both; a left operand
/// packed ahead keeps the kernel it was packed for.
pub fn set_tiles(enabled: bool) {
    TILES.store(enabled, Ordering::Relaxed);
}

pub fn tiles() -> bool {
    TILES.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_names_round_trip_through_text_and_json() {
        for (name, p) in Precision::NAMES.iter().zip([Precision::F32, Precision::Bf16]) {
            assert_eq!(name.parse::<Precision>(), Ok(p));
            assert_eq!(p.to_string(), *name);
            assert_eq!(serde_json::to_string(&p).expect("serialises"), format!("\"{name}\""));
        }
        assert_eq!("BF16".parse::<Precision>(), Ok(Precision::Bf16));
        let err = "fp16".parse::<Precision>().expect_err("not a precision");
        assert!(err.contains("fp16") && err.contains("f32, bf16"), "{err}");
    }
}
