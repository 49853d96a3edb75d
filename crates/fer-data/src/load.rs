use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::format::Format;
use crate::{DataError, Dataset, csv, folder};

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Load what is valid and count the rest per reason, instead of stopping at the first error.
    pub skip_invalid: bool,
    /// Largest CSV accepted, in bytes, after gzip decompression (a small .gz can expand to any
    /// size): checked while reading, before the text is held in memory.
    pub max_bytes: u64,
    /// Parquet image and label columns (`--image-col`, `--label-col`); detected when `None`.
    pub image_col: Option<String>,
    pub label_col: Option<String>,
}

/// The default for [`LoadOptions::max_bytes`]: 4 GiB, thirteen times fer2013.csv.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 4 << 30;

static MAX_INPUT_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(DEFAULT_MAX_INPUT_BYTES);
static COLUMNS: std::sync::Mutex<(Option<String>, Option<String>)> = std::sync::Mutex::new((None, None));

/// Sets the process-wide default Parquet columns (the `--image-col` / `--label-col` flags).
pub fn set_default_columns(image: Option<String>, label: Option<String>) {
    if let Ok(mut c) = COLUMNS.lock() {
        *c = (image, label);
    }
}

/// Sets the process-wide default of [`LoadOptions::max_bytes`] (the `--max-input-bytes` flag).
pub fn set_default_max_input_bytes(limit: u64) {
    MAX_INPUT_BYTES.store(limit, std::sync::atomic::Ordering::Relaxed);
}

impl Default for LoadOptions {
    fn default() -> Self {
        let (image_col, label_col) = COLUMNS.lock().map(|c| c.clone()).unwrap_or_default();
        LoadOptions {
            skip_invalid: false,
            max_bytes: MAX_INPUT_BYTES.load(std::sync::atomic::Ordering::Relaxed),
            image_col,
            label_col,
        }
    }
}

/// What loading found besides the faces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadReport {
    pub format: Format,
    /// Images that were colour or not 48x48 and were converted.
    pub converted: usize,
    /// Rows or files left out with `skip_invalid`, per reason.
    pub skipped: BTreeMap<String, usize>,
}

/// Loads FER2013 from a CSV (`.csv`, `.csv.gz`; layout from the header), an image-folder tree,
/// or (feature `parquet`) Parquet: a `.parquet` file, a folder of them, or `data/train-*.parquet`.
pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<(Dataset, LoadReport), DataError> {
    let path = path.as_ref();
    #[cfg(feature = "parquet")]
    if crate::parquet::is_parquet(path) {
        let columns =
            crate::parquet::ParquetColumns { image: options.image_col.clone(), label: options.label_col.clone() };
        let (dataset, converted, skipped) = crate::parquet::load(path, &columns, options.skip_invalid)?;
        return Ok((dataset, LoadReport { format: Format::Parquet, converted, skipped }));
    }
    #[cfg(not(feature = "parquet"))]
    if path.to_string_lossy().to_ascii_lowercase().ends_with(".parquet") {
        return Err(DataError::Parquet {
            path: path.into(),
            reason:
                "this build reads Parquet only with the `parquet` feature (on by default; this build turned it off)"
                    .into(),
        });
    }
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.is_dir() {
        let scanned = folder::load(path, options.skip_invalid)?;
        let report = LoadReport { format: Format::ImageFolder, converted: scanned.converted, skipped: scanned.skipped };
        return Ok((scanned.dataset, report));
    }
    if meta.len() > options.max_bytes {
        return Err(DataError::TooLarge { path: path.into(), what: "the file", limit: options.max_bytes });
    }
    // A plain CSV streams through the same line-length check as a gzip one, so a file holding
    // one huge garbage line is refused after 64 KiB instead of being read whole.
    let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut head = Vec::with_capacity(64);
    (&mut file).take(64).read_to_end(&mut head).map_err(|e| DataError::io(path, e))?;
    if head.is_empty() || head.starts_with(&[0x1f, 0x8b]) || !is_csv_name_or_header(path, &head) {
        let mut raw = head;
        file.read_to_end(&mut raw).map_err(|e| DataError::io(path, e))?;
        return load_bytes(&raw, path, options);
    }
    let text = read_csv_stream(std::io::Cursor::new(head).chain(file), path, options.max_bytes, Source::File)?;
    parse_csv(&text, path, options)
}

/// Loads a FER2013 CSV (plain or gzip) held in memory; `path` names it in errors and its
/// extension helps tell the format.
pub fn load_bytes(raw: &[u8], path: &Path, options: &LoadOptions) -> Result<(Dataset, LoadReport), DataError> {
    if raw.is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    if raw.len() as u64 > options.max_bytes {
        return Err(DataError::TooLarge { path: path.into(), what: "the file", limit: options.max_bytes });
    }
    let decompressed;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        decompressed = read_csv_stream(flate2::read::MultiGzDecoder::new(raw), path, options.max_bytes, Source::Gzip)?;
        &decompressed[..]
    } else {
        if !is_csv_name_or_header(path, raw) {
            return Err(DataError::UnknownFormat { path: path.into() });
        }
        LineGuard::new().feed(raw, path)?;
        raw
    };
    parse_csv(bytes, path, options)
}

fn parse_csv(text: &[u8], path: &Path, options: &LoadOptions) -> Result<(Dataset, LoadReport), DataError> {
    let parsed = csv::parse(path, text, options.skip_invalid)?;
    let report = LoadReport { format: parsed.format, converted: 0, skipped: parsed.skipped };
    Ok((parsed.dataset, report))
}

fn is_csv_name_or_header(path: &Path, head: &[u8]) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".csv") || name.ends_with(".txt") || looks_like_csv(head)
}

/// The longest line a FER2013 CSV may hold. The longest valid row is about 9,300 bytes (2,304
/// pixels of "255 ", a label, a Usage, quotes); seven times that leaves room for any spacing while
/// a garbage line (one gigabyte without a newline) is refused after 64 KiB, not held in memory.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// Tracks the current line's length across chunks of a CSV and refuses a line over
/// [`MAX_LINE_BYTES`]; one rule for streams and for text already in memory.
struct LineGuard {
    line: usize,
    len: usize,
}

impl LineGuard {
    fn new() -> LineGuard {
        LineGuard { line: 1, len: 0 }
    }

    /// Takes in the next `chunk` of the text.
    fn feed(&mut self, chunk: &[u8], path: &Path) -> Result<(), DataError> {
        let too_long = |line| DataError::LineTooLong { path: path.into(), line, limit: MAX_LINE_BYTES };
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', chunk) {
            if self.len + (end - start) > MAX_LINE_BYTES {
                return Err(too_long(self.line));
            }
            self.line += 1;
            self.len = 0;
            start = end + 1;
        }
        self.len += chunk.len() - start;
        if self.len > MAX_LINE_BYTES {
            return Err(too_long(self.line));
        }
        Ok(())
    }
}

/// Where a CSV stream comes from, for its read errors.
#[derive(Clone, Copy)]
enum Source {
    File,
    Gzip,
}

/// Reads a CSV stream into memory, refusing it as soon as it passes `limit` bytes or holds a
/// line longer than [`MAX_LINE_BYTES`]: memory follows the valid text read so far, never a
/// garbage line or a decompression bomb.
fn read_csv_stream(mut reader: impl Read, path: &Path, limit: u64, source: Source) -> Result<Vec<u8>, DataError> {
    let what = match source {
        Source::File => "the file",
        Source::Gzip => "the decompressed gzip stream",
    };
    let mut text = Vec::new();
    let mut chunk = vec![0u8; 256 << 10];
    let mut lines = LineGuard::new();
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match source {
                    Source::File => DataError::io(path, e),
                    Source::Gzip => DataError::Gzip { path: path.into(), source: e },
                });
            }
        };
        lines.feed(&chunk[..n], path)?;
        if (text.len() + n) as u64 > limit {
            return Err(DataError::TooLarge { path: path.into(), what, limit });
        }
        text.extend_from_slice(&chunk[..n]);
    }
    Ok(text)
}

/// A file without a .csv name still loads if its first line looks like a FER2013 header.
fn looks_like_csv(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(64)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    ["emotion", "label", "id,"].iter().any(|h| head.trim_start_matches('\u{feff}').starts_with(h))
}

/// Default sizes of the embedded synthetic data set: Training and PublicTest faces per class.
pub const SYNTHETIC_DEFAULT: (usize, usize, u64) = (300, 60, 0);

/// Opens a data source by name: a path as [`load`] takes, or `synthetic` /
/// `synthetic:TRAIN,VAL,SEED` for the embedded synthetic faces (TRAIN and VAL per class).
pub fn open(spec: &str, options: &LoadOptions) -> Result<(Dataset, LoadReport), DataError> {
    if let Some(rest) = spec.strip_prefix("synthetic") {
        let (train, val, seed) = parse_synthetic(rest).ok_or_else(|| DataError::UnknownFormat { path: spec.into() })?;
        let dataset = crate::synth::default_dataset(train, val, seed);
        return Ok((dataset, LoadReport { format: Format::Synthetic, converted: 0, skipped: BTreeMap::new() }));
    }
    load(spec, options)
}

fn parse_synthetic(rest: &str) -> Option<(usize, usize, u64)> {
    if rest.is_empty() {
        return Some(SYNTHETIC_DEFAULT);
    }
    let parts: Vec<&str> = rest.strip_prefix(':')?.split(',').collect();
    match parts.as_slice() {
        [t, v, s] => Some((t.parse().ok()?, v.parse().ok()?, s.parse().ok()?)),
        [t, v] => Some((t.parse().ok()?, v.parse().ok()?, 0)),
        _ => None,
    }
}
