//! The model that ships inside `fer` (models/fer2013-cnn.ferc, card: models/README.md): the file
//! is the one its card names, it loads as the model its card describes, and it answers on the fixture photos
//! with no --run and no training.

#![cfg(feature = "builtin-model")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fer")).args(args).output().expect("run fer")
}

fn photo(name: &str) -> String {
    root().join("fixtures/photos").join(name).display().to_string()
}

fn model_bytes() -> Vec<u8> {
    std::fs::read(root().join("models/fer2013-cnn.ferc")).unwrap()
}

#[test]
fn the_file_is_the_one_its_card_names_and_loads_as_the_crop_cnn_it_describes() {
    let bytes = model_bytes();
    assert!(bytes.len() <= 16 << 20, "{} bytes", bytes.len());
    let sha = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let card = std::fs::read_to_string(root().join("models/README.md")).unwrap();
    assert!(
        card.contains(&format!("`{sha}`")),
        "models/README.md does not name the SHA-256 of models/fer2013-cnn.ferc, {sha}"
    );
    assert!(
        card.contains(&format!("{} bytes", bytes.len())),
        "models/README.md does not give the file's size, {} bytes",
        bytes.len()
    );

    let device = burn::tensor::Device::flex();
    let model = fer_model::model_from_bytes(&bytes, "fer2013-cnn.ferc".as_ref(), &device).unwrap();
    // The report's CNN on the centre 44x44 of each face (`--model cnn-crop44`), as the card says.
    assert_eq!(model.config().name(), "cnn-crop44");
    assert_eq!(fer_model::Summary::of(&model).total_params, 2_777_159);
    // Written again from the loaded weights, the file comes out byte for byte the same.
    let format = if bytes[8] == 0 { fer_model::HalfFormat::F16 } else { fer_model::HalfFormat::Bf16 };
    assert_eq!(fer_model::compact_bytes(&model, format).unwrap(), bytes);
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The class and its probability for each face the built-in model finds.
fn answers(v: &Value) -> Vec<(String, f64)> {
    v["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let class = f["class"].as_str().unwrap().to_string();
            let p = f["probabilities"][&class].as_f64().unwrap();
            (class, p)
        })
        .collect()
}

#[test]
fn predict_without_a_run_answers_on_the_fixture_photos() {
    let v = json(&fer(&[
        "predict",
        "--json",
        &photo("astronaut.jpg"),
        &photo("three-faces.jpg"),
        &photo("coffee-no-face.jpg"),
    ]));
    let list = v.as_array().unwrap();
    // The astronaut smiles, in the photo and in each of her three pasted copies; the coffee cup
    // has no face. (Probabilities move in the last digits between CPUs, not by 0.05.)
    let astronaut = answers(&list[0]);
    assert_eq!(astronaut.len(), 1);
    assert_eq!(astronaut[0].0, "Happy");
    assert!(astronaut[0].1 > 0.8, "{astronaut:?}");
    let three = answers(&list[1]);
    assert_eq!(three.len(), 3, "{three:?}");
    assert!(three.iter().all(|(c, p)| c == "Happy" && *p > 0.8), "{three:?}");
    assert!(answers(&list[2]).is_empty());

    // --help says where the model comes from when --run is left out.
    let help = String::from_utf8_lossy(&fer(&["predict", "--help"]).stdout).to_string();
    assert!(help.contains("models/fer2013-cnn.ferc"), "{help}");
}

#[test]
fn explain_and_eval_without_a_run_use_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gradcam.png");
    let o = fer(&["explain", "gradcam", "--image", &photo("astronaut.jpg"), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("predicted Happy"), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(out.exists());

    // eval needs data to evaluate on; --ema needs a run.
    let o = fer(&["eval"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--data"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = fer(&["predict", "--ema", &photo("astronaut.jpg")]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--run"), "{}", String::from_utf8_lossy(&o.stderr));
    // On synthetic faces (not what it was trained for) it still runs end to end and reports.
    let o = fer(&["eval", "--data", "synthetic:4,2,1", "--split", "PublicTest"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("built-in model (models/fer2013-cnn.ferc) on PublicTest"));
}
