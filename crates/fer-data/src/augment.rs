//! On-the-fly augmentation with the semantics of Keras' `ImageDataGenerator` (what the report
//! used), so a recipe written for Keras means the same thing here.
//!
//! One explicit transform ([`AffineParams`]) follows `keras_preprocessing.image.apply_affine_transform`
//! (keras-preprocessing 1.1.2): rotation, shift, shear and zoom are composed into one 3x3 matrix
//! acting on (row, col) coordinates about the centre `(h/2 + 0.5, w/2 + 0.5)`; the output pixel at
//! `o` samples the input at `M·o + offset` with order-1 (bilinear) interpolation; `tx` moves along
//! rows. A horizontal flip is applied after the affine map, as `ImageDataGenerator.apply_transform`
//! does.

use crate::{PIXELS, SIDE, rng::Rng};

/// How to fill pixels that map from outside the input.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum FillMode {
    /// Repeat the nearest edge pixel (Keras' default).
    Nearest,
    /// A constant value in 0-255.
    Constant(f32),
}

/// One explicit transform, with Keras' names and units (degrees, pixels, zoom factors).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AffineParams {
    pub theta: f64,
    pub tx: f64,
    pub ty: f64,
    pub shear: f64,
    pub zx: f64,
    pub zy: f64,
    pub flip_horizontal: bool,
}

impl Default for AffineParams {
    fn default() -> Self {
        AffineParams { theta: 0.0, tx: 0.0, ty: 0.0, shear: 0.0, zx: 1.0, zy: 1.0, flip_horizontal: false }
    }
}

type Mat3 = [[f64; 3]; 3];

fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

impl AffineParams {
    /// True when the affine part is the identity (Keras then skips resampling).
    pub fn is_identity_affine(&self) -> bool {
        self.theta == 0.0 && self.tx == 0.0 && self.ty == 0.0 && self.shear == 0.0 && self.zx == 1.0 && self.zy == 1.0
    }

    /// The 2x3 map from output (row, col) to input (row, col), centred as Keras centres it.
    pub fn matrix(&self, height: usize, width: usize) -> [[f64; 3]; 2] {
        let mut m: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        if self.theta != 0.0 {
            let t = self.theta.to_radians();
            m = matmul(&m, &[[t.cos(), -t.sin(), 0.0], [t.sin(), t.cos(), 0.0], [0.0, 0.0, 1.0]]);
        }
        if self.tx != 0.0 || self.ty != 0.0 {
            m = matmul(&m, &[[1.0, 0.0, self.tx], [0.0, 1.0, self.ty], [0.0, 0.0, 1.0]]);
        }
        if self.shear != 0.0 {
            let s = self.shear.to_radians();
            m = matmul(&m, &[[1.0, -s.sin(), 0.0], [0.0, s.cos(), 0.0], [0.0, 0.0, 1.0]]);
        }
        if self.zx != 1.0 || self.zy != 1.0 {
            m = matmul(&m, &[[self.zx, 0.0, 0.0], [0.0, self.zy, 0.0], [0.0, 0.0, 1.0]]);
        }
        let (ox, oy) = (height as f64 / 2.0 + 0.5, width as f64 / 2.0 + 0.5);
        let offset = [[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]];
        let reset = [[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]];
        let m = matmul(&matmul(&offset, &m), &reset);
        [m[0], m[1]]
    }
}

/// Applies `params` to one 48x48 face, writing 0-255 floats (no rounding, for training).
pub fn apply_affine_f32(src: &[u8], params: &AffineParams, fill: FillMode, out: &mut [f32]) {
    assert_eq!(src.len(), PIXELS);
    assert_eq!(out.len(), PIXELS);
    let n = SIDE;
    if params.is_identity_affine() {
        for (o, s) in out.iter_mut().zip(src) {
            *o = *s as f32;
        }
    } else {
        let m = params.matrix(n, n);
        let max = (n - 1) as f64;
        for r in 0..n {
            // Input coordinates move linearly along an output row.
            let mut ri = m[0][0] * r as f64 + m[0][2];
            let mut ci = m[1][0] * r as f64 + m[1][2];
            let row = &mut out[r * n..(r + 1) * n];
            for o in row.iter_mut() {
                *o = sample(src, ri, ci, max, fill);
                ri += m[0][1];
                ci += m[1][1];
            }
        }
    }
    if params.flip_horizontal {
        for row in out.chunks_exact_mut(n) {
            row.reverse();
        }
    }
}

#[inline(always)]
fn sample(src: &[u8], r: f64, c: f64, max: f64, fill: FillMode) -> f32 {
    let (r, c) = match fill {
        FillMode::Nearest => (r.clamp(0.0, max), c.clamp(0.0, max)),
        FillMode::Constant(value) => {
            if !(0.0..=max).contains(&r) || !(0.0..=max).contains(&c) {
                return value;
            }
            (r, c)
        }
    };
    let (r0, c0) = (r.floor(), c.floor());
    let (fr, fc) = ((r - r0) as f32, (c - c0) as f32);
    let (r0, c0) = (r0 as usize, c0 as usize);
    let (r1, c1) = ((r0 + 1).min(SIDE - 1), (c0 + 1).min(SIDE - 1));
    let p = |rr: usize, cc: usize| src[rr * SIDE + cc] as f32;
    let top = p(r0, c0) + (p(r0, c1) - p(r0, c0)) * fc;
    let bottom = p(r1, c0) + (p(r1, c1) - p(r1, c0)) * fc;
    top + (bottom - top) * fr
}

/// Applies `params` and rounds to `u8` (half to even, as numpy rounds).
pub fn apply_affine(src: &[u8], params: &AffineParams, fill: FillMode) -> Vec<u8> {
    let mut out = vec![0.0f32; PIXELS];
    apply_affine_f32(src, params, fill, &mut out);
    out.iter().map(|v| v.round_ties_even().clamp(0.0, 255.0) as u8).collect()
}

/// Random-transform ranges, named and interpreted as in Keras' `ImageDataGenerator`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AugmentConfig {
    /// Degrees; theta is drawn from [-r, r].
    pub rotation_range: f64,
    /// Fraction of the width (< 1) or pixels (≥ 1); moves along columns (Keras' `ty`).
    pub width_shift_range: f64,
    /// Fraction of the height (< 1) or pixels (≥ 1); moves along rows (Keras' `tx`).
    pub height_shift_range: f64,
    /// Degrees; shear is drawn from [-r, r].
    pub shear_range: f64,
    /// zx and zy are drawn independently from [1 - z, 1 + z].
    pub zoom_range: f64,
    pub horizontal_flip: bool,
    pub fill_mode: FillMode,
    /// Random erasing (Zhong et al., AAAI 2020), applied after the transform: with this
    /// probability, a rectangle of [`ERASED_AREA`] of the face with an aspect ratio in
    /// [`ERASED_ASPECT`] (log-uniform) is replaced by uniform noise in 0-255. Keras has no such
    /// transform and the report did not use it; 0 (the default) draws nothing, so recipes
    /// without it repeat exactly as before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub erasing: f64,
    /// airbench's alternating flips: with `horizontal_flip`, a face is not flipped by a fresh
    /// coin each time it is seen but by [`alternating_flip`], which shows it both ways in any two
    /// sightings in a row. The caller supplies the flip ([`AugmentConfig::augment_f32_flipped`]);
    /// off (the default, the report) keeps Keras' coin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alternate_flips: bool,
}

/// The flip of a face the `sighting`-th time it is drawn (from 0) under alternating flips: a
/// coin drawn once per face (its `face_coin`, any bits that are fixed for the face over a run),
/// then the other way every other time.
pub fn alternating_flip(face_coin: u64, sighting: usize) -> bool {
    (face_coin & 1 == 1) != (sighting % 2 == 1)
}

/// Fraction of the face a random-erasing rectangle covers: the paper's defaults.
pub const ERASED_AREA: (f64, f64) = (0.02, 0.4);
/// Height over width of a random-erasing rectangle.
pub const ERASED_ASPECT: (f64, f64) = (0.3, 1.0 / 0.3);

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// A rectangle of a face: first row, first column, rows, columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Draws random erasing's rectangle (area and aspect as [`AugmentConfig::erasing`] says), or
/// `None` after ten draws that do not fit the face (the paper's rule; rare at these ranges).
pub fn erased_rect(rng: &mut Rng) -> Option<Rect> {
    for _ in 0..10 {
        let area = rng.uniform(ERASED_AREA.0, ERASED_AREA.1) * PIXELS as f64;
        let aspect = rng.uniform(ERASED_ASPECT.0.ln(), ERASED_ASPECT.1.ln()).exp();
        let height = (area * aspect).sqrt().round() as usize;
        let width = (area / aspect).sqrt().round() as usize;
        if (1..SIDE).contains(&height) && (1..SIDE).contains(&width) {
            let top = (rng.uniform(0.0, (SIDE - height + 1) as f64) as usize).min(SIDE - height);
            let left = (rng.uniform(0.0, (SIDE - width + 1) as f64) as usize).min(SIDE - width);
            return Some(Rect { top, left, height, width });
        }
    }
    None
}

/// Fills `rect` of the face `out` with uniform noise in 0-255.
pub fn erase(out: &mut [f32], rect: Rect, rng: &mut Rng) {
    assert_eq!(out.len(), PIXELS);
    for row in out.chunks_exact_mut(SIDE).skip(rect.top).take(rect.height) {
        for v in &mut row[rect.left..rect.left + rect.width] {
            *v = rng.uniform(0.0, 255.0) as f32;
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all.
    pub fn none() -> Self {
        AugmentConfig {
            rotation_range: 0.0,
            width_shift_range: 0.0,
            height_shift_range: 0.0,
            shear_range: 0.0,
            zoom_range: 0.0,
            horizontal_flip: false,
            fill_mode: FillMode::Nearest,
            erasing: 0.0,
            alternate_flips: false,
        }
    }

    /// The ranges fer uses for the report's recipe (the report names the transforms, not their
    /// ranges): rotation 10°, zoom 0.1, shear 10°, shifts 0.1, horizontal flip.
    pub fn report() -> Self {
        AugmentConfig {
            rotation_range: 10.0,
            width_shift_range: 0.1,
            height_shift_range: 0.1,
            shear_range: 10.0,
            zoom_range: 0.1,
            horizontal_flip: true,
            fill_mode: FillMode::Nearest,
            erasing: 0.0,
            alternate_flips: false,
        }
    }

    pub fn is_none(&self) -> bool {
        *self
            == AugmentConfig {
                fill_mode: self.fill_mode,
                alternate_flips: self.alternate_flips,
                ..AugmentConfig::none()
            }
    }

    /// Draws one transform, in the order Keras' `get_random_transform` draws.
    pub fn sample(&self, rng: &mut Rng) -> AffineParams {
        let symmetric = |rng: &mut Rng, r: f64| if r != 0.0 { rng.uniform(-r, r) } else { 0.0 };
        let theta = symmetric(rng, self.rotation_range);
        let pixels = |range: f64, side: usize| {
            if range < 1.0 { range * side as f64 } else { 1.0 }
        };
        let tx = symmetric(rng, self.height_shift_range) * pixels(self.height_shift_range, SIDE);
        let ty = symmetric(rng, self.width_shift_range) * pixels(self.width_shift_range, SIDE);
        let shear = symmetric(rng, self.shear_range);
        let (zx, zy) = if self.zoom_range != 0.0 {
            let (lo, hi) = (1.0 - self.zoom_range, 1.0 + self.zoom_range);
            (rng.uniform(lo, hi), rng.uniform(lo, hi))
        } else {
            (1.0, 1.0)
        };
        let flip_horizontal = self.horizontal_flip && rng.bool(0.5);
        AffineParams { theta, tx, ty, shear, zx, zy, flip_horizontal }
    }

    /// Draws a transform and applies it: the per-sample, on-the-fly path training uses.
    pub fn augment_f32(&self, src: &[u8], rng: &mut Rng, out: &mut [f32]) {
        self.augment_f32_flipped(src, rng, None, out);
    }

    /// As [`AugmentConfig::augment_f32`], with the horizontal flip given rather than drawn when
    /// `flip` is set and the config flips at all. The coin is still drawn, so every other
    /// transform is the same draw either way.
    pub fn augment_f32_flipped(&self, src: &[u8], rng: &mut Rng, flip: Option<bool>, out: &mut [f32]) {
        let mut params = self.sample(rng);
        if let Some(flip) = flip.filter(|_| self.horizontal_flip) {
            params.flip_horizontal = flip;
        }
        apply_affine_f32(src, &params, self.fill_mode, out);
        if self.erasing > 0.0
            && rng.bool(self.erasing)
            && let Some(rect) = erased_rect(rng)
        {
            erase(out, rect, rng);
        }
    }
}
