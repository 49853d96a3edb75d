//! Photos in, emotions out: detect the faces, frame each like FER2013, classify. Shared by
//! `fer predict` and `fer serve`, so both answer the same JSON.

use std::path::Path;

use anyhow::Context;
use burn::tensor::{Device, Tensor};
use fer_data::{Emotion, PIXELS, SIDE};
use fer_detect::{FER_MARGIN, FaceBox, FaceDetector, PhotoLimits};
use fer_model::FerModel;
use fer_train::Tta;

use crate::builtin::ModelSource;
use image::{DynamicImage, GrayImage};
use serde_json::{Value, json};

/// One classified face.
#[derive(Debug, Clone)]
pub struct FaceResult {
    /// x, y, width, height in photo pixels.
    pub bbox: [u32; 4],
    /// The detector's score; `None` when detection was off (the whole image is the face).
    pub score: Option<f64>,
    pub class: usize,
    pub probabilities: [f32; 7],
    /// The 48x48 gray face the model saw.
    pub crop: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct PhotoResult {
    pub path: String,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceResult>,
}

impl PhotoResult {
    /// The object `fer predict --json` prints per image and `POST /api/predict` answers.
    pub fn to_json(&self) -> Value {
        let faces: Vec<Value> = self
            .faces
            .iter()
            .map(|f| {
                let probabilities: serde_json::Map<String, Value> = Emotion::ALL
                    .iter()
                    .map(|e| (e.name().to_string(), json!(round4(f.probabilities[e.id()]))))
                    .collect();
                json!({
                    "box": f.bbox,
                    "score": f.score.map(|s| (s * 1000.0).round() / 1000.0),
                    "class": class_name(f.class),
                    "probabilities": probabilities,
                })
            })
            .collect();
        json!({ "path": self.path, "width": self.width, "height": self.height, "faces": faces })
    }
}

fn round4(p: f32) -> f64 {
    (p as f64 * 10_000.0).round() / 10_000.0
}

pub fn class_name(id: usize) -> &'static str {
    Emotion::from_id(id).map_or("?", |e| e.name())
}

/// A run's models plus the face detector: everything needed to go from photo to emotions.
pub struct Classifier {
    pub models: Vec<FerModel>,
    pub device: Device,
    pub tta: Tta,
    pub detector: FaceDetector,
    pub margin: f32,
}

impl Classifier {
    pub fn load(source: &ModelSource, tta: Tta, device: Device, detector: FaceDetector) -> anyhow::Result<Classifier> {
        let models = source.load_all(&device)?;
        Ok(Classifier { models, device, tta, detector, margin: FER_MARGIN })
    }

    /// Classifies every face of `photo` (or, with `detect` off, the whole photo as one face).
    pub fn classify(&self, photo: &DynamicImage, path: &str, detect: bool) -> PhotoResult {
        let found = find_faces(&self.detector, self.margin, photo, detect);
        let probabilities = self.probabilities(&found.crops);
        found.into_result(path, probabilities)
    }

    /// The model's (or ensemble's) probabilities for each 48x48 face in `crops`, in one batch.
    pub fn probabilities(&self, crops: &fer_data::Dataset) -> Vec<[f32; 7]> {
        if crops.is_empty() {
            return Vec::new();
        }
        fer_train::predict_probabilities_tta(&self.models, crops, &self.device, 64, self.tta)
    }
}

/// The faces of one photo, framed like FER2013 but not yet classified: the part of a prediction
/// that needs no model (so `fer serve` can batch the model part across requests).
pub struct FoundFaces {
    pub width: u32,
    pub height: u32,
    boxes: Vec<(FaceBox, Option<f64>)>,
    /// One 48x48 crop per box, in the same order.
    pub crops: fer_data::Dataset,
}

impl FoundFaces {
    /// The result, given one probability vector per face (in `crops` order).
    pub fn into_result(self, path: &str, probabilities: Vec<[f32; 7]>) -> PhotoResult {
        let crops = &self.crops;
        let faces = self
            .boxes
            .into_iter()
            .zip(probabilities)
            .enumerate()
            .map(|(i, ((bbox, score), p))| FaceResult {
                bbox: bbox.as_array(),
                score,
                class: fer_train::argmax(&p),
                probabilities: p,
                crop: crops.image(i).to_vec(),
            })
            .collect();
        PhotoResult { path: path.to_string(), width: self.width, height: self.height, faces }
    }
}

/// Detects the faces of `photo` and crops each like FER2013 (or, with `detect` off, takes the
/// whole photo as one face).
pub fn find_faces(detector: &FaceDetector, margin: f32, photo: &DynamicImage, detect: bool) -> FoundFaces {
    let gray = photo.to_luma8();
    let (width, height) = gray.dimensions();
    let mut boxes: Vec<(FaceBox, Option<f64>)> = Vec::new();
    let mut crops = fer_data::Dataset::new();
    if detect {
        for (bbox, score, crop) in face_crops(&gray, detector, margin) {
            boxes.push((bbox, Some(score)));
            crops.push(&crop, None, "photo");
        }
    } else {
        boxes.push((FaceBox { x: 0, y: 0, width, height }, None));
        crops.push(&whole_image_face(&gray), None, "photo");
    }
    FoundFaces { width, height, boxes, crops }
}

/// Each face the detector finds in `gray`: its box, score and the 48x48 crop framed like
/// FER2013's faces (`margin` of the box added per side).
pub fn face_crops(gray: &GrayImage, detector: &FaceDetector, margin: f32) -> Vec<(FaceBox, f64, Vec<u8>)> {
    detector
        .detect(gray)
        .into_iter()
        .map(|face| (face.bbox, face.score, fer_detect::crop_face(gray, face.bbox, margin).into_raw()))
        .collect()
}

/// Today's `--no-detect` behaviour: the whole image squeezed to 48x48 (as `fer_data::decode_face`).
fn whole_image_face(gray: &GrayImage) -> Vec<u8> {
    if gray.width() as usize == SIDE && gray.height() as usize == SIDE {
        return gray.as_raw().clone();
    }
    let resized = image::imageops::resize(gray, SIDE as u32, SIDE as u32, image::imageops::FilterType::Triangle);
    let mut out = resized.into_raw();
    out.truncate(PIXELS);
    out
}

/// Reads and decodes a photo file within `limits`; errors name the file.
pub fn read_photo(path: &Path, limits: &PhotoLimits) -> anyhow::Result<DynamicImage> {
    let name = path.display().to_string();
    let size = std::fs::metadata(path).with_context(|| format!("{name}: cannot read"))?.len();
    anyhow::ensure!(
        size <= limits.max_bytes as u64,
        "{name}: {size} bytes is over the limit of {} bytes per image (raise it with --max-bytes)",
        limits.max_bytes
    );
    let bytes = std::fs::read(path).with_context(|| format!("{name}: cannot read"))?;
    Ok(fer_detect::decode_photo(&bytes, &name, limits)?)
}

/// Saliency overlays (SmoothGrad, 12 noisy copies) for each face of `result`, as 144x144 PNGs:
/// which pixels of the 48x48 crop moved the predicted class's score.
/// `model` lives on the autodiff device `ad` and is frozen (see `explain_model`).
pub fn saliency_overlays(model: &FerModel, ad: &Device, result: &PhotoResult) -> Vec<Vec<u8>> {
    if result.faces.is_empty() {
        return Vec::new();
    }
    let mut pixels = Vec::with_capacity(result.faces.len() * PIXELS);
    for f in &result.faces {
        pixels.extend_from_slice(&f.crop);
    }
    let input = fer_model::input_from_pixels(&pixels, result.faces.len(), SIDE, ad);
    let targets: Vec<usize> = result.faces.iter().map(|f| f.class).collect();
    let maps: Tensor<4> =
        fer_interpret::smoothgrad(model, input, &targets, fer_interpret::Score::Logit, 12, 0.15).abs();
    let values = maps.into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
    result
        .faces
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let zeros = [0.0f32; PIXELS];
            let map = values.get(i * PIXELS..(i + 1) * PIXELS).unwrap_or(&zeros);
            let face = GrayImage::from_raw(SIDE as u32, SIDE as u32, f.crop.clone())
                .unwrap_or_else(|| GrayImage::new(SIDE as u32, SIDE as u32));
            let img = fer_report::draw::upscale(&fer_report::draw::overlay(&face, map, 0.6), 3);
            let mut png = Vec::new();
            let _ = DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png);
            png
        })
        .collect()
}

/// The source's first model on the autodiff version of `device`, frozen so BatchNorm uses its
/// running statistics and dropout is off: what saliency needs.
pub fn explain_model(source: &ModelSource, device: &Device) -> anyhow::Result<(FerModel, Device)> {
    use burn::module::Module;
    let ad = device.clone().autodiff();
    Ok((source.load_first(&ad)?.freeze(), ad))
}
