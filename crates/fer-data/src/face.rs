//! What a FER2013 face is: 48 x 48 grayscale pixels, one byte each, row-major.

/// Faces are 48x48 grayscale.
pub const SIDE: usize = 48;
/// Pixels per face.
pub const PIXELS: usize = SIDE * SIDE;
