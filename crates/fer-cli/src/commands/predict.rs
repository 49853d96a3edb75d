use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use fer_data::Emotion;
use fer_detect::{DetectorConfig, FaceDetector, PhotoLimits};
use fer_report::{FaceLabel, annotate_faces};
use fer_train::Tta;

use crate::builtin::ModelSource;
use crate::device::DeviceChoice;
use crate::photos::{Classifier, PhotoResult, class_name, read_photo};

/// Options shared by `predict` and `serve`: which weights, how to find faces, input limits.
#[derive(Args, Clone)]
pub struct DetectArgs {
    /// Run folder whose model answers (its best.fer, or its ensemble members averaged).
    /// Without it, the model built into fer (models/fer2013-cnn.ferc, see models/README.md).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Use the run's weight average (best-ema.fer).
    #[arg(long, requires = "run")]
    pub ema: bool,
    /// Test-time augmentation: none, flip or crops.
    #[arg(long, default_value = "none")]
    pub tta: String,
    /// Smallest face to look for, in pixels (at least 20). The search runs on the photo scaled
    /// by 40 / MIN_FACE: 80 is four times faster and still finds faces of 80 px and up (webcam
    /// frames); 20 finds faces down to 20 px, four times slower.
    #[arg(long, default_value_t = 40)]
    pub min_face: u32,
    /// Detector score threshold: lower finds more faces and more false ones (SeetaFace: 0.95, 2.8, 4.5).
    #[arg(long, default_value_t = 2.0)]
    pub score_threshold: f64,
    /// Largest photo file accepted, in bytes.
    #[arg(long, default_value_t = PhotoLimits::default().max_bytes)]
    pub max_bytes: usize,
    /// Largest photo accepted, in pixels (width x height), checked from the header before decoding.
    #[arg(long, default_value_t = PhotoLimits::default().max_pixels)]
    pub max_pixels: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceChoice,
}

impl DetectArgs {
    pub fn limits(&self) -> PhotoLimits {
        PhotoLimits { max_bytes: self.max_bytes, max_pixels: self.max_pixels }
    }

    /// The model these options name: `--run`'s, or the built-in one.
    pub fn source(&self) -> anyhow::Result<ModelSource> {
        ModelSource::new(self.run.as_deref(), self.ema)
    }

    pub fn classifier(&self) -> anyhow::Result<Classifier> {
        let detector = FaceDetector::with_config(DetectorConfig {
            min_face_size: self.min_face,
            score_threshold: self.score_threshold,
            ..DetectorConfig::default()
        })?;
        Classifier::load(&self.source()?, Tta::parse(&self.tta)?, self.device.device()?, detector)
    }
}

#[derive(Args)]
pub struct PredictArgs {
    /// Photos (PNG or JPEG, any size, colour or gray). Each face found is framed like FER2013 and
    /// classified.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Classify the whole image as one face (for images that already are face crops, like
    /// FER2013's), without looking for faces.
    #[arg(long)]
    no_detect: bool,
    /// Print JSON: one object per image ({"path", "width", "height", "faces": [{"box": [x, y, w, h],
    /// "score", "class", "probabilities"}]}), a list when several images are given.
    #[arg(long)]
    json: bool,
    /// Write the photo with each face boxed and labelled: a PNG file for one image, a folder
    /// (one PNG per image) for several.
    #[arg(long)]
    annotate: Option<PathBuf>,
    #[command(flatten)]
    detect: DetectArgs,
}

pub fn predict(args: PredictArgs) -> anyhow::Result<()> {
    let classifier = args.detect.classifier()?;
    let limits = args.detect.limits();
    let several = args.images.len() > 1;
    if let (Some(out), true) = (&args.annotate, several) {
        std::fs::create_dir_all(out)
            .with_context(|| format!("--annotate {}: cannot create the folder", out.display()))?;
    }
    let mut results = Vec::new();
    for path in &args.images {
        let photo = read_photo(path, &limits)?;
        let result = classifier.classify(&photo, &path.display().to_string(), !args.no_detect);
        if let Some(out) = &args.annotate {
            let target = if several {
                out.join(format!("{}.png", path.file_stem().map_or("image".into(), |s| s.to_string_lossy())))
            } else {
                out.clone()
            };
            annotate(&photo, &result, &target)?;
        }
        if !args.json {
            print_result(&result, args.no_detect);
        }
        results.push(result);
    }
    if args.json {
        let values: Vec<_> = results.iter().map(PhotoResult::to_json).collect();
        let out =
            if several { serde_json::Value::Array(values) } else { values.into_iter().next().unwrap_or_default() };
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

fn probability_list(p: &[f32; 7]) -> String {
    Emotion::ALL.iter().map(|e| format!("{} {:.3}", e.name(), p[e.id()])).collect::<Vec<_>>().join(", ")
}

fn print_result(result: &PhotoResult, no_detect: bool) {
    if no_detect {
        for f in &result.faces {
            println!(
                "{}: {} ({:.3})  [{}]",
                result.path,
                class_name(f.class),
                f.probabilities[f.class],
                probability_list(&f.probabilities)
            );
        }
        return;
    }
    match result.faces.len() {
        0 => {
            let hint = if result.width.max(result.height) <= 64 {
                " (for face crops such as FER2013's, use --no-detect)"
            } else {
                ""
            };
            println!("{}: no face found{hint}", result.path);
        }
        n => println!("{}: {n} face{}", result.path, if n == 1 { "" } else { "s" }),
    }
    for (i, f) in result.faces.iter().enumerate() {
        let [x, y, w, h] = f.bbox;
        println!(
            "  face {} at x {x}, y {y}, {w}x{h} (detector score {:.2}): {} ({:.3})  [{}]",
            i + 1,
            f.score.unwrap_or(f64::NAN),
            class_name(f.class),
            f.probabilities[f.class],
            probability_list(&f.probabilities)
        );
    }
}

fn annotate(photo: &image::DynamicImage, result: &PhotoResult, out: &Path) -> anyhow::Result<()> {
    let labels: Vec<FaceLabel> = result
        .faces
        .iter()
        .map(|f| FaceLabel {
            bbox: f.bbox,
            label: format!("{} {:.2}", class_name(f.class), f.probabilities[f.class]),
            class: f.class,
        })
        .collect();
    annotate_faces(&photo.to_rgb8(), &labels)
        .save(out)
        .with_context(|| format!("--annotate: cannot write {}", out.display()))
}
