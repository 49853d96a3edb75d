use std::path::PathBuf;

/// What is wrong with one CSV row. The `Display` text is what users read after "line N: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("expected {expected} comma-separated fields, found {found}")]
    FieldCount { expected: usize, found: usize },
    #[error("expected 2304 pixels (48x48), found {found}")]
    PixelCount { found: usize },
    #[error("pixel {index} is not a number: {token:?}")]
    NonNumericPixel { index: usize, token: String },
    #[error("pixel {index} is {value}, outside 0-255")]
    PixelOutOfRange { index: usize, value: u64 },
    #[error("label {value} is outside 0-6 (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral)")]
    LabelOutOfRange { value: String },
    #[error("label {token:?} is not a number")]
    NonNumericLabel { token: String },
    #[error("unknown Usage {token:?} (expected Training, PublicTest or PrivateTest)")]
    UnknownUsage { token: String },
}

impl RowProblem {
    /// A short stable key, used to count skipped rows per reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RowProblem::FieldCount { .. } => "wrong field count",
            RowProblem::PixelCount { .. } => "wrong pixel count",
            RowProblem::NonNumericPixel { .. } => "non-numeric pixel",
            RowProblem::PixelOutOfRange { .. } => "pixel outside 0-255",
            RowProblem::LabelOutOfRange { .. } => "label outside 0-6",
            RowProblem::NonNumericLabel { .. } => "non-numeric label",
            RowProblem::UnknownUsage { .. } => "unknown Usage",
        }
    }
}

/// Every way loading or writing FER2013 can fail. Each variant names the input it is about.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file is empty")]
    Empty { path: PathBuf },
    #[error("{path}: line {line}: bytes that are not UTF-8 text")]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("{path}: gzip stream is truncated or corrupt: {source}")]
    Gzip {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line 1: {problem}")]
    Header { path: PathBuf, problem: String },
    #[error("{path}: line {line}: {problem}")]
    Row { path: PathBuf, line: usize, problem: RowProblem },
    #[error("{path}: unreadable or corrupt image: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{path}: unknown class folder {name:?} (expected one of: {valid})")]
    UnknownClassFolder { path: PathBuf, name: String, valid: String },
    #[error("{path}: no .jpg, .jpeg or .png faces found under class folders")]
    NoImages { path: PathBuf },
    #[error(
        "{path}: cannot tell the format: expected a .csv/.csv.gz file (fer2013.csv, train.csv or test.csv) or a \
            folder of class folders"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path}: {problem}")]
    Write { path: PathBuf, problem: String },
    #[error("{path}: {reason}")]
    Parquet { path: PathBuf, reason: String },
    #[error("{path}: row {row}, column {column:?}: {problem}")]
    ParquetRow { path: PathBuf, row: usize, column: String, problem: String },
    #[error("{path}: {what} is over the limit of {limit} bytes (raise it with --max-input-bytes)")]
    TooLarge { path: PathBuf, what: &'static str, limit: u64 },
    #[error(
        "{path}: line {line} is longer than {limit} bytes, longer than any FER2013 row (at most about 9,300 bytes): \
            not a FER2013 CSV, or a damaged one"
    )]
    LineTooLong { path: PathBuf, line: usize, limit: usize },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::NotFound { path }
        } else {
            DataError::Io { path, source }
        }
    }
}
