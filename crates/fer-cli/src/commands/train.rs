use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;
use fer_data::LoadOptions;
use fer_data::augment::AugmentConfig;
use fer_model::{FerModel, ModelConfig};
use fer_train::{EpochRow, Observer, RunConfig, Schedule, StepInfo, StopReason, TrainOptions};
use indicatif::{ProgressBar, ProgressStyle};

use crate::device::DeviceChoice;

#[derive(Args)]
pub struct TrainArgs {
    /// Training data: fer2013.csv[.gz], train.csv, an image-folder tree, or `synthetic[:TRAIN,VAL,SEED]`.
    /// With --resume, defaults to the run's own data.
    #[arg(long)]
    data: Option<String>,
    /// cnn or dnn (the report's models); cnn-crop44 (the CNN on the centre 44x44 of each face,
    /// a random crop under augmentation); cnn-double (a second convolution in blocks 4 and 5);
    /// tiny-cnn / tiny-dnn for quick experiments.
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Run folder to create (history.csv, checkpoint.ckpt, best.fer, config.json).
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint.
    #[arg(long, conflicts_with_all = ["out", "model"])]
    resume: Option<PathBuf>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Steps per epoch (the report: 500 for the CNN). 0 means one pass over the training set.
    #[arg(long)]
    steps_per_epoch: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Recipe to start from: `report` (the report's: Adam 1e-3, constant rate, 30 x 500 steps) or
    /// `fast` (one-cycle rate, AdamW, label smoothing, weight average, half the dropout, bf16
    /// GEMMs; ~25 min on 2 cores; see docs/RECIPES.md). The options below override its values.
    #[arg(long, default_value = "report")]
    recipe: String,
    /// Learning-rate schedule: constant, cosine, plateau (reduce on validation-loss plateau) or
    /// one-cycle (warm-up then cosine, set every step). Default: the recipe's.
    #[arg(long)]
    schedule: Option<String>,
    /// `adam` (the recipe's: Adam, or AdamW with --weight-decay) or `sgd-nesterov` (SGD with
    /// Nesterov momentum 0.9; sets the peak rate to 0.05 and an L2 weight decay of 1e-4 unless
    /// --lr or --weight-decay say otherwise; the recipe's schedule stays).
    #[arg(long, value_name = "NAME")]
    optimizer: Option<String>,
    /// Weight decay: decoupled with Adam (AdamW; 0 for plain Adam), an L2 term with SGD.
    #[arg(long)]
    weight_decay: Option<f32>,
    /// Label smoothing of the training targets, e.g. 0.1.
    #[arg(long)]
    label_smoothing: Option<f32>,
    /// Keep a weight average with this decay per step (e.g. 0.998); 0 turns it off.
    #[arg(long)]
    ema_decay: Option<f64>,
    /// Multiply the model's dropout rates by this while training (the report's CNN: 0.2-0.4 per
    /// block, 0.5 in the dense layers); 1 keeps them, 0 turns dropout off. Default: the recipe's
    /// (`report`: 1, `fast`: 0.5).
    #[arg(long)]
    dropout_scale: Option<f64>,
    /// Comma-separated training splits, e.g. `Training,PublicTest` for the report's train+val variant.
    #[arg(long, default_value = "Training", value_delimiter = ',')]
    train_splits: Vec<String>,
    /// Split to validate on after each epoch.
    #[arg(long, default_value = "PublicTest")]
    val_split: String,
    /// Turn off augmentation (the CNN recipe uses rotation 10°, zoom 0.1, shear 10°, shifts 0.1, flips).
    #[arg(long)]
    no_augment: bool,
    /// Random erasing: with this probability, replace a random rectangle (2-40% of the face,
    /// aspect 0.3-3.3) of each augmented face with noise, after the other transforms. Default 0
    /// (off; the report did not use it).
    #[arg(long, value_name = "PROBABILITY")]
    random_erasing: Option<f64>,
    /// Train the last FRACTION of the steps on the faces as they are, without augmentation
    /// (e.g. 0.2 for the last fifth of the cycle). Default 0: augmented throughout, as the report.
    #[arg(long, value_name = "FRACTION")]
    plain_tail: Option<f32>,
    /// Every 5 steps, fold the weights into a short average and carry on from it (airbench's
    /// lookahead; the average's weight grows with the cube of the run's progress). A stop
    /// (Ctrl-C, --time-budget) waits for the next fold, at most 4 steps.
    #[arg(long)]
    lookahead: bool,
    /// Flip each face the other way each time it comes round (airbench's alternating flips): a
    /// coin per face the first time it is drawn, the opposite the next time, and so on, instead
    /// of a fresh coin every time. Needs the recipe's flips (not with --no-augment).
    #[arg(long)]
    alternate_flips: bool,
    /// Keep every BatchNorm scale (gamma) at 1 (Page's "How to train your ResNet").
    #[arg(long)]
    freeze_bn_scales: bool,
    /// Move the BatchNorm shifts (beta) at this multiple of the learning rate (airbench's bias
    /// scaling, 64 with its SGD). Default 1.
    #[arg(long, value_name = "FACTOR")]
    bn_shift_lr_scale: Option<f64>,
    /// Start the first convolution as a whitening of the training faces' 5x5 patches and keep
    /// it fixed (airbench's whitened first layer): each eigenvector of the patches' second
    /// moments over 1/sqrt(eigenvalue + 5e-4), and its negation. CNN only.
    #[arg(long)]
    whiten_first_layer: bool,
    /// What the convolutions and dense layers multiply: `f32`, or `bf16` operands with f32 sums and f32 master
    /// weights and optimizer state (CPUs with AVX512-BF16, on AMX tiles where the CPU has them; f32 elsewhere).
    /// Default: the recipe's (`report`: f32, `fast`: bf16).
    #[arg(long, value_parser = crate::commands::precision_parser())]
    precision: Option<fer_kernels::Precision>,
    /// Wall-clock budget, e.g. 20m or 1h30m. For a new run whose rate follows a schedule
    /// (one-cycle, as in --recipe fast, or cosine) it sizes the run: a few probe steps measure
    /// this machine, the epochs and steps per epoch are fixed to fill the budget, validation
    /// included, and recorded in config.json, so the run ends annealed and `--resume` or a rerun
    /// with those --epochs/--steps-per-epoch repeats it exactly. With a constant or plateau rate,
    /// or with --resume, it only stops the run: the step finishes, it validates, checkpoints, stops.
    #[arg(long)]
    time_budget: Option<String>,
    /// Train N members with seeds seed..seed+N-1 into one run folder; evaluation averages them.
    #[arg(long)]
    ensemble: Option<usize>,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// Log one line per epoch instead of a progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Progress bar (or plain log lines with --quiet) for training.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress { bar: (!quiet).then(ProgressBar::hidden) }
    }
}

impl Observer for Progress {
    fn on_epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize, start_step: usize) {
        if let Some(bar) = &mut self.bar {
            let new = ProgressBar::new(steps as u64).with_position(start_step as u64);
            new.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            new.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
            new.reset_eta();
            *bar = new;
        }
    }

    fn on_step(&mut self, i: &StepInfo) {
        if let Some(bar) = &self.bar {
            bar.set_position(i.step as u64);
            bar.set_message(format!("loss {:.4} acc {:.4} {:.1} img/s", i.loss, i.acc, i.images_per_s));
        }
    }

    fn on_epoch(&mut self, r: &EpochRow) {
        let ema = r.ema_val_acc.map_or(String::new(), |a| format!(" ema_val_acc {a:.4}"));
        let line = format!(
            "epoch {:>3}: train_loss {:.4} train_acc {:.4} val_loss {:.4} val_acc {:.4}{ema} lr {:.1e} {:.0}s {:.1} \
                img/s, {:.1} min since start",
            r.epoch,
            r.train_loss,
            r.train_acc,
            r.val_loss,
            r.val_acc,
            r.lr,
            r.seconds,
            r.images_per_s,
            r.wall_seconds / 60.0
        );
        match &self.bar {
            Some(bar) => {
                bar.finish_and_clear();
                println!("{line}");
            }
            None => println!("{line}"),
        }
    }

    fn on_message(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => println!("{message}"),
        }
    }
}

fn model_config(name: &str) -> anyhow::Result<ModelConfig> {
    Ok(match name {
        "tiny-cnn" => RunConfig::tiny_cnn(),
        "tiny-dnn" => RunConfig::tiny_dnn(),
        other => ModelConfig::by_name(other).map_err(|_| {
            anyhow::anyhow!(
                "unknown model {other:?}; valid models: {}, tiny-cnn, tiny-dnn",
                fer_model::MODEL_NAMES.join(", ")
            )
        })?,
    })
}

/// Ctrl-C stops training the clean way (step, validate, checkpoint); a second Ctrl-C kills.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing this step, then checkpointing (Ctrl-C again to abort)");
    });
    flag
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let stop = interrupt_flag();
    let time_budget = args.time_budget.as_deref().map(fer_train::parse_duration).transpose()?;
    let mut progress = Progress::new(args.quiet);
    fn options<'a>(
        time_budget: Option<std::time::Duration>,
        stop: &'a AtomicBool,
        progress: &'a mut Progress,
    ) -> TrainOptions<'a> {
        TrainOptions { time_budget, stop: Some(stop), max_steps: None, observer: progress }
    }

    if let Some(run_dir) = &args.resume {
        let config = fer_train::read_run_config(run_dir)?;
        let spec = args.data.clone().unwrap_or(config.data.clone());
        let (data, _) = fer_data::open(&spec, &LoadOptions::default())?;
        let outcome = if run_dir.join("ensemble.json").exists() {
            let members: serde_json::Value = serde_json::from_slice(&std::fs::read(run_dir.join("ensemble.json"))?)?;
            let n = members["members"].as_u64().unwrap_or(1) as usize;
            fer_train::train_ensemble(run_dir, &config, n, &data, &device, options(time_budget, &stop, &mut progress))?
                .pop()
                .map(|o| o.stop)
        } else {
            Some(fer_train::resume(run_dir, &data, &device, options(time_budget, &stop, &mut progress))?.stop)
        };
        return report_stop(outcome, run_dir);
    }

    let spec = args.data.clone().context("--data is required for a new run (a path or `synthetic`)")?;
    // Recorded absolute, so `--resume` and `fer eval` find the data from any folder.
    let spec = std::fs::canonicalize(&spec).map(|p| p.display().to_string()).unwrap_or(spec);
    let mut config = new_config(&args, spec.clone())?;
    let run_dir = args.out.clone().context("--out is required for a new run")?;
    let (data, report) = fer_data::open(&spec, &LoadOptions::default())?;
    let mut time_budget = time_budget;
    if let Some(budget) = time_budget
        && fer_train::budget_sizes(&config)
    {
        let probe_seconds;
        (config, probe_seconds) =
            size_to_budget(&config, &data, &device, budget, args.ensemble.unwrap_or(1).max(1) as u32)?;
        // The run stops at the budget all the same if the machine turns slower than measured.
        time_budget = Some(budget.saturating_sub(std::time::Duration::from_secs_f64(probe_seconds)));
    }
    let params = FerModel::new(&config.model, &device)?;
    // The source usually holds the validation split too; say what trains and what validates.
    let train_splits: Vec<&str> = config.train_splits.iter().map(String::as_str).collect();
    println!(
        "training {} ({} parameters) on {} faces ({}) from {spec} ({}), validating on {} ({}), {} epochs x {} steps of {}, into {}",
        config.model.name(),
        burn::module::Module::num_params(&params),
        data.count_in_splits(&train_splits),
        train_splits.join(", "),
        report.format,
        data.count_in_splits(&[config.val_split.as_str()]),
        config.val_split,
        config.recipe.epochs,
        config.recipe.steps_per_epoch.map_or("one pass".to_string(), |s| s.to_string()),
        config.recipe.batch_size,
        run_dir.display()
    );
    drop(params);
    let stop_reason = match args.ensemble {
        Some(n) => {
            fer_train::train_ensemble(&run_dir, &config, n, &data, &device, options(time_budget, &stop, &mut progress))?
                .pop()
                .map(|o| o.stop)
        }
        None => {
            Some(fer_train::train(&run_dir, &config, &data, &device, options(time_budget, &stop, &mut progress))?.stop)
        }
    };
    report_stop(stop_reason, &run_dir)
}

/// A new run's config: the named recipe for the model, with every flag given applied over it.
fn new_config(args: &TrainArgs, spec: String) -> anyhow::Result<RunConfig> {
    let model = model_config(&args.model)?;
    let mut config = RunConfig::new(spec, model);
    config.recipe = fer_train::Recipe::named(&args.recipe, &config.model)?;
    config.train_splits = args.train_splits.clone();
    config.val_split = args.val_split.clone();
    let r = &mut config.recipe;
    r.seed = args.seed;
    if let Some(s) = &args.schedule {
        r.schedule = Schedule::parse(s)?;
    }
    if let Some(name) = &args.optimizer
        && fer_train::OptimizerKind::parse(name)? == fer_train::OptimizerKind::SgdNesterov
    {
        *r = r.clone().with_sgd_nesterov();
    }
    if let Some(w) = args.weight_decay {
        r.weight_decay = w;
    }
    if let Some(l) = args.label_smoothing {
        r.label_smoothing = l;
    }
    if let Some(d) = args.ema_decay {
        r.ema_decay = (d > 0.0).then_some(d);
    }
    if let Some(d) = args.dropout_scale {
        r.dropout_scale = d;
    }
    if let Some(e) = args.epochs {
        r.epochs = e;
    }
    if let Some(s) = args.steps_per_epoch {
        r.steps_per_epoch = (s > 0).then_some(s);
    }
    if let Some(b) = args.batch_size {
        r.batch_size = b;
    }
    if let Some(lr) = args.lr {
        r.lr = lr;
    }
    if args.no_augment {
        r.augment = AugmentConfig::none();
    }
    if let Some(p) = args.random_erasing {
        r.augment.erasing = p;
    }
    if let Some(f) = args.plain_tail {
        r.plain_tail = f;
    }
    if args.lookahead {
        r.lookahead = true;
    }
    if args.alternate_flips {
        r.augment.alternate_flips = true;
    }
    if args.freeze_bn_scales {
        r.freeze_bn_scales = true;
    }
    if let Some(f) = args.bn_shift_lr_scale {
        r.bn_shift_lr_scale = f;
    }
    if args.whiten_first_layer {
        r.whiten_first_layer = true;
    }
    if let Some(p) = args.precision {
        r.precision = p;
        if p == fer_kernels::Precision::Bf16 && !fer_kernels::cpu::avx512_bf16() {
            eprintln!("note: this CPU has no AVX512-BF16; --precision bf16 trains in f32 here");
        }
    }
    r.validate()?;
    Ok(config)
}

/// `config` with its epochs and steps fixed to fill `budget` (shared by the ensemble's
/// `members`), measured on this machine; and the seconds the measurement took.
fn size_to_budget(
    config: &RunConfig,
    data: &fer_data::Dataset,
    device: &burn::tensor::Device,
    budget: std::time::Duration,
    members: u32,
) -> anyhow::Result<(RunConfig, f64)> {
    println!("sizing the run to --time-budget {:.0}s: measuring this machine's step...", budget.as_secs_f64());
    let (sized, plan) = fer_train::size_to_budget(config, data, device, budget / members)?;
    let per_member = if members > 1 { format!(" (per member, {members} members)") } else { String::new() };
    println!("  {plan}{per_member}");
    Ok((sized, plan.probe_seconds))
}

fn report_stop(stop: Option<StopReason>, run_dir: &std::path::Path) -> anyhow::Result<()> {
    match stop {
        Some(StopReason::Finished) | None => println!("finished: {}", run_dir.display()),
        Some(reason) => println!("stopped ({reason:?}); continue with: fer train --resume {}", run_dir.display()),
    }
    Ok(())
}
