//! bfloat16 rounding: what fer's GEMM and the packers round with. Below every kernel module;
//! imports nothing from the crate.
//!
//! bf16 keeps `f32`'s exponent and 8 bits of its mantissa: products of rounded operands summed
//! in `f32` differ from the `f32` path by about 2^-9 relative per operand.

/// `x` rounded to bfloat16 (round to nearest, ties to even), as the upper 16 bits of an `f32`.
#[inline(always)]
pub fn round_bits(x: f32) -> u32 {
    let u = x.to_bits();
    u.wrapping_add(0x7FFF + ((u >> 16) & 1)) & 0xFFFF_0000
}

/// `x` rounded to bfloat16 and back: what the GEMM multiplies.
pub fn round(x: f32) -> f32 {
    f32::from_bits(round_bits(x))
}

/// The 32-bit lane holding `lo` (k) and `hi` (k + 1), each rounded: the pairing `vdpbf16ps`
/// multiplies.
#[inline(always)]
pub(crate) fn pair(lo: f32, hi: f32) -> u32 {
    round_bits(hi) | (round_bits(lo) >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(round(1.0), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(round(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round(-2.5), -2.5);
        assert_eq!(round(0.0).to_bits(), 0);
    }
}
