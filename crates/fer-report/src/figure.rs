//! A figure as a list of marks (rectangles, lines, circles, text, pixel images) that renders two
//! ways from the one description: a PNG (tiny-skia for anti-aliased shapes, `text` for glyphs) and
//! an SVG twin for papers and slides. Charts build a `Figure`; they never draw pixels themselves,
//! so the two outputs cannot drift apart.

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use image::RgbImage;
use tiny_skia::{FillRule, LineCap, LineJoin, Paint, PathBuilder, Pixmap, Stroke, StrokeDash, Transform};

use crate::text::{Anchor, SVG_FONT_FAMILY, TextStyle, Weight, blend, rasterise};

#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("cannot write the figure {}: {source}", path.display())]
    Png { path: PathBuf, source: image::ImageError },
    #[error("cannot write the figure's SVG twin {}: {source}", path.display())]
    Svg { path: PathBuf, source: std::io::Error },
    #[error("a figure of {width}x{height} pixels is empty or too large to draw")]
    Size { width: u32, height: u32 },
}

#[derive(Clone, Debug, PartialEq)]
enum Mark {
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<[u8; 3]>,
        stroke: Option<([u8; 3], f32)>,
    },
    Line {
        points: Vec<(f32, f32)>,
        colour: [u8; 3],
        width: f32,
        dash: Option<[f32; 2]>,
    },
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
        fill: [u8; 3],
    },
    Text {
        x: f32,
        y: f32,
        text: String,
        style: TextStyle,
        vertical: bool,
    },
    /// Nearest-neighbour enlarged by `scale`, so 48x48 faces stay crisp in both outputs.
    Image {
        x: i64,
        y: i64,
        scale: u32,
        image: RgbImage,
    },
}

/// A white canvas of `width` x `height` pixels and the marks drawn on it, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    width: u32,
    height: u32,
    marks: Vec<Mark>,
}

impl Figure {
    pub fn new(width: u32, height: u32) -> Self {
        Figure { width, height, marks: Vec::new() }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: [u8; 3]) -> &mut Self {
        self.marks.push(Mark::Rect { x, y, w, h, fill: Some(fill), stroke: None });
        self
    }

    /// A rectangle's outline, `width` pixels wide, centred on its edges (as SVG strokes are).
    pub fn outline(&mut self, x: f32, y: f32, w: f32, h: f32, colour: [u8; 3], width: f32) -> &mut Self {
        self.marks.push(Mark::Rect { x, y, w, h, fill: None, stroke: Some((colour, width)) });
        self
    }

    /// A polyline; `dashed` draws 6 on, 4 off (times the width's ratio to 2 px).
    pub fn line(&mut self, points: &[(f32, f32)], colour: [u8; 3], width: f32, dashed: bool) -> &mut Self {
        let dash = dashed.then(|| [3.0 * width.max(1.0), 2.0 * width.max(1.0)]);
        self.marks.push(Mark::Line { points: points.to_vec(), colour, width, dash });
        self
    }

    pub fn circle(&mut self, cx: f32, cy: f32, r: f32, fill: [u8; 3]) -> &mut Self {
        self.marks.push(Mark::Circle { cx, cy, r, fill });
        self
    }

    /// Text with its baseline at `y`.
    pub fn text(&mut self, x: f32, y: f32, text: impl Into<String>, style: TextStyle) -> &mut Self {
        self.marks.push(Mark::Text { x, y, text: text.into(), style, vertical: false });
        self
    }

    /// Text reading upwards (a y-axis label), its baseline through (`x`, `y`).
    pub fn vertical_text(&mut self, x: f32, y: f32, text: impl Into<String>, style: TextStyle) -> &mut Self {
        self.marks.push(Mark::Text { x, y, text: text.into(), style, vertical: true });
        self
    }

    /// A pixel image with its top-left corner at (`x`, `y`), each pixel `scale` x `scale`.
    pub fn image(&mut self, x: i64, y: i64, scale: u32, image: &RgbImage) -> &mut Self {
        self.marks.push(Mark::Image { x, y, scale: scale.max(1), image: image.clone() });
        self
    }

    /// The figure as pixels.
    pub fn to_image(&self) -> RgbImage {
        let Some(mut pixmap) = Pixmap::new(self.width.max(1), self.height.max(1)) else {
            return RgbImage::from_pixel(1, 1, image::Rgb([255, 255, 255]));
        };
        pixmap.fill(tiny_skia::Color::WHITE);
        let (w, h) = (pixmap.width() as i64, pixmap.height() as i64);
        for mark in &self.marks {
            match mark {
                Mark::Rect { x, y, w: rw, h: rh, fill, stroke } => {
                    let Some(rect) = tiny_skia::Rect::from_xywh(*x, *y, *rw, *rh) else { continue };
                    if let Some(fill) = fill {
                        pixmap.fill_rect(rect, &paint(*fill), Transform::identity(), None);
                    }
                    if let Some((colour, width)) = stroke {
                        let path = PathBuilder::from_rect(rect);
                        let stroke = Stroke { width: *width, line_join: LineJoin::Miter, ..Stroke::default() };
                        pixmap.stroke_path(&path, &paint(*colour), &stroke, Transform::identity(), None);
                    }
                }
                Mark::Line { points, colour, width, dash } => {
                    let mut builder = PathBuilder::new();
                    for (i, &(x, y)) in points.iter().enumerate() {
                        if i == 0 { builder.move_to(x, y) } else { builder.line_to(x, y) }
                    }
                    let Some(path) = builder.finish() else { continue };
                    let stroke = Stroke {
                        width: *width,
                        line_cap: LineCap::Butt,
                        line_join: LineJoin::Round,
                        dash: dash.and_then(|d| StrokeDash::new(d.to_vec(), 0.0)),
                        ..Stroke::default()
                    };
                    pixmap.stroke_path(&path, &paint(*colour), &stroke, Transform::identity(), None);
                }
                Mark::Circle { cx, cy, r, fill } => {
                    if let Some(path) = PathBuilder::from_circle(*cx, *cy, *r) {
                        pixmap.fill_path(&path, &paint(*fill), FillRule::Winding, Transform::identity(), None);
                    }
                }
                Mark::Text { x, y, text, style, vertical } => {
                    let data = pixmap.data_mut();
                    rasterise(text, *x, *y, *style, *vertical, |px, py, alpha| {
                        if (0..w).contains(&px) && (0..h).contains(&py) {
                            let i = ((py * w + px) * 4) as usize;
                            blend(&mut data[i..i + 3], style.colour, alpha);
                        }
                    });
                }
                Mark::Image { x, y, scale, image } => {
                    let data = pixmap.data_mut();
                    let s = *scale as i64;
                    for (ix, iy, p) in image.enumerate_pixels() {
                        for dy in 0..s {
                            for dx in 0..s {
                                let (px, py) = (x + ix as i64 * s + dx, y + iy as i64 * s + dy);
                                if (0..w).contains(&px) && (0..h).contains(&py) {
                                    let i = ((py * w + px) * 4) as usize;
                                    data[i..i + 3].copy_from_slice(&p.0);
                                }
                            }
                        }
                    }
                }
            }
        }
        // Every mark is opaque on an opaque canvas, so premultiplied RGBA is plain RGBA here.
        let rgb: Vec<u8> = pixmap.data().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        RgbImage::from_raw(pixmap.width(), pixmap.height(), rgb).unwrap_or_else(|| RgbImage::new(1, 1))
    }

    /// The figure as an SVG document: the same marks, as vectors and text.
    pub fn to_svg(&self) -> String {
        let (w, h) = (self.width, self.height);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{SVG_FONT_FAMILY}">"#
        );
        let _ = writeln!(s, r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##);
        for mark in &self.marks {
            match mark {
                Mark::Rect { x, y, w, h, fill, stroke } => {
                    let fill = fill.map_or("none".to_string(), hex);
                    let stroke = stroke.map_or(String::new(), |(c, width)| {
                        format!(r#" stroke="{}" stroke-width="{}""#, hex(c), num(width))
                    });
                    let _ = writeln!(
                        s,
                        r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}"{stroke}/>"#,
                        num(*x),
                        num(*y),
                        num(*w),
                        num(*h)
                    );
                }
                Mark::Line { points, colour, width, dash } => {
                    let pts: Vec<String> = points.iter().map(|(x, y)| format!("{},{}", num(*x), num(*y))).collect();
                    let dash = dash
                        .map_or(String::new(), |[on, off]| format!(r#" stroke-dasharray="{} {}""#, num(on), num(off)));
                    let _ = writeln!(
                        s,
                        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round"{dash}/>"#,
                        pts.join(" "),
                        hex(*colour),
                        num(*width)
                    );
                }
                Mark::Circle { cx, cy, r, fill } => {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{}" cy="{}" r="{}" fill="{}"/>"#,
                        num(*cx),
                        num(*cy),
                        num(*r),
                        hex(*fill)
                    );
                }
                Mark::Text { x, y, text, style, vertical } => {
                    let mut attrs = format!(
                        r#"x="{}" y="{}" font-size="{}" fill="{}""#,
                        num(*x),
                        num(*y),
                        num(style.size),
                        hex(style.colour)
                    );
                    if style.weight == Weight::Bold {
                        attrs.push_str(r#" font-weight="bold""#);
                    }
                    match style.anchor {
                        Anchor::Start => {}
                        Anchor::Middle => attrs.push_str(r#" text-anchor="middle""#),
                        Anchor::End => attrs.push_str(r#" text-anchor="end""#),
                    }
                    if *vertical {
                        let _ = write!(attrs, r#" transform="rotate(-90 {} {})""#, num(*x), num(*y));
                    }
                    let _ = writeln!(s, "<text {attrs}>{}</text>", escape(text));
                }
                Mark::Image { x, y, scale, image } => {
                    let mut png = Vec::new();
                    if image::DynamicImage::ImageRgb8(image.clone())
                        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                        .is_err()
                    {
                        continue;
                    }
                    let data = base64::engine::general_purpose::STANDARD.encode(&png);
                    let _ = writeln!(
                        s,
                        r#"<image x="{x}" y="{y}" width="{}" height="{}" style="image-rendering:pixelated" href="data:image/png;base64,{data}"/>"#,
                        image.width() * scale,
                        image.height() * scale
                    );
                }
            }
        }
        s.push_str("</svg>\n");
        s
    }

    /// Writes one file: SVG when `path` ends in `.svg`, else the raster format its extension names.
    pub fn save_one(&self, path: impl AsRef<Path>) -> Result<(), FigureError> {
        let path = path.as_ref();
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg")) {
            return std::fs::write(path, self.to_svg())
                .map_err(|source| FigureError::Svg { path: path.to_path_buf(), source });
        }
        self.check_size()?;
        self.to_image().save(path).map_err(|source| FigureError::Png { path: path.to_path_buf(), source })
    }

    fn check_size(&self) -> Result<(), FigureError> {
        if self.width == 0 || self.height == 0 || u64::from(self.width) * u64::from(self.height) > 1 << 28 {
            return Err(FigureError::Size { width: self.width, height: self.height });
        }
        Ok(())
    }

    /// Writes the PNG at `path` and its SVG twin beside it (same name, `.svg`); returns the SVG's path.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<PathBuf, FigureError> {
        let path = path.as_ref();
        self.check_size()?;
        self.to_image().save(path).map_err(|source| FigureError::Png { path: path.to_path_buf(), source })?;
        let svg = path.with_extension("svg");
        std::fs::write(&svg, self.to_svg()).map_err(|source| FigureError::Svg { path: svg.clone(), source })?;
        Ok(svg)
    }
}

fn paint(colour: [u8; 3]) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color_rgba8(colour[0], colour[1], colour[2], 255);
    paint.anti_alias = true;
    paint
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Coordinates to two decimals without trailing zeros: short, and stable across platforms.
fn num(v: f32) -> String {
    let v = if v.is_finite() { (v * 100.0).round() / 100.0 } else { 0.0 };
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_string() } else { s.to_string() }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_land_where_they_are_put_in_both_outputs() {
        let mut f = Figure::new(40, 30);
        f.rect(2.0, 3.0, 10.0, 5.0, [255, 0, 0]);
        f.line(&[(0.0, 20.5), (40.0, 20.5)], [0, 0, 255], 1.0, false);
        f.circle(30.0, 8.0, 3.0, [0, 128, 0]);
        f.image(20, 22, 2, &RgbImage::from_pixel(2, 2, image::Rgb([9, 9, 9])));
        let img = f.to_image();
        assert_eq!(img.dimensions(), (40, 30));
        assert_eq!(img.get_pixel(2, 3).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(11, 7).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(12, 7).0, [255, 255, 255], "the rectangle ends at x = 12");
        assert_eq!(img.get_pixel(5, 20).0, [0, 0, 255], "a 1 px line at y = 20.5 fills row 20 exactly");
        assert_eq!(img.get_pixel(5, 21).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(30, 8).0, [0, 128, 0]);
        assert_eq!(img.get_pixel(23, 25).0, [9, 9, 9]);
        assert_eq!(img.get_pixel(24, 25).0, [255, 255, 255], "a 2x2 image at scale 2 covers 4x4");

        let svg = f.to_svg();
        assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30""#), "{svg}");
        assert!(svg.contains(r##"<rect x="2" y="3" width="10" height="5" fill="#ff0000"/>"##), "{svg}");
        assert!(
            svg.contains(r##"<polyline points="0,20.5 40,20.5" fill="none" stroke="#0000ff" stroke-width="1""##),
            "{svg}"
        );
        assert!(svg.contains(r##"<circle cx="30" cy="8" r="3" fill="#008000"/>"##), "{svg}");
        assert!(
            svg.contains(r#"<image x="20" y="22" width="4" height="4" style="image-rendering:pixelated" href="data:image/png;base64,iVBORw0KGgo"#),
            "{svg}"
        );
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn text_is_escaped_anchored_and_rotated_in_svg() {
        let mut f = Figure::new(100, 100);
        f.text(50.0, 20.0, "A < B & \"C\"", TextStyle::new(12.0, [0, 0, 0]).bold().anchored(Anchor::Middle));
        f.vertical_text(10.0, 50.0, "Accuracy", TextStyle::new(13.0, [30, 30, 30]).anchored(Anchor::Middle));
        let svg = f.to_svg();
        assert!(
            svg.contains(
                r##"<text x="50" y="20" font-size="12" fill="#000000" font-weight="bold" text-anchor="middle">A &lt; B &amp; &quot;C&quot;</text>"##
            ),
            "{svg}"
        );
        assert!(svg.contains(r#"transform="rotate(-90 10 50)">Accuracy</text>"#), "{svg}");
        let img = f.to_image();
        // The vertical label inks a narrow, tall column left of x = 10 + descent.
        let inked: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(x, y, p)| *x < 20 && *y > 24 && p.0 != [255, 255, 255])
            .map(|(x, y, _)| (x, y))
            .collect();
        let (ys, xs): (Vec<u32>, Vec<u32>) = (inked.iter().map(|p| p.1).collect(), inked.iter().map(|p| p.0).collect());
        let (ymin, ymax) = (ys.iter().min().copied().unwrap_or(0), ys.iter().max().copied().unwrap_or(0));
        let (xmin, xmax) = (xs.iter().min().copied().unwrap_or(0), xs.iter().max().copied().unwrap_or(0));
        assert!(ymax - ymin > 40 && xmax - xmin < 16, "x {xmin}..{xmax}, y {ymin}..{ymax}");
    }

    #[test]
    fn dashes_leave_gaps_and_numbers_are_short() {
        let mut f = Figure::new(60, 10);
        f.line(&[(0.0, 5.0), (60.0, 5.0)], [0, 0, 0], 2.0, true);
        let img = f.to_image();
        let row: Vec<bool> = (0..60).map(|x| img.get_pixel(x, 5).0 == [0, 0, 0]).collect();
        assert!(
            row[..6].iter().all(|b| *b) && row[6..10].iter().all(|b| !*b) && row[10..16].iter().all(|b| *b),
            "{row:?}"
        );
        assert!(f.to_svg().contains(r#"stroke-dasharray="6 4""#));
        assert_eq!(
            (num(1.0), num(0.125), num(-0.001), num(12.3456)),
            ("1".into(), "0.13".into(), "0".into(), "12.35".into())
        );
    }

    #[test]
    fn save_writes_the_png_and_its_svg_twin() {
        let dir = std::env::temp_dir().join(format!("fer-figure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let mut f = Figure::new(8, 8);
        f.rect(0.0, 0.0, 4.0, 4.0, [1, 2, 3]);
        let svg = f.save(dir.join("x.png")).map_err(|e| e.to_string());
        assert_eq!(svg, Ok(dir.join("x.svg")));
        assert_eq!(image::open(dir.join("x.png")).map(|i| i.to_rgb8().get_pixel(1, 1).0).ok(), Some([1, 2, 3]));
        assert!(std::fs::read_to_string(dir.join("x.svg")).is_ok_and(|s| s.contains("#010203")));
        let err = Figure::new(0, 5).save(dir.join("y.png")).map_err(|e| e.to_string());
        assert_eq!(err, Err("a figure of 0x5 pixels is empty or too large to draw".to_string()));
        let err = f.save(dir.join("missing/z.png")).map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(err.contains("missing/z.png"), "{err}");
        assert!(f.save_one(dir.join("only.svg")).is_ok() && f.save_one(dir.join("only.jpg")).is_ok());
        assert!(dir.join("only.svg").exists() && dir.join("only.jpg").exists() && !dir.join("only.png").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
