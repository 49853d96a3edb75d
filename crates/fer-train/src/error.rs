use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] fer_data::DataError),
    #[error(transparent)]
    Model(#[from] fer_model::ModelError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid training option: {0}")]
    InvalidOption(String),
    #[error("split {wanted:?} is not in the data (it has: {available})")]
    MissingSplit { wanted: String, available: String },
    #[error("{path}: not a usable checkpoint: {reason}")]
    BadCheckpoint { path: PathBuf, reason: String },
    #[error("{path}: not a run folder: {reason}")]
    BadRun { path: PathBuf, reason: String },
    #[error(
        "{path}: the checkpoint cannot be written: {source}; the previous checkpoint is unchanged and --resume \
            continues from it"
    )]
    CheckpointWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: another fer train ({holder}) is writing this run folder; wait for it to finish, or choose another \
            --out"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "{path}: the data changed since this run started ({reason}); resuming would train on something else. Point \
            --data at the run's data, or start a new run"
    )]
    DataChanged { path: PathBuf, reason: String },
    #[error(
        "training diverged at epoch {epoch}, step {step}: the loss is {loss}; the last good checkpoint is kept in {run}"
    )]
    NonFiniteLoss { epoch: usize, step: usize, loss: f32, run: PathBuf },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }
}
