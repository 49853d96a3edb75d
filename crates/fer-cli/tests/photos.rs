//! `fer predict` on photos and `fer serve`, driven as a user would: through the binary and HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

fn fer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fer")).args(args).output().expect("run fer")
}

fn photo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/photos").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny CNN trained for one epoch on synthetic faces: enough for every path to run.
fn tiny_run(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    let o = fer(&[
        "train",
        "--data",
        "synthetic:10,3,1",
        "--model",
        "tiny-cnn",
        "--out",
        s(&run),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "0",
        "--batch-size",
        "35",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    run
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

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
    let o = fer(&["explain", "gradcam", "--run", s(&run), "--layer", "block5.act", "--image", s(&photo("astronaut.jpg")), "--out", s(&out)]);
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
    let o = fer(&["explain", "saliency", "--run", s(&run), "--image", s(&coffee), "--out", s(&dir.path().join("c.png"))]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}: no face found", s(&coffee))) && err.contains("--no-detect"), "{err}");
    let o = fer(&["explain", "saliency", "--run", s(&run), "--image", s(&coffee), "--no-detect", "--out", s(&dir.path().join("c.png"))]);
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
    assert!(String::from_utf8_lossy(&o.stderr).contains("512x512 pixels is over the limit of 1000 pixels"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = fer(&["predict", "--run", s(&run), s(&dir.path().join("missing.jpg"))]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.jpg: cannot read"));
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(run: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fer"))
        .args(["serve", "--run", s(run), "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fer serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    // "fer serve: RUN on http://127.0.0.1:PORT/ (Ctrl-C stops)"
    let addr = line.split("http://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    Server(child, addr)
}

/// One HTTP/1.1 request on a fresh connection; returns (status, headers, body).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // A server may answer (413) and close before reading a large body: that is not a failure.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split =
        response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&response)));
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = unchunk(&body);
    }
    (status, head, body)
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 4 + size..];
    }
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[test]
fn serve_answers_the_page_the_api_and_every_bad_request_then_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let run = tiny_run(dir.path());
    let server = start_server(&run, &["--max-bytes", "200000"]);
    let addr = server.1.as_str();

    let (status, head, page) = http(addr, "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("content-type: text/html"));
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("<canvas id=\"view\"") && page.contains("/api/predict") && !page.contains("https://"), "self-contained page");

    // The API answers the same object as `fer predict --json` (given the same name).
    let three = photo("three-faces.jpg");
    let bytes = std::fs::read(&three).unwrap();
    let (status, _, body) = http(addr, "POST", "/api/predict", &[("X-Filename", s(&three)), ("Content-Type", "image/jpeg")], &bytes);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let from_api = body_json(&body);
    let from_cli = json(&fer(&["predict", "--run", s(&run), "--json", s(&three)]));
    assert_eq!(from_api, from_cli);

    // ?explain=true adds a saliency overlay per face, as a PNG data URL.
    let (status, _, body) = http(addr, "POST", "/api/predict?explain=true", &[], &bytes);
    assert_eq!(status, 200);
    let v = body_json(&body);
    assert_eq!(v["path"], "upload");
    for face in v["faces"].as_array().unwrap() {
        let url = face["saliency"].as_str().unwrap();
        assert!(url.starts_with("data:image/png;base64,iVBORw0KGgo"), "{}", &url[..40]);
    }

    // Bad requests: each gets its status and a message naming the upload; none stops the server.
    let (status, _, body) = http(addr, "POST", "/api/predict", &[("X-Filename", "notes.txt")], b"these are not pixels");
    assert_eq!(status, 400);
    assert!(body_json(&body)["error"].as_str().unwrap().starts_with("notes.txt: not an image fer can read"));
    let (status, _, body) = http(addr, "POST", "/api/predict", &[], b"");
    assert_eq!(status, 400);
    assert!(body_json(&body)["error"].as_str().unwrap().contains("empty body"));
    let (status, _, body) = http(addr, "POST", "/api/predict", &[("X-Filename", "big.jpg")], &vec![0u8; 300_000]);
    assert_eq!(status, 413);
    assert!(body_json(&body)["error"].as_str().unwrap().contains("over the limit of 200000 bytes"), "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http(addr, "POST", "/api/predict", &[("X-Filename", "huge.png")], &huge_png_header());
    assert_eq!(status, 413);
    assert!(
        body_json(&body)["error"].as_str().unwrap().starts_with("huge.png: 100000x100000 pixels is over the limit"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, _) = http(addr, "GET", "/nowhere", &[], b"");
    assert_eq!(status, 404);

    let (status, _, body) = http(addr, "GET", "/api/health", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(body_json(&body)["status"], "ok");
    let (status, _, _) = http(addr, "POST", "/api/predict", &[], &bytes);
    assert_eq!(status, 200, "still serving after the bad requests");
}

/// A PNG that claims 100,000 x 100,000 pixels in 45 bytes.
fn huge_png_header() -> Vec<u8> {
    fer_data::synth::png_header_claiming(100_000, 100_000)
}
