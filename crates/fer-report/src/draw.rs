//! Pixel maps: a perceptually uniform colour map (viridis), heat maps, overlays on a face and
//! crisp enlargement. Charts and labelled grids are in `charts`, text in `text`.

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
}
