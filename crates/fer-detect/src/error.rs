//! What can go wrong finding faces, each error naming its input.

/// Everything that can go wrong; each variant names its input.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("the embedded SeetaFace model cannot be read: {0}")]
    Model(std::io::Error),
    #[error("{name}: not an image fer can read ({reason})")]
    NotAnImage { name: String, reason: String },
    #[error(
        "{name}: {width}x{height} pixels is over the limit of {limit} pixels per image (raise it with --max-pixels)"
    )]
    TooManyPixels { name: String, width: u32, height: u32, limit: u64 },
    #[error("{name}: {bytes} bytes is over the limit of {limit} bytes per image")]
    TooManyBytes { name: String, bytes: usize, limit: usize },
}
