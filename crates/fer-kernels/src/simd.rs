//! Building blocks for vector code shared by the GEMM, the convolution's operand packers and the
//! element-wise loops: run-time dispatch to an AVX-512 copy of a loop, lane masks, and the bf16
//! pairing of sixteen lanes. Below every kernel module; imports only the standard library.

/// Defines a function whose body is compiled twice, for AVX-512 and for baseline x86-64, and
/// picks the copy at run time. The loops below are written branch-free so that both copies
/// vectorise; the same code in both gives the same results on every CPU.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature this copy was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// The mask of a vector's first `n` lanes (all 16 from 16 on): the tail of a row, a run of tiles.
#[inline(always)]
pub(crate) fn first_lanes(n: usize) -> u16 {
    if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 }
}

/// The even and the odd elements of the 32 in `lo` then `hi`, each as one vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn even_odd(
    lo: std::arch::x86_64::__m512i,
    hi: std::arch::x86_64::__m512i,
) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    (_mm512_permutex2var_epi32(lo, even, hi), _mm512_permutex2var_epi32(lo, odd, hi))
}

/// The bf16 pairs of sixteen lanes: `lo` (`k`, as `f32` bits) rounded into the low halves, `hi`
/// (`k + 1`) into the high halves, rounded as [`crate::bf16::round_bits`] rounds (integer
/// arithmetic, so [`crate::bf16::pair`]'s bits). Every bf16 packer goes through it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn pair_lanes(lo: std::arch::x86_64::__m512i, hi: std::arch::x86_64::__m512i) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let round = |u: __m512i| {
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(u), _mm512_set1_epi32(1));
        _mm512_and_si512(
            _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd)),
            _mm512_set1_epi32(0xFFFF_0000u32 as i32),
        )
    };
    _mm512_or_si512(round(hi), _mm512_srli_epi32::<16>(round(lo)))
}
