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
    let o = fer(&[
        "data",
        "synth",
        dir.to_str().unwrap(),
        "--per-class",
        &per_class.to_string(),
        "--val-per-class",
        "2",
        "--seed",
        "1",
    ]);
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
    assert_eq!(v["count"], 63);
    assert_eq!(v["per_class"]["happy"], 9);
    assert_eq!(v["splits"]["PrivateTest"]["count"], 14);
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
    assert_eq!(
        (v["total_params"].as_u64(), v["trainable_params"].as_u64(), v["non_trainable_params"].as_u64()),
        (Some(4087879), Some(4084295), Some(3584))
    );
    assert_eq!(v["layers"][0]["name"], "block1.conv");
    assert_eq!(v["layers"][0]["output_shape"], serde_json::json!([48, 48, 64]));
    let o = fer(&["summary", "--model", "dnn", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["total_params"].as_u64(), Some(4099847));
    let o = fer(&["summary", "--model", "vgg"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("valid models: cnn, dnn"));
}

/// Trains a tiny CNN into `dir/run` on every face of `data` per epoch; fails the test if it fails.
fn train_tiny_cnn(
    dir: &std::path::Path,
    data: &str,
    epochs: usize,
    batch_size: usize,
) -> (std::path::PathBuf, std::process::Output) {
    let run = dir.join("run");
    let (epochs, batch_size) = (epochs.to_string(), batch_size.to_string());
    let args = [
        "train",
        "--data",
        data,
        "--model",
        "tiny-cnn",
        "--out",
        run.to_str().unwrap(),
        "--epochs",
        &epochs,
        "--batch-size",
        &batch_size,
        "--steps-per-epoch",
        "0",
        "--quiet",
    ];
    let o = fer(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    (run, o)
}

#[test]
fn train_eval_predict_on_synthetic_faces() {
    let dir = tempfile::tempdir().unwrap();
    let (run, o) = train_tiny_cnn(dir.path(), "synthetic:30,8,3", 2, 32);
    let run_s = run.to_str().unwrap();
    assert!(stdout(&o).contains("epoch   2:"), "{}", stdout(&o));
    for f in ["history.csv", "best.fer", "checkpoint.ckpt", "config.json"] {
        assert!(run.join(f).exists(), "{f}");
    }
    let o = fer(&["eval", "--run", run_s, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["count"], 56);
    assert_eq!(v["confusion_matrix"].as_array().unwrap().len(), 7);
    let total: u64 = v["confusion_matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|x| x.as_u64().unwrap())
        .sum();
    assert_eq!(total, 56);
    assert!(run.join("confusion-PublicTest.csv").exists() && run.join("predictions-PublicTest.csv").exists());

    let face = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/keras-parity/input.png");
    let o = fer(&["predict", "--run", run_s, "--no-detect", face.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("input.png: ") && stdout(&o).contains("Neutral"), "{}", stdout(&o));
    // Without --no-detect a 48x48 crop is searched for faces, and the answer says what to do.
    let o = fer(&["predict", "--run", run_s, face.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("input.png: no face found (for face crops such as FER2013's, use --no-detect)"),
        "{}",
        stdout(&o)
    );

    // Continuing a finished run does nothing more and says so.
    let o = fer(&["train", "--resume", run_s, "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("finished"));
}

#[test]
fn train_rejects_bad_arguments_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["train", "--data", "/missing/data", "--out", out], "/missing/data: no such file or directory"),
        (
            &["train", "--data", "synthetic:5,2,0", "--model", "resnet", "--out", out],
            "valid models: cnn, dnn, cnn-crop44, cnn-double, tiny-cnn, tiny-dnn",
        ),
        (&["train", "--data", "synthetic:5,2,0", "--batch-size", "0", "--out", out], "--batch-size must be at least 1"),
        (&["train", "--data", "synthetic:5,2,0", "--time-budget", "soon", "--out", out], "cannot read duration"),
    ];
    for (args, message) in cases {
        let o = fer(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn explain_writes_figures_and_reports_what_it_computed() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = train_tiny_cnn(dir.path(), "synthetic:10,3,1", 1, 35);
    let run_s = run.to_str().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    // `fer explain METHOD --run RUN ARGS... --out OUT`, face 0 of the synthetic data unless ARGS say.
    let explain = |method: &str, args: &[&str], out_name: &str| {
        let out_path = out(out_name);
        let mut all = vec!["explain", method, "--run", run_s];
        all.extend_from_slice(args);
        all.extend(["--out", out_path.as_str()]);
        fer(&all)
    };
    const FACE_0: [&str; 4] = ["--data", "synthetic:10,3,1", "--index", "0"];
    for method in ["saliency", "smoothgrad", "gradcam", "ig"] {
        let args = ["--data", "synthetic:10,3,1", "--index", "3", "--class", "happy", "--steps", "16"];
        let o = explain(method, &args, &format!("{method}.png"));
        assert!(o.status.success(), "{method}: {}", stderr(&o));
        assert!(stdout(&o).contains("for Happy written to"), "{}", stdout(&o));
        let img = image::open(out(&format!("{method}.png"))).unwrap();
        assert!(img.width() > 3 * 48 * 4);
    }
    let o = explain("ig", &[&FACE_0[..], &["--steps", "64"]].concat(), "ig64.png");
    assert!(stdout(&o).contains("relative error"), "{}", stdout(&o));

    let o = explain("activations", &[&FACE_0[..], &["--layer", "block1.act"]].concat(), "act.png");
    assert!(o.status.success() && stdout(&o).contains("8 maps of 48x48"), "{}{}", stdout(&o), stderr(&o));
    let o = explain("ascent", &["--layer", "block2.act", "--filters", "0..4", "--steps", "5"], "ascent.png");
    assert!(o.status.success() && stdout(&o).contains("4 filters of block2.act"), "{}{}", stdout(&o), stderr(&o));
    // `.svg` asks for the vector copy: the same figure, faces embedded, labels as text.
    let o = explain("saliency", &FACE_0, "s.svg");
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = std::fs::read_to_string(out("s.svg")).unwrap();
    assert!(
        svg.starts_with("<svg ") && svg.matches("<image ").count() == 3 && svg.contains(">saliency</text>"),
        "{svg}"
    );

    let o = explain("gradcam", &[&FACE_0[..], &["--layer", "block9.act"]].concat(), "x.png");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("valid layers: block1.conv"), "{}", stderr(&o));
    let o = explain("saliency", &[&FACE_0[..], &["--class", "joy"]].concat(), "x.png");
    assert!(stderr(&o).contains("valid classes: Angry, Disgust"), "{}", stderr(&o));
    // A name without a figure format is refused before the work, not after it.
    let o = explain("ascent", &["--layer", "block2.act"], "ascent");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("a figure needs a .png, .jpg or .svg file name"), "{}", stderr(&o));
}

#[test]
fn fast_recipe_weight_average_and_test_time_augmentation() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let o = fer(&[
        "train",
        "--data",
        "synthetic:30,8,3",
        "--model",
        "tiny-cnn",
        "--recipe",
        "fast",
        "--out",
        run_s,
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--steps-per-epoch",
        "0",
        "--plain-tail",
        "0.5",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("ema_val_acc"), "{}", stdout(&o));
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["recipe"]["schedule"]["kind"], "one-cycle");
    assert_eq!(config["recipe"]["plain_tail"], 0.5);
    // Bad values are named and refused before any training.
    for (flags, says) in [
        (&["--plain-tail", "1"][..], "--plain-tail must be a fraction"),
        (&["--optimizer", "lion"], "unknown optimizer \"lion\""),
        (&["--bn-shift-lr-scale=-1"], "--bn-shift-lr-scale must be zero or positive"),
        (&["--alternate-flips", "--no-augment"], "--alternate-flips needs the recipe's horizontal flips"),
        (&["--whiten-first-layer", "--model", "tiny-dnn"], "--whiten-first-layer needs a CNN"),
    ] {
        let out = dir.path().join(format!("bad{}", flags[0]));
        let o = fer(&[&["train", "--data", "synthetic:2,1,1", "--out", out.to_str().unwrap()], flags].concat());
        assert!(!o.status.success(), "{flags:?}");
        assert!(stderr(&o).contains(says), "{flags:?}: {}", stderr(&o));
        assert!(!out.join("checkpoint.ckpt").exists() && !out.join("config.json").exists(), "{flags:?} left a run");
    }
    // SGD takes its own weight decay, and --lr still overrides its rate; both are recorded.
    let sgd = dir.path().join("sgd");
    let o = fer(&[
        "train",
        "--data",
        "synthetic:40,8,3",
        "--model",
        "tiny-cnn",
        "--recipe",
        "fast",
        "--optimizer",
        "sgd-nesterov",
        "--lr",
        "0.02",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "8",
        "--out",
        sgd.to_str().unwrap(),
        "--alternate-flips",
        "--freeze-bn-scales",
        "--bn-shift-lr-scale",
        "4",
        "--whiten-first-layer",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(sgd.join("config.json")).unwrap()).unwrap();
    let r = &config["recipe"];
    assert_eq!((r["optimizer"].as_str(), r["lr"].as_f64()), (Some("sgd-nesterov"), Some(0.02)));
    // airbench's and Page's flags, recorded for --resume.
    assert_eq!(r["augment"]["alternate_flips"], true);
    assert_eq!((r["freeze_bn_scales"].as_bool(), r["bn_shift_lr_scale"].as_f64()), (Some(true), Some(4.0)));
    assert_eq!(r["whiten_first_layer"], true);
    assert!((r["weight_decay"].as_f64().unwrap() - 1e-4).abs() < 1e-9, "{r}");
    assert!(run.join("best-ema.fer").exists());

    let o = fer(&["eval", "--run", run_s, "--ema", "--tta", "flip", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((v["weights"].as_str(), v["tta"].as_str()), (Some("ema"), Some("flip")));
    assert!(run.join("eval-PublicTest-ema-tta-flip.json").exists());
    assert!(!run.join("eval-PublicTest.json").exists(), "the plain protocol's file is not overwritten by a variant");

    let o = fer(&["eval", "--run", run_s, "--tta", "sideways"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("valid: none, flip, crops"), "{}", stderr(&o));

    // The report's recipe keeps no average: asking for it says which recipe would.
    let plain = dir.path().join("plain");
    let (plain_run, _) = train_tiny_cnn(&plain, "synthetic:30,8,3", 1, 32);
    let o = fer(&["eval", "--run", plain_run.to_str().unwrap(), "--ema"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("best-ema.fer") && stderr(&o).contains("--recipe fast"), "{}", stderr(&o));
}
