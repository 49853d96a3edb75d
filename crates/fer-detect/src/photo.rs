//! Decoding photos from untrusted bytes: the size is checked from the header before any pixel
//! memory is reserved, so a small file that claims a huge image is refused, not decoded.

use std::io::Cursor;

use image::{DynamicImage, ImageReader, Limits};

use crate::DetectError;

/// Ceilings for one photo. The defaults fit any phone or camera photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoLimits {
    /// Largest encoded file, in bytes.
    pub max_bytes: usize,
    /// Largest decoded image, in pixels (width x height).
    pub max_pixels: u64,
}

impl Default for PhotoLimits {
    fn default() -> Self {
        PhotoLimits { max_bytes: 10 * 1024 * 1024, max_pixels: 50_000_000 }
    }
}

/// Decodes a PNG or JPEG photo named `name` (for errors) within `limits`.
pub fn decode_photo(bytes: &[u8], name: &str, limits: &PhotoLimits) -> Result<DynamicImage, DetectError> {
    if bytes.len() > limits.max_bytes {
        return Err(DetectError::TooManyBytes { name: name.into(), bytes: bytes.len(), limit: limits.max_bytes });
    }
    let not_image = |reason: String| DetectError::NotAnImage { name: name.into(), reason };
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| not_image(e.to_string()))?;
    if reader.format().is_none() {
        return Err(not_image("unknown format; fer reads PNG and JPEG".into()));
    }
    let (width, height) = reader.into_dimensions().map_err(|e| not_image(e.to_string()))?;
    check_pixels(name, width, height, limits)?;
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| not_image(e.to_string()))?;
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(width);
    decoder_limits.max_image_height = Some(height);
    // RGBA f32 is the widest buffer a decoder may ask for, plus slack for its own state.
    decoder_limits.max_alloc = Some((width as u64 * height as u64).saturating_mul(16).saturating_add(64 << 20));
    reader.limits(decoder_limits);
    reader.decode().map_err(|e| not_image(e.to_string()))
}

fn check_pixels(name: &str, width: u32, height: u32, limits: &PhotoLimits) -> Result<(), DetectError> {
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(DetectError::TooManyPixels { name: name.into(), width, height, limit: limits.max_pixels });
    }
    if width == 0 || height == 0 {
        return Err(DetectError::NotAnImage { name: name.into(), reason: format!("{width}x{height} pixels") });
    }
    Ok(())
}

/// Reads only the header: the dimensions a photo claims, or why it cannot be read. For servers
/// that must refuse an upload before decoding it.
pub fn photo_dimensions(bytes: &[u8], name: &str) -> Result<(u32, u32), DetectError> {
    let not_image = |reason: String| DetectError::NotAnImage { name: name.into(), reason };
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| not_image(e.to_string()))?;
    if reader.format().is_none() {
        return Err(not_image("unknown format; fer reads PNG and JPEG".into()));
    }
    reader.into_dimensions().map_err(|e| not_image(e.to_string()))
}
