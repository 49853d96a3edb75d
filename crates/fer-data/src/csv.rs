//! The two CSV layouts FER2013 ships in: the original `emotion,pixels,Usage` and the course's
//! `label,feature` / `id,feature`. A hand-rolled byte parser, run in parallel over lines: each
//! record is one line of space-separated pixels, and we need exact line numbers in errors.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;

use crate::format::Format;
use crate::{DataError, Dataset, Emotion, PIXELS, RowProblem};

#[derive(Clone, Copy, Debug)]
struct Columns {
    count: usize,
    label: Option<usize>,
    pixels: usize,
    usage: Option<usize>,
}

fn strip_quotes(field: &[u8]) -> &[u8] {
    let field = field.trim_ascii();
    if field.len() >= 2 && field[0] == b'"' && field[field.len() - 1] == b'"' {
        &field[1..field.len() - 1]
    } else {
        field
    }
}

fn parse_header(path: &Path, header: &str) -> Result<(Format, Columns), DataError> {
    let header = header.trim_start_matches('\u{feff}').trim_end_matches('\r');
    let names: Vec<String> =
        header.split(',').map(|f| String::from_utf8_lossy(strip_quotes(f.as_bytes())).to_ascii_lowercase()).collect();
    let find = |n: &str| names.iter().position(|x| x == n);
    let expected =
        "expected the header emotion,pixels,Usage (fer2013.csv), label,feature (train.csv) or id,feature (test.csv)";
    if names.len() == 1 && (header.contains(';') || header.contains('\t')) {
        let delimiter = if header.contains(';') { "';'" } else { "a tab" };
        return Err(DataError::Header {
            path: path.into(),
            problem: format!("wrong delimiter: fields are separated by {delimiter}, not ','; {expected}"),
        });
    }
    let layout = if let (Some(e), Some(p)) = (find("emotion"), find("pixels")) {
        Some((Format::Fer2013Csv, Columns { count: names.len(), label: Some(e), pixels: p, usage: find("usage") }))
    } else if let (Some(l), Some(f)) = (find("label"), find("feature")) {
        Some((Format::CourseTrainCsv, Columns { count: names.len(), label: Some(l), pixels: f, usage: None }))
    } else if let (Some(_), Some(f)) = (find("id"), find("feature")) {
        Some((Format::CourseTestCsv, Columns { count: names.len(), label: None, pixels: f, usage: None }))
    } else {
        None
    };
    layout.ok_or_else(|| DataError::Header {
        path: path.into(),
        problem: format!("missing or misnamed columns: found {header:?}; {expected}"),
    })
}

/// Parses space-separated pixels into `out`; the count must be exactly 2,304.
pub(crate) fn parse_pixels(field: &[u8], out: &mut [u8]) -> Result<(), RowProblem> {
    let mut count = 0usize;
    let mut value: u64 = 0;
    let mut in_token = false;
    let mut token_start = 0usize;
    for (i, &b) in field.iter().enumerate() {
        if b.is_ascii_digit() {
            if !in_token {
                in_token = true;
                token_start = i;
                value = 0;
            }
            value = (value * 10 + (b - b'0') as u64).min(1 << 40);
        } else if b == b' ' || b == b'\t' {
            if in_token {
                finish_pixel(count, value, out)?;
                count += 1;
                in_token = false;
            }
        } else {
            let start = if in_token { token_start } else { i };
            let end = field[start..].iter().position(|c| *c == b' ').map_or(field.len(), |p| start + p);
            return Err(RowProblem::NonNumericPixel {
                index: count,
                token: String::from_utf8_lossy(&field[start..end]).into_owned(),
            });
        }
    }
    if in_token {
        finish_pixel(count, value, out)?;
        count += 1;
    }
    if count != PIXELS {
        return Err(RowProblem::PixelCount { found: count });
    }
    Ok(())
}

#[inline]
fn finish_pixel(index: usize, value: u64, out: &mut [u8]) -> Result<(), RowProblem> {
    if value > 255 {
        return Err(RowProblem::PixelOutOfRange { index, value });
    }
    if let Some(slot) = out.get_mut(index) {
        *slot = value as u8;
    }
    Ok(())
}

fn parse_label(field: &[u8]) -> Result<Emotion, RowProblem> {
    let token = String::from_utf8_lossy(field).into_owned();
    let value: u64 = token.parse().map_err(|_| RowProblem::NonNumericLabel { token: token.clone() })?;
    Emotion::from_id(value as usize).ok_or(RowProblem::LabelOutOfRange { value: token })
}

fn parse_usage(field: &[u8]) -> Result<&'static str, RowProblem> {
    match field {
        b"Training" => Ok("Training"),
        b"PublicTest" => Ok("PublicTest"),
        b"PrivateTest" => Ok("PrivateTest"),
        _ => Err(RowProblem::UnknownUsage { token: String::from_utf8_lossy(field).into_owned() }),
    }
}

type RowOutcome = Result<(Option<Emotion>, &'static str), RowProblem>;

fn parse_row(line: &[u8], cols: Columns, default_split: &'static str, out: &mut [u8]) -> RowOutcome {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut fields = [&[][..]; 8];
    let mut found = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b',', line).chain(std::iter::once(line.len())) {
        if found < fields.len() {
            fields[found] = strip_quotes(&line[start..end]);
        }
        found += 1;
        start = end + 1;
    }
    if found != cols.count {
        return Err(RowProblem::FieldCount { expected: cols.count, found });
    }
    let label = cols.label.map(|c| parse_label(fields[c])).transpose()?;
    let split = match cols.usage {
        Some(c) => parse_usage(fields[c])?,
        None => default_split,
    };
    parse_pixels(fields[cols.pixels], out)?;
    Ok((label, split))
}

/// The line number (1-based, as an editor shows it) of byte `offset`.
fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset].iter().filter(|b| **b == b'\n').count() + 1
}

/// The shortest line that can hold a face: 2,304 one-digit pixels and their 2,303 separators.
const MIN_ROW_BYTES: usize = 2 * PIXELS - 1;
/// Lines parsed per parallel chunk (about 9 MB of pixels).
const CHUNK_LINES: usize = 4096;

pub(crate) struct Parsed {
    pub dataset: Dataset,
    pub format: Format,
    pub skipped: BTreeMap<String, usize>,
}

/// Parses a whole CSV held in memory. With `skip_invalid`, bad rows are counted per reason
/// instead of stopping at the first.
pub(crate) fn parse(path: &Path, bytes: &[u8], skip_invalid: bool) -> Result<Parsed, DataError> {
    if bytes.trim_ascii().is_empty() {
        return Err(DataError::Empty { path: path.into() });
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(DataError::NotUtf8 { path: path.into(), line: line_of(bytes, e.valid_up_to()) });
    }
    let header_end = bytes.iter().position(|b| *b == b'\n').unwrap_or(bytes.len());
    let header = std::str::from_utf8(&bytes[..header_end]).unwrap_or_default();
    let (format, cols) = parse_header(path, header)?;
    let default_split = match format {
        Format::CourseTestCsv => "Test",
        _ => "Training",
    };

    let body = bytes.get(header_end + 1..).unwrap_or_default();
    // Memory follows the valid rows, never the line count: a file of a million empty or short
    // lines must not reserve a million faces. Lines are parsed a chunk at a time (in parallel
    // within a chunk), and the result is reserved for at most the rows the bytes could hold.
    let mut dataset = Dataset::new();
    dataset.reserve(body.len() / MIN_ROW_BYTES + 1);
    let mut skipped = BTreeMap::new();
    let mut starts = memchr::memchr_iter(b'\n', body).map(|end| end + 1);
    let mut start = 0;
    let mut line_no = 2; // the header is line 1
    let mut lines: Vec<&[u8]> = Vec::with_capacity(CHUNK_LINES);
    let mut pixels = Vec::new();
    while start <= body.len() {
        lines.clear();
        while lines.len() < CHUNK_LINES && start <= body.len() {
            let next = starts.next().unwrap_or(body.len() + 1);
            lines.push(&body[start..next.saturating_sub(1).max(start)]);
            start = next;
        }
        pixels.resize(lines.len() * PIXELS, 0u8);
        let outcomes: Vec<Option<RowOutcome>> = lines
            .par_iter()
            .zip(pixels.par_chunks_mut(PIXELS))
            .map(
                |(line, out)| {
                    if line.trim_ascii().is_empty() { None } else { Some(parse_row(line, cols, default_split, out)) }
                },
            )
            .collect();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                None => {}
                Some(Ok((label, split))) => dataset.push(&pixels[i * PIXELS..(i + 1) * PIXELS], label, split),
                Some(Err(problem)) if skip_invalid => *skipped.entry(problem.reason().to_string()).or_insert(0) += 1,
                Some(Err(problem)) => {
                    return Err(DataError::Row { path: path.into(), line: line_no + i, problem });
                }
            }
        }
        line_no += lines.len();
    }
    Ok(Parsed { dataset, format, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pixels: &str) -> Result<Vec<u8>, RowProblem> {
        let mut out = vec![0; PIXELS];
        parse_pixels(pixels.as_bytes(), &mut out).map(|_| out)
    }

    #[test]
    fn pixel_known_answers() {
        let ok = (0..PIXELS).map(|i| (i % 256).to_string()).collect::<Vec<_>>().join(" ");
        assert_eq!(row(&ok).unwrap()[300], 44);
        assert_eq!(row("1 2 3").unwrap_err(), RowProblem::PixelCount { found: 3 });
        assert_eq!(row("1 2x 3").unwrap_err(), RowProblem::NonNumericPixel { index: 1, token: "2x".into() });
        assert_eq!(row("1 256").unwrap_err(), RowProblem::PixelOutOfRange { index: 1, value: 256 });
        assert_eq!(row("-1").unwrap_err(), RowProblem::NonNumericPixel { index: 0, token: "-1".into() });
    }
}
