//! 2-D convolution (stride 1, any padding) on contiguous NCHW `f32` buffers: one GEMM per group
//! of images, forward and backward.
//!
//! Why not burn's own kernels: flex computes the weight gradient as a convolution with batch and
//! channels swapped and the input gradient as a transposed convolution, each with its own large
//! temporaries. Here all three products are plain GEMMs over the im2col matrix, images are
//! grouped so that every GEMM has at least [`MIN_COLUMNS`] columns (the deep layers have 6x6
//! maps), and the two CPU cores each take whole groups, so no GEMM is split across threads.
//!
//! Two ways to run them: fer's own GEMM ([`crate::panel`], bf16 on AVX512-BF16 CPUs when asked,
//! f32 on AVX-512 CPUs), whose operands pack straight from the input ([`crate::conv_operands`])
//! so the im2col matrix is never written; and, on every other CPU, im2col into memory and the
//! `gemm` crate ([`panel_mode`] says which runs).

use rayon::prelude::*;

use crate::conv_operands::{PaddedInput, PaddedPlanes, weight_order};
use crate::panel::{Left, Mode, PackedA, Right, Strided, gemm_with};
use crate::winograd;

/// Fewest GEMM columns worth a call of their own; smaller maps are batched up to this.
pub const MIN_COLUMNS: usize = 512;

/// How many partial weight gradients a backward pass sums (fixed, for reproducible sums).
const PARTS: usize = 8;

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
    fn group(&self) -> usize {
        MIN_COLUMNS.div_ceil(self.plane().max(1)).clamp(1, self.n.max(1))
    }
}

/// A buffer the caller overwrites completely before reading any element: zero-filling 75 MB
/// activations that are about to be overwritten was 8% of a training step.
pub(crate) fn scratch(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: f32 accepts any bit pattern, and every caller writes each element before reading it.
    #[allow(clippy::uninit_vec)]
    unsafe {
        v.set_len(len)
    };
    v
}

static PANEL_F32: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether `f32` convolutions use fer's own GEMM ([`crate::panel`], packing straight from the
/// input; the default where the CPU has AVX-512F) or im2col and the `gemm` crate (the path for
/// every other CPU). For measuring one against the other, and for testing the portable path.
pub fn set_panel_f32(enabled: bool) {
    PANEL_F32.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

static WINOGRAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether 3x3 convolutions with padding 1 in fer's GEMM run by Winograd's F(2x2, 3x3)
/// ([`crate::winograd`], the default; forward and input gradient in `f32` and bf16, the weight
/// gradient in `f32`) or as direct GEMMs. For measuring one against the other and testing both.
pub fn set_winograd(enabled: bool) {
    WINOGRAD.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

/// The mode in which [`crate::winograd`] computes `s`, if it does: fer's GEMM, a 3x3 "same"
/// kernel, and an image per core (training batches; a lone image keeps the direct GEMM split
/// across the cores). Not on AMX tiles: there the direct bf16 GEMM runs 2.5-5x faster than on
/// AVX512-BF16 and Winograd's transforms cost more than its products save (0.69-1.02x per
/// layer, docs/PERFORMANCE.md).
fn winograd_mode(s: &ConvShape) -> Option<Mode> {
    let on = WINOGRAD.load(std::sync::atomic::Ordering::Relaxed) && winograd::fits(s) && s.n >= rayon::current_num_threads();
    panel_mode().filter(|&mode| on && !crate::panel::tiles_for(mode))
}

/// The mode of fer's GEMM the convolutions run in, or `None` for im2col and the `gemm` crate.
pub fn panel_mode() -> Option<Mode> {
    if crate::effective_precision() == crate::Precision::Bf16 {
        Some(Mode::Bf16)
    } else if PANEL_F32.load(std::sync::atomic::Ordering::Relaxed) && Mode::F32.available() {
        Some(Mode::F32)
    } else {
        None
    }
}

/// `c = a · b (+ c)`, row-major with explicit strides; single-threaded unless `parallel`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
    parallel: bool,
) {
    // Each path checks the shapes and returns early on an empty product itself.
    match panel_mode() {
        Some(mode) => panel_gemm(mode, m, n, k, a, b, c, c_row_stride, accumulate, parallel),
        None => gemm_crate(m, n, k, a, b, c, c_row_stride, accumulate, parallel),
    }
}

/// [`sgemm`] through the `gemm` crate, in `f32` on any CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_crate(
    m: usize,
    n: usize,
    k: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * c_row_stride + n, "sgemm: destination too small");
    let threads = if parallel { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    let span = |(s, rs, cs): (&[f32], isize, isize), rows: usize, cols: usize| {
        assert!((rows.saturating_sub(1) as isize * rs + cols.saturating_sub(1) as isize * cs) < s.len() as isize || rows * cols == 0);
    };
    span(a, m, k);
    span(b, k, n);
    // SAFETY: the asserts above and the callers' shapes keep every index in bounds: `a` spans
    // (m-1)*rs + (k-1)*cs and `b` (k-1)*rs + (n-1)*cs elements, checked by `span`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_row_stride as isize,
            accumulate,
            a.0.as_ptr(),
            a.2,
            a.1,
            b.0.as_ptr(),
            b.2,
            b.1,
            1.0,
            1.0,
            false,
            false,
            false,
            threads,
        );
    }
}

/// [`sgemm`] through [`crate::panel`]; `parallel` splits the rows of `c` across the cores.
#[allow(clippy::too_many_arguments)]
fn panel_gemm(
    mode: Mode,
    m: usize,
    n: usize,
    k: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    c: &mut [f32],
    c_row_stride: usize,
    accumulate: bool,
    parallel: bool,
) {
    fn strided((data, rs, cs): (&[f32], isize, isize)) -> Strided<'_> {
        Strided { data, rs: rs as usize, cs: cs as usize }
    }
    let (a, b) = (strided(a), strided(b));
    a.check(m, k, "a");
    b.check(k, n, "b");
    panel_product(mode, m, n, k, Left::Strided(a), &b, c, c_row_stride, accumulate, parallel);
}

/// [`crate::panel::gemm_with`]; `parallel` splits the rows of `c` across the cores, in blocks of
/// a multiple of 8 (the micro-tile's height).
#[allow(clippy::too_many_arguments)]
pub(crate) fn panel_product(
    mode: Mode,
    m: usize,
    n: usize,
    k: usize,
    a: Left,
    b: &impl Right,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    // Whole strips per core (16 rows: the AMX strips, two micro-kernel ones).
    let rows = m.div_ceil(threads).div_ceil(16) * 16;
    if threads == 1 || rows >= m || m == 0 || n == 0 {
        gemm_with(mode, m, n, k, a, b, c, ldc, accumulate);
        return;
    }
    let used = (m - 1) * ldc + n;
    c[..used].par_chunks_mut(rows * ldc).enumerate().for_each(|(part, c)| {
        let first = part * rows;
        let count = rows.min(m - first);
        let a = match a {
            Left::Strided(a) => Left::Strided(Strided { data: &a.data[first * a.rs..], ..a }),
            Left::Packed(p, f) => Left::Packed(p, f + first),
        };
        gemm_with(mode, count, n, k, a, b, c, ldc, accumulate);
    });
}

/// [`im2col`] of one image with its channels split across the cores (batch-1 latency).
fn im2col_parallel(x: &[f32], s: &ConvShape, col: &mut [f32]) {
    let rows = s.kh * s.kw * s.plane();
    col.par_chunks_mut(rows.max(1)).enumerate().for_each(|(c, rows)| im2col_channels(x, s, 1, c..c + 1, rows, c));
}

/// Fills `col` (`patch` rows x `images * plane` columns) from `images` consecutive images.
fn im2col(x: &[f32], s: &ConvShape, images: usize, col: &mut [f32]) {
    im2col_channels(x, s, images, 0..s.cin, col, 0);
}

/// The rows of input channels `channels` only; `col` starts at channel `first`'s first row.
fn im2col_channels(x: &[f32], s: &ConvShape, images: usize, channels: std::ops::Range<usize>, col: &mut [f32], first: usize) {
    let (oh, ow, plane) = (s.out_h(), s.out_w(), s.plane());
    let width = images * plane;
    for g in 0..images {
        let image = &x[g * s.cin * s.h * s.w..(g + 1) * s.cin * s.h * s.w];
        for c in channels.clone() {
            let channel = &image[c * s.h * s.w..(c + 1) * s.h * s.w];
            for i in 0..s.kh {
                for j in 0..s.kw {
                    let row = ((c - first) * s.kh + i) * s.kw + j;
                    let dst = &mut col[row * width + g * plane..row * width + (g + 1) * plane];
                    // Output column ox reads input column ox + j - pad_w.
                    let x0 = s.pad_w.saturating_sub(j).min(ow);
                    let x1 = (s.w + s.pad_w).saturating_sub(j).min(ow).max(x0);
                    for oy in 0..oh {
                        let out = &mut dst[oy * ow..(oy + 1) * ow];
                        let iy = oy + i;
                        if iy < s.pad_h || iy - s.pad_h >= s.h {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &channel[(iy - s.pad_h) * s.w..(iy - s.pad_h + 1) * s.w];
                        out[..x0].fill(0.0);
                        out[x0..x1].copy_from_slice(&src[x0 + j - s.pad_w..x1 + j - s.pad_w]);
                        out[x1..].fill(0.0);
                    }
                }
            }
        }
    }
}

/// Adds `col` back into `images` consecutive image gradients (the adjoint of [`im2col`]).
fn col2im(col: &[f32], s: &ConvShape, images: usize, dx: &mut [f32]) {
    let (oh, ow, plane) = (s.out_h(), s.out_w(), s.plane());
    let width = images * plane;
    for g in 0..images {
        let image = &mut dx[g * s.cin * s.h * s.w..(g + 1) * s.cin * s.h * s.w];
        for c in 0..s.cin {
            let channel = &mut image[c * s.h * s.w..(c + 1) * s.h * s.w];
            for i in 0..s.kh {
                for j in 0..s.kw {
                    let row = (c * s.kh + i) * s.kw + j;
                    let src = &col[row * width + g * plane..row * width + (g + 1) * plane];
                    let x0 = s.pad_w.saturating_sub(j).min(ow);
                    let x1 = (s.w + s.pad_w).saturating_sub(j).min(ow).max(x0);
                    for oy in 0..oh {
                        let iy = oy + i;
                        if iy < s.pad_h || iy - s.pad_h >= s.h {
                            continue;
                        }
                        let dst = &mut channel[(iy - s.pad_h) * s.w + x0 + j - s.pad_w..(iy - s.pad_h) * s.w + x1 + j - s.pad_w];
                        for (d, v) in dst.iter_mut().zip(&src[oy * ow + x0..oy * ow + x1]) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

fn check(s: &ConvShape, x: usize, w: usize) {
    assert_eq!(x, s.input_len(), "conv2d: input length does not match {s:?}");
    assert_eq!(w, s.weight_len(), "conv2d: weight length does not match {s:?}");
}

/// `y = conv(x, w) + b`, NCHW.
pub fn forward(x: &[f32], w: &[f32], b: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    forward_activated(x, w, None, b, s, None)
}

/// `conv(x, w) · scale + shift` per output channel, then LeakyReLU with `slope` when given, all
/// as the output is written (inference folds BatchNorm into `scale` and `shift`, so a whole conv
/// block is one call and the weights are never rescaled).
pub fn forward_activated(x: &[f32], w: &[f32], scale: Option<&[f32]>, shift: Option<&[f32]>, s: &ConvShape, slope: Option<f32>) -> Vec<f32> {
    forward_prepacked(x, w, None, scale, shift, s, slope)
}

/// The weights as the forward convolution multiplies them where it runs in fer's own GEMM
/// (bf16, or f32 on AVX-512 CPUs) and packs its input straight from the images; `None`
/// elsewhere. Inference packs a model's weights once and passes them to [`forward_prepacked`].
pub fn pack_weights(w: &[f32], s: &ConvShape) -> Option<PackedA> {
    assert_eq!(w.len(), s.weight_len(), "conv2d: weight length does not match {s:?}");
    let patch = s.patch();
    let mode = panel_mode().filter(|&mode| PaddedInput::fits(mode, s))?;
    let order: Vec<usize> = (0..patch).map(|k| weight_order(mode, s, k)).collect();
    Some(PackedA::new(mode, s.cout, patch, |co, k| w[co * patch + order[k]]))
}

/// [`forward_activated`] with `w` already packed by [`pack_weights`] (ignored where that gives
/// `None`, i.e. the precision or the shape does not use it).
#[allow(clippy::too_many_arguments)]
pub fn forward_prepacked(
    x: &[f32],
    w: &[f32],
    packed: Option<&PackedA>,
    scale: Option<&[f32]>,
    shift: Option<&[f32]>,
    s: &ConvShape,
    slope: Option<f32>,
) -> Vec<f32> {
    check(s, x.len(), w.len());
    let (plane, patch, group) = (s.plane(), s.patch(), s.group());
    let mut y = scratch(s.output_len());
    let groups = s.n.div_ceil(group);
    let parallel_gemm = groups < rayon::current_num_threads();
    // `dst = src · scale + shift`, then LeakyReLU, for output channel `co` (a branch-free loop
    // compiled for AVX-512: as a closure here it ran element by element, a tenth of batch-1
    // latency).
    let finish = |dst: &mut [f32], src: Option<&[f32]>, co: usize| {
        let (k, b) = (scale.map_or(1.0, |k| k[co]), shift.map_or(0.0, |b| b[co]));
        crate::pointwise::affine_leaky_row(dst, src, k, b, slope);
    };
    // 3x3 "same" convolutions by Winograd's algorithm (f32 or bf16), where every core gets images of
    // its own (training, and the input gradient, which is such a convolution too).
    if let Some(mode) = winograd_mode(s).filter(|_| packed.is_none()) {
        return winograd::forward(x, w, s, mode, &|plane: &mut [f32], co: usize| finish(plane, None, co));
    }
    // In fer's own GEMM, where the input packs straight from the images: the weights packed
    // once for every group (`conv_operands`).
    let mode = panel_mode().filter(|&mode| PaddedInput::fits(mode, s));
    let own = if mode.is_some() && packed.is_none() { pack_weights(w, s) } else { None };
    let packed_w = if mode.is_some() { packed.or(own.as_ref()) } else { None };
    if let (Some(p), Some(mode)) = (packed_w, mode) {
        assert!(p.rows() == s.cout && p.depth() == patch && p.mode() == mode, "conv2d: packed weights do not match {s:?}");
    }
    // A group's product `prod[cout, images * plane]` into the output's NCHW order.
    let scatter = |prod: &[f32], out: &mut [f32], images: usize| {
        let width = images * plane;
        for g in 0..images {
            for co in 0..s.cout {
                let dst = &mut out[(g * s.cout + co) * plane..(g * s.cout + co + 1) * plane];
                finish(dst, Some(&prod[co * width + g * plane..co * width + (g + 1) * plane]), co);
            }
        }
    };
    let finish_in_place = |out: &mut [f32]| {
        if scale.is_some() || shift.is_some() || slope.is_some() {
            for (co, row) in out.chunks_mut(plane).enumerate() {
                finish(row, None, co);
            }
        }
    };
    y.par_chunks_mut(group * s.cout * plane).enumerate().for_each(|(gi, out)| {
        let first = gi * group;
        let images = out.len() / (s.cout * plane);
        let input = &x[first * s.cin * s.h * s.w..(first + images) * s.cin * s.h * s.w];
        let width = images * plane;
        if let (Some(packed), Some(mode)) = (packed_w, mode) {
            let b = PaddedInput::new(mode, input, s, images);
            if images == 1 {
                // One image's product is already in the output's [cout, plane] order.
                panel_product(mode, s.cout, width, patch, Left::Packed(packed, 0), &b, out, width, false, parallel_gemm);
                finish_in_place(out);
            } else {
                let mut prod = scratch(s.cout * width);
                panel_product(mode, s.cout, width, patch, Left::Packed(packed, 0), &b, &mut prod, width, false, parallel_gemm);
                scatter(&prod, out, images);
            }
            return;
        }
        let mut col = scratch(patch * width);
        if images == 1 && parallel_gemm {
            // A lone image (batch 1): split im2col by input channel and the product by output
            // channel across the cores; the product already has the output's [cout, plane] layout.
            im2col_parallel(input, s, &mut col);
            let rows = s.cout.div_ceil(rayon::current_num_threads()).max(1);
            out.par_chunks_mut(rows * plane).enumerate().for_each(|(part, out)| {
                let first = part * rows;
                let count = out.len() / plane;
                sgemm(count, width, patch, (&w[first * patch..], patch as isize, 1), (&col, width as isize, 1), out, width, false, false);
                for (r, row) in out.chunks_mut(plane).enumerate() {
                    finish(row, None, first + r);
                }
            });
            return;
        }
        im2col(input, s, images, &mut col);
        if images == 1 {
            // One image's product is already in the output's [cout, plane] order.
            sgemm(s.cout, width, patch, (w, patch as isize, 1), (&col, width as isize, 1), out, width, false, parallel_gemm);
            finish_in_place(out);
            return;
        }
        let mut prod = scratch(s.cout * width);
        sgemm(s.cout, width, patch, (w, patch as isize, 1), (&col, width as isize, 1), &mut prod, width, false, parallel_gemm);
        scatter(&prod, out, images);
    });
    y
}

/// `len` zeros plus each part in turn: a fixed summation order.
fn sum_in_order(len: usize, parts: &[Vec<f32>]) -> Vec<f32> {
    let mut total = vec![0.0f32; len];
    for part in parts {
        total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
    }
    total
}

/// Gradients of [`forward`] given the output gradient `dy`: `(dx, dw, db)`, each only when asked.
pub struct Gradients {
    pub dx: Option<Vec<f32>>,
    pub dw: Option<Vec<f32>>,
    pub db: Option<Vec<f32>>,
}

pub fn backward(x: &[f32], w: &[f32], dy: &[f32], s: &ConvShape, want_dx: bool, want_dw: bool, want_db: bool) -> Gradients {
    check(s, x.len(), w.len());
    assert_eq!(dy.len(), s.output_len(), "conv2d backward: output gradient length does not match {s:?}");
    // The input gradient as a forward convolution of `dy` where that is the smaller job (see
    // `input_gradient`); the rest below computes only the weight and bias gradients then.
    let mode = panel_mode();
    // In fer's own GEMM the input gradient is a convolution that packs `dy` straight from its
    // images: that beats wᵀ · dy and col2im on every layer, widening ones included.
    // (Winograd's algorithm, where it applies, takes any channel count.)
    let dy_packs = mode.is_some_and(|mode| s.cout.is_multiple_of(mode.per_lane())) || winograd_mode(s).is_some();
    let transposed =
        (want_dx && s.pad_h < s.kh && s.pad_w < s.kw && (s.cout <= s.cin || dy_packs) && s.plane() > 0).then(|| input_gradient(w, dy, s));
    let want_dx = want_dx && transposed.is_none();
    // The weight gradient by Winograd's algorithm where its forward pass ran so in f32; the bias
    // gradient then on its own (nothing else needs the group loop below).
    let winograd_dw = (want_dw && winograd_mode(s) == Some(Mode::F32)).then(|| winograd::weight_gradient(x, dy, s));
    if winograd_dw.is_some() && !want_dx {
        return Gradients { dx: transposed, dw: winograd_dw, db: want_db.then(|| bias_gradient(dy, s)) };
    }
    let want_dw = want_dw && winograd_dw.is_none();
    let (plane, patch, group) = (s.plane(), s.patch(), s.group());
    let image_len = s.cin * s.h * s.w;
    let groups = s.n.div_ceil(group);
    let parallel_gemm = groups < rayon::current_num_threads();
    let mut dx = if want_dx { vec![0.0f32; s.input_len()] } else { Vec::new() };
    // In fer's own GEMM: the weight gradient's im2col operand packed straight from the input
    // (`conv_operands`), and wᵀ packed once for every group's input-gradient product.
    let planes = mode.filter(|&mode| PaddedPlanes::fits(mode, s));
    let packed_wt = mode.filter(|_| want_dx).map(|mode| PackedA::from_strided(mode, Strided { data: w, rs: 1, cs: patch }, patch, s.cout));
    let work = |gi: usize, dx_group: Option<&mut [f32]>, dw: &mut [f32], db: &mut [f32]| {
        let first = gi * group;
        let images = group.min(s.n - first);
        let width = images * plane;
        // The output gradient of the group as one [cout, images * plane] matrix (a lone image's
        // is already laid out so).
        let g: std::borrow::Cow<[f32]> = if images == 1 {
            std::borrow::Cow::Borrowed(&dy[first * s.cout * plane..(first + 1) * s.cout * plane])
        } else {
            let mut g = scratch(s.cout * width);
            for i in 0..images {
                for co in 0..s.cout {
                    let src = &dy[((first + i) * s.cout + co) * plane..((first + i) * s.cout + co + 1) * plane];
                    g[co * width + i * plane..co * width + (i + 1) * plane].copy_from_slice(src);
                }
            }
            std::borrow::Cow::Owned(g)
        };
        if want_db {
            for co in 0..s.cout {
                db[co] += crate::pointwise::plane_sum(&g[co * width..(co + 1) * width]);
            }
        }
        if let (true, Some(mode)) = (want_dw, planes) {
            let b = PaddedPlanes::new(mode, &x[first * image_len..(first + images) * image_len], s, images);
            // dw[cout, patch] += g[cout, width] · colᵀ[width, patch]
            let g = Left::Strided(Strided { data: &g, rs: width, cs: 1 });
            panel_product(mode, s.cout, patch, width, g, &b, dw, patch, true, parallel_gemm);
        } else if want_dw {
            let mut col = scratch(patch * width);
            im2col(&x[first * image_len..(first + images) * image_len], s, images, &mut col);
            // dw[cout, patch] += g[cout, width] · colᵀ[width, patch]
            sgemm(s.cout, patch, width, (&g, width as isize, 1), (&col, 1, width as isize), dw, patch, true, parallel_gemm);
        }
        if let Some(dx_group) = dx_group {
            let mut col = scratch(patch * width);
            // dcol[patch, width] = wᵀ[patch, cout] · g[cout, width]
            match &packed_wt {
                Some(wt) => {
                    let g = Strided { data: &g, rs: width, cs: 1 };
                    panel_product(wt.mode(), patch, width, s.cout, Left::Packed(wt, 0), &g, &mut col, width, false, parallel_gemm);
                }
                None => sgemm(patch, width, s.cout, (w, 1, patch as isize), (&g, width as isize, 1), &mut col, width, false, parallel_gemm),
            }
            col2im(&col, s, images, dx_group);
        }
    };
    // The weight and bias gradients are sums over images. Each of a fixed number of parts sums
    // its own contiguous run of groups, and the parts are added in order, so the result does not
    // depend on how rayon schedules the work: training repeats bit for bit (resume relies on it).
    let parts = groups.min(PARTS);
    let groups_per_part = groups.div_ceil(parts.max(1));
    // Each part owns its run of images of `dx` (when wanted) and its own (dw, db) partial.
    let mut dx_parts: Vec<Option<&mut [f32]>> = (0..parts).map(|_| None).collect();
    if want_dx {
        for (slot, chunk) in dx_parts.iter_mut().zip(dx.chunks_mut((groups_per_part * group * image_len).max(1))) {
            *slot = Some(chunk);
        }
    }
    let (dws, dbs): (Vec<Vec<f32>>, Vec<Vec<f32>>) = dx_parts
        .into_par_iter()
        .enumerate()
        .map(|(p, dx_part)| {
            let mut dw = vec![0.0f32; if want_dw { s.weight_len() } else { 0 }];
            let mut db = vec![0.0f32; if want_db { s.cout } else { 0 }];
            let part_groups = p * groups_per_part..((p + 1) * groups_per_part).min(groups);
            match dx_part {
                Some(dx_part) => {
                    part_groups.zip(dx_part.chunks_mut(group * image_len)).for_each(|(gi, dx_group)| work(gi, Some(dx_group), &mut dw, &mut db))
                }
                None => part_groups.for_each(|gi| work(gi, None, &mut dw, &mut db)),
            }
            (dw, db)
        })
        .unzip();
    let dw = sum_in_order(if want_dw { s.weight_len() } else { 0 }, &dws);
    let db = sum_in_order(if want_db { s.cout } else { 0 }, &dbs);
    let dx = transposed.or(want_dx.then_some(dx));
    Gradients { dx, dw: winograd_dw.or(want_dw.then_some(dw)), db: want_db.then_some(db) }
}

/// `Σ dy` per output channel, summed exactly as [`backward`]'s group loop sums it (each group's
/// planes as one row in lanes, groups in order within a fixed number of parts, parts in order),
/// so the result does not depend on which path computed the other gradients.
fn bias_gradient(dy: &[f32], s: &ConvShape) -> Vec<f32> {
    let (plane, group) = (s.plane(), s.group());
    let groups = s.n.div_ceil(group);
    let parts = groups.min(PARTS);
    let groups_per_part = groups.div_ceil(parts.max(1));
    let partials: Vec<Vec<f32>> = (0..parts)
        .into_par_iter()
        .map(|p| {
            let mut db = vec![0.0f32; s.cout];
            let mut row = Vec::new();
            for gi in p * groups_per_part..((p + 1) * groups_per_part).min(groups) {
                let (first, images) = (gi * group, group.min(s.n - gi * group));
                for (co, db) in db.iter_mut().enumerate() {
                    row.clear();
                    for i in first..first + images {
                        row.extend_from_slice(&dy[(i * s.cout + co) * plane..(i * s.cout + co + 1) * plane]);
                    }
                    *db += crate::pointwise::plane_sum(&row);
                }
            }
            db
        })
        .collect();
    sum_in_order(s.cout, &partials)
}

/// The input gradient of a stride-1 convolution is itself a convolution: of `dy`, with the
/// kernel turned 180° and its input and output channels swapped, padded `k - 1 - pad`.
///
/// Why not `wᵀ · dy` and col2im: for the CNN's 64-channel 48x48 layer that GEMM sums over only
/// 64 channels while writing a 576-row column matrix that col2im then adds back pixel by pixel;
/// as a convolution the GEMM sums over 576 and writes the gradient once, in place. Where a layer
/// widens (`cout > cin`) the column matrix of `dy` outgrows col2im's and the old way is faster
/// (`fer bench --breakdown`: the CNN's 128→256 and 256→512 layers took 10% longer this way).
fn input_gradient(w: &[f32], dy: &[f32], s: &ConvShape) -> Vec<f32> {
    let (taps, patch) = (s.kh * s.kw, s.patch());
    let mut turned = scratch(s.weight_len());
    for co in 0..s.cout {
        for ci in 0..s.cin {
            for t in 0..taps {
                turned[(ci * s.cout + co) * taps + t] = w[co * patch + ci * taps + taps - 1 - t];
            }
        }
    }
    let t = ConvShape {
        n: s.n,
        cin: s.cout,
        h: s.out_h(),
        w: s.out_w(),
        cout: s.cin,
        kh: s.kh,
        kw: s.kw,
        pad_h: s.kh - 1 - s.pad_h,
        pad_w: s.kw - 1 - s.pad_w,
    };
    debug_assert_eq!((t.out_h(), t.out_w()), (s.h, s.w));
    forward_activated(dy, &turned, None, None, &t, None)
}
