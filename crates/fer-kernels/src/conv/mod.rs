//! 2-D convolution (stride 1, any padding) on contiguous NCHW `f32` buffers: one GEMM per group
//! of images, forward and backward.
//!
//! Why not burn's own kernels: flex computes the weight gradient as a convolution with batch and
//! channels swapped and the input gradient as a transposed convolution, each with its own large
//! temporaries. Here all three products are plain GEMMs over the im2col matrix, images are
//! grouped so that every GEMM has at least [`MIN_COLUMNS`] columns (the deep layers have 6x6
//! maps), and the two CPU cores each take whole groups, so no GEMM is split across threads.
//!
//! Two ways to run them: fer's own GEMM ([`crate::gemm`], bf16 on AVX512-BF16 CPUs when asked,
//! f32 on AVX-512 CPUs), whose operands pack straight from the input ([`operands`]) so the im2col
//! matrix is never written, and 3x3 "same" layers by Winograd's algorithm ([`winograd`]); and, on
//! every other CPU, im2col into memory and the portable GEMM ([`crate::gemm::kernel`] says which
//! runs).

pub mod operands;
pub mod winograd;

use rayon::prelude::*;

use crate::gemm::{self, Dims, Left, Mode, Out, PackedA, Strided, Threads};
use crate::scratch::scratch;
use crate::settings;
pub use crate::shape::{ConvShape, GradientsWanted, MIN_COLUMNS};
use operands::{PaddedInput, PaddedPlanes, weight_order};

/// How many partial weight gradients a backward pass sums (fixed, for reproducible sums).
const PARTS: usize = 8;

/// The mode in which [`winograd`] computes `s`, if it does: fer's GEMM, a 3x3 "same"
/// kernel, and an image per core (training batches; a lone image keeps the direct GEMM split
/// across the cores). Not on AMX tiles: there the direct bf16 GEMM runs 2.5-5x faster than on
/// AVX512-BF16 and Winograd's transforms cost more than its products save (0.69-1.02x per
/// layer, docs/PERFORMANCE.md).
fn winograd_mode(s: &ConvShape) -> Option<Mode> {
    let on = settings::winograd() && winograd::fits(s) && s.n >= rayon::current_num_threads();
    gemm::kernel().filter(|&mode| on && !gemm::tiles_for(mode))
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
fn im2col_channels(
    x: &[f32],
    s: &ConvShape,
    images: usize,
    channels: std::ops::Range<usize>,
    col: &mut [f32],
    first: usize,
) {
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
                        let dst = &mut channel
                            [(iy - s.pad_h) * s.w + x0 + j - s.pad_w..(iy - s.pad_h) * s.w + x1 + j - s.pad_w];
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

/// What a forward convolution applies to each output channel as it writes it: `· scale + shift`,
/// then LeakyReLU with `slope` where given. Inference folds BatchNorm into `scale` and `shift`,
/// so a whole conv block is one call and the weights are never rescaled.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finish<'a> {
    pub scale: Option<&'a [f32]>,
    pub shift: Option<&'a [f32]>,
    pub slope: Option<f32>,
}

impl<'a> Finish<'a> {
    /// A plain convolution's bias, nothing else.
    pub fn bias(bias: Option<&'a [f32]>) -> Self {
        Finish { shift: bias, ..Finish::default() }
    }

    fn is_identity(&self) -> bool {
        self.scale.is_none() && self.shift.is_none() && self.slope.is_none()
    }

    /// `dst = src · scale + shift`, then LeakyReLU, for output channel `co` (`src` is `dst` itself
    /// when `None`). A branch-free loop compiled for AVX-512: as a closure it ran element by
    /// element, a tenth of batch-1 latency.
    fn row(&self, dst: &mut [f32], src: Option<&[f32]>, co: usize) {
        let (k, b) = (self.scale.map_or(1.0, |k| k[co]), self.shift.map_or(0.0, |b| b[co]));
        crate::pointwise::affine_leaky_row(dst, src, k, b, self.slope);
    }
}

/// `y = conv(x, w) + b`, NCHW.
pub fn forward(x: &[f32], w: &[f32], b: Option<&[f32]>, s: &ConvShape) -> Vec<f32> {
    forward_activated(x, w, &Finish::bias(b), s)
}

/// `conv(x, w)` with `finish` applied per output channel as the output is written.
pub fn forward_activated(x: &[f32], w: &[f32], finish: &Finish, s: &ConvShape) -> Vec<f32> {
    forward_prepacked(x, w, None, finish, s)
}

/// The weights as the forward convolution multiplies them where it runs in fer's own GEMM
/// (bf16, or f32 on AVX-512 CPUs) and packs its input straight from the images; `None`
/// elsewhere. Inference packs a model's weights once and passes them to [`forward_prepacked`].
pub fn pack_weights(w: &[f32], s: &ConvShape) -> Option<PackedA> {
    assert_eq!(w.len(), s.weight_len(), "conv2d: weight length does not match {s:?}");
    let patch = s.patch();
    let mode = gemm::kernel().filter(|&mode| PaddedInput::fits(mode, s))?;
    let order: Vec<usize> = (0..patch).map(|k| weight_order(mode, s, k)).collect();
    Some(PackedA::new(mode, s.cout, patch, |co, k| w[co * patch + order[k]]))
}

/// [`forward_activated`] with `w` already packed by [`pack_weights`] (ignored where that gives
/// `None`, i.e. the precision or the shape does not use it).
pub fn forward_prepacked(x: &[f32], w: &[f32], packed: Option<&PackedA>, finish: &Finish, s: &ConvShape) -> Vec<f32> {
    check(s, x.len(), w.len());
    // 3x3 "same" convolutions by Winograd's algorithm (f32 or bf16), where every core gets images
    // of its own (training, and the input gradient, which is such a convolution too).
    if let Some(mode) = winograd_mode(s).filter(|_| packed.is_none()) {
        return winograd::forward(x, w, s, mode, &|plane: &mut [f32], co: usize| finish.row(plane, None, co));
    }
    // In fer's own GEMM, where the input packs straight from the images: the weights packed
    // once for every group (`operands`).
    let mode = gemm::kernel().filter(|&mode| PaddedInput::fits(mode, s));
    let own = if mode.is_some() && packed.is_none() { pack_weights(w, s) } else { None };
    let packed = match (mode, packed.or(own.as_ref())) {
        (Some(mode), Some(p)) => {
            assert!(
                p.rows() == s.cout && p.depth() == s.patch() && p.mode() == mode,
                "conv2d: packed weights do not match {s:?}"
            );
            Some((mode, p))
        }
        _ => None,
    };
    let group = s.group();
    let threads = gemm_threads(s);
    let job = Forward { x, w, s, finish, threads };
    let mut y = scratch(s.output_len());
    y.par_chunks_mut(group * s.cout * s.plane()).enumerate().for_each(|(gi, out)| match packed {
        Some((mode, packed)) => job.group_packed(gi * group, out, mode, packed),
        None => job.group_im2col(gi * group, out),
    });
    y
}

/// All the cores for each GEMM where there are fewer image groups than cores (a small batch),
/// else one core per group.
fn gemm_threads(s: &ConvShape) -> Threads {
    Threads::all_if(s.n.div_ceil(s.group()) < rayon::current_num_threads())
}

/// One forward convolution, run a group of images at a time (each group's product has at least
/// [`MIN_COLUMNS`] columns).
struct Forward<'a> {
    x: &'a [f32],
    w: &'a [f32],
    s: &'a ConvShape,
    finish: &'a Finish<'a>,
    /// All the cores for one product where there are fewer groups than cores.
    threads: Threads,
}

impl Forward<'_> {
    /// The images of the group starting at image `first`: as many as `out` holds.
    fn input(&self, first: usize, out: &[f32]) -> (&[f32], usize) {
        let s = self.s;
        let images = out.len() / (s.cout * s.plane());
        (&self.x[first * s.cin * s.h * s.w..(first + images) * s.cin * s.h * s.w], images)
    }

    /// A group's product `prod[cout, images * plane]` into the output's NCHW order, finished.
    fn scatter(&self, prod: &[f32], out: &mut [f32], images: usize) {
        let (plane, cout) = (self.s.plane(), self.s.cout);
        let width = images * plane;
        for g in 0..images {
            for co in 0..cout {
                let dst = &mut out[(g * cout + co) * plane..(g * cout + co + 1) * plane];
                self.finish.row(dst, Some(&prod[co * width + g * plane..co * width + (g + 1) * plane]), co);
            }
        }
    }

    /// A lone image's product, already in the output's `[cout, plane]` order, finished in place.
    fn finish_in_place(&self, out: &mut [f32]) {
        if !self.finish.is_identity() {
            for (co, row) in out.chunks_mut(self.s.plane()).enumerate() {
                self.finish.row(row, None, co);
            }
        }
    }

    /// In fer's own GEMM: the right operand packs straight from the images.
    fn group_packed(&self, first: usize, out: &mut [f32], mode: Mode, packed: &PackedA) {
        let s = self.s;
        let (input, images) = self.input(first, out);
        let width = images * s.plane();
        let b = PaddedInput::new(mode, input, s, images);
        let dims = Dims { m: s.cout, n: width, k: s.patch() };
        if images == 1 {
            gemm::multiply_in(mode, dims, Left::Packed(packed, 0), &b, Out::write(out, width), self.threads);
            self.finish_in_place(out);
        } else {
            let mut prod = scratch(s.cout * width);
            gemm::multiply_in(mode, dims, Left::Packed(packed, 0), &b, Out::write(&mut prod, width), self.threads);
            self.scatter(&prod, out, images);
        }
    }

    /// Everywhere else: im2col into memory, then the portable GEMM.
    fn group_im2col(&self, first: usize, out: &mut [f32]) {
        let (s, w) = (self.s, self.w);
        let (input, images) = self.input(first, out);
        let (plane, patch) = (s.plane(), s.patch());
        let width = images * plane;
        let mut col = scratch(patch * width);
        if images == 1 && self.threads == Threads::All {
            // A lone image (batch 1): split im2col by input channel and the product by output
            // channel across the cores; the product already has the output's [cout, plane] layout.
            im2col_parallel(input, s, &mut col);
            let rows = s.cout.div_ceil(rayon::current_num_threads()).max(1);
            out.par_chunks_mut(rows * plane).enumerate().for_each(|(part, out)| {
                let first = part * rows;
                let count = out.len() / plane;
                let weights = Strided { data: &w[first * patch..], rs: patch, cs: 1 };
                let dims = Dims { m: count, n: width, k: patch };
                gemm::multiply(
                    dims,
                    weights,
                    Strided { data: &col, rs: width, cs: 1 },
                    Out::write(out, width),
                    Threads::One,
                );
                for (r, row) in out.chunks_mut(plane).enumerate() {
                    self.finish.row(row, None, first + r);
                }
            });
            return;
        }
        im2col(input, s, images, &mut col);
        let (weights, dims) = (Strided { data: w, rs: patch, cs: 1 }, Dims { m: s.cout, n: width, k: patch });
        if images == 1 {
            gemm::multiply(
                dims,
                weights,
                Strided { data: &col, rs: width, cs: 1 },
                Out::write(out, width),
                self.threads,
            );
            self.finish_in_place(out);
            return;
        }
        let mut prod = scratch(s.cout * width);
        gemm::multiply(
            dims,
            weights,
            Strided { data: &col, rs: width, cs: 1 },
            Out::write(&mut prod, width),
            self.threads,
        );
        self.scatter(&prod, out, images);
    }
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

/// The gradients `want` asks for, given the output gradient `dy`.
pub fn backward(x: &[f32], w: &[f32], dy: &[f32], s: &ConvShape, want: GradientsWanted) -> Gradients {
    check(s, x.len(), w.len());
    assert_eq!(dy.len(), s.output_len(), "conv2d backward: output gradient length does not match {s:?}");
    // The input gradient as a forward convolution of `dy` where that is the smaller job (see
    // `input_gradient`); the rest below computes only the weight and bias gradients then.
    let mode = gemm::kernel();
    // In fer's own GEMM the input gradient is a convolution that packs `dy` straight from its
    // images: that beats wᵀ · dy and col2im on every layer, widening ones included.
    // (Winograd's algorithm, where it applies, takes any channel count.)
    let dy_packs = mode.is_some_and(|mode| s.cout.is_multiple_of(mode.per_lane())) || winograd_mode(s).is_some();
    let transposed = (want.input && s.pad_h < s.kh && s.pad_w < s.kw && (s.cout <= s.cin || dy_packs) && s.plane() > 0)
        .then(|| input_gradient(w, dy, s));
    // The weight gradient by Winograd's algorithm where its forward pass ran so in f32; the bias
    // gradient then on its own (nothing else needs the group loop below).
    let winograd_dw = (want.weight && winograd_mode(s) == Some(Mode::F32)).then(|| winograd::weight_gradient(x, dy, s));
    let left = GradientsWanted {
        input: want.input && transposed.is_none(),
        weight: want.weight && winograd_dw.is_none(),
        bias: want.bias,
    };
    if winograd_dw.is_some() && !left.input {
        return Gradients { dx: transposed, dw: winograd_dw, db: want.bias.then(|| bias_gradient(dy, s)) };
    }
    let packed_wt = mode
        .filter(|_| left.input)
        .map(|mode| PackedA::from_strided(mode, Strided { data: w, rs: 1, cs: s.patch() }, s.patch(), s.cout));
    let threads = gemm_threads(s);
    let job = Backward {
        x,
        w,
        dy,
        s,
        want: left,
        planes: mode.filter(|&mode| PaddedPlanes::fits(mode, s)),
        packed_wt,
        threads,
    };
    let g = job.run();
    Gradients { dx: transposed.or(g.dx), dw: winograd_dw.or(g.dw), db: g.db }
}

/// The gradients one backward pass computes in its group loop, a group of images at a time.
struct Backward<'a> {
    x: &'a [f32],
    w: &'a [f32],
    dy: &'a [f32],
    s: &'a ConvShape,
    want: GradientsWanted,
    /// The mode in which the weight gradient's im2col operand packs straight from the input
    /// (`operands`), if it does.
    planes: Option<Mode>,
    /// wᵀ packed once for every group's input-gradient product, in fer's own GEMM.
    packed_wt: Option<PackedA>,
    threads: Threads,
}

impl Backward<'_> {
    /// The weight and bias gradients are sums over images. Each of a fixed number of parts sums
    /// its own contiguous run of groups, and the parts are added in order, so the result does not
    /// depend on how rayon schedules the work: training repeats bit for bit (resume relies on it).
    fn run(&self) -> Gradients {
        let (s, want) = (self.s, self.want);
        let (group, image_len) = (s.group(), s.cin * s.h * s.w);
        let groups = s.n.div_ceil(group);
        let parts = groups.min(PARTS);
        let groups_per_part = groups.div_ceil(parts.max(1));
        let mut dx = if want.input { vec![0.0f32; s.input_len()] } else { Vec::new() };
        // Each part owns its run of images of `dx` (when wanted) and its own (dw, db) partial.
        let mut dx_parts: Vec<Option<&mut [f32]>> = (0..parts).map(|_| None).collect();
        if want.input {
            for (slot, chunk) in dx_parts.iter_mut().zip(dx.chunks_mut((groups_per_part * group * image_len).max(1))) {
                *slot = Some(chunk);
            }
        }
        let (dws, dbs): (Vec<Vec<f32>>, Vec<Vec<f32>>) = dx_parts
            .into_par_iter()
            .enumerate()
            .map(|(p, dx_part)| {
                let mut dw = vec![0.0f32; if want.weight { s.weight_len() } else { 0 }];
                let mut db = vec![0.0f32; if want.bias { s.cout } else { 0 }];
                let part_groups = p * groups_per_part..((p + 1) * groups_per_part).min(groups);
                match dx_part {
                    Some(dx_part) => part_groups
                        .zip(dx_part.chunks_mut(group * image_len))
                        .for_each(|(gi, dx_group)| self.group(gi, Some(dx_group), &mut dw, &mut db)),
                    None => part_groups.for_each(|gi| self.group(gi, None, &mut dw, &mut db)),
                }
                (dw, db)
            })
            .unzip();
        let dw = sum_in_order(if want.weight { s.weight_len() } else { 0 }, &dws);
        let db = sum_in_order(if want.bias { s.cout } else { 0 }, &dbs);
        Gradients { dx: want.input.then_some(dx), dw: want.weight.then_some(dw), db: want.bias.then_some(db) }
    }

    /// The output gradient of the images `first..first + images` as one `[cout, images * plane]`
    /// matrix (a lone image's is already laid out so).
    fn output_gradient(&self, first: usize, images: usize) -> std::borrow::Cow<'_, [f32]> {
        let (s, dy, plane) = (self.s, self.dy, self.s.plane());
        if images == 1 {
            return std::borrow::Cow::Borrowed(&dy[first * s.cout * plane..(first + 1) * s.cout * plane]);
        }
        let width = images * plane;
        let mut g = scratch(s.cout * width);
        for i in 0..images {
            for co in 0..s.cout {
                let src = &dy[((first + i) * s.cout + co) * plane..((first + i) * s.cout + co + 1) * plane];
                g[co * width + i * plane..co * width + (i + 1) * plane].copy_from_slice(src);
            }
        }
        std::borrow::Cow::Owned(g)
    }

    /// Group `gi`'s share: its input gradient into `dx_group`, its weight and bias gradients added
    /// to `dw` and `db`.
    fn group(&self, gi: usize, dx_group: Option<&mut [f32]>, dw: &mut [f32], db: &mut [f32]) {
        let (s, want, threads) = (self.s, self.want, self.threads);
        let (group, image_len, patch) = (s.group(), s.cin * s.h * s.w, s.patch());
        let first = gi * group;
        let images = group.min(s.n - first);
        let width = images * s.plane();
        let g = self.output_gradient(first, images);
        if want.bias {
            for co in 0..s.cout {
                db[co] += crate::pointwise::plane_sum(&g[co * width..(co + 1) * width]);
            }
        }
        let input = &self.x[first * image_len..(first + images) * image_len];
        // dw[cout, patch] += g[cout, width] · colᵀ[width, patch]
        let dw_dims = Dims { m: s.cout, n: patch, k: width };
        let g_left = Strided { data: &g, rs: width, cs: 1 };
        match self.planes {
            Some(mode) if want.weight => {
                let b = PaddedPlanes::new(mode, input, s, images);
                gemm::multiply_in(mode, dw_dims, Left::Strided(g_left), &b, Out::add(dw, patch), threads);
            }
            _ if want.weight => {
                let mut col = scratch(patch * width);
                im2col(input, s, images, &mut col);
                let col_t = Strided { data: &col, rs: 1, cs: width };
                gemm::multiply(dw_dims, g_left, col_t, Out::add(dw, patch), threads);
            }
            _ => {}
        }
        if let Some(dx_group) = dx_group {
            let mut col = scratch(patch * width);
            // dcol[patch, width] = wᵀ[patch, cout] · g[cout, width]
            let dims = Dims { m: patch, n: width, k: s.cout };
            match &self.packed_wt {
                Some(wt) => gemm::multiply_in(
                    wt.mode(),
                    dims,
                    Left::Packed(wt, 0),
                    &g_left,
                    Out::write(&mut col, width),
                    threads,
                ),
                None => {
                    let w_t = Strided { data: self.w, rs: 1, cs: patch };
                    gemm::multiply(dims, w_t, g_left, Out::write(&mut col, width), threads)
                }
            }
            col2im(&col, s, images, dx_group);
        }
    }
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
    forward_activated(dy, &turned, &Finish::default(), &t)
}
