//! Measures how FER2013 framed its faces relative to the detector's boxes: runs the detector on
//! FER2013 faces themselves (upscaled, since 48 px is near the detector's smallest window) and
//! prints the ratio of the detected box's side to the face crop's side, and the box centre.
//! Usage: cargo run --release -p fer-detect --example fer_framing -- DIR [MAX_FILES]
use fer_detect::FaceDetector;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: fer_framing DIR [MAX_FILES]");
    let max: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(300);
    let mut files: Vec<_> = walk(std::path::Path::new(dir));
    files.sort();
    let stride = (files.len() / max).max(1);
    let detector = FaceDetector::new().expect("model");
    let (mut ratios, mut cx, mut cy, mut found, mut seen) = (Vec::new(), Vec::new(), Vec::new(), 0, 0);
    for path in files.iter().step_by(stride).take(max) {
        let Ok(img) = image::open(path) else { continue };
        let up = image::imageops::resize(&img.to_luma8(), 192, 192, image::imageops::FilterType::CatmullRom);
        seen += 1;
        let faces = detector.detect(&up);
        if let Some(f) = faces.iter().max_by(|a, b| a.score.total_cmp(&b.score)) {
            found += 1;
            ratios.push(f.bbox.width.max(f.bbox.height) as f64 / 192.0);
            cx.push((f.bbox.x as f64 + f.bbox.width as f64 / 2.0) / 192.0);
            cy.push((f.bbox.y as f64 + f.bbox.height as f64 / 2.0) / 192.0);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let r = median(&mut ratios);
    println!(
        "{found} of {seen} faces detected; box side / crop side: median {r:.3}; box centre x {:.3}, y {:.3}; margin \
            per side = {:.3}",
        median(&mut cx),
        median(&mut cy),
        (1.0 / r - 1.0) / 2.0
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
