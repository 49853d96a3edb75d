use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use fer_data::{Emotion, LoadOptions};

use fer_train::{EvalChoice, Tta, Weights};

use crate::builtin::ModelSource;
use crate::device::DeviceChoice;

pub fn weights(ema: bool) -> Weights {
    if ema { Weights::Ema } else { Weights::Best }
}

#[derive(Args)]
pub struct EvalArgs {
    /// Run folder (its best.fer, or its ensemble members averaged). Without it, the model built
    /// into fer (models/fer2013-cnn.ferc), which needs --data.
    #[arg(long)]
    run: Option<PathBuf>,
    /// Data to evaluate on (default: the run's own data).
    #[arg(long, required_unless_present = "run")]
    data: Option<String>,
    /// Split to evaluate (default: the run's validation split; PublicTest for the built-in model).
    #[arg(long)]
    split: Option<String>,
    /// Folder for the result tables (default: the run folder; with the built-in model, no tables
    /// are written unless this is given).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print JSON (accuracy, per_class, confusion_matrix).
    #[arg(long)]
    json: bool,
    /// Evaluate the run's weight average (best-ema.fer) instead of its best weights.
    #[arg(long, requires = "run")]
    ema: bool,
    /// Test-time augmentation: none (the report's protocol), flip (face + mirror) or crops
    /// (5 positions x mirror). Results go to files with a -tta-NAME suffix.
    #[arg(long, default_value = "none")]
    tta: String,
    /// Format of the tables written to the run folder (predictions, per-class metrics,
    /// confusion matrix): csv, parquet or json.
    #[arg(long, default_value = "csv")]
    out_format: String,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let source = ModelSource::new(args.run.as_deref(), args.ema)?;
    let (spec, split) = match &args.run {
        Some(run) => {
            let config = fer_train::read_run_config(run)?;
            (args.data.clone().unwrap_or(config.data), args.split.clone().unwrap_or(config.val_split))
        }
        None => (
            args.data.clone().context("--data is required with the built-in model")?,
            args.split.clone().unwrap_or("PublicTest".into()),
        ),
    };
    let choice = EvalChoice { weights: weights(args.ema), tta: Tta::parse(&args.tta)? };
    let (data, _) = fer_data::open(&spec, &LoadOptions::default())?;
    let format = fer_train::frames::OutFormat::parse(&args.out_format)?;
    let out_dir = args.out.clone().or(args.run.clone());
    if let Some(dir) = &out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("--out {}: cannot create the folder", dir.display()))?;
    }
    let models = source.load_all(&device)?;
    let result = fer_train::evaluate_models_to(&models, &data, &split, &device, choice, out_dir.as_deref(), format)?;
    let e = &result.evaluation;
    if args.json {
        let v = serde_json::json!({
            "split": result.split, "members": result.members, "count": e.count,
            "weights": choice.weights, "tta": choice.tta,
            "accuracy": e.accuracy, "loss": e.loss, "per_class": e.per_class, "confusion_matrix": e.confusion_matrix,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let how = format!(
        "{}{}",
        if args.ema { ", weight average" } else { "" },
        if choice.tta == Tta::None { String::new() } else { format!(", test-time augmentation {}", choice.tta.name()) }
    );
    println!(
        "{} on {} ({} faces, {} model(s){how}): accuracy {:.4}, loss {:.4}",
        source.describe(),
        result.split,
        e.count,
        result.members,
        e.accuracy,
        e.loss
    );
    println!("{:<10} {:>9} {:>7} {:>7} {:>8}", "class", "precision", "recall", "f1", "support");
    for c in &e.per_class {
        println!("{:<10} {:>9.4} {:>7.4} {:>7.4} {:>8}", c.class, c.precision, c.recall, c.f1, c.support);
    }
    println!("confusion matrix (rows true, columns predicted):");
    print!("{:<10}", "");
    for em in Emotion::ALL {
        print!(" {:>8}", em.name());
    }
    println!();
    for (em, row) in Emotion::ALL.iter().zip(&e.confusion_matrix) {
        print!("{:<10}", em.name());
        for v in row {
            print!(" {v:>8}");
        }
        println!();
    }
    let name = format!("{}{}", result.split, choice.suffix());
    let ext = format.extension();
    if let Some(dir) = &out_dir {
        println!(
            "wrote eval-{name}.json, predictions-{name}.{ext}, per-class-{name}.{ext}, confusion-{name}.{ext} in {}",
            dir.display()
        );
    }
    Ok(())
}
