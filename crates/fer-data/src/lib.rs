//! FER2013 for Rust, without a deep-learning framework: read every format users hold into one
//! compact `u8` dataset (the original CSV, the course's CSVs, image folders, and with the default
//! `parquet` feature the Hub's Parquet files), write it back out, augment faces the way Keras' `ImageDataGenerator`
//! does, and draw synthetic faces for demos and tests.
//!
//! ```no_run
//! let (dataset, report) = fer_data::load("fer2013.csv", &fer_data::LoadOptions::default())?;
//! println!("{} faces from {}", dataset.len(), report.format);
//! # Ok::<(), fer_data::DataError>(())
//! ```

pub mod augment;
mod class;
mod csv;
mod dataset;
mod error;
mod face;
mod folder;
mod format;
mod load;
#[cfg(feature = "parquet")]
mod parquet;
#[cfg(feature = "parquet")]
mod parquet_check;
pub mod rng;
pub mod synth;
mod write;

pub use class::{Emotion, NUM_CLASSES};
pub use dataset::{Dataset, canonical_split_name};
pub use error::{DataError, RowProblem};
pub use face::{PIXELS, SIDE};
pub use folder::{MAX_FACE_IMAGE_PIXELS, decode_face, decode_face_bytes};
pub use format::Format;
pub use load::{
    DEFAULT_MAX_INPUT_BYTES, LoadOptions, LoadReport, SYNTHETIC_DEFAULT, load, load_bytes, open, set_default_columns,
    set_default_max_input_bytes,
};
#[cfg(feature = "parquet")]
pub use parquet::{ParquetColumns, is_parquet, load_parquet_bytes, write_parquet_file, write_parquet_splits};
pub use write::{write_fer2013_csv, write_image_tree, write_png};
