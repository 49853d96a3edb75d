//! The FER2013 layouts fer reads. Its own module, below the readers that produce it (`csv`,
//! `folder`, `parquet`) and `load`, which picks among them, so that no two of them import each
//! other.

use std::fmt;

/// Where a dataset came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Format {
    /// The original `fer2013.csv`: `emotion,pixels,Usage` (optionally gzip-compressed).
    Fer2013Csv,
    /// The course's `train.csv`: `label,feature`.
    CourseTrainCsv,
    /// The course's `test.csv`: `id,feature`, unlabelled.
    CourseTestCsv,
    /// `[<split>/]<class>/*.{jpg,jpeg,png}`.
    ImageFolder,
    /// fer's procedurally drawn faces ([`crate::synth`]).
    Synthetic,
    /// Parquet as the Hugging Face Hub ships FER2013: an image column (encoded bytes or pixel
    /// text) and a label column, one file (or several shards) per split.
    Parquet,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Fer2013Csv => "fer2013-csv",
            Format::CourseTrainCsv => "course-train-csv",
            Format::CourseTestCsv => "course-test-csv",
            Format::ImageFolder => "image-folder",
            Format::Synthetic => "synthetic",
            Format::Parquet => "parquet",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
