//! The image-folder release: `[<split>/]<class>/*.{jpg,jpeg,png}`, class folders matched
//! case-insensitively. Faces are decoded in parallel; colour or non-48x48 images are converted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::{DataError, Dataset, Emotion, PIXELS, SIDE, canonical_split_name};

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn dir_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Canonical split order: the FER2013 splits first, others by name.
fn split_rank(name: &str) -> (usize, String) {
    let rank = ["Training", "PublicTest", "PrivateTest"].iter().position(|s| *s == name).unwrap_or(3);
    (rank, name.to_string())
}

/// Decodes one face file into 48x48 grayscale. Returns whether it had to be converted.
pub fn decode_face(path: &Path, out: &mut [u8]) -> Result<bool, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_face_bytes(&bytes, path, out)
}

/// Largest image accepted as a face, in pixels: far above any face crop, far below what a
/// hostile header can claim. The size is read from the header before anything is decoded.
pub const MAX_FACE_IMAGE_PIXELS: u64 = 16 << 20;

/// [`decode_face`] on bytes held in memory; `path` names them in errors.
pub fn decode_face_bytes(bytes: &[u8], path: &Path, out: &mut [u8]) -> Result<bool, DataError> {
    let bad = |reason: String| DataError::Image { path: path.into(), reason };
    let reader =
        || image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.to_string()));
    let (w, h) = reader()?.into_dimensions().map_err(|e| bad(e.to_string()))?;
    if w == 0 || h == 0 {
        return Err(bad(format!("{w}x{h} pixels")));
    }
    if w as u64 * h as u64 > MAX_FACE_IMAGE_PIXELS {
        return Err(bad(format!(
            "{w}x{h} pixels is over the limit of {MAX_FACE_IMAGE_PIXELS} pixels for a face image"
        )));
    }
    let image = reader()?.decode().map_err(|e| bad(e.to_string()))?;
    let is_gray48 = matches!(image, image::DynamicImage::ImageLuma8(_))
        && image.width() as usize == SIDE
        && image.height() as usize == SIDE;
    let mut gray = image.into_luma8();
    if gray.width() as usize != SIDE || gray.height() as usize != SIDE {
        gray = image::imageops::resize(&gray, SIDE as u32, SIDE as u32, image::imageops::FilterType::Triangle);
    }
    out.copy_from_slice(gray.as_raw());
    Ok(!is_gray48)
}

pub(crate) struct Scanned {
    pub dataset: Dataset,
    pub converted: usize,
    pub skipped: BTreeMap<String, usize>,
}

struct FaceFile {
    split: String,
    label: Emotion,
    path: PathBuf,
}

/// Collects the face files of one split folder whose children are class folders.
fn scan_split(
    split_dir: &Path,
    split: &str,
    skip_invalid: bool,
    files: &mut Vec<FaceFile>,
    skipped: &mut BTreeMap<String, usize>,
) -> Result<(), DataError> {
    for class_dir in subdirs(split_dir)? {
        let name = dir_name(&class_dir);
        let Some(label) = Emotion::parse(&name).filter(|_| name.parse::<usize>().is_err()) else {
            if skip_invalid {
                *skipped.entry("unknown class folder".into()).or_insert(0) += 1;
                continue;
            }
            return Err(DataError::UnknownClassFolder { path: class_dir, name, valid: Emotion::valid_names() });
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&class_dir).map_err(|e| DataError::io(&class_dir, e))? {
            let path = entry.map_err(|e| DataError::io(&class_dir, e))?.path();
            if path.is_file() && is_image(&path) {
                names.push(path);
            }
        }
        files.extend(names.into_iter().map(|path| FaceFile { split: split.to_string(), label, path }));
    }
    Ok(())
}

fn is_class_name(name: &str) -> bool {
    name.parse::<usize>().is_err() && Emotion::parse(name).is_some()
}

pub(crate) fn load(root: &Path, skip_invalid: bool) -> Result<Scanned, DataError> {
    let children = subdirs(root)?;
    let mut files = Vec::new();
    let mut skipped = BTreeMap::new();
    if children.iter().any(|c| is_class_name(&dir_name(c))) {
        // root is one split: its name (train/, val/) says which.
        let split = canonical_split_name(&dir_name(&root.canonicalize().unwrap_or_else(|_| root.into())));
        scan_split(root, &split, skip_invalid, &mut files, &mut skipped)?;
    } else {
        for split_dir in &children {
            let split = canonical_split_name(&dir_name(split_dir));
            scan_split(split_dir, &split, skip_invalid, &mut files, &mut skipped)?;
        }
    }
    if files.is_empty() {
        return Err(DataError::NoImages { path: root.into() });
    }
    // Within a split, order by file name (so a tree fer wrote reloads in its original row order).
    files.sort_by(|a, b| {
        split_rank(&a.split)
            .cmp(&split_rank(&b.split))
            .then_with(|| a.path.file_name().cmp(&b.path.file_name()))
            .then_with(|| a.path.cmp(&b.path))
    });

    let mut pixels = vec![0u8; files.len() * PIXELS];
    let outcomes: Vec<Result<bool, DataError>> =
        files.par_iter().zip(pixels.par_chunks_mut(PIXELS)).map(|(file, out)| decode_face(&file.path, out)).collect();

    let mut dataset = Dataset::new();
    dataset.reserve(files.len());
    let mut converted = 0;
    for (i, (file, outcome)) in files.iter().zip(outcomes).enumerate() {
        match outcome {
            Ok(was_converted) => {
                converted += was_converted as usize;
                dataset.push(&pixels[i * PIXELS..(i + 1) * PIXELS], Some(file.label), &file.split);
            }
            Err(_) if skip_invalid => *skipped.entry("unreadable or corrupt image".into()).or_insert(0) += 1,
            Err(e) => return Err(e),
        }
    }
    if dataset.is_empty() {
        return Err(DataError::NoImages { path: root.into() });
    }
    Ok(Scanned { dataset, converted, skipped })
}
