//! Figures and report text for fer, from plain result data (numbers, matrices, pixels). It
//! computes nothing about models: training, evaluation and attribution happen elsewhere; this
//! crate only draws and writes. Output is deterministic: a built-in pixel font, no system fonts.

pub mod annotate;
pub mod charts;
pub mod document;
pub mod draw;

pub use annotate::{CLASS_COLOURS, FaceLabel, annotate_faces};
pub use charts::{Series, attribution_panel, channel_grid, confusion_chart, line_chart, probability_chart, titled};
pub use document::{Block, Document};
