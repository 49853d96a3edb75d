//! Line charts, confusion heat maps and probability bars, drawn pixel by pixel.

use image::{Rgb, RgbImage};

use crate::draw::{draw_text, text_width, viridis};

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: [u8; 3] = [30, 30, 30];
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// One line of a line chart.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: [u8; 3],
    /// Drawn dashed (e.g. training curves next to solid validation curves).
    pub dashed: bool,
}

fn fill_rect(img: &mut RgbImage, x0: i64, y0: i64, w: i64, h: i64, c: Rgb<u8>) {
    for y in y0.max(0)..(y0 + h).min(img.height() as i64) {
        for x in x0.max(0)..(x0 + w).min(img.width() as i64) {
            img.put_pixel(x as u32, y as u32, c);
        }
    }
}

/// A 2-pixel line with Bresenham steps; `dash` skips every other 6 pixels.
fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Rgb<u8>, dash: bool) {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).max(1);
    for i in 0..=steps {
        if dash && (i / 6) % 2 == 1 {
            continue;
        }
        let t = i as f64 / steps as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        fill_rect(img, x.round() as i64, y.round() as i64, 2, 2, c);
    }
}

fn nice_step(span: f64, target_ticks: f64) -> f64 {
    let raw = span / target_ticks;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

fn tick_label(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else if step >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Curves on shared axes, with ticks, a legend and a title. 720x440 pixels.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> RgbImage {
    let (w, h) = (720u32, 440u32);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 60.0);
    let mut img = RgbImage::from_pixel(w, h, WHITE);
    draw_text(&mut img, title, (w - text_width(title, 2)) / 2, 10, 2, INK);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) =
        pts.iter().fold((f64::MAX, f64::MIN, f64::MAX, f64::MIN), |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)));
    if pts.is_empty() {
        (x_lo, x_hi, y_lo, y_hi) = (0.0, 1.0, 0.0, 1.0);
    }
    if x_hi - x_lo < 1e-9 {
        x_hi = x_lo + 1.0;
    }
    let y_step = nice_step((y_hi - y_lo).max(1e-6), 5.0);
    y_lo = (y_lo / y_step).floor() * y_step;
    y_hi = ((y_hi / y_step).ceil() * y_step).max(y_lo + y_step);
    let (pw, ph) = (w as f64 - left - right, h as f64 - top - bottom);
    let px = |x: f64| left + (x - x_lo) / (x_hi - x_lo) * pw;
    let py = |y: f64| top + (1.0 - (y - y_lo) / (y_hi - y_lo)) * ph;
    let mut y = y_lo;
    while y <= y_hi + y_step * 0.01 {
        line(&mut img, (left, py(y)), (left + pw, py(y)), GRID, false);
        let label = tick_label(y, y_step);
        draw_text(&mut img, &label, (left as u32).saturating_sub(text_width(&label, 2) + 8), py(y) as u32 - 5, 2, INK);
        y += y_step;
    }
    let x_step = nice_step(x_hi - x_lo, 8.0).max(if x_hi - x_lo >= 1.0 { 1.0 } else { 0.0 });
    let mut x = (x_lo / x_step).ceil() * x_step;
    while x <= x_hi + 1e-9 {
        let label = tick_label(x, x_step);
        line(&mut img, (px(x), top + ph), (px(x), top + ph + 5.0), Rgb(INK), false);
        draw_text(&mut img, &label, (px(x) as u32).saturating_sub(text_width(&label, 2) / 2), (top + ph + 10.0) as u32, 2, INK);
        x += x_step;
    }
    line(&mut img, (left, top), (left, top + ph), Rgb(INK), false);
    line(&mut img, (left, top + ph), (left + pw, top + ph), Rgb(INK), false);
    draw_text(&mut img, x_label, (w - text_width(x_label, 2)) / 2, h - 22, 2, INK);
    draw_text(&mut img, y_label, 6, 14, 2, INK);
    for s in series {
        for pair in s.points.windows(2) {
            line(&mut img, (px(pair[0].0), py(pair[0].1)), (px(pair[1].0), py(pair[1].1)), Rgb(s.color), s.dashed);
        }
        if s.points.len() == 1 {
            let (x, y) = s.points[0];
            fill_rect(&mut img, px(x) as i64 - 3, py(y) as i64 - 3, 6, 6, Rgb(s.color));
        }
    }
    // Legend, top right inside the plot.
    let mut ly = top as u32 + 8;
    for s in series {
        let lx = (left + pw) as u32 - 200;
        line(&mut img, (lx as f64, ly as f64 + 5.0), (lx as f64 + 24.0, ly as f64 + 5.0), Rgb(s.color), s.dashed);
        draw_text(&mut img, &s.name, lx + 32, ly, 2, INK);
        ly += 16;
    }
    img
}

/// The confusion matrix as a heat map: colour by the row-normalised rate, text the count (or the
/// rate in percent when `percent`). Rows true, columns predicted.
pub fn confusion_chart(title: &str, matrix: &[Vec<u64>], labels: &[&str], percent: bool) -> RgbImage {
    let n = matrix.len();
    let cell = 64u32;
    let (left, top) = (110u32, 70u32);
    let (w, h) = (left + cell * n as u32 + 20, top + cell * n as u32 + 60);
    let mut img = RgbImage::from_pixel(w, h, WHITE);
    draw_text(&mut img, title, (w - text_width(title, 2)) / 2, 10, 2, INK);
    draw_text(&mut img, "PREDICTED", left + (cell * n as u32 - text_width("PREDICTED", 2)) / 2, 32, 2, INK);
    draw_text(&mut img, "TRUE", 8, top - 16, 2, INK);
    for (r, row) in matrix.iter().enumerate() {
        let total: u64 = row.iter().sum();
        let label = labels.get(r).copied().unwrap_or("?");
        draw_text(&mut img, label, left - text_width(label, 2) - 8, top + r as u32 * cell + cell / 2 - 5, 2, INK);
        for (c, &count) in row.iter().enumerate() {
            let rate = if total == 0 { 0.0 } else { count as f64 / total as f64 };
            let color = viridis(rate as f32);
            let (x0, y0) = (left + c as u32 * cell, top + r as u32 * cell);
            fill_rect(&mut img, x0 as i64, y0 as i64, cell as i64 - 1, cell as i64 - 1, Rgb(color));
            let text = if percent { format!("{:.0}%", 100.0 * rate) } else { count.to_string() };
            let luminance = 0.2126 * color[0] as f64 + 0.7152 * color[1] as f64 + 0.0722 * color[2] as f64;
            let ink = if luminance > 140.0 { [0, 0, 0] } else { [255, 255, 255] };
            draw_text(&mut img, &text, x0 + (cell - text_width(&text, 2)) / 2, y0 + cell / 2 - 5, 2, ink);
        }
    }
    // Column labels alternate between two lines, so whole names ("SURPRISE" is a cell wide) never
    // run into each other.
    for (c, label) in labels.iter().enumerate().take(n) {
        let centre = left + c as u32 * cell + cell / 2;
        let x = centre.saturating_sub(text_width(label, 2) / 2);
        draw_text(&mut img, label, x, top + n as u32 * cell + 8 + (c as u32 % 2) * 16, 2, INK);
    }
    img
}

/// A face (48x48 gray pixels) beside a bar chart of its class probabilities; the true class's bar
/// is green, the predicted class's (if different) red, the rest gray.
pub fn probability_chart(title: &str, face: &[u8], side: u32, probs: &[f32], labels: &[&str], true_class: usize, predicted: usize) -> RgbImage {
    let scale = 3;
    let (w, h) = (side * scale + 420, side * scale + 70);
    let mut img = RgbImage::from_pixel(w, h, WHITE);
    draw_text(&mut img, title, 10, 10, 2, INK);
    for y in 0..side * scale {
        for x in 0..side * scale {
            let v = face.get(((y / scale) * side + x / scale) as usize).copied().unwrap_or(0);
            img.put_pixel(10 + x, 40 + y, Rgb([v, v, v]));
        }
    }
    let x0 = side * scale + 30;
    let bar_h = ((side * scale) / probs.len().max(1) as u32).max(8);
    for (i, p) in probs.iter().enumerate() {
        let y = 40 + i as u32 * bar_h;
        let label = labels.get(i).copied().unwrap_or("?");
        draw_text(&mut img, label, x0, y + bar_h / 2 - 5, 2, INK);
        let color = if i == true_class {
            [40, 160, 60]
        } else if i == predicted {
            [200, 50, 50]
        } else {
            [150, 150, 150]
        };
        let len = (p.clamp(0.0, 1.0) * 220.0).round() as i64;
        fill_rect(&mut img, (x0 + 100) as i64, (y + 2) as i64, len, bar_h as i64 - 4, Rgb(color));
        let text = format!("{p:.3}");
        draw_text(&mut img, &text, x0 + 100 + len as u32 + 6, y + bar_h / 2 - 5, 2, INK);
    }
    img
}

/// Adds a title strip above an image.
pub fn titled(img: &RgbImage, title: &str) -> RgbImage {
    let width = img.width().max(text_width(title, 2) + 8);
    let mut out = RgbImage::from_pixel(width, img.height() + 16, WHITE);
    draw_text(&mut out, title, 4, 3, 2, INK);
    image::imageops::overlay(&mut out, img, 0, 16);
    out
}

/// Face | attribution map | overlay, enlarged 4x, with a title (the report's Q4 figure).
pub fn attribution_panel(face: &[u8], side: u32, map: &[f32], method: &str, title: &str) -> RgbImage {
    use crate::draw::{grid, heatmap, normalize, overlay, upscale};
    let gray = image::GrayImage::from_raw(side, side, face.to_vec()).unwrap_or_else(|| image::GrayImage::new(side, side));
    let face_rgb = image::DynamicImage::ImageLuma8(gray.clone()).into_rgb8();
    let tiles = [face_rgb, heatmap(map, side, side), overlay(&gray, &normalize(map), 0.6)];
    let tiles: Vec<RgbImage> = tiles.iter().map(|t| upscale(t, 4)).collect();
    let labels = ["face".to_string(), method.to_string(), "overlay".to_string()];
    titled(&grid(&tiles, &labels, 3, 6, 2), title)
}

/// Every channel of a `[channels, h, w]` stack as a labelled gray grid (activation maps,
/// gradient-ascent images), each tile min-max normalised and enlarged to about `tile` pixels.
pub fn channel_grid(values: &[f32], channels: usize, h: usize, w: usize, tile: usize, labels: &[String], title: &str) -> RgbImage {
    use crate::draw::{gray, grid, upscale};
    let scale = (tile / h.max(1)).max(1) as u32;
    let tiles: Vec<RgbImage> = (0..channels).map(|k| upscale(&gray(&values[k * h * w..(k + 1) * h * w], w as u32, h as u32, true), scale)).collect();
    let columns = (channels as f64).sqrt().ceil() as usize;
    titled(&grid(&tiles, labels, columns, 2, 1), title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_have_their_sizes_and_colours() {
        let s = Series { name: "val".into(), points: vec![(1.0, 0.2), (2.0, 0.5), (3.0, 0.4)], color: [200, 0, 0], dashed: false };
        let img = line_chart("ACC", "EPOCH", "ACC", &[s]);
        assert_eq!(img.dimensions(), (720, 440));
        assert!(img.pixels().any(|p| p.0 == [200, 0, 0]));

        let m = vec![vec![8, 2], vec![0, 10]];
        let c = confusion_chart("CM", &m, &["A", "B"], false);
        // The diagonal cell of row B is all of the row: viridis(1), yellow.
        assert_eq!(c.get_pixel(110 + 64 + 2, 70 + 64 + 2).0, viridis(1.0));
        assert_eq!(c.get_pixel(110 + 64 + 2, 70 + 2).0, viridis(0.2));

        // Whole class names under the columns: "SURPRISE" (column 5, second label line) is drawn in
        // full, all eight letters, and nothing else inks that line between its neighbours' centres.
        let names = ["ANGRY", "DISGUST", "FEAR", "HAPPY", "SAD", "SURPRISE", "NEUTRAL"];
        let c7 = confusion_chart("CM", &vec![vec![1u64; 7]; 7], &names, true);
        let line2 = 70 + 7 * 64 + 8 + 16;
        let inked: Vec<u32> = (110 + 4 * 64 + 32..110 + 6 * 64 + 32).filter(|&x| (line2..line2 + 10).any(|y| c7.get_pixel(x, y).0 == INK)).collect();
        let extent = inked.last().zip(inked.first()).map_or(0, |(b, a)| b - a + 1);
        assert!(extent + 2 >= text_width("SURPRISE", 2), "SURPRISE label spans {extent} px, want {}", text_width("SURPRISE", 2));

        let p = probability_chart("X", &[128; 2304], 48, &[0.1, 0.9], &["A", "B"], 0, 1);
        assert!(p.pixels().any(|q| q.0 == [200, 50, 50]) && p.pixels().any(|q| q.0 == [40, 160, 60]));
    }
}
