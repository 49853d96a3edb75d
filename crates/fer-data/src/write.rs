use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::{DataError, Dataset, SIDE};

fn write_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Write { path: path.into(), problem: e.to_string() }
}

/// Writes the original `emotion,pixels,Usage` layout; gzip-compressed when `path` ends in `.gz`.
/// Every face must have a label (fer2013.csv has no way to say "unlabelled").
pub fn write_fer2013_csv(dataset: &Dataset, path: &Path) -> Result<(), DataError> {
    if let Some(i) = dataset.labels().iter().position(Option::is_none) {
        return Err(write_err(path, format!("face {i} has no label; fer2013.csv needs one for every face")));
    }
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let gz = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
    let mut out: Box<dyn Write> = if gz {
        Box::new(flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::fast()))
    } else {
        Box::new(BufWriter::new(file))
    };
    let mut line = String::with_capacity(10_000);
    let io = |e: std::io::Error| DataError::io(path, e);
    out.write_all(b"emotion,pixels,Usage\n").map_err(io)?;
    for i in 0..dataset.len() {
        line.clear();
        let label = dataset.label(i).map_or(0, |l| l.id());
        line.push_str(&label.to_string());
        line.push(',');
        for (j, p) in dataset.image(i).iter().enumerate() {
            if j > 0 {
                line.push(' ');
            }
            push_u8(&mut line, *p);
        }
        line.push(',');
        line.push_str(dataset.split(i));
        line.push('\n');
        out.write_all(line.as_bytes()).map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(())
}

fn push_u8(line: &mut String, v: u8) {
    if v >= 100 {
        line.push((b'0' + v / 100) as char);
    }
    if v >= 10 {
        line.push((b'0' + v / 10 % 10) as char);
    }
    line.push((b'0' + v % 10) as char);
}

/// Writes one 48x48 grayscale face as PNG.
pub fn write_png(path: &Path, pixels: &[u8]) -> Result<(), DataError> {
    image::save_buffer(path, pixels, SIDE as u32, SIDE as u32, image::ExtendedColorType::L8)
        .map_err(|e| write_err(path, e))
}

/// Writes `<dir>/<split>/<class>/<index>.png`. Indices are the faces' positions in `dataset`,
/// zero-padded, so reloading the tree gives the faces back in the same order.
/// Unlabelled faces go to an `unlabelled` folder, which loading does not read back.
pub fn write_image_tree(dataset: &Dataset, dir: &Path) -> Result<(), DataError> {
    use rayon::prelude::*;
    (0..dataset.len()).into_par_iter().try_for_each(|i| {
        let class = dataset.label(i).map_or("unlabelled", |l| l.folder_name());
        let folder = dir.join(dataset.split(i)).join(class);
        std::fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
        write_png(&folder.join(format!("{i:06}.png")), dataset.image(i))
    })
}
