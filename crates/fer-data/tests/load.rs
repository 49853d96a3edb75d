//! Loading every format, and a clear error (file, line, what) for every way input can be bad.

use std::io::Write;
use std::path::{Path, PathBuf};

use fer_data::{DataError, Dataset, Emotion, Format, LoadOptions, PIXELS, RowProblem, load, synth};

fn pixels_text(seed: u8) -> String {
    (0..PIXELS).map(|i| ((i as u32 * 7 + seed as u32) % 256).to_string()).collect::<Vec<_>>().join(" ")
}

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn fer_csv(rows: &[(&str, String, &str)]) -> String {
    let mut s = String::from("emotion,pixels,Usage\n");
    for (label, px, usage) in rows {
        s.push_str(&format!("{label},{px},{usage}\n"));
    }
    s
}

fn strict() -> LoadOptions {
    LoadOptions::default()
}

fn skipping() -> LoadOptions {
    LoadOptions { skip_invalid: true, ..LoadOptions::default() }
}

#[test]
fn loads_the_original_csv_with_splits() {
    let dir = tempfile::tempdir().unwrap();
    let csv = fer_csv(&[
        ("3", pixels_text(1), "Training"),
        ("0", pixels_text(2), "PublicTest"),
        ("6", pixels_text(3), "PrivateTest"),
    ]);
    let path = write(dir.path(), "fer2013.csv", csv.as_bytes());
    let (d, report) = load(&path, &strict()).unwrap();
    assert_eq!(report.format, Format::Fer2013Csv);
    assert_eq!(d.len(), 3);
    assert_eq!(d.label(0), Some(Emotion::Happy));
    assert_eq!(d.split(1), "PublicTest");
    assert_eq!(d.image(2)[1], 10);
    assert_eq!(d.split_names(), ["Training", "PublicTest", "PrivateTest"]);
}

#[test]
fn loads_gzip_crlf_quotes_and_course_csvs() {
    let dir = tempfile::tempdir().unwrap();
    let csv = fer_csv(&[("1", format!("\"{}\"", pixels_text(5)), "Training")]).replace('\n', "\r\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(csv.as_bytes()).unwrap();
    let path = write(dir.path(), "fer2013.csv.gz", &gz.finish().unwrap());
    let (d, _) = load(&path, &strict()).unwrap();
    assert_eq!((d.len(), d.label(0)), (1, Some(Emotion::Disgust)));

    let train = write(dir.path(), "train.csv", format!("label,feature\n5,{}\n", pixels_text(0)).as_bytes());
    let (d, r) = load(&train, &strict()).unwrap();
    assert_eq!((r.format, d.label(0), d.split(0)), (Format::CourseTrainCsv, Some(Emotion::Surprise), "Training"));

    let test =
        write(dir.path(), "test.csv", format!("id,feature\n0,{}\n1,{}\n", pixels_text(0), pixels_text(1)).as_bytes());
    let (d, r) = load(&test, &strict()).unwrap();
    assert_eq!((r.format, d.len(), d.unlabelled()), (Format::CourseTestCsv, 2, 2));
}

fn row_error(csv: &str) -> (usize, RowProblem, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.csv", csv.as_bytes());
    let err = load(&path, &strict()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad.csv"), "{text}");
    match err {
        DataError::Row { line, problem, .. } => (line, problem, text),
        other => panic!("expected a row error, got {other}"),
    }
}

#[test]
fn bad_rows_name_the_line_and_the_problem() {
    let good = pixels_text(0);
    let short = (0..2303).map(|_| "1").collect::<Vec<_>>().join(" ");
    let (line, p, text) = row_error(&fer_csv(&[("0", good.clone(), "Training"), ("0", short, "Training")]));
    assert_eq!((line, p), (3, RowProblem::PixelCount { found: 2303 }));
    assert!(text.contains("line 3") && text.contains("2304"), "{text}");

    let bad_pixel = good.replacen("7 ", "7a ", 1);
    assert!(matches!(
        row_error(&fer_csv(&[("0", bad_pixel, "Training")])),
        (2, RowProblem::NonNumericPixel { index: 1, .. }, _)
    ));

    let big = good.replacen("0 ", "300 ", 1);
    assert_eq!(row_error(&fer_csv(&[("0", big, "Training")])).1, RowProblem::PixelOutOfRange { index: 0, value: 300 });
    assert_eq!(
        row_error(&fer_csv(&[("9", good.clone(), "Training")])).1,
        RowProblem::LabelOutOfRange { value: "9".into() }
    );
    assert_eq!(
        row_error(&fer_csv(&[("x", good.clone(), "Training")])).1,
        RowProblem::NonNumericLabel { token: "x".into() }
    );
    assert_eq!(
        row_error(&fer_csv(&[("1", good.clone(), "Validation")])).1,
        RowProblem::UnknownUsage { token: "Validation".into() }
    );
    assert_eq!(row_error("emotion,pixels,Usage\n1,2\n").1, RowProblem::FieldCount { expected: 3, found: 2 });
}

#[test]
fn bad_files_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let header =
        |content: &str| load(write(dir.path(), "h.csv", content.as_bytes()), &strict()).unwrap_err().to_string();
    let e = header("emotion;pixels;Usage\n");
    assert!(e.contains("h.csv") && e.contains("line 1") && e.contains("delimiter"), "{e}");
    let e = header("label,pixelz\n1,2\n");
    assert!(e.contains("missing or misnamed columns") && e.contains("label,pixelz"), "{e}");

    assert!(matches!(load(write(dir.path(), "empty.csv", b""), &strict()), Err(DataError::Empty { .. })));
    let mut latin1 = b"emotion,pixels,Usage\n0,1 2,Training\n0,".to_vec();
    latin1.push(0xE9);
    match load(write(dir.path(), "latin1.csv", &latin1), &strict()) {
        Err(DataError::NotUtf8 { line, .. }) => assert_eq!(line, 3),
        other => panic!("{other:?}"),
    }

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(fer_csv(&[("0", pixels_text(0), "Training")]).as_bytes()).unwrap();
    let bytes = gz.finish().unwrap();
    let e = load(write(dir.path(), "cut.csv.gz", &bytes[..bytes.len() / 2]), &strict()).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }) && e.to_string().contains("cut.csv.gz"), "{e}");

    let e = load(dir.path().join("nowhere.csv"), &strict()).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }) && e.to_string().contains("nowhere.csv"), "{e}");
}

#[test]
fn skip_invalid_loads_the_rest_and_counts_per_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = pixels_text(0);
    let csv = fer_csv(&[
        ("0", good.clone(), "Training"),
        ("8", good.clone(), "Training"),
        ("1", "1 2 3".into(), "Training"),
        ("2", "4 5".into(), "Training"),
        ("3", good.clone(), "Training"),
    ]);
    let path = write(dir.path(), "mixed.csv", csv.as_bytes());
    assert!(load(&path, &strict()).is_err());
    let (d, report) = load(&path, &skipping()).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(report.skipped.get("wrong pixel count"), Some(&2));
    assert_eq!(report.skipped.get("label outside 0-6"), Some(&1));
}

fn tree_with(dir: &Path) -> Dataset {
    let d = synth::default_dataset(2, 1, 4);
    fer_data::write_image_tree(&d, dir).unwrap();
    d
}

#[test]
fn image_folders_load_with_splits_and_case_insensitive_classes() {
    let dir = tempfile::tempdir().unwrap();
    let original = tree_with(dir.path());
    std::fs::rename(dir.path().join("Training/happy"), dir.path().join("Training/HAPPY")).unwrap();
    let (d, r) = load(dir.path(), &strict()).unwrap();
    assert_eq!((r.format, r.converted), (Format::ImageFolder, 0));
    assert_eq!(d, original);
    // One split folder on its own.
    let (train, _) = load(dir.path().join("Training"), &strict()).unwrap();
    assert_eq!(train.len(), 14);
    assert_eq!(train.split_names(), ["Training"]);
}

#[test]
fn colour_and_odd_sized_images_are_converted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("val/happy");
    std::fs::create_dir_all(&class).unwrap();
    image::RgbImage::from_pixel(64, 64, image::Rgb([200, 100, 50])).save(class.join("a.png")).unwrap();
    image::GrayImage::from_pixel(48, 48, image::Luma([7])).save(class.join("b.png")).unwrap();
    let (d, r) = load(dir.path(), &strict()).unwrap();
    assert_eq!((d.len(), r.converted), (2, 1));
    assert_eq!(d.split(0), "PublicTest");
    assert_eq!(d.image(1)[0], 7);
}

#[test]
fn bad_trees_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    tree_with(dir.path());
    std::fs::create_dir_all(dir.path().join("Training/joy")).unwrap();
    let e = load(dir.path(), &strict()).unwrap_err();
    assert!(matches!(e, DataError::UnknownClassFolder { .. }), "{e}");
    assert!(e.to_string().contains("joy") && e.to_string().contains("angry"), "{e}");
    std::fs::remove_dir(dir.path().join("Training/joy")).unwrap();

    let corrupt = dir.path().join("Training/sad/zz.jpg");
    std::fs::write(&corrupt, b"not a jpeg").unwrap();
    let e = load(dir.path(), &strict()).unwrap_err();
    assert!(matches!(e, DataError::Image { .. }) && e.to_string().contains("zz.jpg"), "{e}");
    let (d, r) = load(dir.path(), &skipping()).unwrap();
    assert_eq!((d.len(), r.skipped.get("unreadable or corrupt image")), (28, Some(&1)));
}

#[test]
fn csv_to_png_to_csv_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let original = synth::default_dataset(3, 2, 9);
    let csv = dir.path().join("a.csv");
    fer_data::write_fer2013_csv(&original, &csv).unwrap();
    let (from_csv, _) = load(&csv, &strict()).unwrap();
    assert_eq!(from_csv, original);
    let tree = dir.path().join("tree");
    fer_data::write_image_tree(&from_csv, &tree).unwrap();
    let (from_tree, _) = load(&tree, &strict()).unwrap();
    let csv2 = dir.path().join("b.csv.gz");
    fer_data::write_fer2013_csv(&from_tree, &csv2).unwrap();
    let (back, _) = load(&csv2, &strict()).unwrap();
    assert_eq!(back, original);
}

#[test]
fn a_gzip_bomb_stops_at_the_limit_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MB of zeros compresses to ~64 KB; a 1 MB limit must stop it while reading.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"emotion,pixels,Usage\n").unwrap();
    let line = [vec![b'0'; 1023], vec![b'\n']].concat();
    for _ in 0..(64 << 10) {
        gz.write_all(&line).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 200_000);
    let limited = LoadOptions { max_bytes: 1 << 20, ..LoadOptions::default() };
    let e = load(write(dir.path(), "bomb.csv.gz", &bomb), &limited).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the decompressed gzip stream is over the limit of 1048576 bytes (raise it with --max-input-bytes)",
            dir.path().join("bomb.csv.gz").display()
        )
    );
    // A plain file over the limit is refused from its size, before it is read.
    let big = write(dir.path(), "big.csv", &vec![b'\n'; 2 << 20]);
    assert!(matches!(load(&big, &limited), Err(DataError::TooLarge { what: "the file", .. })));
}

#[test]
fn a_line_longer_than_any_row_is_refused_as_it_streams() {
    let dir = tempfile::tempdir().unwrap();
    // 256 MB without a newline after a valid header and row, gzip'd to ~250 KB: refused at line 3
    // after 64 KiB of it (memory never follows the line; the old reader decompressed it whole).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("emotion,pixels,Usage\n3,{},Training\n", pixels_text(1)).as_bytes()).unwrap();
    let zeros = vec![b'7'; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    let garbage = write(dir.path(), "one-long-line.csv.gz", &gz.finish().unwrap());
    let e = load(&garbage, &strict()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: line 3 is longer than 65536 bytes, longer than any FER2013 row (at most about 9,300 bytes): not a \
                FER2013 CSV, or a damaged one",
            garbage.display()
        )
    );
    // The same rule for a plain file (streamed from disk) and for bytes in memory.
    let plain = format!("emotion,pixels,Usage\n{}\n", "1 ".repeat(40_000));
    let file = write(dir.path(), "long.csv", plain.as_bytes());
    assert!(matches!(load(&file, &strict()), Err(DataError::LineTooLong { line: 2, limit: 65536, .. })));
    assert!(matches!(
        fer_data::load_bytes(plain.as_bytes(), &file, &strict()),
        Err(DataError::LineTooLong { line: 2, .. })
    ));
    // A row at the longest a valid one gets (every pixel "255", spaced) still loads.
    let widest = format!("emotion,pixels,Usage\n6,\"{}\",PrivateTest\n", vec!["255"; 2304].join(" "));
    let (data, _) = fer_data::load_bytes(widest.as_bytes(), &file, &strict()).unwrap();
    assert_eq!(data.len(), 1);
}

#[test]
fn memory_follows_valid_rows_not_the_line_count() {
    // Two million empty lines and one valid row: loads one face (the old parser reserved a face
    // per line, 4.6 GB here).
    let mut csv = String::from("emotion,pixels,Usage\n");
    csv.push_str(&"\n".repeat(2_000_000));
    csv.push_str(&format!("3,{},Training\n", pixels_text(1)));
    let (data, _) = fer_data::load_bytes(csv.as_bytes(), "many-lines.csv".as_ref(), &strict()).unwrap();
    assert_eq!(data.len(), 1);
    // Errors keep their line numbers across the parser's chunks.
    let mut csv = String::from("emotion,pixels,Usage\n");
    for _ in 0..5000 {
        csv.push_str(&format!("3,{},Training\n", pixels_text(2)));
    }
    csv.push_str("9,1 2 3,Training\n");
    let e = fer_data::load_bytes(csv.as_bytes(), "x.csv".as_ref(), &strict()).unwrap_err();
    assert!(e.to_string().starts_with("x.csv: line 5002: "), "{e}");
}

#[test]
fn an_image_that_claims_a_huge_size_is_refused_from_its_header() {
    let png = fer_data::synth::png_header_claiming(100_000, 100_000);
    let mut out = vec![0u8; fer_data::PIXELS];
    let e = fer_data::decode_face_bytes(&png, "train/happy/huge.png".as_ref(), &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "train/happy/huge.png: unreadable or corrupt image: 100000x100000 pixels is over the limit of 16777216 pixels \
            for a face image"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any faces written as fer2013.csv (with CRLF or LF, quoted or not) load back exactly.
        #[test]
        fn any_faces_round_trip_through_the_csv_text(
            faces in proptest::collection::vec(
            (0u8..7, proptest::collection::vec(any::<u8>(), fer_data::PIXELS), 0usize..3),
            1..6,
        ),
            crlf in any::<bool>(),
            quoted in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let mut csv = format!("emotion,pixels,Usage{eol}");
            for (label, pixels, split) in &faces {
                let text = pixels.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
                let text = if quoted { format!("\"{text}\"") } else { text };
                csv.push_str(&format!("{label},{text},{}{eol}", ["Training", "PublicTest", "PrivateTest"][*split]));
            }
            let (data, _) = fer_data::load_bytes(csv.as_bytes(), "p.csv".as_ref(), &strict()).unwrap();
            prop_assert_eq!(data.len(), faces.len());
            for (i, (label, pixels, _)) in faces.iter().enumerate() {
                prop_assert_eq!(data.image(i), &pixels[..]);
                prop_assert_eq!(data.label(i).map(|e| e.id() as u8), Some(*label));
            }
        }

        /// Arbitrary bytes after a valid header: an error that names the file and a line, or a load.
        #[test]
        fn arbitrary_rows_never_panic_and_errors_name_the_file(
            body in proptest::collection::vec(any::<u8>(), 0..3000)
        ) {
            let mut bytes = b"emotion,pixels,Usage\n".to_vec();
            bytes.extend_from_slice(&body);
            match fer_data::load_bytes(&bytes, "arbitrary.csv".as_ref(), &strict()) {
                Ok((data, _)) => prop_assert!(data.len() <= 1),
                Err(e) => prop_assert!(e.to_string().starts_with("arbitrary.csv: "), "{}", e),
            }
        }
    }
}
