use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::Module;
use burn::tensor::{Device, Tensor, activation::softmax};
use clap::{Args, Subcommand, ValueEnum};
use fer_data::{Emotion, LoadOptions, PIXELS, SIDE};
use fer_detect::{DetectorConfig, FER_MARGIN, FaceDetector, PhotoLimits};
use fer_interpret::{AscentConfig, Score};
use fer_model::FerModel;
use fer_report::{attribution_panel, channel_grid};

use crate::builtin::ModelSource;
use crate::device::DeviceChoice;

#[derive(Subcommand)]
pub enum ExplainCommand {
    /// Gradient of the class score with respect to the pixels (the report's Q4).
    Saliency(AttributionArgs),
    /// Saliency averaged over noisy copies of the face.
    Smoothgrad(AttributionArgs),
    /// Grad-CAM at a conv layer (--layer, default block5.act).
    Gradcam(AttributionArgs),
    /// Integrated gradients from a black image, with its completeness error.
    Ig(AttributionArgs),
    /// Every filter's activation map at one layer for one face (the report's Q5(1)).
    Activations(ActivationArgs),
    /// Gradient ascent: the input pattern each filter responds to most (the report's Q5(2)).
    Ascent(AscentArgs),
}

#[derive(Args, Clone)]
pub struct FaceArgs {
    /// Run folder (its best.fer; the first member of an ensemble). Without it, the model built
    /// into fer (models/fer2013-cnn.ferc).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Explain the run's weight average (best-ema.fer, from recipes that keep one).
    #[arg(long, requires = "run")]
    ema: bool,
    /// A photo (PNG or JPEG, any size, colour or gray): each face in it is found and framed as
    /// `fer predict` does, and explained in its own figure (OUT-face1.png, ... when there are
    /// several). With --no-detect, the whole image is the face.
    #[arg(long, conflicts_with = "data", required_unless_present = "data")]
    image: Option<PathBuf>,
    /// --image already is a face crop (like FER2013's): squeeze it to 48x48 gray, find no faces.
    #[arg(long, requires = "image")]
    no_detect: bool,
    /// A data set (path or `synthetic`), with --index.
    #[arg(long, requires = "index")]
    data: Option<String>,
    /// Index of the face in --data (within --split if given).
    #[arg(long)]
    index: Option<usize>,
    /// Split of --data to index into (default: all faces).
    #[arg(long)]
    split: Option<String>,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// Output figure: `.png` (or `.jpg`) for pixels, `.svg` for a vector copy with real text.
    #[arg(long, value_parser = figure_path)]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ScoreChoice {
    Logit,
    Probability,
}

#[derive(Args)]
pub struct AttributionArgs {
    #[command(flatten)]
    face: FaceArgs,
    /// Class to explain (name or id; default: the predicted class).
    #[arg(long)]
    class: Option<String>,
    #[arg(long, value_enum, default_value = "logit")]
    score: ScoreChoice,
    /// Grad-CAM layer.
    #[arg(long, default_value = "block5.act")]
    layer: String,
    /// SmoothGrad samples / integrated-gradients steps.
    #[arg(long, default_value_t = 64)]
    steps: usize,
    /// SmoothGrad noise (standard deviation, input units 0-1).
    #[arg(long, default_value_t = 0.15)]
    sigma: f64,
}

#[derive(Args)]
pub struct ActivationArgs {
    #[command(flatten)]
    face: FaceArgs,
    /// Layer name (see `fer summary`), e.g. block1.act, block3.act, block4.conv, block5.act.
    #[arg(long)]
    layer: String,
}

#[derive(Args)]
pub struct AscentArgs {
    /// Run folder. Without it, the model built into fer (models/fer2013-cnn.ferc).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Use the run's weight average (best-ema.fer).
    #[arg(long, requires = "run")]
    ema: bool,
    #[arg(long)]
    layer: String,
    /// Filter range `a..b` (or a single index); default: the layer's first 64.
    #[arg(long)]
    filters: Option<String>,
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 0.02)]
    step_size: f32,
    /// Blur every k steps (0: off).
    #[arg(long, default_value_t = 0)]
    blur_every: usize,
    #[arg(long, default_value_t = 0.0)]
    l2_decay: f32,
    #[arg(long, default_value_t = 0)]
    jitter: usize,
    #[arg(long, default_value_t = 0.0)]
    tv_weight: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// Output figure: `.png` (or `.jpg`) for pixels, `.svg` for a vector copy with real text.
    #[arg(long, value_parser = figure_path)]
    out: PathBuf,
}

fn load_model(run: Option<&Path>, ema: bool, device: &Device) -> anyhow::Result<FerModel> {
    // On an autodiff device so gradients reach the input; frozen so BatchNorm uses its running
    // statistics and dropout is off.
    Ok(ModelSource::new(run, ema)?.load_first(&device.clone().autodiff())?.freeze())
}

/// One face to explain: its 48x48 pixels, where it came from, its label when the data has one,
/// and the figure it goes to.
struct Face {
    pixels: Vec<u8>,
    source: String,
    label: Option<Emotion>,
    out: PathBuf,
}

/// A figure's file name, refused before any work when its extension names no format.
fn figure_path(name: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(name);
    let svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg || image::ImageFormat::from_path(&path).is_ok() {
        Ok(path)
    } else {
        Err(format!("{name}: a figure needs a .png, .jpg or .svg file name"))
    }
}

/// `out` for the k-th (1-based) of `n` faces: `out` itself for one face, `STEM-faceK.EXT` for several.
fn numbered(out: &Path, k: usize, n: usize) -> PathBuf {
    if n <= 1 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().map_or("explain".into(), |s| s.to_string_lossy().into_owned());
    let name = match out.extension() {
        Some(ext) => format!("{stem}-face{k}.{}", ext.to_string_lossy()),
        None => format!("{stem}-face{k}"),
    };
    out.with_file_name(name)
}

fn faces(args: &FaceArgs) -> anyhow::Result<Vec<Face>> {
    if let Some(path) = &args.image {
        let name = path.display().to_string();
        if args.no_detect {
            let mut pixels = vec![0u8; PIXELS];
            fer_data::decode_face(path, &mut pixels)?;
            return Ok(vec![Face { pixels, source: name, label: None, out: args.out.clone() }]);
        }
        let photo = crate::photos::read_photo(path, &PhotoLimits::default())?;
        let detector = FaceDetector::with_config(DetectorConfig::default())?;
        let found = crate::photos::face_crops(&photo.to_luma8(), &detector, FER_MARGIN);
        anyhow::ensure!(
            !found.is_empty(),
            "{name}: no face found (if the image already is a face crop, like FER2013's, add --no-detect)"
        );
        let n = found.len();
        return Ok(found
            .into_iter()
            .enumerate()
            .map(|(i, (bbox, _, pixels))| Face {
                pixels,
                source: if n == 1 {
                    name.clone()
                } else {
                    format!("{name} face {} at x {}, y {}, {}x{}", i + 1, bbox.x, bbox.y, bbox.width, bbox.height)
                },
                label: None,
                out: numbered(&args.out, i + 1, n),
            })
            .collect());
    }
    let spec = args.data.as_deref().context("give --image FILE or --data PATH --index N")?;
    let (mut data, _) = fer_data::open(spec, &LoadOptions::default())?;
    if let Some(split) = &args.split {
        data = data
            .select_splits(&[split])
            .map_err(|a| anyhow::anyhow!("split {split:?} is not in {spec} (it has: {})", a.join(", ")))?;
    }
    let index = args.index.context("--data needs --index")?;
    anyhow::ensure!(index < data.len(), "--index {index} is out of range: {spec} has {} faces", data.len());
    Ok(vec![Face {
        pixels: data.image(index).to_vec(),
        source: format!("{spec} #{index}"),
        label: data.label(index),
        out: args.out.clone(),
    }])
}

fn to_vec(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

fn probabilities(model: &FerModel, input: Tensor<4>) -> Vec<f32> {
    to_vec(softmax(model.forward(input), 1).reshape([1, 7, 1, 1]))
}

/// Writes the figure as the extension asks: `.svg` for vectors, `.png` (or `.jpg`) for pixels.
fn save(figure: &fer_report::Figure, out: &std::path::Path) -> anyhow::Result<()> {
    Ok(figure.save_one(out)?)
}

pub fn run(cmd: ExplainCommand) -> anyhow::Result<()> {
    match cmd {
        ExplainCommand::Saliency(a) => attribution("saliency", a),
        ExplainCommand::Smoothgrad(a) => attribution("smoothgrad", a),
        ExplainCommand::Gradcam(a) => attribution("gradcam", a),
        ExplainCommand::Ig(a) => attribution("ig", a),
        ExplainCommand::Activations(a) => activations(a),
        ExplainCommand::Ascent(a) => ascent(a),
    }
}

fn attribution(method: &str, a: AttributionArgs) -> anyhow::Result<()> {
    let device = a.face.device.device()?;
    let model = load_model(a.face.run.as_deref(), a.face.ema, &device)?;
    let ad = device.autodiff();
    for face in faces(&a.face)? {
        attribute_one(method, &a, &model, &ad, face)?;
    }
    Ok(())
}

fn attribute_one(method: &str, a: &AttributionArgs, model: &FerModel, ad: &Device, face: Face) -> anyhow::Result<()> {
    let Face { pixels, source, label, out } = face;
    let input = fer_model::input_from_pixels(&pixels, 1, SIDE, ad);
    let probs = probabilities(model, input.clone());
    let predicted = fer_train::argmax(&probs);
    let target = match &a.class {
        Some(name) => fer_interpret::class_index(model, name)?,
        None => predicted,
    };
    let score = match a.score {
        ScoreChoice::Logit => Score::Logit,
        ScoreChoice::Probability => Score::Probability,
    };
    let mut extra = String::new();
    let map = match method {
        "saliency" => to_vec(fer_interpret::saliency(model, input, &[target], score).abs()),
        "smoothgrad" => to_vec(fer_interpret::smoothgrad(model, input, &[target], score, a.steps, a.sigma).abs()),
        "gradcam" => to_vec(fer_interpret::grad_cam(model, input, &[target], &a.layer)?),
        _ => {
            let baseline = input.zeros_like();
            let ig = fer_interpret::integrated_gradients(model, input, baseline, &[target], score, a.steps);
            extra = format!(
                "; completeness: attributions sum {:.4}, score difference {:.4}, relative error {:.2}%",
                ig.attribution_sums[0],
                ig.score_differences[0],
                100.0 * ig.relative_errors[0]
            );
            to_vec(ig.attributions.abs())
        }
    };
    let class_name = |i: usize| Emotion::from_id(i).map_or("?", |e| e.name());
    let title = format!("{} p={:.2} for {}", class_name(predicted), probs[predicted], class_name(target));
    save(&attribution_panel(&pixels, SIDE as u32, &map, method, &title), &out)?;
    println!(
        "{source}: predicted {} ({:.3}){}; {method} for {} written to {}{extra}",
        class_name(predicted),
        probs[predicted],
        label.map_or(String::new(), |l| format!(", labelled {l}")),
        class_name(target),
        out.display()
    );
    let list: Vec<String> = Emotion::ALL.iter().map(|e| format!("{} {:.3}", e.name(), probs[e.id()])).collect();
    println!("probabilities: {}", list.join(", "));
    Ok(())
}

fn activations(a: ActivationArgs) -> anyhow::Result<()> {
    let device = a.face.device.device()?;
    let model = ModelSource::new(a.face.run.as_deref(), a.face.ema)?.load_first(&device)?;
    for Face { pixels, source, out, .. } in faces(&a.face)? {
        let input = fer_model::input_from_pixels(&pixels, 1, SIDE, &device);
        let (_, act) = fer_interpret::capture(&model, input, &a.layer)?;
        let [_, c, h, w] = act.dims();
        let values = to_vec(act);
        let labels: Vec<String> = (0..c).map(|k| k.to_string()).collect();
        save(&channel_grid(&values, c, h, w, 96, &labels, &format!("{} {c} filters", a.layer)), &out)?;
        println!("{source}: {} maps of {h}x{w} at {} written to {}", c, a.layer, out.display());
    }
    Ok(())
}

fn parse_filters(text: Option<&str>, channels: usize) -> anyhow::Result<Vec<usize>> {
    let Some(text) = text else {
        return Ok((0..channels.min(64)).collect());
    };
    let bad = || anyhow::anyhow!("cannot read --filters {text:?}; write a..b (e.g. 0..64) or one index");
    if let Some((a, b)) = text.split_once("..") {
        let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
        anyhow::ensure!(a < b, "--filters {text}: empty range");
        Ok((a..b).collect())
    } else {
        Ok(vec![text.trim().parse().map_err(|_| bad())?])
    }
}

fn ascent(a: AscentArgs) -> anyhow::Result<()> {
    let device = a.device.device()?;
    let model = load_model(a.run.as_deref(), a.ema, &device)?;
    let ad = device.autodiff();
    let [c, h, w] = model.input_shape();
    let (_, probe) = fer_interpret::capture(&model, Tensor::<4>::zeros([1, c, h, w], &ad), &a.layer)?;
    let filters = parse_filters(a.filters.as_deref(), probe.dims()[1])?;
    let config = AscentConfig {
        steps: a.steps,
        step_size: a.step_size,
        blur_every: a.blur_every,
        l2_decay: a.l2_decay,
        jitter: a.jitter,
        tv_weight: a.tv_weight,
        seed: a.seed,
        ..AscentConfig::default()
    };
    let started = std::time::Instant::now();
    let result = fer_interpret::gradient_ascent(&model, &a.layer, &filters, [c, h, w], &config, &ad)?;
    let seconds = started.elapsed().as_secs_f64();
    let images = to_vec(result.images);
    let labels: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
    save(
        &channel_grid(&images, filters.len(), h, w, 96, &labels, &format!("{} ascent {} steps", a.layer, a.steps)),
        &a.out,
    )?;
    let acts = &result.activations;
    let start = &result.trace[0];
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    println!(
        "{} filters of {} in {seconds:.1}s: mean activation {:.4} -> {:.4} (min {:.4}, max {:.4}); written to {}",
        filters.len(),
        a.layer,
        mean(start),
        mean(acts),
        acts.iter().cloned().fold(f32::INFINITY, f32::min),
        acts.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
        a.out.display()
    );
    Ok(())
}
