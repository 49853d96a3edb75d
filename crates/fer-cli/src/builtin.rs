//! The trained model that ships inside the `fer` binary: `models/fer2013-cnn.ferc` (its card is
//! `models/README.md`), compiled in with the default `builtin-model` feature. `predict`, `serve`,
//! `explain` and `eval` use it when no `--run` is given, so fer classifies photos the minute it
//! is installed.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::tensor::Device;
use fer_model::FerModel;
use fer_train::Weights;

/// Where the built-in model comes from in the source tree, for messages.
pub const SOURCE_PATH: &str = "models/fer2013-cnn.ferc";

#[cfg(feature = "builtin-model")]
const BYTES: Option<&[u8]> =
    Some(include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fer2013-cnn.ferc")));
#[cfg(not(feature = "builtin-model"))]
const BYTES: Option<&[u8]> = None;

/// The built-in model on `device`.
pub fn load(device: &Device) -> anyhow::Result<FerModel> {
    let bytes = BYTES.context(
        "this fer was built without its built-in model (cargo feature `builtin-model`): give --run RUN_FOLDER",
    )?;
    Ok(fer_model::model_from_bytes(bytes, Path::new(SOURCE_PATH), device)?)
}

/// Which trained model a command uses: a run folder's, or the one built in.
#[derive(Clone, Debug)]
pub enum ModelSource {
    Run { dir: PathBuf, weights: Weights },
    Builtin,
}

impl ModelSource {
    /// `--run` when given, else the built-in model; `--ema` needs a run (the built-in model
    /// already is the weights its card names).
    pub fn new(run: Option<&Path>, ema: bool) -> anyhow::Result<ModelSource> {
        match run {
            Some(dir) => {
                Ok(ModelSource::Run { dir: dir.to_path_buf(), weights: if ema { Weights::Ema } else { Weights::Best } })
            }
            None if ema => anyhow::bail!("--ema chooses a run folder's weight average: give --run RUN_FOLDER too"),
            None => Ok(ModelSource::Builtin),
        }
    }

    /// The models to average (an ensemble run has several).
    pub fn load_all(&self, device: &Device) -> anyhow::Result<Vec<FerModel>> {
        match self {
            ModelSource::Builtin => Ok(vec![load(device)?]),
            ModelSource::Run { dir, weights } => {
                let mut models = Vec::new();
                for path in fer_train::ensemble_members(dir, *weights)? {
                    models.push(
                        fer_model::load_model(&path, device)
                            .with_context(|| format!("cannot load {}", path.display()))?,
                    );
                }
                anyhow::ensure!(!models.is_empty(), "{}: the run has no model", dir.display());
                Ok(models)
            }
        }
    }

    /// One model: the built-in one, or a run's first (an ensemble's first member).
    pub fn load_first(&self, device: &Device) -> anyhow::Result<FerModel> {
        self.load_all(device)?.into_iter().next().context("no model")
    }

    /// How messages and `GET /api/health` name it.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Builtin => format!("built-in model ({SOURCE_PATH})"),
            ModelSource::Run { dir, .. } => dir.display().to_string(),
        }
    }
}
