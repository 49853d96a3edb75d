//! FER2013 as the Hugging Face Hub ships it: Parquet, one file per split (sometimes several
//! shards, `data/train-00000-of-00002.parquet`), an image column (a struct of encoded `bytes`
//! and a `path`, or plain binary, or FER2013's pixel text) and a label column (integer ids or
//! class names). Read and written through polars.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::{DataError, Dataset, Emotion, PIXELS, canonical_split_name};

/// Column names tried, in order, when `--image-col` / `--label-col` are not given.
const IMAGE_NAMES: [&str; 4] = ["image", "img", "pixels", "feature"];
const LABEL_NAMES: [&str; 4] = ["label", "labels", "emotion", "emotions"];
const SPLIT_NAMES: [&str; 3] = ["split", "usage", "Usage"];

/// Which columns to read; `None` detects them by name and type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParquetColumns {
    pub image: Option<String>,
    pub label: Option<String>,
}

/// True when `path` names Parquet: a `.parquet` file, a pattern like `data/train-*.parquet`, or
/// a folder holding `.parquet` files (at any depth) and no class folders.
pub fn is_parquet(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".parquet") {
        return true;
    }
    path.is_dir() && !parquet_files_under(path).is_empty()
}

fn parquet_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("parquet")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The files a spec names: one file, every `.parquet` under a folder, or the files matching a
/// `*` pattern in the last path component.
fn resolve(spec: &Path) -> Result<Vec<PathBuf>, DataError> {
    let text = spec.to_string_lossy();
    let file_name = spec.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if file_name.contains('*') {
        let dir = spec.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let (prefix, suffix) = file_name.split_once('*').unwrap_or((&file_name, ""));
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| DataError::io(dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix.trim_start_matches('*')))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DataError::NotFound { path: text.as_ref().into() });
        }
        return Ok(files);
    }
    if spec.is_dir() {
        let files = parquet_files_under(spec);
        if files.is_empty() {
            return Err(DataError::UnknownFormat { path: spec.into() });
        }
        return Ok(files);
    }
    if !spec.exists() {
        return Err(DataError::NotFound { path: spec.into() });
    }
    Ok(vec![spec.into()])
}

/// The split a shard belongs to, from its name (`train-00000-of-00001.parquet`,
/// `validation.parquet`, `test_0.parquet`) or its folder (`train/0.parquet`); else Training.
fn split_of(file: &Path) -> String {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let head = stem.split(['-', '_', '.']).next().unwrap_or("");
    let known = |name: &str| {
        let c = canonical_split_name(name);
        (c != name || ["Training", "PublicTest", "PrivateTest"].contains(&name)).then_some(c)
    };
    if let Some(split) = known(head) {
        return split;
    }
    file.parent()
        .and_then(|p| p.file_name())
        .and_then(|n| known(&n.to_string_lossy()))
        .unwrap_or_else(|| "Training".into())
}

fn find_column<'a>(
    df: &'a DataFrame,
    wanted: Option<&str>,
    names: &[&str],
    what: &str,
    path: &Path,
) -> Result<Option<&'a Column>, DataError> {
    if let Some(name) = wanted {
        return df.column(name).map(Some).map_err(|_| DataError::Parquet {
            path: path.into(),
            reason: format!("no {what} column {name:?} (columns: {})", column_list(df)),
        });
    }
    Ok(names.iter().find_map(|n| df.columns().iter().find(|c| c.name().as_str().eq_ignore_ascii_case(n))))
}

fn column_list(df: &DataFrame) -> String {
    df.columns().iter().map(|c| format!("{} ({})", c.name(), c.dtype())).collect::<Vec<_>>().join(", ")
}

/// The image column's values as a per-row source of pixels.
enum Images {
    /// Encoded image bytes (PNG, JPEG), from a struct's `bytes` field or a binary column.
    Encoded(BinaryChunked),
    /// FER2013's space-separated pixel text.
    Text(StringChunked),
}

fn images(column: &Column, path: &Path) -> Result<Images, DataError> {
    let bad = |reason: String| DataError::Parquet {
        path: path.into(),
        reason: format!("image column {:?}: {reason}", column.name().as_str()),
    };
    match column.dtype() {
        DataType::Struct(fields) => {
            if !fields.iter().any(|f| f.name().as_str() == "bytes") {
                return Err(bad(format!("a struct without a `bytes` field ({})", column.dtype())));
            }
            let s = column.as_materialized_series().struct_().map_err(|e| bad(e.to_string()))?;
            let bytes = s.field_by_name("bytes").map_err(|e| bad(e.to_string()))?;
            Ok(Images::Encoded(bytes.binary().map_err(|e| bad(e.to_string()))?.clone()))
        }
        DataType::Binary => {
            Ok(Images::Encoded(column.as_materialized_series().binary().map_err(|e| bad(e.to_string()))?.clone()))
        }
        DataType::String => {
            Ok(Images::Text(column.as_materialized_series().str().map_err(|e| bad(e.to_string()))?.clone()))
        }
        other => {
            Err(bad(format!("type {other} is not an image (expected a struct with `bytes`, binary, or pixel text)")))
        }
    }
}

/// The label column as per-row class ids (`None`: no label, e.g. a test split).
fn labels(column: &Column, path: &Path) -> Result<Vec<Result<Option<Emotion>, String>>, DataError> {
    let bad = |reason: String| DataError::Parquet {
        path: path.into(),
        reason: format!("label column {:?}: {reason}", column.name().as_str()),
    };
    let series = column.as_materialized_series();
    if series.dtype().is_integer() {
        let ints = series.cast(&DataType::Int64).map_err(|e| bad(e.to_string()))?;
        let ints = ints.i64().map_err(|e| bad(e.to_string()))?;
        return Ok((0..ints.len())
            .map(|i| ints.get(i))
            .map(|v| match v {
                None => Ok(None),
                Some(v) => usize::try_from(v).ok().and_then(Emotion::from_id).map(Some).ok_or_else(|| {
                    format!(
                        "label {v} is outside 0-6 (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral)"
                    )
                }),
            })
            .collect());
    }
    if let Ok(text) = series.str() {
        return Ok((0..text.len())
            .map(|i| text.get(i))
            .map(|v| match v {
                None => Ok(None),
                Some(name) => Emotion::parse(name)
                    .map(Some)
                    .ok_or_else(|| format!("label {name:?} is not a class (valid: {})", Emotion::valid_names())),
            })
            .collect());
    }
    Err(bad(format!("type {} is not a label (expected integers or class names)", series.dtype())))
}

/// Loads one or more Parquet files (see the module docs) into a dataset.
pub(crate) fn load(
    spec: &Path,
    columns: &ParquetColumns,
    skip_invalid: bool,
) -> Result<(Dataset, usize, BTreeMap<String, usize>), DataError> {
    let mut out = Loaded::default();
    for file in resolve(spec)? {
        let bytes = std::fs::read(&file).map_err(|e| DataError::io(&file, e))?;
        let df = read_checked(bytes.into(), &file)?;
        load_frame(&df, &file, columns, skip_invalid, &mut out)?;
    }
    Ok((out.dataset, out.converted, out.skipped))
}

/// One Parquet file held in memory (e.g. an upload); `name` names it in errors and gives its split.
pub fn load_parquet_bytes(
    bytes: &[u8],
    name: &Path,
    columns: &ParquetColumns,
    skip_invalid: bool,
) -> Result<Dataset, DataError> {
    let df = read_checked(bytes.to_vec().into(), name)?;
    let mut out = Loaded::default();
    load_frame(&df, name, columns, skip_invalid, &mut out)?;
    Ok(out.dataset)
}

/// Reads a Parquet file's bytes into a frame: its structure is checked first
/// (`parquet_check`), then polars reads it under [`guarded`].
fn read_checked(file: polars_buffer::Buffer<u8>, path: &Path) -> Result<DataFrame, DataError> {
    guarded(path, || {
        crate::parquet_check::check(&file)
            .map_err(|reason| polars_err!(ComputeError: "damaged Parquet file: {reason}"))?;
        ParquetReader::new(std::io::Cursor::new(&*file)).finish()
    })
}

/// Runs polars' Parquet reader on a file from elsewhere. polars 0.55.2 panics (slice indices
/// out of range) on some damaged files instead of returning an error; `cargo xtask fuzz
/// parquet` finds such files within seconds. The panic is turned into an error naming the file.
fn guarded(path: &Path, read: impl FnOnce() -> PolarsResult<DataFrame>) -> Result<DataFrame, DataError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(result) => result.map_err(|e| DataError::Parquet { path: path.into(), reason: e.to_string() }),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(DataError::Parquet {
                path: path.into(),
                reason: format!("damaged Parquet file (the reader failed: {message})"),
            })
        }
    }
}

#[derive(Default)]
struct Loaded {
    dataset: Dataset,
    converted: usize,
    skipped: BTreeMap<String, usize>,
}

fn load_frame(
    df: &DataFrame,
    file: &Path,
    columns: &ParquetColumns,
    skip_invalid: bool,
    out: &mut Loaded,
) -> Result<(), DataError> {
    let file = file.to_path_buf();
    let image_col = find_column(df, columns.image.as_deref(), &IMAGE_NAMES, "image", &file)?
        .or_else(|| df.columns().iter().find(|c| matches!(c.dtype(), DataType::Struct(_) | DataType::Binary)))
        .ok_or_else(|| DataError::Parquet {
            path: file.clone(),
            reason: format!("no image column (columns: {}); name it with --image-col", column_list(df)),
        })?;
    let image_name = image_col.name().to_string();
    let label_col = find_column(df, columns.label.as_deref(), &LABEL_NAMES, "label", &file)?;
    let split_col =
        SPLIT_NAMES.iter().find_map(|n| df.column(n).ok()).and_then(|c| c.as_materialized_series().str().ok().cloned());
    let images = images(image_col, &file)?;
    let labels = match label_col {
        Some(c) => labels(c, &file)?,
        None => vec![Ok(None); df.height()],
    };
    let label_name = label_col.map(|c| c.name().to_string()).unwrap_or_default();
    let file_split = split_of(&file);
    let mut pixels = vec![0u8; PIXELS];
    for (row, label) in labels.iter().enumerate() {
        let problem = |column: &str, problem: String| DataError::ParquetRow {
            path: file.clone(),
            row,
            column: column.into(),
            problem,
        };
        let decoded: Result<bool, DataError> = match &images {
            Images::Encoded(b) => match b.get(row) {
                Some(bytes) => crate::folder::decode_face_bytes(bytes, &file, &mut pixels).map_err(|e| {
                    problem(&image_name, e.to_string().trim_start_matches(&format!("{}: ", file.display())).to_string())
                }),
                None => Err(problem(&image_name, "no image".into())),
            },
            Images::Text(t) => match t.get(row) {
                Some(text) => crate::csv::parse_pixels(text.as_bytes(), &mut pixels)
                    .map(|_| false)
                    .map_err(|p| problem(&image_name, p.to_string())),
                None => Err(problem(&image_name, "no image".into())),
            },
        };
        let label = label.clone().map_err(|p| problem(&label_name, p));
        match (decoded, label) {
            (Ok(was_converted), Ok(label)) => {
                let split = match split_col.as_ref().and_then(|s| s.get(row)) {
                    Some(s) => canonical_split_name(s),
                    None => file_split.clone(),
                };
                out.dataset.push(&pixels, label, &split);
                out.converted += was_converted as usize;
            }
            (Err(e), _) | (_, Err(e)) if skip_invalid => {
                let reason = match &e {
                    DataError::ParquetRow { column, .. } if *column == label_name => "bad label",
                    _ => "bad image",
                };
                *out.skipped.entry(reason.to_string()).or_insert(0) += 1;
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        }
    }
    Ok(())
}

/// The Hub's name for a split (the inverse of [`canonical_split_name`]).
fn hub_split_name(split: &str) -> String {
    match split {
        "Training" => "train".into(),
        "PublicTest" => "validation".into(),
        "PrivateTest" => "test".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// Writes `dataset` as the Hub lays FER2013 out: under `dir`, `<split>-00000-of-00001.parquet`
/// per split (train, validation, test), an `image` column of structs {bytes: PNG, path} and a
/// `label` column of class ids (null when unlabelled). Returns the files written.
pub fn write_parquet_splits(dataset: &Dataset, dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let mut by_split: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in 0..dataset.len() {
        by_split.entry(dataset.split(i).to_string()).or_default().push(i);
    }
    let mut written = Vec::new();
    for (split, rows) in by_split {
        let path = dir.join(format!("{}-00000-of-00001.parquet", hub_split_name(&split)));
        write_rows(dataset, &rows, &path, false)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `dataset` to one Parquet file: the Hub's `image` and `label` columns plus a `split`
/// column (train, validation, test), which fer reads back.
pub fn write_parquet_file(dataset: &Dataset, path: &Path) -> Result<(), DataError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    write_rows(dataset, &(0..dataset.len()).collect::<Vec<_>>(), path, true)
}

fn write_rows(dataset: &Dataset, rows: &[usize], path: &Path, with_split: bool) -> Result<(), DataError> {
    let err = |reason: String| DataError::Write { path: path.into(), problem: reason };
    let mut pngs = Vec::with_capacity(rows.len());
    for &i in rows {
        pngs.push(png_bytes(dataset.image(i)).map_err(|e| err(e.to_string()))?);
    }
    let names: Vec<String> = rows.iter().map(|&i| format!("{}_{i}.png", hub_split_name(dataset.split(i)))).collect();
    let bytes = Series::new("bytes".into(), pngs.iter().map(|p| p.as_slice()).collect::<Vec<_>>());
    let paths = Series::new("path".into(), names);
    let image = StructChunked::from_series("image".into(), rows.len(), [bytes, paths].iter())
        .map_err(|e| err(e.to_string()))?
        .into_series();
    let label =
        Series::new("label".into(), rows.iter().map(|&i| dataset.label(i).map(|e| e.id() as i64)).collect::<Vec<_>>());
    let mut columns: Vec<Column> = vec![image.into(), label.into()];
    if with_split {
        columns.push(Column::new(
            "split".into(),
            rows.iter().map(|&i| hub_split_name(dataset.split(i))).collect::<Vec<_>>(),
        ));
    }
    let mut df = DataFrame::new(rows.len(), columns).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    ParquetWriter::new(&mut out).finish(&mut df).map_err(|e| err(e.to_string()))?;
    std::fs::write(path, out).map_err(|e| DataError::io(path, e))
}

fn png_bytes(pixels: &[u8]) -> image::ImageResult<Vec<u8>> {
    let img = image::GrayImage::from_raw(crate::SIDE as u32, crate::SIDE as u32, pixels.to_vec()).unwrap_or_default();
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img).write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}
