//! Finds frontal faces in photos and frames each one the way FER2013's faces were framed, so a
//! model trained on FER2013 sees what it was trained on.
//!
//! Detection is SeetaFace's funnel-structured cascade through the `rustface` crate, with SeetaFace's
//! frontal model embedded in the library (BSD 2-Clause; `model/LICENSE-SeetaFace`). Nothing here
//! depends on Burn: a project can detect and crop faces with this crate alone.
//!
//! ```no_run
//! let limits = fer_detect::PhotoLimits::default();
//! let photo = fer_detect::decode_photo(&std::fs::read("group.jpg")?, "group.jpg", &limits)?;
//! let detector = fer_detect::FaceDetector::new()?;
//! let gray = photo.to_luma8();
//! for face in detector.detect(&gray) {
//!     let crop = fer_detect::crop_face(&gray, face.bbox, fer_detect::FER_MARGIN); // 48x48 gray
//!     println!("{:?} score {:.1}: {} pixels", face.bbox, face.score, crop.len());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod photo;

pub use error::DetectError;
pub use photo::{PhotoLimits, decode_photo, photo_dimensions};

use image::GrayImage;
use image::imageops::FilterType;

/// Side of a FER2013 face.
pub const SIDE: u32 = 48;

/// Margin added on every side of a detected box, as a fraction of its side, before the crop is
/// scaled to 48x48. Measured, not guessed: on 400 PublicTest faces (upscaled 4x, 327 detected) the
/// detector's box is a median 0.906 of the FER2013 crop's side, centred (0.500, 0.503): FER2013's
/// crops are the box plus about 5% per side (`examples/fer_framing.rs`).
pub const FER_MARGIN: f32 = 0.05;

static SEETA_FRONTAL: &[u8] = include_bytes!("../model/seeta_fd_frontal_v1.0.bin");

/// A box in image pixels: left, top, width, height (always inside the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl FaceBox {
    pub fn as_array(&self) -> [u32; 4] {
        [self.x, self.y, self.width, self.height]
    }
}

/// One detected face: its box and the cascade's score (higher is surer; the default threshold is 2.0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectedFace {
    pub bbox: FaceBox,
    pub score: f64,
}

/// How hard the detector looks. The defaults are rustface's recommended settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Smallest face side looked for, in pixels of the photo; at least 20. The cascade's window
    /// is 40 pixels (rustface 0.1.7 itself ignores its own min-face setting), so the photo is
    /// scaled by 40 / `min_face_size` before the search: below 40 it is enlarged (slower, finds
    /// smaller faces), above 40 shrunk (faster: 80 does a quarter of the work).
    pub min_face_size: u32,
    /// Minimum score of a reported face (SeetaFace suggests 0.95, 2.8 or 4.5; lower finds more).
    pub score_threshold: f64,
    /// Ratio between adjacent image-pyramid levels, in (0.1, 0.99).
    pub pyramid_scale: f32,
    /// Sliding-window step in pixels.
    pub window_step: u32,
    /// Photos larger than this on their longer side are scaled down for detection (the boxes are
    /// scaled back): detection time grows with the pixel count, and faces in such photos are large.
    pub max_side: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_face_size: WINDOW,
            score_threshold: 2.0,
            pyramid_scale: 0.8,
            window_step: 4,
            max_side: 1280,
        }
    }
}

/// Side of the cascade's search window: the smallest face it finds at the photo's own scale.
const WINDOW: u32 = 40;

/// A frontal face detector. Cheap to share: each `detect` call builds its own cascade state from
/// the parsed model, so one detector serves many threads.
#[derive(Clone)]
pub struct FaceDetector {
    /// Shared: `with_min_face` per request must not copy the parsed cascade.
    model: std::sync::Arc<rustface::Model>,
    config: DetectorConfig,
}

impl FaceDetector {
    /// The embedded SeetaFace frontal model with the default settings.
    pub fn new() -> Result<Self, DetectError> {
        Self::with_config(DetectorConfig::default())
    }

    pub fn with_config(config: DetectorConfig) -> Result<Self, DetectError> {
        let model = rustface::read_model(std::io::Cursor::new(SEETA_FRONTAL)).map_err(DetectError::Model)?;
        let config = DetectorConfig {
            min_face_size: config.min_face_size.max(20),
            score_threshold: if config.score_threshold > 0.0 { config.score_threshold } else { 2.0 },
            pyramid_scale: config.pyramid_scale.clamp(0.1, 0.99),
            window_step: config.window_step.max(1),
            max_side: config.max_side.max(64),
        };
        Ok(FaceDetector { model: std::sync::Arc::new(model), config })
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The same detector looking for faces of at least `min_face_size` pixels (at least 20).
    pub fn with_min_face(&self, min_face_size: u32) -> FaceDetector {
        FaceDetector {
            model: self.model.clone(),
            config: DetectorConfig { min_face_size: min_face_size.max(20), ..self.config.clone() },
        }
    }

    /// How much the photo is scaled before the search: enough for a `min_face_size` face to fill
    /// the 40-pixel window, and no more than `max_side` on the longer side.
    fn search_scale(&self, width: u32, height: u32) -> f64 {
        let for_min_face = WINDOW as f64 / self.config.min_face_size as f64;
        let for_max_side = self.config.max_side as f64 / width.max(height) as f64;
        for_min_face.min(for_max_side)
    }

    /// The faces in a grayscale image, left to right (then top to bottom). An image too small
    /// to hold a face gives none.
    pub fn detect(&self, gray: &GrayImage) -> Vec<DetectedFace> {
        let (width, height) = gray.dimensions();
        if width < self.config.min_face_size || height < self.config.min_face_size {
            return Vec::new();
        }
        let factor = self.search_scale(width, height);
        let scaled = if (factor - 1.0).abs() > 1e-9 {
            let (w, h) =
                (((width as f64 * factor).round() as u32).max(1), ((height as f64 * factor).round() as u32).max(1));
            Some(image::imageops::resize(gray, w, h, FilterType::Triangle))
        } else {
            None
        };
        let view = scaled.as_ref().unwrap_or(gray);
        if view.width() < WINDOW || view.height() < WINDOW {
            return Vec::new();
        }
        let mut detector = rustface::create_detector_with_model((*self.model).clone());
        detector.set_min_face_size(WINDOW);
        detector.set_score_thresh(self.config.score_threshold);
        detector.set_pyramid_scale_factor(self.config.pyramid_scale);
        detector.set_slide_window_step(self.config.window_step, self.config.window_step);
        let data = rustface::ImageData::new(view.as_raw(), view.width(), view.height());
        let mut faces: Vec<DetectedFace> = detector
            .detect(&data)
            .iter()
            .filter_map(|f| {
                let b = f.bbox();
                let to_full = |v: f64| v / factor;
                clip_box(
                    to_full(b.x() as f64),
                    to_full(b.y() as f64),
                    to_full(b.width() as f64),
                    to_full(b.height() as f64),
                    width,
                    height,
                )
                .map(|bbox| DetectedFace { bbox, score: f.score() })
            })
            .collect();
        faces.sort_by_key(|f| (f.bbox.x, f.bbox.y));
        faces
    }
}

/// The part of a box (in floating-point pixels) inside a `width` x `height` image; `None` if empty.
fn clip_box(x: f64, y: f64, w: f64, h: f64, width: u32, height: u32) -> Option<FaceBox> {
    let x0 = x.round().clamp(0.0, width as f64);
    let y0 = y.round().clamp(0.0, height as f64);
    let x1 = (x + w).round().clamp(0.0, width as f64);
    let y1 = (y + h).round().clamp(0.0, height as f64);
    (x1 > x0 && y1 > y0).then_some(FaceBox {
        x: x0 as u32,
        y: y0 as u32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    })
}

/// The square around `bbox` grown by `margin` times its side on every side, in image pixels
/// (it may reach outside the image): (left, top, side).
pub fn crop_square(bbox: FaceBox, margin: f32) -> (f64, f64, f64) {
    let side = bbox.width.max(bbox.height).max(1) as f64 * (1.0 + 2.0 * margin.max(0.0) as f64);
    let cx = bbox.x as f64 + bbox.width as f64 / 2.0;
    let cy = bbox.y as f64 + bbox.height as f64 / 2.0;
    (cx - side / 2.0, cy - side / 2.0, side)
}

/// A FER2013-style face: the square of [`crop_square`] scaled to 48x48 gray, area-averaged, with
/// the image's edge pixels repeated where the square reaches outside the photo.
pub fn crop_face(gray: &GrayImage, bbox: FaceBox, margin: f32) -> GrayImage {
    let (left, top, side) = crop_square(bbox, margin);
    let (width, height) = gray.dimensions();
    let mut out = GrayImage::new(SIDE, SIDE);
    if width == 0 || height == 0 {
        return out;
    }
    // Each output pixel averages a k x k grid of samples across its footprint (k grows with
    // the scale so a large face is area-averaged, not aliased).
    let step = side / SIDE as f64;
    let k = (step.ceil() as usize).clamp(1, 8);
    for oy in 0..SIDE {
        for ox in 0..SIDE {
            let mut sum = 0.0f64;
            for sy in 0..k {
                for sx in 0..k {
                    let px = left + (ox as f64 + (sx as f64 + 0.5) / k as f64) * step;
                    let py = top + (oy as f64 + (sy as f64 + 0.5) / k as f64) * step;
                    let ix = (px.floor() as i64).clamp(0, width as i64 - 1) as u32;
                    let iy = (py.floor() as i64).clamp(0, height as i64 - 1) as u32;
                    sum += gray.get_pixel(ix, iy)[0] as f64;
                }
            }
            out.put_pixel(ox, oy, image::Luma([(sum / (k * k) as f64).round() as u8]));
        }
    }
    out
}

#[cfg(test)]
mod tests;
