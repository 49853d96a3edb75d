//! `cargo xtask reproduce-report`: regenerate the report from raw data in one command.
//!
//! Stages (each writes under `--out` and is skipped when its output is already there, so a rerun
//! reuses finished work and an interrupted run picks up where it stopped):
//! 1. train the CNN and the DNN (resuming a run that has a checkpoint),
//! 2. evaluate both on the validation split,
//! 3. write REPORT.md from the measured numbers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};
use fer_data::LoadOptions;
use fer_model::{FerModel, ModelConfig, Summary};
use fer_train::{RunConfig, TrainOptions};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Train, evaluate and write the report (REPORT.md) under --out.
    ReproduceReport {
        /// FER2013 in any supported form; without it, the embedded synthetic faces.
        #[arg(long)]
        data: Option<String>,
        #[arg(long, value_enum, default_value = "smoke")]
        profile: Profile,
        #[arg(long, default_value = "report")]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum, Debug)]
enum Profile {
    /// Small models on synthetic faces: a few minutes, what the tests use.
    Smoke,
    /// The report's models on real data within a CPU budget (about 2 h on 2 cores).
    Cpu,
    /// The report's protocol (30 epochs x 500 steps); meant for a GPU.
    Full,
}

struct Plan {
    cnn: RunConfig,
    dnn: RunConfig,
    budget_per_run: Option<std::time::Duration>,
}

fn plan(profile: Profile, data: &str) -> Plan {
    match profile {
        Profile::Smoke => {
            let mut cnn = RunConfig::new(data, RunConfig::tiny_cnn());
            cnn.recipe.epochs = 6;
            cnn.recipe.steps_per_epoch = Some(20);
            cnn.recipe.batch_size = 32;
            let mut dnn = RunConfig::new(data, RunConfig::tiny_dnn());
            dnn.recipe.epochs = 10;
            dnn.recipe.batch_size = 32;
            Plan { cnn, dnn, budget_per_run: None }
        }
        Profile::Cpu => {
            let cnn = RunConfig::new(data, ModelConfig::by_name("cnn").expect("cnn exists"));
            let dnn = RunConfig::new(data, ModelConfig::by_name("dnn").expect("dnn exists"));
            Plan { cnn, dnn, budget_per_run: Some(std::time::Duration::from_secs(50 * 60)) }
        }
        Profile::Full => {
            let cnn = RunConfig::new(data, ModelConfig::by_name("cnn").expect("cnn exists"));
            let dnn = RunConfig::new(data, ModelConfig::by_name("dnn").expect("dnn exists"));
            Plan { cnn, dnn, budget_per_run: None }
        }
    }
}

struct Log;

impl fer_train::Observer for Log {
    fn on_epoch(&mut self, r: &fer_train::EpochRow) {
        println!("    epoch {:>3}: train_acc {:.4} val_acc {:.4} ({:.0}s, {:.1} img/s)", r.epoch, r.train_acc, r.val_acc, r.seconds, r.images_per_s);
    }
    fn on_message(&mut self, m: &str) {
        println!("    {m}");
    }
}

fn stage(name: &str) {
    println!("==> {name}");
}

fn train_stage(dir: &Path, config: &RunConfig, data: &fer_data::Dataset, device: &Device, budget: Option<std::time::Duration>) -> anyhow::Result<()> {
    let done = fer_train::load_checkpoint(dir, device).map(|c| c.state.finished).unwrap_or(false);
    if done {
        println!("    {} already trained: reusing it", dir.display());
        return Ok(());
    }
    let options = TrainOptions { time_budget: budget, stop: None, max_steps: None, observer: &mut Log };
    if dir.join("checkpoint.ckpt").exists() {
        fer_train::resume(dir, data, device, options)?;
    } else {
        fer_train::train(dir, config, data, device, options)?;
    }
    Ok(())
}

fn reproduce(data_spec: Option<String>, profile: Profile, out: PathBuf) -> anyhow::Result<()> {
    let started = Instant::now();
    let spec = data_spec.unwrap_or_else(|| "synthetic".to_string());
    if spec.starts_with("synthetic") {
        println!("no --data given: running on the embedded synthetic faces ({spec})");
    }
    let device = Device::flex();
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    stage("load data");
    let (data, report) = fer_data::open(&spec, &LoadOptions::default())?;
    println!("    {} faces ({}), splits {:?}", data.len(), report.format, data.split_names());
    let plan = plan(profile, &spec);

    let mut rows = Vec::new();
    for (name, config) in [("cnn", &plan.cnn), ("dnn", &plan.dnn)] {
        let dir = out.join("runs").join(name);
        stage(&format!("train {name}"));
        train_stage(&dir, config, &data, &device, plan.budget_per_run)?;
        stage(&format!("evaluate {name}"));
        let result = fer_train::evaluate_run(&dir, &data, &config.val_split, &device)?;
        println!("    accuracy {:.4} on {} ({} faces)", result.evaluation.accuracy, result.split, result.evaluation.count);
        let history = std::fs::read_to_string(dir.join("history.csv")).unwrap_or_default();
        let model = FerModel::new(&config.model, &device)?;
        rows.push((name, config.clone(), result, history, Summary::of(&model)));
    }

    stage("write REPORT.md");
    let mut md = String::new();
    md.push_str("# FER2013 report, reproduced by fer\n\n");
    md.push_str(&format!("Data: `{spec}` ({}, {} faces). Profile: {profile:?}. Training splits: {:?}; validation split: {}.\n\n", report.format, data.len(), plan.cnn.train_splits, plan.cnn.val_split));
    md.push_str("| model | parameters | epochs run | val accuracy | val loss |\n|---|---|---|---|---|\n");
    for (name, _, result, history, summary) in &rows {
        md.push_str(&format!(
            "| {name} | {} | {} | {:.4} | {:.4} |\n",
            summary.total_params,
            history.lines().count().saturating_sub(1),
            result.evaluation.accuracy,
            result.evaluation.loss
        ));
    }
    for (name, config, result, history, summary) in &rows {
        md.push_str(&format!("\n## {name}\n\n```text\n{summary}\n```\n\nRecipe: `{}`\n\n", serde_json::to_string(&config.recipe)?));
        md.push_str(&format!("History:\n\n```csv\n{history}```\n\nConfusion matrix on {} (rows true, columns predicted):\n\n```csv\n{}```\n", result.split, result.evaluation.confusion_csv()));
    }
    let report_path = out.join("REPORT.md");
    std::fs::write(&report_path, md).with_context(|| format!("cannot write {}", report_path.display()))?;
    println!("wrote {} in {:.0}s", report_path.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn main() {
    let result = match Xtask::parse().command {
        Task::ReproduceReport { data, profile, out } => reproduce(data, profile, out),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
