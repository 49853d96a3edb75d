//! Figures and report text for fer, from plain result data (numbers, matrices, pixels). It
//! computes nothing about models: training, evaluation and attribution happen elsewhere; this
//! crate only draws and writes. Output is deterministic: text is drawn from the DejaVu Sans
//! outlines shipped in `fonts/`, never from the machine's fonts, and every chart is a [`Figure`]
//! that saves as a PNG and an SVG twin.

pub mod annotate;
pub mod charts;
pub mod document;
pub mod draw;
pub mod figure;
pub mod text;

pub use annotate::{CLASS_COLOURS, FaceLabel, annotate_faces};
pub use charts::{
    PALETTE, Series, attribution_panel, channel_grid, confusion_chart, image_grid, line_chart, probability_chart,
};
pub use document::{Block, Document};
pub use figure::{Figure, FigureError};
pub use text::thousands;
