use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: no such model file")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a fer model file (it does not start with the fer model header)")]
    NotAModel { path: PathBuf },
    #[error("{path}: the file is truncated ({found} bytes of weights, the header promises {expected})")]
    Truncated { path: PathBuf, expected: u64, found: u64 },
    #[error("{path}: the model config is unreadable: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("{path}: the weights do not fit the architecture in its config: {reason}")]
    Mismatch { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Store { path: PathBuf, reason: String },
    #[error(
        "{path}: corrupt file: its checksum is {found:08x}, the header recorded {expected:08x} (the file changed \
            after it was written)"
    )]
    Corrupt { path: PathBuf, expected: u32, found: u32 },
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
}
