use burn::tensor::{Device, activation::softmax};
use fer_data::augment::{AffineParams, FillMode, apply_affine};
use fer_data::{Dataset, Emotion, NUM_CLASSES, PIXELS, SIDE};
use fer_model::FerModel;
use serde::{Deserialize, Serialize};

/// Precision and recall of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Accuracy, per-class metrics and the confusion matrix (rows true, columns predicted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub count: usize,
    pub accuracy: f64,
    /// Mean cross-entropy of the (averaged) predicted probabilities.
    pub loss: f64,
    pub per_class: Vec<ClassMetrics>,
    pub confusion_matrix: Vec<Vec<u64>>,
}

/// Test-time augmentation: each face is classified in several views and the probabilities are
/// averaged. The report's protocol is `None`; the others are reported beside it, never instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tta {
    #[default]
    None,
    /// The face and its mirror image.
    Flip,
    /// The face moved 2 pixels up, down, left and right (edges repeated) and unmoved, each also
    /// mirrored: 10 views.
    Crops,
}

impl Tta {
    pub fn parse(name: &str) -> Result<Tta, crate::TrainError> {
        match name {
            "none" => Ok(Tta::None),
            "flip" => Ok(Tta::Flip),
            "crops" => Ok(Tta::Crops),
            other => Err(crate::TrainError::InvalidOption(format!(
                "unknown test-time augmentation {other:?}; valid: none, flip, crops"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tta::None => "none",
            Tta::Flip => "flip",
            Tta::Crops => "crops",
        }
    }

    /// The views, as transforms of the 48x48 face (the identity first).
    pub fn views(self) -> Vec<AffineParams> {
        let shifts: &[(f64, f64)] = match self {
            Tta::None => return vec![AffineParams::default()],
            Tta::Flip => &[(0.0, 0.0)],
            Tta::Crops => &[(0.0, 0.0), (2.0, 0.0), (-2.0, 0.0), (0.0, 2.0), (0.0, -2.0)],
        };
        let mut views = Vec::new();
        for flip_horizontal in [false, true] {
            for &(tx, ty) in shifts {
                views.push(AffineParams { tx, ty, flip_horizontal, ..AffineParams::default() });
            }
        }
        views
    }
}

/// Softmax probabilities for every face, averaged over `models` (an ensemble of one or more).
/// Models must be in inference mode (not on an autodiff device).
pub fn predict_probabilities(
    models: &[FerModel],
    data: &Dataset,
    device: &Device,
    batch_size: usize,
) -> Vec<[f32; NUM_CLASSES]> {
    predict_probabilities_tta(models, data, device, batch_size, Tta::None)
}

/// [`predict_probabilities`], also averaged over the views of `tta`.
pub fn predict_probabilities_tta(
    models: &[FerModel],
    data: &Dataset,
    device: &Device,
    batch_size: usize,
    tta: Tta,
) -> Vec<[f32; NUM_CLASSES]> {
    let mut out = vec![[0.0f32; NUM_CLASSES]; data.len()];
    let views = tta.views();
    let scale = 1.0 / (models.len().max(1) * views.len()) as f32;
    for start in (0..data.len()).step_by(batch_size.max(1)) {
        let end = (start + batch_size).min(data.len());
        let pixels = &data.pixels()[start * PIXELS..end * PIXELS];
        for view in &views {
            let input = if *view == AffineParams::default() {
                fer_model::input_from_pixels(pixels, end - start, SIDE, device)
            } else {
                // Integer shifts and mirroring land on pixel centres: the u8 values are exact.
                let moved: Vec<u8> =
                    pixels.chunks_exact(PIXELS).flat_map(|face| apply_affine(face, view, FillMode::Nearest)).collect();
                fer_model::input_from_pixels(&moved, end - start, SIDE, device)
            };
            add_probabilities(models, input, &mut out[start..end], scale);
        }
    }
    out
}

fn add_probabilities(models: &[FerModel], input: burn::tensor::Tensor<4>, out: &mut [[f32; NUM_CLASSES]], scale: f32) {
    for model in models {
        let probs = softmax(model.forward(input.clone()), 1).into_data();
        let probs: Vec<f32> = probs.convert::<f32>().try_into_vec().unwrap_or_default();
        for (acc_row, row) in out.iter_mut().zip(probs.chunks_exact(NUM_CLASSES)) {
            for (acc, p) in acc_row.iter_mut().zip(row) {
                *acc += p * scale;
            }
        }
    }
}

/// The predicted class: index of the largest probability (the first, on ties).
pub fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best })
}

impl Evaluation {
    /// Scores predicted probabilities against the labels (unlabelled faces are ignored).
    pub fn from_probabilities(data: &Dataset, probs: &[[f32; NUM_CLASSES]]) -> Evaluation {
        let mut confusion = vec![vec![0u64; NUM_CLASSES]; NUM_CLASSES];
        let mut loss = 0.0f64;
        let mut count = 0usize;
        for (i, p) in probs.iter().enumerate() {
            let Some(label) = data.label(i) else { continue };
            confusion[label.id()][argmax(p)] += 1;
            loss -= (p[label.id()].max(1e-12) as f64).ln();
            count += 1;
        }
        let correct: u64 = (0..NUM_CLASSES).map(|c| confusion[c][c]).sum();
        let per_class = Emotion::ALL
            .iter()
            .map(|e| {
                let c = e.id();
                let support: u64 = confusion[c].iter().sum();
                let predicted: u64 = (0..NUM_CLASSES).map(|r| confusion[r][c]).sum();
                let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
                let precision = ratio(confusion[c][c], predicted);
                let recall = ratio(confusion[c][c], support);
                let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
                ClassMetrics { class: e.name().into(), precision, recall, f1, support }
            })
            .collect();
        Evaluation {
            count,
            accuracy: if count == 0 { 0.0 } else { correct as f64 / count as f64 },
            loss: if count == 0 { 0.0 } else { loss / count as f64 },
            per_class,
            confusion_matrix: confusion,
        }
    }
}

/// Evaluates an ensemble (or one model) on labelled faces.
pub fn evaluate(models: &[FerModel], data: &Dataset, device: &Device) -> Evaluation {
    Evaluation::from_probabilities(data, &predict_probabilities(models, data, device, 256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_metrics() {
        let mut d = Dataset::new();
        let px = vec![0u8; PIXELS];
        for label in [Emotion::Fear, Emotion::Fear, Emotion::Sad, Emotion::Happy] {
            d.push(&px, Some(label), "PublicTest");
        }
        let one_hot = |c: usize| {
            let mut p = [0.0f32; NUM_CLASSES];
            p[c] = 1.0;
            p
        };
        // Fear→Sad, Fear→Fear, Sad→Sad, Happy→Happy.
        let probs = [one_hot(4), one_hot(2), one_hot(4), one_hot(3)];
        let e = Evaluation::from_probabilities(&d, &probs);
        assert_eq!(e.accuracy, 0.75);
        assert_eq!(e.confusion_matrix[2][4], 1);
        let fear = &e.per_class[2];
        assert_eq!((fear.precision, fear.recall, fear.support), (1.0, 0.5, 2));
        let sad = &e.per_class[4];
        assert_eq!((sad.precision, sad.recall), (0.5, 1.0));
    }

    #[test]
    fn tta_views() {
        assert_eq!(Tta::None.views(), vec![AffineParams::default()]);
        let flip = Tta::Flip.views();
        assert_eq!(flip.len(), 2);
        assert!(flip[1].flip_horizontal && flip[1].is_identity_affine());
        let crops = Tta::Crops.views();
        assert_eq!(crops.len(), 10);
        assert_eq!(crops.iter().filter(|v| v.flip_horizontal).count(), 5);
        assert_eq!(Tta::parse("crops").unwrap(), Tta::Crops);
        assert!(Tta::parse("mirror").is_err());
        let choice = EvalChoice { weights: crate::Weights::Ema, tta: Tta::Flip };
        assert_eq!(choice.suffix(), "-ema-tta-flip");
        assert_eq!(EvalChoice::default().suffix(), "");
    }
}

/// What `fer eval` computes for a run: the evaluation and each face's probabilities.
pub struct RunEvaluation {
    pub split: String,
    pub members: usize,
    pub evaluation: Evaluation,
    pub probabilities: Vec<[f32; NUM_CLASSES]>,
}

/// Which weights and views `fer eval` uses; the default is the report's protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvalChoice {
    pub weights: crate::Weights,
    pub tta: Tta,
}

impl EvalChoice {
    /// Appended to result file names, so the plain protocol's files are never overwritten.
    pub fn suffix(&self) -> String {
        let mut s = String::new();
        if self.weights == crate::Weights::Ema {
            s.push_str("-ema");
        }
        if self.tta != Tta::None {
            s.push_str("-tta-");
            s.push_str(self.tta.name());
        }
        s
    }
}

/// Evaluates a run (its best model, or its ensemble's members averaged) on one split and writes
/// `eval-<split>.json`, `confusion-<split>.csv` and `predictions-<split>.csv` into the run folder.
pub fn evaluate_run(
    run_dir: &std::path::Path,
    data: &Dataset,
    split: &str,
    device: &Device,
) -> Result<RunEvaluation, crate::TrainError> {
    evaluate_run_with(run_dir, data, split, device, EvalChoice::default())
}

/// [`evaluate_run`] with the weight average and/or test-time augmentation; the files carry
/// [`EvalChoice::suffix`] (e.g. `eval-PublicTest-ema-tta-flip.json`).
pub fn evaluate_run_with(
    run_dir: &std::path::Path,
    data: &Dataset,
    split: &str,
    device: &Device,
    choice: EvalChoice,
) -> Result<RunEvaluation, crate::TrainError> {
    evaluate_run_to(run_dir, data, split, device, choice, crate::frames::OutFormat::Csv)
}

/// [`evaluate_run_with`], writing the tables (`predictions-`, `per-class-`, `confusion-<split>`)
/// as CSV, Parquet or JSON through polars; `eval-<split>.json` holds the summary either way.
pub fn evaluate_run_to(
    run_dir: &std::path::Path,
    data: &Dataset,
    split: &str,
    device: &Device,
    choice: EvalChoice,
    format: crate::frames::OutFormat,
) -> Result<RunEvaluation, crate::TrainError> {
    let mut models = Vec::new();
    for path in crate::ensemble_members(run_dir, choice.weights)? {
        models.push(fer_model::load_model(&path, device)?);
    }
    evaluate_models_to(&models, data, split, device, choice, Some(run_dir), format)
}

/// Evaluates `models` (averaged) on one split, as [`evaluate_run_to`] does for a run's; the
/// tables go into `out_dir` when one is given (none: nothing is written).
pub fn evaluate_models_to(
    models: &[fer_model::FerModel],
    data: &Dataset,
    split: &str,
    device: &Device,
    choice: EvalChoice,
    out_dir: Option<&std::path::Path>,
    format: crate::frames::OutFormat,
) -> Result<RunEvaluation, crate::TrainError> {
    let part = data.select_splits(&[split]).map_err(|available| crate::TrainError::MissingSplit {
        wanted: split.into(),
        available: available.join(", "),
    })?;
    let split = fer_data::canonical_split_name(split);
    let probabilities = predict_probabilities_tta(models, &part, device, 256, choice.tta);
    let evaluation = Evaluation::from_probabilities(&part, &probabilities);
    let Some(run_dir) = out_dir else {
        return Ok(RunEvaluation { split, members: models.len(), evaluation, probabilities });
    };
    let write = |name: String, bytes: &[u8]| {
        let path = run_dir.join(name);
        fer_model::write_atomic(&path, bytes).map_err(|e| crate::TrainError::io(&path, e))
    };
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "split": split,
        "members": models.len(),
        "weights": choice.weights,
        "tta": choice.tta,
        "count": evaluation.count,
        "accuracy": evaluation.accuracy,
        "loss": evaluation.loss,
        "per_class": evaluation.per_class,
        "confusion_matrix": evaluation.confusion_matrix,
    }))
    .unwrap_or_default();
    let suffix = choice.suffix();
    write(format!("eval-{split}{suffix}.json"), &json)?;
    let ext = format.extension();
    let table = |e: polars::prelude::PolarsError| crate::TrainError::BadRun {
        path: run_dir.into(),
        reason: format!("result table: {e}"),
    };
    let mut predictions = crate::frames::predictions_frame(&part, &probabilities).map_err(table)?;
    crate::frames::write_frame(&mut predictions, &run_dir.join(format!("predictions-{split}{suffix}.{ext}")), format)?;
    let mut per_class = crate::frames::per_class_frame(&evaluation).map_err(table)?;
    crate::frames::write_frame(&mut per_class, &run_dir.join(format!("per-class-{split}{suffix}.{ext}")), format)?;
    let mut confusion = crate::frames::confusion_frame(&evaluation).map_err(table)?;
    crate::frames::write_frame(&mut confusion, &run_dir.join(format!("confusion-{split}{suffix}.{ext}")), format)?;
    Ok(RunEvaluation { split, members: models.len(), evaluation, probabilities })
}
