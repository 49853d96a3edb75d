//! What this CPU can run: the features every choice of kernel depends on, detected once by the
//! standard library (or, for AMX, by CPUID and a request to Linux). Imports nothing from the crate.

/// Whether this CPU has AVX-512F: fer's own GEMM in `f32` and the AVX-512 copies of the
/// element-wise loops.
pub fn avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this CPU runs the bf16 GEMM (AVX512-BF16: Zen 4 and later, Cooper Lake, Sapphire
/// Rapids and later).
pub fn avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this CPU and OS run bf16 products on AMX tiles: CPUID reports AMX-TILE and AMX-BF16,
/// the CPU runs AVX512-BF16 (the packers and the rest of the bf16 path), and Linux granted this
/// process the tile state (asked for once, by `arch_prctl(ARCH_REQ_XCOMP_PERM)`).
pub fn amx_tiles() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    {
        static GRANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *GRANTED.get_or_init(|| {
            use std::arch::x86_64::{__cpuid_count, __get_cpuid_max};
            #[allow(unused_unsafe)]
            // SAFETY: CPUID exists on every x86-64 CPU; leaf 7 is read only where it exists.
            let edx = unsafe { if __get_cpuid_max(0).0 >= 7 { __cpuid_count(7, 0).edx } else { 0 } };
            let (amx_bf16, amx_tile) = (edx & (1 << 22) != 0, edx & (1 << 24) != 0);
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: the request only changes which register state the kernel lets this process
            // use; a kernel without it answers an error.
            amx_bf16
                && amx_tile
                && avx512_bf16()
                && unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } == 0
        })
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
    false
}

/// What bf16 products run on here, detected at run time: "amx" (AMX tiles), "avx512bf16", or
/// "f32" where the CPU has neither (the bf16 setting falls back to f32).
pub fn bf16_kernel() -> &'static str {
    if amx_tiles() {
        "amx"
    } else if avx512_bf16() {
        "avx512bf16"
    } else {
        "f32"
    }
}

/// The widest vector instructions the GEMM kernels will use on this CPU, detected at run time
/// (`gemm` dispatches on the same checks): "avx512f", "avx2+fma" or "baseline".
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2") {
            return "avx2+fma";
        }
    }
    "baseline"
}
