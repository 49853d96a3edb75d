//! `fer predict` and `fer explain` on photos, driven as a user would: through the binary.

mod common;

use common::{fer, json, photo, s, tiny_run};
use serde_json::Value;

fn check_face(face: &Value, classes: &[&str]) {
    let b: Vec<u64> = face["box"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(b.len(), 4);
    assert!(b[2] > 20 && b[3] > 20, "{face}");
    assert!(face["score"].as_f64().unwrap() >= 2.0, "{face}");
    let probs = face["probabilities"].as_object().unwrap();
    assert_eq!(probs.len(), 7);
    let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 2e-3, "{sum}");
    let class = face["class"].as_str().unwrap();
    assert!(classes.contains(&class));
    let best = probs.iter().max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap())).unwrap().0;
    assert_eq!(best, class, "the class is the most probable one");
}

const CLASSES: [&str; 7] = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"];

#[test]
fn predict_finds_boxes_and_classifies_each_face() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let three = photo("three-faces.jpg");
    let v = json(&fer(&["predict", "--run", s(&run), "--json", s(&three)]));
    assert_eq!(v["path"], s(&three));
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(960), Some(420)));
    let faces = v["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 3, "{v}");
    for f in faces {
        check_face(f, &CLASSES);
    }
    let xs: Vec<u64> = faces.iter().map(|f| f["box"][0].as_u64().unwrap()).collect();
    assert!(xs.windows(2).all(|w| w[0] < w[1]), "left to right: {xs:?}");

    // Several images: a list, one object per image, in order; no face is an empty list, exit 0.
    let coffee = photo("coffee-no-face.jpg");
    let astronaut = photo("astronaut.jpg");
    let v = json(&fer(&["predict", "--run", s(&run), "--json", s(&astronaut), s(&coffee)]));
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["faces"].as_array().unwrap().len(), 1);
    assert_eq!(list[1]["faces"], serde_json::json!([]));
    let o = fer(&["predict", "--run", s(&run), s(&coffee)]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), format!("{}: no face found", s(&coffee)));

    // The text form names the box and the class.
    let o = fer(&["predict", "--run", s(&run), s(&astronaut)]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.starts_with(&format!("{}: 1 face\n  face 1 at x ", s(&astronaut))), "{text}");

    // --annotate: the photo, same size, with the box drawn in.
    let out = dir.path().join("annotated.png");
    let o = fer(&["predict", "--run", s(&run), "--annotate", s(&out), s(&astronaut)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let original = image::open(&astronaut).unwrap().to_rgb8();
    let annotated = image::open(&out).unwrap().to_rgb8();
    assert_eq!(annotated.dimensions(), original.dimensions());
    let changed = original.pixels().zip(annotated.pixels()).filter(|(a, b)| a != b).count();
    assert!(changed > 300 && changed < 40_000, "{changed} pixels changed");
    // Several images with --annotate: a folder with one PNG each.
    let folder = dir.path().join("annotated");
    let o = fer(&["predict", "--run", s(&run), "--annotate", s(&folder), s(&astronaut), s(&three)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(folder.join("astronaut.png").exists() && folder.join("three-faces.png").exists());
}

#[test]
fn explain_finds_the_faces_in_a_photo_as_predict_does() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    // One face: the figure goes where --out says, and the face is the one predict boxes.
    let out = dir.path().join("astro.png");
    let o = fer(&[
        "explain",
        "gradcam",
        "--run",
        s(&run),
        "--layer",
        "block5.act",
        "--image",
        s(&photo("astronaut.jpg")),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
    let predicted = json(&fer(&["predict", "--run", s(&run), "--json", s(&photo("astronaut.jpg"))]));
    let class = predicted["faces"][0]["class"].as_str().unwrap().to_string();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.starts_with(&format!("{}: predicted {class} (", s(&photo("astronaut.jpg")))), "{text} / {predicted}");

    // Three faces: one figure each, numbered left to right.
    let out = dir.path().join("three.png");
    let o = fer(&["explain", "saliency", "--run", s(&run), "--image", s(&photo("three-faces.jpg")), "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for k in 1..=3 {
        assert!(dir.path().join(format!("three-face{k}.png")).exists(), "face {k}");
    }
    assert!(!out.exists());
    assert_eq!(String::from_utf8_lossy(&o.stdout).matches("face ").count(), 3);

    // No face: a clear error that points at --no-detect; with it, the whole image is the face.
    let coffee = photo("coffee-no-face.jpg");
    let o =
        fer(&["explain", "saliency", "--run", s(&run), "--image", s(&coffee), "--out", s(&dir.path().join("c.png"))]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}: no face found", s(&coffee))) && err.contains("--no-detect"), "{err}");
    let o = fer(&[
        "explain",
        "saliency",
        "--run",
        s(&run),
        "--image",
        s(&coffee),
        "--no-detect",
        "--out",
        s(&dir.path().join("c.png")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.path().join("c.png").exists());
}

#[test]
fn predict_refuses_what_is_not_a_photo_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let fake = dir.path().join("notes.jpg");
    std::fs::write(&fake, b"these are not pixels").unwrap();
    let o = fer(&["predict", "--run", s(&run), s(&fake)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}: not an image fer can read", s(&fake))), "{err}");
    let o = fer(&["predict", "--run", s(&run), "--max-pixels", "1000", s(&photo("astronaut.jpg"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("512x512 pixels is over the limit of 1000 pixels"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = fer(&["predict", "--run", s(&run), s(&dir.path().join("missing.jpg"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.jpg: cannot read"));
}
