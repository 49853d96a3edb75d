//! The shapes the kernels agree on: a convolution's sizes, and which gradients a backward pass
//! computes. Below every kernel module, so the convolution's helpers (operand packers, Winograd)
//! and the convolution itself share them without importing each other.

/// Fewest GEMM columns worth a call of their own; smaller maps are batched up to this.
pub const MIN_COLUMNS: usize = 512;

/// Shape of one convolution: input `[n, cin, h, w]`, weight `[cout, cin, kh, kw]`, stride 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

impl ConvShape {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad_h + 1).saturating_sub(self.kh)
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad_w + 1).saturating_sub(self.kw)
    }
    /// Output pixels per image and channel.
    pub fn plane(&self) -> usize {
        self.out_h() * self.out_w()
    }
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub fn patch(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    pub fn input_len(&self) -> usize {
        self.n * self.cin * self.h * self.w
    }
    pub fn weight_len(&self) -> usize {
        self.cout * self.patch()
    }
    pub fn output_len(&self) -> usize {
        self.n * self.cout * self.plane()
    }
    /// Images per GEMM.
    pub(crate) fn group(&self) -> usize {
        MIN_COLUMNS.div_ceil(self.plane().max(1)).clamp(1, self.n.max(1))
    }
}

/// Which gradients a backward pass computes: a frozen layer or the first layer's input needs
/// fewer, and each one skipped is a GEMM saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GradientsWanted {
    /// Of the layer's input.
    pub input: bool,
    /// Of its weights.
    pub weight: bool,
    /// Of its bias.
    pub bias: bool,
}

impl GradientsWanted {
    /// Every gradient.
    pub const ALL: GradientsWanted = GradientsWanted { input: true, weight: true, bias: true };
}
