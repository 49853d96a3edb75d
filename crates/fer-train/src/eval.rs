use burn::tensor::{Device, activation::softmax};
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

/// Softmax probabilities for every face, averaged over `models` (an ensemble of one or more).
/// Models must be in inference mode (not on an autodiff device).
pub fn predict_probabilities(models: &[FerModel], data: &Dataset, device: &Device, batch_size: usize) -> Vec<[f32; NUM_CLASSES]> {
    let mut out = vec![[0.0f32; NUM_CLASSES]; data.len()];
    let scale = 1.0 / models.len().max(1) as f32;
    for start in (0..data.len()).step_by(batch_size.max(1)) {
        let end = (start + batch_size).min(data.len());
        let pixels = &data.pixels()[start * PIXELS..end * PIXELS];
        let input = fer_model::input_from_pixels(pixels, end - start, SIDE, device);
        for model in models {
            let probs = softmax(model.forward(input.clone()), 1).into_data();
            let probs: Vec<f32> = probs.convert::<f32>().try_into_vec().unwrap_or_default();
            for (i, row) in probs.chunks_exact(NUM_CLASSES).enumerate() {
                for (acc, p) in out[start + i].iter_mut().zip(row) {
                    *acc += p * scale;
                }
            }
        }
    }
    out
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

    /// The confusion matrix as CSV: a header of predicted classes, one row per true class.
    pub fn confusion_csv(&self) -> String {
        let mut s = String::from("true\\predicted");
        for e in Emotion::ALL {
            s.push(',');
            s.push_str(e.name());
        }
        s.push('\n');
        for (e, row) in Emotion::ALL.iter().zip(&self.confusion_matrix) {
            s.push_str(e.name());
            for v in row {
                s.push_str(&format!(",{v}"));
            }
            s.push('\n');
        }
        s
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
        assert!(e.confusion_csv().starts_with("true\\predicted,Angry,Disgust"));
    }
}

/// What `fer eval` computes for a run: the evaluation and each face's probabilities.
pub struct RunEvaluation {
    pub split: String,
    pub members: usize,
    pub evaluation: Evaluation,
    pub probabilities: Vec<[f32; NUM_CLASSES]>,
}

/// Evaluates a run (its best model, or its ensemble's members averaged) on one split and writes
/// `eval-<split>.json`, `confusion-<split>.csv` and `predictions-<split>.csv` into the run folder.
pub fn evaluate_run(run_dir: &std::path::Path, data: &Dataset, split: &str, device: &Device) -> Result<RunEvaluation, crate::TrainError> {
    let part = data.select_splits(&[split]).map_err(|available| crate::TrainError::MissingSplit {
        wanted: split.into(),
        available: available.join(", "),
    })?;
    let split = fer_data::canonical_split_name(split);
    let mut models = Vec::new();
    for path in crate::ensemble_members(run_dir)? {
        models.push(fer_model::load_model(&path, device)?);
    }
    let probabilities = predict_probabilities(&models, &part, device, 256);
    let evaluation = Evaluation::from_probabilities(&part, &probabilities);
    let write = |name: String, bytes: &[u8]| {
        let path = run_dir.join(name);
        fer_model::write_atomic(&path, bytes).map_err(|e| crate::TrainError::io(&path, e))
    };
    let json = serde_json::to_vec_pretty(&serde_json::json!({
        "split": split,
        "members": models.len(),
        "count": evaluation.count,
        "accuracy": evaluation.accuracy,
        "loss": evaluation.loss,
        "per_class": evaluation.per_class,
        "confusion_matrix": evaluation.confusion_matrix,
    }))
    .unwrap_or_default();
    write(format!("eval-{split}.json"), &json)?;
    write(format!("confusion-{split}.csv"), evaluation.confusion_csv().as_bytes())?;
    let mut csv = String::from("index,label,predicted");
    for e in Emotion::ALL {
        csv.push_str(&format!(",p_{}", e.folder_name()));
    }
    csv.push('\n');
    for (i, p) in probabilities.iter().enumerate() {
        let label = part.label(i).map_or(String::new(), |l| l.id().to_string());
        csv.push_str(&format!("{i},{label},{}", argmax(p)));
        for v in p {
            csv.push_str(&format!(",{v:.6e}"));
        }
        csv.push('\n');
    }
    write(format!("predictions-{split}.csv"), csv.as_bytes())?;
    Ok(RunEvaluation { split, members: models.len(), evaluation, probabilities })
}
