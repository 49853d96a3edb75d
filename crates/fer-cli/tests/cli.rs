//! The `fer` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn fer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fer")).args(args).output().expect("fer runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn synth(dir: &Path, per_class: usize) {
    let o = fer(&["data", "synth", dir.to_str().unwrap(), "--per-class", &per_class.to_string(), "--val-per-class", "2", "--seed", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn stats_json_counts_per_class_and_split() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 5);
    let o = fer(&["data", "stats", dir.path().to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["format"], "image-folder");
    assert_eq!(v["count"], 49);
    assert_eq!(v["per_class"]["happy"], 7);
    assert_eq!(v["splits"]["Training"]["count"], 35);
    assert_eq!(v["splits"]["PublicTest"]["per_class"]["neutral"], 2);
}

#[test]
fn convert_round_trips_through_csv_and_pngs() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    synth(&tree, 3);
    let csv = dir.path().join("fer2013.csv.gz");
    let o = fer(&["data", "convert", tree.to_str().unwrap(), csv.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let back = dir.path().join("back");
    assert!(fer(&["data", "convert", csv.to_str().unwrap(), back.to_str().unwrap()]).status.success());
    let a = fer(&["data", "stats", tree.to_str().unwrap(), "--json"]);
    let b = fer(&["data", "stats", back.to_str().unwrap(), "--json"]);
    assert_eq!(stdout(&a), stdout(&b));
}

#[test]
fn bad_input_exits_non_zero_with_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "emotion,pixels,Usage\n0,1 2 3,Training\n").unwrap();
    let o = fer(&["data", "stats", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("bad.csv: line 2: expected 2304 pixels (48x48), found 3"), "{e}");
    assert!(!e.contains("panicked"), "{e}");

    let o = fer(&["data", "stats", bad.to_str().unwrap(), "--skip-invalid", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((v["count"].as_u64(), v["skipped"]["wrong pixel count"].as_u64()), (Some(0), Some(1)));

    let o = fer(&["data", "stats", "/no/such/place"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/no/such/place: no such file or directory"));
}

#[test]
fn augment_applies_one_explicit_transform() {
    let dir = tempfile::tempdir().unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keras-parity/input.png");
    let out = dir.path().join("out.png");
    let o = fer(&["data", "augment", input.to_str().unwrap(), "--out", out.to_str().unwrap(), "--theta", "15"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keras-parity/case-0.png");
    let ours = image::open(&out).unwrap().into_luma8();
    let keras = image::open(expected).unwrap().into_luma8();
    let max = ours.as_raw().iter().zip(keras.as_raw()).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
    assert!(max <= 1, "max diff {max} against Keras");
}

#[test]
fn summary_json_has_the_report_counts() {
    let o = fer(&["summary", "--model", "cnn", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((v["total_params"].as_u64(), v["trainable_params"].as_u64(), v["non_trainable_params"].as_u64()), (Some(4087879), Some(4084295), Some(3584)));
    assert_eq!(v["layers"][0]["name"], "block1.conv");
    assert_eq!(v["layers"][0]["output_shape"], serde_json::json!([48, 48, 64]));
    let o = fer(&["summary", "--model", "dnn", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["total_params"].as_u64(), Some(4099847));
    let o = fer(&["summary", "--model", "vgg"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("valid models: cnn, dnn"));
}
