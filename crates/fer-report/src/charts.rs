//! The report's charts as [`Figure`]s: curves, confusion heat maps, probability bars and labelled
//! image grids. Each saves as a PNG and an SVG twin.

use image::RgbImage;

use crate::draw::viridis;
use crate::figure::Figure;
use crate::text::{Anchor, TextStyle, Weight, text_width, thousands};

/// Okabe & Ito's eight colours, distinguishable with every common colour-vision deficiency
/// (Okabe and Ito 2008; matplotlib's `tab10` is not). Curves take them in this order.
pub const PALETTE: [[u8; 3]; 7] = [
    [0, 114, 178],   // blue
    [213, 94, 0],    // vermillion
    [0, 158, 115],   // bluish green
    [230, 159, 0],   // orange
    [204, 121, 167], // reddish purple
    [86, 180, 233],  // sky blue
    [0, 0, 0],       // black
];

const INK: [u8; 3] = [34, 34, 34];
const MUTED: [u8; 3] = [90, 90, 90];
const GRID: [u8; 3] = [228, 228, 228];
const FRAME: [u8; 3] = [200, 200, 200];
const NEUTRAL_BAR: [u8; 3] = [180, 180, 180];

const TITLE: TextStyle = TextStyle::new(16.0, INK).bold();
const AXIS_LABEL: TextStyle = TextStyle::new(13.0, INK);
const TICK: TextStyle = TextStyle::new(12.0, MUTED);

/// One line of a line chart.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: [u8; 3],
    /// Drawn dashed (e.g. training curves next to solid validation curves).
    pub dashed: bool,
}

/// Snaps a coordinate to a pixel centre, so 1-pixel lines stay sharp.
fn crisp(v: f32) -> f32 {
    v.floor() + 0.5
}

fn nice_step(span: f64, target_ticks: f64) -> f64 {
    let raw = span / target_ticks;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

fn tick_label(v: f64, step: f64) -> String {
    if step >= 1.0 {
        thousands(v.round() as i64)
    } else if step >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Curves on shared axes with ticks, grid lines, a title, axis labels and a legend placed in the
/// corner the curves leave most free. 720x440 pixels.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Figure {
    let (w, h) = (720.0f32, 440.0f32);
    let (left, right, top, bottom) = (72.0f32, 20.0f32, 44.0f32, 58.0f32);
    let mut fig = Figure::new(w as u32, h as u32);
    fig.text(w / 2.0, 26.0, title, TITLE.anchored(Anchor::Middle));
    let pts: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().copied()).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) =
        pts.iter().fold((f64::MAX, f64::MIN, f64::MAX, f64::MIN), |(a, b, c, d), (x, y)| {
            (a.min(*x), b.max(*x), c.min(*y), d.max(*y))
        });
    if pts.is_empty() {
        (x_lo, x_hi, y_lo, y_hi) = (0.0, 1.0, 0.0, 1.0);
    }
    if x_hi - x_lo < 1e-9 {
        x_hi = x_lo + 1.0;
    }
    let y_step = nice_step((y_hi - y_lo).max(1e-6), 5.0);
    y_lo = (y_lo / y_step).floor() * y_step;
    y_hi = ((y_hi / y_step).ceil() * y_step).max(y_lo + y_step);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let px = |x: f64| left + ((x - x_lo) / (x_hi - x_lo)) as f32 * pw;
    let py = |y: f64| top + (1.0 - ((y - y_lo) / (y_hi - y_lo)) as f32) * ph;

    let mut y = y_lo;
    while y <= y_hi + y_step * 0.01 {
        let gy = crisp(py(y));
        fig.line(&[(left, gy), (left + pw, gy)], GRID, 1.0, false);
        fig.text(left - 8.0, py(y) + 4.0, tick_label(y, y_step), TICK.anchored(Anchor::End));
        y += y_step;
    }
    let x_step = nice_step(x_hi - x_lo, 8.0).max(if x_hi - x_lo >= 1.0 { 1.0 } else { 0.0 });
    let mut x = (x_lo / x_step).ceil() * x_step;
    while x <= x_hi + 1e-9 {
        let gx = crisp(px(x));
        fig.line(&[(gx, top + ph), (gx, top + ph + 5.0)], INK, 1.0, false);
        fig.text(px(x), top + ph + 20.0, tick_label(x, x_step), TICK.anchored(Anchor::Middle));
        x += x_step;
    }
    let (ax, ay) = (crisp(left), crisp(top + ph));
    fig.line(&[(ax, top), (ax, ay), (left + pw, ay)], INK, 1.0, false);
    fig.text(left + pw / 2.0, h - 14.0, x_label, AXIS_LABEL.anchored(Anchor::Middle));
    fig.vertical_text(20.0, top + ph / 2.0, y_label, AXIS_LABEL.anchored(Anchor::Middle));

    for s in series {
        let points: Vec<(f32, f32)> =
            s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&(x, y)| (px(x), py(y))).collect();
        match points.len() {
            0 => {}
            1 => {
                fig.circle(points[0].0, points[0].1, 3.5, s.color);
            }
            _ => {
                fig.line(&points, s.color, 2.0, s.dashed);
            }
        }
    }
    legend(&mut fig, series, (left, top, pw, ph), &|(x, y)| (px(x), py(y)));
    fig
}

/// The legend box in the plot corner that covers the fewest points of the curves.
fn legend(
    fig: &mut Figure,
    series: &[Series],
    (left, top, pw, ph): (f32, f32, f32, f32),
    to_px: &dyn Fn((f64, f64)) -> (f32, f32),
) {
    if series.is_empty() {
        return;
    }
    let style = TextStyle::new(12.0, INK);
    let row = 18.0;
    let bw =
        24.0 + 8.0 + series.iter().map(|s| text_width(&s.name, style.size, Weight::Regular)).fold(0.0, f32::max) + 16.0;
    let bh = series.len() as f32 * row + 10.0;
    let inset = 10.0;
    let corners = [
        (left + pw - bw - inset, top + inset),
        (left + pw - bw - inset, top + ph - bh - inset),
        (left + inset + 4.0, top + inset),
        (left + inset + 4.0, top + ph - bh - inset),
    ];
    // Sample each segment densely, so a line crossing a corner counts even between its points.
    let mut samples = Vec::new();
    for s in series {
        let pts: Vec<(f32, f32)> =
            s.points.iter().filter(|(x, y)| x.is_finite() && y.is_finite()).map(|&p| to_px(p)).collect();
        samples.extend(pts.iter().copied());
        for pair in pts.windows(2) {
            for k in 1..20 {
                let t = k as f32 / 20.0;
                samples.push((pair[0].0 + (pair[1].0 - pair[0].0) * t, pair[0].1 + (pair[1].1 - pair[0].1) * t));
            }
        }
    }
    let covered = |&(x, y): &(f32, f32)| {
        samples
            .iter()
            .filter(|(sx, sy)| *sx >= x - 4.0 && *sx <= x + bw + 4.0 && *sy >= y - 4.0 && *sy <= y + bh + 4.0)
            .count()
    };
    let (x, y) = corners.iter().min_by_key(|c| covered(c)).copied().unwrap_or(corners[0]);
    fig.rect(x, y, bw, bh, [255, 255, 255]);
    fig.outline(crisp(x), crisp(y), bw.round(), bh.round(), FRAME, 1.0);
    for (i, s) in series.iter().enumerate() {
        let cy = y + 5.0 + row * i as f32 + row / 2.0;
        fig.line(&[(x + 8.0, cy), (x + 32.0, cy)], s.color, 2.0, s.dashed);
        fig.text(x + 40.0, cy + 4.0, s.name.clone(), style);
    }
}

/// The confusion matrix as a heat map with a colour bar: colour by the row-normalised rate, text
/// the count (or the rate in percent when `percent`). Rows true, columns predicted.
pub fn confusion_chart(title: &str, matrix: &[Vec<u64>], labels: &[&str], percent: bool) -> Figure {
    let n = matrix.len();
    let cell = 64.0f32;
    let label = |i: usize| labels.get(i).copied().unwrap_or("?");
    let label_w = (0..n).map(|i| text_width(label(i), AXIS_LABEL.size, Weight::Regular)).fold(0.0, f32::max);
    let (left, top) = ((34.0 + label_w + 10.0).round(), 44.0f32);
    let side = cell * n as f32;
    let bar_x = left + side + 18.0;
    let (w, h) = ((bar_x + 14.0 + 46.0).round(), top + side + 54.0);
    let mut fig = Figure::new(w as u32, h as u32);
    fig.text(w / 2.0, 26.0, title, TITLE.anchored(Anchor::Middle));
    fig.vertical_text(20.0, top + side / 2.0, "True class", AXIS_LABEL.bold().anchored(Anchor::Middle));
    fig.text(left + side / 2.0, top + side + 44.0, "Predicted class", AXIS_LABEL.bold().anchored(Anchor::Middle));
    for (r, row) in matrix.iter().enumerate() {
        let total: u64 = row.iter().sum();
        let y0 = top + r as f32 * cell;
        fig.text(left - 8.0, y0 + cell / 2.0 + 4.5, label(r), AXIS_LABEL.anchored(Anchor::End));
        for (c, &count) in row.iter().enumerate() {
            let rate = if total == 0 { 0.0 } else { count as f64 / total as f64 };
            let color = viridis(rate as f32);
            let x0 = left + c as f32 * cell;
            fig.rect(x0, y0, cell - 1.0, cell - 1.0, color);
            let text = if percent { format!("{:.0}%", 100.0 * rate) } else { thousands(count) };
            let luminance = 0.2126 * color[0] as f64 + 0.7152 * color[1] as f64 + 0.0722 * color[2] as f64;
            let ink = if luminance > 140.0 { [0, 0, 0] } else { [255, 255, 255] };
            fig.text(
                x0 + (cell - 1.0) / 2.0,
                y0 + cell / 2.0 + 4.5,
                text,
                TextStyle::new(13.0, ink).anchored(Anchor::Middle),
            );
        }
    }
    for c in 0..n {
        fig.text(left + c as f32 * cell + cell / 2.0, top + side + 18.0, label(c), AXIS_LABEL.anchored(Anchor::Middle));
    }
    // Colour bar: the share of a true class's faces, 0 at the bottom to 100% at the top.
    let bands = 64;
    for b in 0..bands {
        let t = 1.0 - (b as f32 + 0.5) / bands as f32;
        fig.rect(bar_x, top + side * b as f32 / bands as f32, 14.0, side / bands as f32 + 0.5, viridis(t));
    }
    for k in 0..=4 {
        let y = top + side * (1.0 - k as f32 / 4.0);
        fig.line(&[(bar_x + 14.0, crisp(y)), (bar_x + 18.0, crisp(y))], INK, 1.0, false);
        fig.text(bar_x + 21.0, y + 4.0, format!("{}%", k * 25), TICK);
    }
    fig
}

/// Bar colours of [`probability_chart`]: the true class, a wrong prediction, the others.
pub const TRUE_BAR: [u8; 3] = PALETTE[0];
pub const WRONG_BAR: [u8; 3] = PALETTE[1];

/// A face (`side` x `side` gray pixels) beside a bar chart of its class probabilities. The true
/// class's bar is blue and its name bold, a wrong prediction's bar vermillion, the rest gray; a key
/// below says so in words, so nothing rests on colour alone.
pub fn probability_chart(
    title: &str,
    face: &[u8],
    side: u32,
    probs: &[f32],
    labels: &[&str],
    true_class: usize,
    predicted: usize,
) -> Figure {
    let scale = 3;
    let face_px = (side * scale) as f32;
    let (x0, top) = (12.0 + face_px + 22.0, 40.0f32);
    let (label_w, bar_max) = (76.0f32, 200.0f32);
    let bar_h = (face_px / probs.len().max(1) as f32).floor().max(12.0);
    let rows_h = bar_h * probs.len() as f32;
    let (w, h) = (x0 + label_w + bar_max + 56.0, top + face_px.max(rows_h) + 34.0);
    let mut fig = Figure::new(w as u32, h as u32);
    fig.text(12.0, 24.0, title, TITLE.anchored(Anchor::Start));
    let gray = RgbImage::from_fn(side, side, |x, y| {
        let v = face.get((y * side + x) as usize).copied().unwrap_or(0);
        image::Rgb([v, v, v])
    });
    fig.image(12, top as i64, scale, &gray);
    for (i, p) in probs.iter().enumerate() {
        let y = top + i as f32 * bar_h;
        let name = labels.get(i).copied().unwrap_or("?");
        let style = if i == true_class { TextStyle::new(13.0, INK).bold() } else { TextStyle::new(13.0, INK) };
        fig.text(x0, y + bar_h / 2.0 + 4.5, name, style);
        let colour = if i == true_class {
            TRUE_BAR
        } else if i == predicted {
            WRONG_BAR
        } else {
            NEUTRAL_BAR
        };
        let len = (p.clamp(0.0, 1.0) * bar_max).round();
        fig.rect(x0 + label_w, y + 2.0, len, bar_h - 4.0, colour);
        fig.text(x0 + label_w + len + 6.0, y + bar_h / 2.0 + 4.0, format!("{p:.3}"), TICK);
    }
    fig.line(&[(crisp(x0 + label_w), top), (crisp(x0 + label_w), top + rows_h)], INK, 1.0, false);
    let key_y = top + face_px.max(rows_h) + 20.0;
    let mut kx = x0;
    for (colour, text) in [(TRUE_BAR, "true class"), (WRONG_BAR, "predicted, wrong")] {
        fig.rect(kx, key_y - 9.0, 10.0, 10.0, colour);
        fig.text(kx + 15.0, key_y, text, TICK);
        kx += 15.0 + text_width(text, TICK.size, Weight::Regular) + 18.0;
    }
    fig
}

/// Equally sized images in `columns`, each with a label above it, under a title.
pub fn image_grid(
    tiles: &[RgbImage],
    labels: &[String],
    columns: usize,
    gap: u32,
    label_size: f32,
    title: &str,
) -> Figure {
    let (tw, th) = tiles.first().map_or((1, 1), |t| (t.width(), t.height()));
    let columns = columns.max(1).min(tiles.len().max(1));
    let rows = tiles.len().div_ceil(columns);
    let label_h = if labels.is_empty() { 0 } else { (label_size * 1.5).ceil() as u32 };
    let title_h = if title.is_empty() { 0 } else { 28 };
    let (cell_w, cell_h) = (tw + gap, th + gap + label_h);
    let title_w = if title.is_empty() { 0 } else { text_width(title, 15.0, Weight::Bold).ceil() as u32 + 16 };
    let width = (columns as u32 * cell_w + gap).max(title_w);
    let mut fig = Figure::new(width, title_h + rows as u32 * cell_h + gap);
    if !title.is_empty() {
        fig.text(8.0, 20.0, title, TextStyle::new(15.0, INK).bold());
    }
    for (i, tile) in tiles.iter().enumerate() {
        let (col, row) = ((i % columns) as u32, (i / columns) as u32);
        let (x0, y0) = (gap + col * cell_w, title_h + gap + row * cell_h);
        if let Some(label) = labels.get(i) {
            fig.text(x0 as f32, y0 as f32 + label_size, label.clone(), TextStyle::new(label_size, INK));
        }
        fig.image(x0 as i64, (y0 + label_h) as i64, 1, tile);
    }
    fig
}

/// Face | attribution map | overlay, enlarged 4x, with a title (the report's Q4 figure).
pub fn attribution_panel(face: &[u8], side: u32, map: &[f32], method: &str, title: &str) -> Figure {
    use crate::draw::{heatmap, normalize, overlay, upscale};
    let gray =
        image::GrayImage::from_raw(side, side, face.to_vec()).unwrap_or_else(|| image::GrayImage::new(side, side));
    let face_rgb = image::DynamicImage::ImageLuma8(gray.clone()).into_rgb8();
    let tiles = [face_rgb, heatmap(map, side, side), overlay(&gray, &normalize(map), 0.6)];
    let tiles: Vec<RgbImage> = tiles.iter().map(|t| upscale(t, 4)).collect();
    let labels = ["face".to_string(), method.to_string(), "overlay".to_string()];
    image_grid(&tiles, &labels, 3, 6, 13.0, title)
}

/// Every channel of a `[channels, h, w]` stack as a labelled gray grid (activation maps,
/// gradient-ascent images), each tile min-max normalised and enlarged to about `tile` pixels.
pub fn channel_grid(
    values: &[f32],
    channels: usize,
    h: usize,
    w: usize,
    tile: usize,
    labels: &[String],
    title: &str,
) -> Figure {
    use crate::draw::{gray, upscale};
    let scale = (tile / h.max(1)).max(1) as u32;
    let tiles: Vec<RgbImage> = (0..channels)
        .filter_map(|k| values.get(k * h * w..(k + 1) * h * w))
        .map(|v| upscale(&gray(v, w as u32, h as u32, true), scale))
        .collect();
    let columns = (channels as f64).sqrt().ceil() as usize;
    image_grid(&tiles, labels, columns, 3, 10.0, title)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 7] = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"];

    fn png(img: &RgbImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        let encoded = image::DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png);
        assert!(encoded.is_ok());
        bytes
    }

    fn curves() -> Vec<Series> {
        let val: Vec<(f64, f64)> = (1..=8).map(|e| (e as f64 * 32_000.0, 0.35 + 0.03 * e as f64)).collect();
        let train: Vec<(f64, f64)> = (1..=8).map(|e| (e as f64 * 32_000.0, 0.28 + 0.035 * e as f64)).collect();
        vec![
            Series { name: "CNN validation".into(), points: val, color: PALETTE[0], dashed: false },
            Series { name: "CNN training".into(), points: train, color: PALETTE[0], dashed: true },
            Series { name: "single point".into(), points: vec![(128_000.0, 0.5)], color: PALETTE[1], dashed: false },
        ]
    }

    #[test]
    fn line_chart_draws_curves_ticks_and_a_legend_clear_of_the_curves() {
        let fig = line_chart("Accuracy per epoch", "Faces seen", "Accuracy", &curves());
        let img = fig.to_image();
        assert_eq!(img.dimensions(), (720, 440));
        assert!(img.pixels().any(|p| p.0 == PALETTE[0]) && img.pixels().any(|p| p.0 == PALETTE[1]));
        let svg = fig.to_svg();
        // Thousands separators on the x ticks; the rising curves leave the bottom-right corner free.
        assert!(svg.contains(">100,000</text>") && svg.contains(">250,000</text>"), "{svg}");
        assert!(svg.contains(">Accuracy</text>") && svg.contains("rotate(-90"), "{svg}");
        let legend_y: f32 = svg
            .lines()
            .find(|l| l.contains(r##"stroke="#c8c8c8""##))
            .and_then(|l| l.split("y=\"").nth(1))
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        assert!(legend_y > 200.0, "legend at y = {legend_y}: expected in a bottom corner");
    }

    #[test]
    fn confusion_chart_colours_cells_by_row_rate_and_fits_whole_names() {
        let m = vec![vec![8, 2], vec![0, 10]];
        let fig = confusion_chart("Confusion", &m, &["A", "B"], false);
        let img = fig.to_image();
        let left = (34.0 + text_width("A", 13.0, Weight::Regular).max(text_width("B", 13.0, Weight::Regular)) + 10.0)
            .round() as u32;
        // The diagonal cell of row B is all of the row: viridis(1), yellow; row A's off-diagonal 0.2.
        assert_eq!(img.get_pixel(left + 64 + 2, 44 + 64 + 2).0, viridis(1.0));
        assert_eq!(img.get_pixel(left + 64 + 2, 44 + 2).0, viridis(0.2));
        // Class names at 13 px fit their 64 px cells, so no label collides with the next.
        assert!(NAMES.iter().all(|n| text_width(n, 13.0, Weight::Regular) < 62.0));
        let big = vec![vec![1234u64; 7]; 7];
        assert!(confusion_chart("C", &big, &NAMES, false).to_svg().contains(">1,234</text>"));
        assert!(confusion_chart("C", &big, &NAMES, true).to_svg().contains(">14%</text>"));
    }

    #[test]
    fn probability_bars_use_colour_blind_safe_colours_and_say_which_is_which() {
        let fig = probability_chart("Sad as Neutral", &[128; 2304], 48, &[0.1, 0.9], &["Sad", "Neutral"], 0, 1);
        let img = fig.to_image();
        assert!(img.pixels().any(|q| q.0 == TRUE_BAR) && img.pixels().any(|q| q.0 == WRONG_BAR));
        assert!(!img.pixels().any(|q| q.0 == [40, 160, 60]), "no red-green pair");
        let svg = fig.to_svg();
        assert!(
            svg.contains(r#"font-weight="bold">Sad</text>"#)
                && svg.contains(">true class</text>")
                && svg.contains(">0.900</text>"),
            "{svg}"
        );
    }

    #[test]
    fn chart_snapshots() {
        let line = line_chart("Accuracy per epoch", "Faces seen", "Accuracy", &curves());
        let cm: Vec<Vec<u64>> = (0..7)
            .map(|r| (0..7).map(|c| if r == c { 300 + 40 * r as u64 } else { ((r * 7 + c) % 5 * 9) as u64 }).collect())
            .collect();
        let confusion = confusion_chart("CNN confusion (row %)", &cm, &NAMES, true);
        let face: Vec<u8> = (0..48 * 48).map(|i| ((i % 48) * 5 + (i / 48) * 2) as u8).collect();
        let probs = [0.05, 0.01, 0.12, 0.02, 0.31, 0.04, 0.45];
        let bars = probability_chart("Sad predicted as Neutral", &face, 48, &probs, &NAMES, 4, 6);
        for (name, fig) in [("line", &line), ("confusion", &confusion), ("probabilities", &bars)] {
            insta::assert_binary_snapshot!(&format!("{name}.png"), png(&fig.to_image()));
            insta::assert_snapshot!(format!("{name}_svg"), fig.to_svg());
        }
    }

    #[test]
    fn grids_place_tiles_under_their_labels() {
        let tile = RgbImage::from_pixel(4, 4, image::Rgb([10, 20, 30]));
        let fig =
            image_grid(&[tile.clone(), tile.clone(), tile], &["A".into(), "B".into(), "C".into()], 2, 1, 10.0, "");
        let label_h = 15;
        assert_eq!((fig.width(), fig.height()), (11, 2 * (4 + 1 + label_h) + 1));
        let img = fig.to_image();
        assert_eq!(img.get_pixel(1, 1 + label_h).0, [10, 20, 30]);
        assert_eq!(img.get_pixel(6, 2 * (1 + label_h) + 4 + 1).0, [255, 255, 255], "no fourth tile");
        assert!((1..label_h).any(|y| img.get_pixel(2, y).0 != [255, 255, 255]), "the label A is inked");
        let panel = attribution_panel(&[100; 16], 4, &[0.0; 16], "saliency", "t");
        assert_eq!(panel.to_svg().matches("<image ").count(), 3);
    }
}
