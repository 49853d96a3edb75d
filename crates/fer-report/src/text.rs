//! Anti-aliased text from DejaVu Sans, shipped in `fonts/` and rasterised by `ab_glyph`: the same
//! outlines and the same arithmetic on every machine, so figures stay byte-stable and never depend
//! on the fonts a machine happens to have.
//!
//! Sizes are CSS pixels per em, SVG's `font-size`, so a figure's PNG and its SVG twin agree.

use std::sync::LazyLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use image::RgbImage;

static REGULAR: LazyLock<FontRef<'static>> = LazyLock::new(|| {
    FontRef::try_from_slice(include_bytes!("../fonts/DejaVuSans.ttf"))
        .expect("the embedded DejaVu Sans is a valid font (tested)")
});
static BOLD: LazyLock<FontRef<'static>> = LazyLock::new(|| {
    FontRef::try_from_slice(include_bytes!("../fonts/DejaVuSans-Bold.ttf"))
        .expect("the embedded DejaVu Sans Bold is a valid font (tested)")
});

/// The font family SVG twins ask for; DejaVu Sans is what the PNGs are drawn with.
pub const SVG_FONT_FAMILY: &str = "'DejaVu Sans', Verdana, Arial, sans-serif";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Weight {
    #[default]
    Regular,
    Bold,
}

/// Where the text's x coordinate sits, as SVG's `text-anchor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Anchor {
    #[default]
    Start,
    Middle,
    End,
}

/// How a piece of text looks: size in pixels per em, weight, colour and anchor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextStyle {
    pub size: f32,
    pub weight: Weight,
    pub colour: [u8; 3],
    pub anchor: Anchor,
}

impl TextStyle {
    pub const fn new(size: f32, colour: [u8; 3]) -> Self {
        TextStyle { size, weight: Weight::Regular, colour, anchor: Anchor::Start }
    }
    pub const fn bold(mut self) -> Self {
        self.weight = Weight::Bold;
        self
    }
    pub const fn anchored(mut self, anchor: Anchor) -> Self {
        self.anchor = anchor;
        self
    }
}

fn font(weight: Weight) -> &'static FontRef<'static> {
    match weight {
        Weight::Regular => &REGULAR,
        Weight::Bold => &BOLD,
    }
}

/// ab_glyph scales by ascent minus descent; CSS and SVG by the em.
fn px_scale(font: &FontRef<'static>, size: f32) -> PxScale {
    PxScale::from(size * font.height_unscaled() / font.units_per_em().unwrap_or(2048.0))
}

/// Advance width of `text` in pixels (no kerning: the subset keeps no kerning table).
pub fn text_width(text: &str, size: f32, weight: Weight) -> f32 {
    let font = font(weight);
    let scaled = font.as_scaled(px_scale(font, size));
    text.chars().map(|c| scaled.h_advance(font.glyph_id(c))).sum()
}

/// Height of capitals and ascenders above the baseline, in pixels.
pub fn ascent(size: f32, weight: Weight) -> f32 {
    let font = font(weight);
    font.as_scaled(px_scale(font, size)).ascent()
}

/// Depth of descenders below the baseline, in pixels (positive).
pub fn descent(size: f32, weight: Weight) -> f32 {
    let font = font(weight);
    -font.as_scaled(px_scale(font, size)).descent()
}

/// A line of text rendered as coverage in [0, 1]; the pen starts at (`PAD`, `baseline`).
struct Mask {
    width: usize,
    height: usize,
    baseline: usize,
    coverage: Vec<f32>,
}

const PAD: usize = 2;

fn render(text: &str, size: f32, weight: Weight) -> Mask {
    let font = font(weight);
    let scale = px_scale(font, size);
    let scaled = font.as_scaled(scale);
    let baseline = scaled.ascent().ceil() as usize + PAD;
    let width = text_width(text, size, weight).ceil() as usize + 2 * PAD + 1;
    let height = baseline + scaled.descent().abs().ceil() as usize + PAD;
    let mut coverage = vec![0f32; width * height];
    let mut pen = PAD as f32;
    for c in text.chars() {
        let id = font.glyph_id(c);
        let glyph = id.with_scale_and_position(scale, point(pen, baseline as f32));
        pen += scaled.h_advance(id);
        let Some(outlined) = font.outline_glyph(glyph) else { continue };
        let bounds = outlined.px_bounds();
        outlined.draw(|gx, gy, c| {
            let (x, y) = (bounds.min.x as i64 + gx as i64, bounds.min.y as i64 + gy as i64);
            if (0..width as i64).contains(&x) && (0..height as i64).contains(&y) {
                let cell = &mut coverage[y as usize * width + x as usize];
                *cell = (*cell + c).min(1.0);
            }
        });
    }
    Mask { width, height, baseline, coverage }
}

/// Blends `colour` at `alpha` over an opaque RGB pixel.
pub(crate) fn blend(pixel: &mut [u8], colour: [u8; 3], alpha: f32) {
    for (p, c) in pixel.iter_mut().zip(colour) {
        *p = (*p as f32 * (1.0 - alpha) + c as f32 * alpha).round() as u8;
    }
}

/// Calls `put(x, y, alpha)` for every inked pixel of `text` anchored at (`x`, `baseline`), turned a
/// quarter anticlockwise about that point when `vertical` (reading upwards, as a y-axis label).
pub(crate) fn rasterise(
    text: &str,
    x: f32,
    baseline: f32,
    style: TextStyle,
    vertical: bool,
    mut put: impl FnMut(i64, i64, f32),
) {
    if text.is_empty() || !(style.size > 0.0 && style.size.is_finite()) {
        return;
    }
    let mask = render(text, style.size, style.weight);
    let shift = match style.anchor {
        Anchor::Start => 0.0,
        Anchor::Middle => text_width(text, style.size, style.weight) / 2.0,
        Anchor::End => text_width(text, style.size, style.weight),
    };
    let (ox, oy) = (x.round() as i64, baseline.round() as i64);
    let shift = shift.round() as i64;
    for my in 0..mask.height {
        for mx in 0..mask.width {
            let alpha = mask.coverage[my * mask.width + mx];
            if alpha <= 0.0 {
                continue;
            }
            // Offsets from the anchor along the text (dx) and down from the baseline (dy).
            let (dx, dy) = (mx as i64 - PAD as i64 - shift, my as i64 - mask.baseline as i64);
            let (px, py) = if vertical { (ox + dy, oy - dx) } else { (ox + dx, oy + dy) };
            put(px, py, alpha);
        }
    }
}

/// Draws `text` on an image with its baseline at `baseline`.
pub fn draw_text(img: &mut RgbImage, text: &str, x: f32, baseline: f32, style: TextStyle) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    rasterise(text, x, baseline, style, false, |px, py, alpha| {
        if (0..w).contains(&px) && (0..h).contains(&py) {
            blend(&mut img.get_pixel_mut(px as u32, py as u32).0, style.colour, alpha);
        }
    });
}

/// Formats an integer with thousands separators: 4087879 -> "4,087,879".
pub fn thousands(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn both_embedded_fonts_parse_and_cover_the_labels_figures_use() {
        for weight in [Weight::Regular, Weight::Bold] {
            let f = font(weight);
            assert_eq!(f.units_per_em(), Some(2048.0));
            for c in "Angry Disgust Fear Happy Sad Surprise Neutral 0123456789.,%()-–≥×°".chars() {
                assert_ne!(f.glyph_id(c).0, 0, "{c:?} missing from the {weight:?} subset");
            }
        }
    }

    #[test]
    fn widths_follow_the_font_metrics() {
        // DejaVu Sans: 'H' advances 1540 units of 2048 per em, a space 651.
        let w = text_width("HH H", 20.48, Weight::Regular);
        assert!((w - (3.0 * 15.40 + 6.51)).abs() < 0.02, "{w}");
        assert!(text_width("Surprise", 13.0, Weight::Bold) > text_width("Surprise", 13.0, Weight::Regular));
        assert!((ascent(20.48, Weight::Regular) - 19.01).abs() < 0.05, "{}", ascent(20.48, Weight::Regular));
    }

    #[test]
    fn text_is_antialiased_and_sits_on_its_baseline() {
        let mut img = RgbImage::from_pixel(80, 30, Rgb([255, 255, 255]));
        draw_text(&mut img, "Happy", 4.0, 20.0, TextStyle::new(16.0, [0, 0, 0]));
        let inked: Vec<(u32, u32, u8)> =
            img.enumerate_pixels().filter(|(_, _, p)| p.0[0] < 255).map(|(x, y, p)| (x, y, p.0[0])).collect();
        assert!(inked.iter().any(|p| p.2 == 0), "fully covered pixels are black");
        assert!(inked.iter().any(|p| p.2 > 40 && p.2 < 215), "edges are grey: anti-aliased");
        // Capitals rise ~11.7 px above the baseline; only the descender of 'p'/'y' goes below it.
        let top = inked.iter().map(|p| p.1).min().unwrap_or(0);
        assert!((7..=9).contains(&top), "top row {top}");
        let bottom = inked.iter().map(|p| p.1).max().unwrap_or(0);
        assert!((23..=25).contains(&bottom), "bottom row {bottom}");
        let left = inked.iter().map(|p| p.0).min().unwrap_or(0);
        assert!((4..=6).contains(&left), "left column {left}");
    }

    #[test]
    fn anchors_and_vertical_text_turn_about_the_anchor() {
        let style = TextStyle::new(14.0, [0, 0, 0]);
        let extent = |anchor: Anchor, vertical: bool| {
            let (mut lo, mut hi) = ((i64::MAX, i64::MAX), (i64::MIN, i64::MIN));
            rasterise("Accuracy", 100.0, 100.0, style.anchored(anchor), vertical, |x, y, _| {
                lo = (lo.0.min(x), lo.1.min(y));
                hi = (hi.0.max(x), hi.1.max(y));
            });
            (lo, hi)
        };
        let w = text_width("Accuracy", 14.0, Weight::Regular);
        let (lo, hi) = extent(Anchor::End, false);
        assert!(hi.0 <= 100 && hi.0 >= 98 && (lo.0 as f32 - (100.0 - w)).abs() <= 2.0, "{lo:?} {hi:?}");
        let (lo, hi) = extent(Anchor::Middle, true);
        // Reading upwards: the text spans y around the anchor, and sits left of x (ascenders).
        assert!(((lo.1 + hi.1) as f32 / 2.0 - 100.0).abs() <= 2.0, "{lo:?} {hi:?}");
        assert!(hi.0 <= 104 && lo.0 >= 100 - 12, "{lo:?} {hi:?}");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0u32), "0");
        assert_eq!(thousands(999u32), "999");
        assert_eq!(thousands(1000u32), "1,000");
        assert_eq!(thousands(4_087_879u32), "4,087,879");
        assert_eq!(thousands(-1_920_000i64), "-1,920,000");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}
