//! Drawing primitives: a perceptually uniform colour map (viridis), overlays on a face, and
//! labelled grids, as PNG through the `image` crate. Labels use a built-in 3x5 pixel font, so
//! output never depends on the machine's fonts.

use image::{GrayImage, Rgb, RgbImage};

/// Viridis at `t` in [0, 1] (a 6th-degree polynomial fit of matplotlib's table, error < 1%).
pub fn viridis(t: f32) -> [u8; 3] {
    const C: [[f32; 3]; 7] = [
        [0.277_727_33, 0.005_407_344_5, 0.334_099_8],
        [0.105_093_04, 1.404_613_5, 1.384_590_2],
        [-0.330_861_83, 0.214_847_56, 0.095_095_16],
        [-4.634_230_5, -5.799_101, -19.332_441],
        [6.228_27, 14.179_933, 56.690_55],
        [4.776_385, -13.745_145, -65.353_03],
        [-5.435_456, 4.645_852_6, 26.312_435],
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let mut rgb = [0u8; 3];
    for (ch, out) in rgb.iter_mut().enumerate() {
        let v = C.iter().rev().fold(0.0f32, |acc, c| acc * t + c[ch]);
        *out = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    }
    rgb
}

/// Scales `values` to [0, 1] by their min and max (a constant map becomes all zeros).
pub fn normalize(values: &[f32]) -> Vec<f32> {
    let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let span = hi - lo;
    values.iter().map(|v| if span > 0.0 { (v - lo) / span } else { 0.0 }).collect()
}

/// A map (row-major, `width` x `height`) as a viridis heat image, min-max normalised.
pub fn heatmap(values: &[f32], width: u32, height: u32) -> RgbImage {
    let t = normalize(values);
    RgbImage::from_fn(width, height, |x, y| Rgb(viridis(t[(y * width + x) as usize])))
}

/// A grayscale image from [0, 1] values (or min-max normalised when `normalise`).
pub fn gray(values: &[f32], width: u32, height: u32, normalise: bool) -> RgbImage {
    let t = if normalise { normalize(values) } else { values.iter().map(|v| v.clamp(0.0, 1.0)).collect() };
    RgbImage::from_fn(width, height, |x, y| {
        let v = (t[(y * width + x) as usize] * 255.0).round() as u8;
        Rgb([v, v, v])
    })
}

/// The face in gray with the heat map blended over it (`alpha` of the map).
pub fn overlay(face: &GrayImage, map: &[f32], alpha: f32) -> RgbImage {
    let heat = heatmap(map, face.width(), face.height());
    RgbImage::from_fn(face.width(), face.height(), |x, y| {
        let g = face.get_pixel(x, y).0[0] as f32;
        let h = heat.get_pixel(x, y).0;
        Rgb(h.map(|c| (alpha * c as f32 + (1.0 - alpha) * g).round() as u8))
    })
}

/// Nearest-neighbour enlargement by an integer factor, so 48x48 maps stay crisp.
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    let f = factor.max(1);
    RgbImage::from_fn(img.width() * f, img.height() * f, |x, y| *img.get_pixel(x / f, y / f))
}

const GLYPHS: &[(char, &str)] = &[
    ('0', "111101101101111"),
    ('1', "010110010010111"),
    ('2', "111001111100111"),
    ('3', "111001111001111"),
    ('4', "101101111001001"),
    ('5', "111100111001111"),
    ('6', "111100111101111"),
    ('7', "111001001001001"),
    ('8', "111101111101111"),
    ('9', "111101111001111"),
    ('A', "010101111101101"),
    ('B', "110101110101110"),
    ('C', "011100100100011"),
    ('D', "110101101101110"),
    ('E', "111100110100111"),
    ('F', "111100110100100"),
    ('G', "011100101101011"),
    ('H', "101101111101101"),
    ('I', "111010010010111"),
    ('J', "001001001101010"),
    ('K', "101101110101101"),
    ('L', "100100100100111"),
    ('M', "101111111101101"),
    ('N', "110101101101101"),
    ('O', "010101101101010"),
    ('P', "110101110100100"),
    ('Q', "010101101110011"),
    ('R', "110101110101101"),
    ('S', "011100010001110"),
    ('T', "111010010010010"),
    ('U', "101101101101111"),
    ('V', "101101101101010"),
    ('W', "101101111111101"),
    ('X', "101101010101101"),
    ('Y', "101101010010010"),
    ('Z', "111001010100111"),
    ('.', "000000000000010"),
    ('-', "000000111000000"),
    (':', "000010000010000"),
    ('%', "101001010100101"),
    ('(', "001010010010001"),
    (')', "100010010010100"),
    ('_', "000000000000111"),
    ('=', "000111000111000"),
    ('/', "001001010100100"),
    ('+', "000010111010000"),
];

/// Draws `text` at (x, y) with the 3x5 font, each font pixel `scale` pixels wide.
pub fn draw_text(img: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32, color: [u8; 3]) {
    let mut cx = x;
    for ch in text.chars().map(|c| c.to_ascii_uppercase()) {
        if let Some((_, bits)) = GLYPHS.iter().find(|(g, _)| *g == ch) {
            for (i, b) in bits.bytes().enumerate() {
                if b == b'1' {
                    let (gx, gy) = ((i % 3) as u32, (i / 3) as u32);
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (cx + gx * scale + dx, y + gy * scale + dy);
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, Rgb(color));
                            }
                        }
                    }
                }
            }
        }
        cx += 4 * scale;
    }
}

/// Width in pixels of `text` drawn at `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    (text.chars().count() as u32 * 4).saturating_sub(1) * scale
}

/// Tiles equally sized images in `columns`, each with an optional label above it.
pub fn grid(tiles: &[RgbImage], labels: &[String], columns: usize, gap: u32, label_scale: u32) -> RgbImage {
    let Some(first) = tiles.first() else {
        return RgbImage::new(1, 1);
    };
    let (tw, th) = (first.width(), first.height());
    let columns = columns.max(1).min(tiles.len());
    let rows = tiles.len().div_ceil(columns);
    let label_h = if labels.is_empty() { 0 } else { 5 * label_scale + 2 * label_scale };
    let (cell_w, cell_h) = (tw + gap, th + gap + label_h);
    let mut out = RgbImage::from_pixel(columns as u32 * cell_w + gap, rows as u32 * cell_h + gap, Rgb([255, 255, 255]));
    for (i, tile) in tiles.iter().enumerate() {
        let (col, row) = ((i % columns) as u32, (i / columns) as u32);
        let (x0, y0) = (gap + col * cell_w, gap + row * cell_h);
        if let Some(label) = labels.get(i) {
            draw_text(&mut out, label, x0, y0, label_scale, [0, 0, 0]);
        }
        image::imageops::overlay(&mut out, tile, x0 as i64, (y0 + label_h) as i64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_matches_matplotlib_at_known_points() {
        // matplotlib's viridis: 0 -> #440154, 0.5 -> #21918c, 1 -> #fde725.
        let close = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(x, y)| (*x as i32 - y as i32).abs() <= 4);
        assert!(close(viridis(0.0), [0x44, 0x01, 0x54]), "{:?}", viridis(0.0));
        assert!(close(viridis(0.5), [0x21, 0x91, 0x8c]), "{:?}", viridis(0.5));
        assert!(close(viridis(1.0), [0xfd, 0xe7, 0x25]), "{:?}", viridis(1.0));
        // Perceptually ordered: luminance rises monotonically.
        let lum = |c: [u8; 3]| 0.2126 * c[0] as f32 + 0.7152 * c[1] as f32 + 0.0722 * c[2] as f32;
        assert!((0..100).all(|i| lum(viridis(i as f32 / 100.0)) < lum(viridis((i + 1) as f32 / 100.0))));
    }

    #[test]
    fn grid_places_tiles_and_labels() {
        let tile = RgbImage::from_pixel(4, 4, Rgb([10, 20, 30]));
        let g = grid(&[tile.clone(), tile.clone(), tile], &["A".into(), "B".into(), "C".into()], 2, 1, 1);
        assert_eq!((g.width(), g.height()), (11, 2 * (4 + 1 + 7) + 1));
        assert_eq!(g.get_pixel(1, 8).0, [10, 20, 30]);
        assert_eq!(g.get_pixel(2, 1).0, [0, 0, 0], "the A's top bar");
    }
}
