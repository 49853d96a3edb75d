//! Procedurally drawn 48x48 faces whose expression encodes the class: mouth curve and
//! openness, brow angle and height, eye openness. Position, scale, tilt, lighting and noise vary
//! at random, so a small CNN must find the mouth and brows to tell classes apart — which is
//! where a saliency map of a model trained on them ought to land. Deterministic for a seed.

use crate::{Dataset, Emotion, PIXELS, SIDE, rng::Rng};

/// The expression of one class, in face units (the face is about 34 x 42 px).
#[derive(Clone, Copy, Debug)]
struct Expression {
    /// Positive raises the inner ends of the brows (sad, fear); negative lowers them (angry).
    brow_tilt: f64,
    /// Positive raises both brows.
    brow_raise: f64,
    /// 1 is a normal eye; below narrows, above widens.
    eye_open: f64,
    /// Positive curves the mouth into a smile, negative into a frown.
    mouth_curve: f64,
    /// Half-width of the mouth.
    mouth_width: f64,
    /// Height of an open mouth (0 = closed line).
    mouth_open: f64,
    /// One corner up, the other down (disgust).
    mouth_skew: f64,
}

fn expression(label: Emotion) -> Expression {
    let base = Expression {
        brow_tilt: 0.0,
        brow_raise: 0.0,
        eye_open: 1.0,
        mouth_curve: 0.0,
        mouth_width: 6.0,
        mouth_open: 0.0,
        mouth_skew: 0.0,
    };
    match label {
        Emotion::Angry => {
            Expression { brow_tilt: -3.0, brow_raise: -1.0, eye_open: 0.6, mouth_curve: -1.0, mouth_width: 4.5, ..base }
        }
        Emotion::Disgust => Expression { brow_tilt: -1.5, eye_open: 0.45, mouth_skew: 2.5, mouth_width: 5.5, ..base },
        Emotion::Fear => Expression {
            brow_tilt: 2.5,
            brow_raise: 2.0,
            eye_open: 1.6,
            mouth_curve: -1.0,
            mouth_width: 6.0,
            mouth_open: 2.0,
            ..base
        },
        Emotion::Happy => Expression { mouth_curve: 3.5, mouth_width: 7.5, eye_open: 0.85, ..base },
        Emotion::Sad => Expression { brow_tilt: 3.0, mouth_curve: -3.0, eye_open: 0.8, ..base },
        Emotion::Surprise => Expression { brow_raise: 4.0, eye_open: 1.7, mouth_width: 3.5, mouth_open: 4.5, ..base },
        Emotion::Neutral => base,
    }
}

/// Coverage of a shape at signed distance `d` (pixels; negative inside), anti-aliased.
fn coverage(d: f64) -> f64 {
    (0.5 - d).clamp(0.0, 1.0)
}

fn ellipse_distance(u: f64, v: f64, cu: f64, cv: f64, a: f64, b: f64) -> f64 {
    let (du, dv) = ((u - cu) / a, (v - cv) / b);
    ((du * du + dv * dv).sqrt() - 1.0) * a.min(b)
}

fn segment_distance(u: f64, v: f64, (u0, v0): (f64, f64), (u1, v1): (f64, f64)) -> f64 {
    let (du, dv) = (u1 - u0, v1 - v0);
    let t = (((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv)).clamp(0.0, 1.0);
    let (pu, pv) = (u0 + t * du - u, v0 + t * dv - v);
    (pu * pu + pv * pv).sqrt()
}

/// Draws one face of class `label`.
pub fn face(label: Emotion, rng: &mut Rng) -> Vec<u8> {
    let e = expression(label);
    let jitter = |rng: &mut Rng, x: f64, amount: f64| x + rng.uniform(-amount, amount);
    let brow_tilt = jitter(rng, e.brow_tilt, 0.6);
    let brow_raise = jitter(rng, e.brow_raise, 0.6);
    let eye_open = jitter(rng, e.eye_open, 0.12);
    let mouth_curve = jitter(rng, e.mouth_curve, 0.6);
    let mouth_width = jitter(rng, e.mouth_width, 0.6);
    let mouth_open = (e.mouth_open + rng.uniform(-0.4, 0.4)).max(0.0);
    let mouth_skew = e.mouth_skew * if rng.bool(0.5) { 1.0 } else { -1.0 };

    let (cx, cy) = (24.0 + rng.uniform(-3.0, 3.0), 24.0 + rng.uniform(-3.0, 3.0));
    let scale = rng.uniform(0.9, 1.1);
    let tilt = rng.uniform(-8.0f64, 8.0).to_radians();
    let (sin, cos) = tilt.sin_cos();
    let background = rng.uniform(30.0, 110.0);
    let skin = rng.uniform(140.0, 200.0);
    let ink = rng.uniform(10.0, 50.0);
    let (light_x, light_y) = (rng.uniform(-1.2, 1.2), rng.uniform(-1.2, 1.2));

    let mut out = vec![0u8; PIXELS];
    for y in 0..SIDE {
        for x in 0..SIDE {
            // Pixel centre in face units: origin between the eyes' line and the mouth, y down.
            let (px, py) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
            let u = (cos * px + sin * py) / scale;
            let v = (-sin * px + cos * py) / scale;
            let mut value = background;
            let face = coverage(ellipse_distance(u, v, 0.0, 0.0, 17.0, 21.0));
            value += (skin - background) * face;
            let mut dark = 0.0f64;
            for side in [-1.0, 1.0] {
                let eye = ellipse_distance(u, v, side * 7.0, -4.0, 3.5, (2.0 * eye_open).max(0.5));
                dark = dark.max(coverage(eye));
                let inner = (side * 2.5, -9.5 - brow_raise - brow_tilt);
                let outer = (side * 11.0, -9.5 - brow_raise + 0.3 * brow_tilt);
                dark = dark.max(coverage(segment_distance(u, v, inner, outer) - 1.1));
            }
            // Mouth: a curve v = 9 + curve*(1 - (u/w)^2) + skew*u/w (y points down, so a positive
            // curve lowers the middle: a smile), opened into a lens.
            let w = mouth_width;
            if u.abs() <= w + 1.5 {
                let t = (u / w).clamp(-1.0, 1.0);
                let centre = 9.0 + mouth_curve * (1.0 - t * t) + mouth_skew * t;
                let half_open = 0.5 * mouth_open * (1.0 - t * t).max(0.0);
                let d_line = (v - centre).abs() - half_open - 0.9;
                let d_end = (u.abs() - w).max(0.0);
                dark = dark.max(coverage(d_line.max(d_end - 0.5)));
            }
            value += (ink - value) * dark * face.max(0.5);
            value *= 1.0 + 0.15 * (light_x * px + light_y * py) / 24.0;
            value += 5.0 * rng.normal();
            out[y * SIDE + x] = value.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `per_class` faces of every class in one split, classes interleaved, deterministic for `seed`.
pub fn dataset(split: &str, per_class: usize, seed: u64) -> Dataset {
    let mut dataset = Dataset::new();
    let mut rng = Rng::seed(seed);
    for _ in 0..per_class {
        for label in Emotion::ALL {
            let pixels = face(label, &mut rng);
            dataset.push(&pixels, Some(label), split);
        }
    }
    dataset
}

/// The embedded default for demos and tests, split as FER2013 is: Training, and smaller
/// PublicTest and PrivateTest splits of `val_per_class` faces per class each.
pub fn default_dataset(train_per_class: usize, val_per_class: usize, seed: u64) -> Dataset {
    let mut all = dataset("Training", train_per_class, seed);
    for (split, salt) in [("PublicTest", 0x5EED_0F0F_A1A1_7777u64), ("PrivateTest", 0x7E57_7E57_0000_1111)] {
        let part = dataset(split, val_per_class, seed ^ salt);
        for i in 0..part.len() {
            all.push(part.image(i), part.label(i), part.split(i));
        }
    }
    all
}

/// A 45-byte PNG that claims `width` x `height` pixels and holds none (valid signature, IHDR with
/// its checksum, an empty IDAT): the input for testing that decoders refuse sizes from the header,
/// before they reserve memory for the pixels.
pub fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend_from_slice(&width.to_be_bytes());
    png.extend_from_slice(&height.to_be_bytes());
    png.extend_from_slice(&[8, 0, 0, 0, 0]);
    let crc = crc32fast::hash(&png[12..]);
    png.extend_from_slice(&crc.to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0]);
    png.extend_from_slice(b"IDAT");
    png.extend_from_slice(&crc32fast::hash(b"IDAT").to_be_bytes());
    png
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed_and_labelled_in_order() {
        let a = dataset("Training", 3, 11);
        assert_eq!(a, dataset("Training", 3, 11));
        assert_ne!(a.pixels(), dataset("Training", 3, 12).pixels());
        assert_eq!(a.class_counts(), [3; 7]);
        assert_eq!(a.label(8), Some(Emotion::Disgust));
    }

    #[test]
    fn classes_differ_where_the_expression_lives() {
        // Mean of 1000 happy faces minus mean of 1000 sad faces: largest near the mouth (rows 28-40).
        let mut rng = Rng::seed(3);
        let mut diff = vec![0.0f64; PIXELS];
        for _ in 0..1000 {
            let h = face(Emotion::Happy, &mut rng);
            let s = face(Emotion::Sad, &mut rng);
            for i in 0..PIXELS {
                diff[i] += (h[i] as f64 - s[i] as f64) / 1000.0;
            }
        }
        let row_energy = |r: usize| diff[r * SIDE..(r + 1) * SIDE].iter().map(|d| d.abs()).sum::<f64>();
        let mouth: f64 = (28..40).map(row_energy).sum();
        let top: f64 = (0..9).map(row_energy).sum();
        assert!(mouth > 3.0 * top, "mouth {mouth} vs top {top}");
    }
}
