//! The stages of `reproduce-report`. Each stage leaves its result under `--out` (run folders,
//! `stages/*.json`, figures) and is skipped when that result is already there.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use clap::ValueEnum;
use fer_data::{Dataset, Emotion, LoadOptions, NUM_CLASSES, PIXELS, SIDE};
use fer_model::{FerModel, ModelConfig, Summary};
use fer_train::{EpochRow, EvalChoice, Evaluation, Precision, Recipe, RunConfig, TrainOptions, Tta, Weights, argmax};
use serde::{Deserialize, Serialize};

/// How big a `reproduce-report` run is.
#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Small models on synthetic faces: a few minutes, what the tests use.
    Smoke,
    /// The report's models on real data on a 2-core CPU: the CNN with fer's fast recipe, its
    /// one-cycle sized to fill 60 minutes of this machine (the best recipe found, docs/RECIPES.md),
    /// the DNN 40 epochs, no ensemble (one run beats an ensemble of the same faces at this scale).
    Cpu,
    /// The report's protocol: CNN 30 epochs x 500 steps, DNN 100 epochs, 5-member ensemble. For a GPU.
    Full,
}

pub struct Ctx {
    pub out: PathBuf,
    pub spec: String,
    pub profile: Profile,
    pub device: Device,
    pub data: Dataset,
    pub format: String,
    pub test_split: String,
}

/// What the report needs from one trained run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub name: String,
    pub model: String,
    pub members: usize,
    pub train_splits: Vec<String>,
    pub test_split: String,
    pub recipe: String,
    pub history: Vec<EpochRow>,
    pub train_seconds: f64,
    pub evaluation: Evaluation,
    pub probabilities: Vec<[f32; NUM_CLASSES]>,
    /// The same run under other evaluation choices (weight average, test-time augmentation),
    /// reported beside the plain protocol, never instead of it.
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// Why training stopped before the recipe's end, when it did (a time budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// Training faces the run went through, every member counted.
    #[serde(default)]
    pub faces_seen: u64,
    /// Whether it ran the report's own recipe for its model to the end: the rows that can be set
    /// beside the report's numbers as like for like.
    #[serde(default)]
    pub at_report_scale: bool,
}

/// One evaluation choice and its test accuracy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Variant {
    pub name: String,
    pub accuracy: f64,
    pub loss: f64,
}

struct Log;

impl fer_train::Observer for Log {
    fn on_epoch(&mut self, r: &EpochRow) {
        let ema = r.ema_val_acc.map_or(String::new(), |a| format!(" ema_val_acc {a:.4}"));
        println!(
            "    epoch {:>3}: train_acc {:.4} val_acc {:.4}{ema} ({:.0}s, {:.1} img/s, {:.1} min since start)",
            r.epoch,
            r.train_acc,
            r.val_acc,
            r.seconds,
            r.images_per_s,
            r.wall_seconds / 60.0
        );
    }
    fn on_message(&mut self, m: &str) {
        println!("    {m}");
    }
}

pub fn stage(name: &str) {
    println!("==> {name}");
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(value)?).with_context(|| format!("cannot write {}", path.display()))
}

impl Ctx {
    pub fn open(spec: String, profile: Profile, out: PathBuf, device: Device) -> anyhow::Result<Ctx> {
        let (data, report) = fer_data::open(&spec, &LoadOptions::default())?;
        // Test on PrivateTest when the data has it (the original CSV); else on PublicTest.
        let test_split =
            if data.split_names().iter().any(|s| s == "PrivateTest") { "PrivateTest" } else { "PublicTest" };
        Ok(Ctx {
            out,
            spec,
            profile,
            device,
            data,
            format: report.format.as_str().into(),
            test_split: test_split.into(),
        })
    }

    /// The CNN's wall-clock budget: the `cpu` profile promises its report within about an hour
    /// of CNN training on a 2-core machine. A new run of a scheduled recipe is sized to it (so it
    /// ends annealed); a run that still overruns keeps its best epoch (rerun to go on).
    pub fn cnn_time_budget(&self) -> Option<std::time::Duration> {
        (self.profile == Profile::Cpu).then(|| std::time::Duration::from_secs(60 * 60))
    }

    pub fn has_separate_test(&self) -> bool {
        self.test_split == "PrivateTest"
    }

    /// The run configs of this profile: the CNN, the DNN, the CNN on train+val, and the ensemble's.
    pub fn configs(&self) -> (RunConfig, RunConfig, usize) {
        let named = |name: &str| ModelConfig::by_name(name).expect("the report's models exist");
        match self.profile {
            Profile::Smoke => {
                // The tiny CNN with the fast recipe's parts, so the smoke test covers them; in
                // f32, so its snapshot is the same on CPUs with and without AVX512-BF16, and with
                // the tiny model's own dropout (the snapshot predates the fast recipe's lighter one).
                let mut cnn = RunConfig::new(&self.spec, RunConfig::tiny_cnn());
                cnn.recipe = Recipe {
                    epochs: 6,
                    steps_per_epoch: Some(20),
                    batch_size: 32,
                    ema_decay: Some(0.95),
                    precision: Precision::F32,
                    dropout_scale: 1.0,
                    ..Recipe::fast_cnn()
                };
                let mut dnn = RunConfig::new(&self.spec, RunConfig::tiny_dnn());
                dnn.recipe.epochs = 10;
                dnn.recipe.batch_size = 32;
                (cnn, dnn, 3)
            }
            Profile::Cpu => {
                let mut cnn = RunConfig::new(&self.spec, named("cnn"));
                cnn.recipe = Recipe::fast_cnn();
                let mut dnn = RunConfig::new(&self.spec, named("dnn"));
                dnn.recipe.epochs = 40;
                (cnn, dnn, 1)
            }
            Profile::Full => (RunConfig::new(&self.spec, named("cnn")), RunConfig::new(&self.spec, named("dnn")), 5),
        }
    }

    /// Trains (or resumes, or reuses) `members` runs of `config` and evaluates them on the test split.
    pub fn train_and_eval(
        &self,
        name: &str,
        config: &RunConfig,
        members: usize,
        time_budget: Option<std::time::Duration>,
    ) -> anyhow::Result<RunResult> {
        let result_path = self.out.join("stages").join(format!("{name}.json"));
        if let Some(done) = read_json::<RunResult>(&result_path) {
            println!("    {name}: reusing {}", result_path.display());
            return Ok(done);
        }
        let dir = self.out.join("runs").join(name);
        let done = |d: &Path| fer_train::load_checkpoint(d, &self.device).map(|c| c.state.finished).unwrap_or(false);
        let options = |budget| TrainOptions {
            time_budget: budget,
            stop: None,
            max_steps: None,
            observer: Box::leak(Box::new(Log)),
        };
        if members > 1 {
            fer_train::train_ensemble(&dir, config, members, &self.data, &self.device, options(time_budget))?;
        } else if !done(&dir) {
            if dir.join("checkpoint.ckpt").exists() {
                fer_train::resume(&dir, &self.data, &self.device, options(time_budget))?;
            } else {
                let (sized, budget) = self.size_to_budget(config, time_budget)?;
                fer_train::train(&dir, &sized, &self.data, &self.device, options(budget))?;
            }
        }
        let evaluated = fer_train::evaluate_run(&dir, &self.data, &self.test_split, &self.device)?;
        let first = if members > 1 { dir.join("member-1") } else { dir.clone() };
        // What actually ran: the recorded config holds the step count a budget fixed.
        let config = &fer_train::read_run_config(&first)?;
        let state = fer_train::load_checkpoint(&first, &self.device)?.state;
        let stopped_early = (!state.finished).then(|| {
            let budget =
                time_budget.map_or(String::new(), |b| format!(" (its {:.0}-minute budget)", b.as_secs_f64() / 60.0));
            format!("stopped after {} of {} epochs{budget}", state.history.len(), config.recipe.epochs)
        });
        // Whole epochs, and the faces of an epoch a budget stopped part-way (reset at each epoch's end).
        let faces_seen = (self.faces_per_epoch(config) * state.history.len() as u64 + state.seen) * members as u64;
        let at_report_scale = state.finished && config.recipe == Recipe::for_model(&config.model);
        let history = state.history;
        let mut variants = Vec::new();
        if config.model.kind() == "cnn" || config.recipe.ema_decay.is_some() {
            let mut choices = vec![("test-time flip", EvalChoice { weights: Weights::Best, tta: Tta::Flip })];
            if config.recipe.ema_decay.is_some() {
                choices.push(("weight average", EvalChoice { weights: Weights::Ema, tta: Tta::None }));
                choices.push(("weight average + test-time flip", EvalChoice { weights: Weights::Ema, tta: Tta::Flip }));
            }
            for (label, choice) in choices {
                let e =
                    fer_train::evaluate_run_with(&dir, &self.data, &self.test_split, &self.device, choice)?.evaluation;
                variants.push(Variant { name: label.into(), accuracy: e.accuracy, loss: e.loss });
            }
        }
        let train_seconds = history.iter().map(|r| r.seconds).sum();
        let result = RunResult {
            name: name.into(),
            model: config.model.kind().into(),
            members,
            train_splits: config.train_splits.clone(),
            test_split: self.test_split.clone(),
            recipe: serde_json::to_string(&config.recipe)?,
            history,
            train_seconds,
            evaluation: evaluated.evaluation,
            probabilities: evaluated.probabilities,
            variants,
            stopped_early,
            faces_seen,
            at_report_scale,
        };
        write_json(&result_path, &result)?;
        println!("    {name}: test accuracy {:.4} on {}", result.evaluation.accuracy, self.test_split);
        Ok(result)
    }

    /// `config` with its schedule sized to `budget` when it has one to size (a new run of a
    /// scheduled recipe), and the budget left to stop it with.
    fn size_to_budget(
        &self,
        config: &RunConfig,
        budget: Option<std::time::Duration>,
    ) -> anyhow::Result<(RunConfig, Option<std::time::Duration>)> {
        let Some(budget) = budget.filter(|_| fer_train::budget_sizes(config)) else {
            return Ok((config.clone(), budget));
        };
        println!("    sizing the run to {:.0} minutes: measuring this machine's step...", budget.as_secs_f64() / 60.0);
        let (sized, plan) = fer_train::size_to_budget(config, &self.data, &self.device, budget)?;
        println!("    {plan}");
        Ok((sized, Some(budget.saturating_sub(std::time::Duration::from_secs_f64(plan.probe_seconds)))))
    }

    /// Training faces per epoch of `config` on this data (`fer_train::BatchPlan`'s rule).
    fn faces_per_epoch(&self, config: &RunConfig) -> u64 {
        match config.recipe.steps_per_epoch {
            Some(steps) => (steps * config.recipe.batch_size) as u64,
            // One pass: every training face once, the last batch short.
            None => {
                let splits: Vec<&str> = config.train_splits.iter().map(String::as_str).collect();
                let in_split = |i: usize| splits.contains(&self.data.split(i));
                (0..self.data.len()).filter(|&i| in_split(i)).count() as u64
            }
        }
    }

    pub fn test_faces(&self) -> Dataset {
        self.data.select_splits(&[self.test_split.as_str()]).unwrap_or_default()
    }

    /// The CNN run's best model, on an autodiff device and frozen (inference mode with gradients).
    pub fn explain_model(&self) -> anyhow::Result<FerModel> {
        let path = self.out.join("runs").join("cnn").join("best.fer");
        Ok(fer_model::load_model(&path, &self.device.clone().autodiff())?.freeze())
    }

    pub fn summary(&self, config: &ModelConfig) -> anyhow::Result<Summary> {
        Ok(Summary::of(&FerModel::new(config, &self.device)?))
    }
}

/// A confused pair (true → predicted) with its count and rate within the true class.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConfusedPair {
    pub true_class: String,
    pub predicted: String,
    pub count: u64,
    pub rate: f64,
}

/// The off-diagonal cells with the highest row-normalised rates.
pub fn most_confused(e: &Evaluation, n: usize) -> Vec<ConfusedPair> {
    let mut cells = Vec::new();
    for (t, row) in e.confusion_matrix.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (p, &count) in row.iter().enumerate() {
            if t != p && count > 0 {
                cells.push((t, p, count, count as f64 / total.max(1) as f64));
            }
        }
    }
    cells.sort_by(|a, b| b.3.total_cmp(&a.3).then(b.2.cmp(&a.2)));
    let name = |i: usize| Emotion::from_id(i).map_or("?".to_string(), |e| e.name().to_string());
    cells
        .into_iter()
        .take(n)
        .map(|(t, p, count, rate)| ConfusedPair { true_class: name(t), predicted: name(p), count, rate })
        .collect()
}

/// One face of the test split with what the model said about it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Example {
    pub index: usize,
    pub true_class: usize,
    pub predicted: usize,
    pub probabilities: [f32; NUM_CLASSES],
}

/// The most confident error from `true_class` to `predicted`.
pub fn most_confident_error(
    test: &Dataset,
    probs: &[[f32; NUM_CLASSES]],
    true_class: usize,
    predicted: usize,
) -> Option<Example> {
    (0..test.len())
        .filter(|&i| test.label(i).map(|l| l.id()) == Some(true_class) && argmax(&probs[i]) == predicted)
        .max_by(|&a, &b| probs[a][predicted].total_cmp(&probs[b][predicted]))
        .map(|index| Example { index, true_class, predicted, probabilities: probs[index] })
}

/// The most confident correct prediction of `class`.
pub fn most_confident_correct(test: &Dataset, probs: &[[f32; NUM_CLASSES]], class: usize) -> Option<Example> {
    most_confident_error(test, probs, class, class)
}

/// Everything the interpretability section reports, kept so a rerun need not recompute it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Explained {
    pub saliency: Vec<(String, Example)>,
    pub ig_relative_error: Vec<f32>,
    pub activation_layers: Vec<(String, usize, usize)>,
    pub ascent: Vec<(String, usize, f32, f32, f64)>,
}

fn to_vec(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
}

/// Saliency (Q4), Grad-CAM and IG extras, activation grids (Q5.1) and gradient ascent (Q5.2).
pub fn explain(ctx: &Ctx, cnn: &RunResult, figures: &Path) -> anyhow::Result<Explained> {
    let path = ctx.out.join("stages").join("explain.json");
    if let Some(done) = read_json::<Explained>(&path) {
        println!("    reusing {}", path.display());
        return Ok(done);
    }
    let model = ctx.explain_model()?;
    let ad = ctx.device.clone().autodiff();
    let test = ctx.test_faces();
    let mut explained = Explained::default();
    for class in [Emotion::Happy, Emotion::Surprise] {
        let Some(ex) = most_confident_correct(&test, &cnn.probabilities, class.id()) else {
            continue;
        };
        let pixels = test.image(ex.index);
        let input = fer_model::input_from_pixels(pixels, 1, SIDE, &ad);
        let name = class.folder_name();
        let saliency =
            to_vec(fer_interpret::saliency(&model, input.clone(), &[class.id()], fer_interpret::Score::Logit).abs());
        let title = format!("{}, p = {:.2}", class.name(), ex.probabilities[class.id()]);
        fer_report::attribution_panel(pixels, SIDE as u32, &saliency, "saliency", &title)
            .save(figures.join(format!("saliency-{name}.png")))?;
        let cam = to_vec(fer_interpret::grad_cam(&model, input.clone(), &[class.id()], "block4.act")?);
        fer_report::attribution_panel(pixels, SIDE as u32, &cam, "gradcam", &title)
            .save(figures.join(format!("gradcam-{name}.png")))?;
        let ig = fer_interpret::integrated_gradients(
            &model,
            input.clone(),
            input.zeros_like(),
            &[class.id()],
            fer_interpret::Score::Logit,
            64,
        );
        explained.ig_relative_error.push(ig.relative_errors[0]);
        fer_report::attribution_panel(pixels, SIDE as u32, &to_vec(ig.attributions.abs()), "ig", &title)
            .save(figures.join(format!("ig-{name}.png")))?;
        explained.saliency.push((class.name().to_string(), ex));
    }

    let face_index = explained.saliency.first().map_or(0, |(_, e)| e.index);
    let input = fer_model::input_from_pixels(test.image(face_index), 1, SIDE, &ctx.device);
    let plain = fer_model::load_model(&ctx.out.join("runs").join("cnn").join("best.fer"), &ctx.device)?;
    for layer in ["block1.act", "block3.act", "block4.conv", "block5.act"] {
        let (_, act) = fer_interpret::capture(&plain, input.clone(), layer)?;
        let [_, c, h, w] = act.dims();
        let labels: Vec<String> = (0..c).map(|k| k.to_string()).collect();
        let img = fer_report::channel_grid(&to_vec(act), c, h, w, 48, &labels, &format!("{layer} {c} filters {h}x{w}"));
        img.save(figures.join(format!("activations-{}.png", layer.replace('.', "-"))))?;
        explained.activation_layers.push((layer.to_string(), c, h));
    }

    let [c, h, w] = model.input_shape();
    for layer in ["block1.act", "block5.act"] {
        let (_, probe) = fer_interpret::capture(&model, Tensor::<4>::zeros([1, c, h, w], &ad), layer)?;
        let filters: Vec<usize> = (0..probe.dims()[1].min(64)).collect();
        let started = std::time::Instant::now();
        let result = fer_interpret::gradient_ascent(
            &model,
            layer,
            &filters,
            [c, h, w],
            &fer_interpret::AscentConfig::default(),
            &ad,
        )?;
        let seconds = started.elapsed().as_secs_f64();
        let labels: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let img = fer_report::channel_grid(
            &to_vec(result.images),
            filters.len(),
            h,
            w,
            48,
            &labels,
            &format!("{layer} ascent 20 steps"),
        );
        img.save(figures.join(format!("ascent-{}.png", layer.replace('.', "-"))))?;
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
        explained.ascent.push((
            layer.to_string(),
            filters.len(),
            mean(&result.trace[0]),
            mean(&result.activations),
            seconds,
        ));
    }
    write_json(&path, &explained)?;
    Ok(explained)
}

/// The faces of the examples, for figures.
pub fn face(test: &Dataset, index: usize) -> Vec<u8> {
    test.image(index).get(..PIXELS).map(<[u8]>::to_vec).unwrap_or_default()
}
