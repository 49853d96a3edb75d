//! The models of the FER2013 report, for burn: a 5-block CNN (4,087,879 parameters) and a plain
//! DNN of about the same size (4,099,847), with one forward pass that names its layers.
//!
//! Input: `[batch, 1, 48, 48]` pixels scaled to [0, 1] (pixel / 255). Output: 7 logits.
//! Which backend runs them is the caller's choice of `Device`.

mod atomic;
mod cnn;
mod compact;
mod config;
mod dnn;
mod error;
mod file;
mod model;
mod params;
mod summary;
mod tap;

pub use atomic::{Disk, RealDisk, write_atomic, write_atomic_on};
pub use cnn::{Cnn, CnnConfig, ConvBlock, DenseBlock, SecondConv};
pub use compact::{HalfFormat, compact_bytes, is_compact, model_from_compact, save_compact};
pub use config::{CROP_SIDE, MAX_INPUT_SIDE, MAX_PARAMETERS, MODEL_NAMES, ModelConfig};
pub use dnn::{Dnn, DnnConfig};
pub use error::ModelError;
pub use file::{export_safetensors, load_model, model_bytes, model_from_bytes, save_model};
pub use model::{CLASS_NAMES, FerModel, INPUT_SCALE, Net, input_from_pixels};
pub use params::{flatten, value_count, with_values};
pub use summary::{LayerSummary, Summary};
