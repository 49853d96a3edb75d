//! Results as polars DataFrames: predictions, per-class metrics, the confusion matrix and a
//! run's training history, for analysis in Rust (or, written as Parquet, CSV or JSON, anywhere).
//!
//! The pairs of classes a model confuses most, with polars expressions:
//!
//! ```
//! use polars::prelude::*;
//! # let eval = fer_train::Evaluation {
//! #     count: 10, accuracy: 0.5, loss: 1.0, per_class: vec![],
//! #     confusion_matrix: (0..7)
//! #         .map(|t| (0..7).map(|p| if t == p { 5 } else { ((t * 3 + p) % 4) as u64 }).collect())
//! #         .collect(),
//! # };
//! let confusion = fer_train::frames::confusion_long_frame(&eval)?;
//! let worst = confusion
//!     .lazy()
//!     .filter(col("true").neq(col("predicted")))
//!     .sort(["count"], SortMultipleOptions::default().with_order_descending(true))
//!     .limit(3)
//!     .collect()?;
//! assert_eq!(worst.height(), 3);
//! assert_eq!(worst.column("count")?.u64()?.get(0), Some(3));
//! # Ok::<(), PolarsError>(())
//! ```

use std::path::Path;

use fer_data::{Dataset, Emotion, NUM_CLASSES};
use polars::prelude::*;

use crate::{Evaluation, TrainError};

/// File formats results can be written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutFormat {
    #[default]
    Csv,
    Parquet,
    Json,
}

impl OutFormat {
    pub fn parse(name: &str) -> Result<OutFormat, TrainError> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Ok(OutFormat::Csv),
            "parquet" => Ok(OutFormat::Parquet),
            "json" => Ok(OutFormat::Json),
            other => {
                Err(TrainError::InvalidOption(format!("unknown --out-format {other:?}; valid: csv, parquet, json")))
            }
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            OutFormat::Csv => "csv",
            OutFormat::Parquet => "parquet",
            OutFormat::Json => "json",
        }
    }
}

fn class_names() -> Vec<&'static str> {
    Emotion::ALL.iter().map(|e| e.name()).collect()
}

/// One row per face: `index`, `true` (class name; null when unlabelled), `predicted`, and the
/// seven probabilities in columns named by class.
pub fn predictions_frame(data: &Dataset, probabilities: &[[f32; NUM_CLASSES]]) -> PolarsResult<DataFrame> {
    let n = probabilities.len();
    let mut columns: Vec<Column> = vec![
        Column::new("index".into(), (0..n as u32).collect::<Vec<_>>()),
        Column::new("true".into(), (0..n).map(|i| data.label(i).map(|e| e.name())).collect::<Vec<_>>()),
        Column::new(
            "predicted".into(),
            probabilities.iter().map(|p| class_names()[crate::argmax(p)]).collect::<Vec<_>>(),
        ),
    ];
    for e in Emotion::ALL {
        columns.push(Column::new(e.name().into(), probabilities.iter().map(|p| p[e.id()]).collect::<Vec<_>>()));
    }
    DataFrame::new(n, columns)
}

/// One row per class: `class`, `precision`, `recall`, `f1`, `support`.
pub fn per_class_frame(evaluation: &Evaluation) -> PolarsResult<DataFrame> {
    let m = &evaluation.per_class;
    DataFrame::new(
        m.len(),
        vec![
            Column::new("class".into(), m.iter().map(|c| c.class.as_str()).collect::<Vec<_>>()),
            Column::new("precision".into(), m.iter().map(|c| c.precision).collect::<Vec<_>>()),
            Column::new("recall".into(), m.iter().map(|c| c.recall).collect::<Vec<_>>()),
            Column::new("f1".into(), m.iter().map(|c| c.f1).collect::<Vec<_>>()),
            Column::new("support".into(), m.iter().map(|c| c.support).collect::<Vec<_>>()),
        ],
    )
}

/// The confusion matrix as a table: `true` (class), then one count column per predicted class.
pub fn confusion_frame(evaluation: &Evaluation) -> PolarsResult<DataFrame> {
    let mut columns = vec![Column::new("true".into(), class_names())];
    for (j, e) in Emotion::ALL.iter().enumerate() {
        columns.push(Column::new(
            e.name().into(),
            evaluation.confusion_matrix.iter().map(|row| row.get(j).copied().unwrap_or(0)).collect::<Vec<_>>(),
        ));
    }
    DataFrame::new(NUM_CLASSES, columns)
}

/// The confusion matrix in long form, one row per (true, predicted) pair with its `count`: the
/// shape filters and sorts want.
pub fn confusion_long_frame(evaluation: &Evaluation) -> PolarsResult<DataFrame> {
    let (mut t, mut p, mut n) = (Vec::new(), Vec::new(), Vec::new());
    for (i, row) in evaluation.confusion_matrix.iter().enumerate() {
        for (j, &count) in row.iter().enumerate() {
            t.push(class_names().get(i).copied().unwrap_or("?"));
            p.push(class_names().get(j).copied().unwrap_or("?"));
            n.push(count);
        }
    }
    let height = n.len();
    DataFrame::new(
        height,
        vec![Column::new("true".into(), t), Column::new("predicted".into(), p), Column::new("count".into(), n)],
    )
}

/// A run's `history.csv` (one row per epoch) as a DataFrame.
pub fn history_frame(run_dir: &Path) -> Result<DataFrame, TrainError> {
    let path = run_dir.join("history.csv");
    if !path.exists() {
        return Err(TrainError::BadRun {
            path: run_dir.into(),
            reason: "no history.csv (has it finished an epoch?)".into(),
        });
    }
    CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.clone()))
        .and_then(|r| r.finish())
        .map_err(|e| TrainError::BadRun { path, reason: e.to_string() })
}

/// Writes `df` to `path` in `format`, atomically (temp file, fsync, rename).
pub fn write_frame(df: &mut DataFrame, path: &Path, format: OutFormat) -> Result<(), TrainError> {
    let mut bytes = Vec::new();
    let result = match format {
        OutFormat::Csv => CsvWriter::new(&mut bytes).include_header(true).finish(df),
        OutFormat::Parquet => ParquetWriter::new(&mut bytes).finish(df).map(|_| ()),
        OutFormat::Json => JsonWriter::new(&mut bytes).with_json_format(JsonFormat::Json).finish(df),
    };
    result.map_err(|e| TrainError::BadRun { path: path.into(), reason: format!("cannot encode the table: {e}") })?;
    fer_model::write_atomic(path, &bytes).map_err(|e| TrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation() -> Evaluation {
        let mut data = Dataset::new();
        let face = vec![0u8; fer_data::PIXELS];
        for label in [3, 3, 4, 0] {
            data.push(&face, Emotion::from_id(label), "PublicTest");
        }
        let mut probs = [[0.0f32; 7]; 4];
        probs[0][3] = 1.0;
        probs[1][4] = 1.0;
        probs[2][4] = 1.0;
        probs[3][4] = 1.0;
        Evaluation::from_probabilities(&data, &probs)
    }

    #[test]
    fn confusion_and_per_class_frames_hold_the_evaluation() {
        let e = evaluation();
        let c = confusion_frame(&e).unwrap();
        assert_eq!(c.shape(), (7, 8));
        let happy = c.column("Sad").unwrap().u64().unwrap().get(3);
        assert_eq!(happy, Some(1), "one Happy face predicted Sad");
        let long = confusion_long_frame(&e).unwrap();
        assert_eq!(long.height(), 49);
        let counts = long.column("count").unwrap().u64().unwrap().clone();
        let total: u64 = (0..counts.len()).filter_map(|i| counts.get(i)).sum();
        assert_eq!(total, 4);
        let m = per_class_frame(&e).unwrap();
        let support = m.column("support").unwrap().u64().unwrap().clone();
        assert_eq!((0..7).filter_map(|i| support.get(i)).collect::<Vec<_>>(), vec![1, 0, 0, 2, 1, 0, 0]);
    }

    #[test]
    fn frames_round_trip_through_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut df = per_class_frame(&evaluation()).unwrap();
        for format in [OutFormat::Csv, OutFormat::Parquet, OutFormat::Json] {
            let path = dir.path().join(format!("m.{}", format.extension()));
            write_frame(&mut df, &path, format).unwrap();
            let back = match format {
                OutFormat::Csv => CsvReadOptions::default()
                    .try_into_reader_with_file_path(Some(path.clone()))
                    .unwrap()
                    .finish()
                    .unwrap(),
                OutFormat::Parquet => ParquetReader::new(std::fs::File::open(&path).unwrap()).finish().unwrap(),
                OutFormat::Json => JsonReader::new(std::fs::File::open(&path).unwrap()).finish().unwrap(),
            };
            assert_eq!(back.shape(), df.shape(), "{format:?}");
            assert_eq!(back.column("class").unwrap().str().unwrap().get(3), Some("Happy"), "{format:?}");
        }
    }
}
