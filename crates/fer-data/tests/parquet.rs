//! FER2013 as the Hugging Face Hub ships it: Parquet in the shapes found there, written by polars
//! here (the fixtures are generated, so the tests need no download).
#![cfg(feature = "parquet")]

use std::path::Path;

use fer_data::{
    DataError, Dataset, Emotion, Format, LoadOptions, load, synth, write_parquet_file, write_parquet_splits,
};
use polars::prelude::*;

fn sample() -> Dataset {
    let mut d = synth::default_dataset(3, 2, 4);
    // An unlabelled face too, as the course's test split has.
    let face = d.image(0).to_vec();
    d.push(&face, None, "PrivateTest");
    d
}

fn same(a: &Dataset, b: &Dataset) {
    assert_eq!(a.len(), b.len());
    let key = |d: &Dataset, i: usize| (d.split(i).to_string(), d.label(i), d.image(i).to_vec());
    let mut x: Vec<_> = (0..a.len()).map(|i| key(a, i)).collect();
    let mut y: Vec<_> = (0..b.len()).map(|i| key(b, i)).collect();
    x.sort();
    y.sort();
    assert!(x == y, "the faces, labels and splits differ");
}

fn png(pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let img = image::GrayImage::from_raw(48, 48, pixels.to_vec()).unwrap();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn write(df: &mut DataFrame, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    ParquetWriter::new(std::fs::File::create(path).unwrap()).finish(df).unwrap();
}

#[test]
fn the_hub_split_layout_round_trips_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample();
    let files = write_parquet_splits(&data, &dir.path().join("data")).unwrap();
    let mut names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        ["test-00000-of-00001.parquet", "train-00000-of-00001.parquet", "validation-00000-of-00001.parquet"]
    );
    // As a folder, as a pattern, and one split alone.
    let (back, report) = load(dir.path().join("data"), &LoadOptions::default()).unwrap();
    assert_eq!(report.format, Format::Parquet);
    same(&data, &back);
    let (train, _) = load(dir.path().join("data/train-*.parquet"), &LoadOptions::default()).unwrap();
    assert_eq!(train.len(), 21);
    assert!((0..train.len()).all(|i| train.split(i) == "Training"));
    // One file with a split column.
    let single = dir.path().join("fer2013.parquet");
    write_parquet_file(&data, &single).unwrap();
    let (back, _) = load(&single, &LoadOptions::default()).unwrap();
    same(&data, &back);
}

#[test]
fn shards_binary_images_and_class_name_labels_load_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth::default_dataset(2, 0, 9); // 14 Training faces
    // Two shards, `img` as plain binary, `emotion` as class names in mixed case.
    for shard in 0..2 {
        let rows: Vec<usize> = (0..data.len()).filter(|i| i % 2 == shard).collect();
        let pngs: Vec<Vec<u8>> = rows.iter().map(|&i| png(data.image(i))).collect();
        let names: Vec<String> = rows
            .iter()
            .map(|&i| {
                let n = data.label(i).unwrap().name();
                if i % 3 == 0 { n.to_uppercase() } else { n.to_lowercase() }
            })
            .collect();
        let mut df = df!(
            "img" => pngs.iter().map(|p| p.as_slice()).collect::<Vec<_>>(),
            "emotion" => names,
        )
        .unwrap();
        write(&mut df, &dir.path().join(format!("data/train-0000{shard}-of-00002.parquet")));
    }
    let (back, _) = load(dir.path().join("data"), &LoadOptions::default()).unwrap();
    assert_eq!(back.len(), 14);
    assert_eq!(back.class_counts(), data.class_counts());
    same(&data, &back);
}

#[test]
fn pixel_text_columns_and_explicit_column_names_load() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth::default_dataset(1, 0, 3);
    let text: Vec<String> =
        (0..data.len()).map(|i| data.image(i).iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")).collect();
    let ids: Vec<i32> = (0..data.len()).map(|i| data.label(i).unwrap().id() as i32).collect();
    let mut df = df!("face_pixels" => text, "y" => ids).unwrap();
    let path = dir.path().join("custom.parquet");
    write(&mut df, &path);
    let err = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no image column"), "{err}");
    let options =
        LoadOptions { image_col: Some("face_pixels".into()), label_col: Some("y".into()), ..LoadOptions::default() };
    let (back, _) = load(&path, &options).unwrap();
    same(&data, &back);
}

#[test]
fn errors_name_the_file_the_row_and_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth::default_dataset(1, 0, 3);
    let pngs: Vec<Vec<u8>> = (0..3).map(|i| png(data.image(i))).collect();
    let mut broken = pngs.clone();
    broken[2] = b"not an image".to_vec();
    let mut df =
        df!("image" => broken.iter().map(|p| p.as_slice()).collect::<Vec<_>>(), "label" => [0i64, 3, 4]).unwrap();
    let path = dir.path().join("train.parquet");
    write(&mut df, &path);
    let err = load(&path, &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::ParquetRow { row: 2, .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("{}: row 2, column \"image\": ", path.display())), "{err}");

    let mut df =
        df!("image" => pngs.iter().map(|p| p.as_slice()).collect::<Vec<_>>(), "label" => [0i64, 9, 4]).unwrap();
    write(&mut df, &path);
    let err = load(&path, &LoadOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row 1, column \"label\": label 9 is outside 0-6 (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 \
                Surprise, 6 Neutral)",
            path.display()
        )
    );
    let (kept, report) = load(&path, &LoadOptions { skip_invalid: true, ..LoadOptions::default() }).unwrap();
    assert_eq!((kept.len(), report.skipped.get("bad label")), (2, Some(&1)));
    assert_eq!(kept.label(1), Some(Emotion::Sad));

    std::fs::write(dir.path().join("junk.parquet"), b"PAR1 this is not parquet").unwrap();
    let err = load(dir.path().join("junk.parquet"), &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::Parquet { .. }) && err.to_string().contains("junk.parquet"), "{err}");
}

/// Counts that polars-parquet 0.55 would turn into impossible allocations (aborting the process,
/// beyond any `catch_unwind`) are refused first, as errors naming the file.
#[test]
fn counts_that_would_make_polars_abort_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth::default_dataset(1, 0, 3);
    let pngs: Vec<Vec<u8>> = (0..3).map(|i| png(data.image(i))).collect();
    let mut df =
        df!("image" => pngs.iter().map(|p| p.as_slice()).collect::<Vec<_>>(), "label" => [0i64, 3, 4]).unwrap();
    let path = dir.path().join("train.parquet");
    write(&mut df, &path);
    let good = std::fs::read(&path).unwrap();
    assert_eq!(fer_data::load_parquet_bytes(&good, &path, &Default::default(), false).unwrap().len(), 3);
    let refused = |bytes: &[u8], why: &str| {
        let err = fer_data::load_parquet_bytes(bytes, &path, &Default::default(), false).unwrap_err().to_string();
        assert!(err.contains("train.parquet") && err.contains("damaged Parquet file") && err.contains(why), "{err}");
    };

    // A data page header (field 5, a struct: 0x2c) whose num_values (0x15, zigzag 3 = 0x06) becomes
    // -5: polars would reserve a validity bitmap of 2^61 bytes.
    let at = good.windows(3).position(|w| w == [0x2c, 0x15, 0x06]).expect("a data page header for 3 values");
    let mut negative = good.clone();
    negative[at + 2] = 0x09;
    refused(&negative, "num_values = -5");

    // The footer's schema list (FileMetaData field 2) claiming 2^31 - 1 elements: polars would
    // reserve them before reading one.
    let n = good.len();
    let len = u32::from_le_bytes(good[n - 8..n - 4].try_into().unwrap()) as usize;
    let footer = &good[n - 8 - len..n - 8];
    assert_eq!(footer[0], 0x15, "FileMetaData starts with its version, an i32");
    let list = 2 + footer[1..].iter().position(|b| b & 0x80 == 0).unwrap();
    assert_eq!(footer[list], 0x19, "then the schema, a list");
    let mut huge = good[..n - 8 - len].to_vec();
    huge.extend_from_slice(&footer[..=list]);
    huge.extend_from_slice(&[0xfc, 0xff, 0xff, 0xff, 0xff, 0x07]);
    huge.extend_from_slice(&footer[list + 2..]);
    huge.extend_from_slice(&((len + 5) as u32).to_le_bytes());
    huge.extend_from_slice(b"PAR1");
    refused(&huge, "claims 2147483647 elements");
}
