use std::path::PathBuf;

use clap::Args;
use fer_model::{FerModel, ModelConfig, Summary};

use crate::device::DeviceChoice;

#[derive(Args)]
pub struct SummaryArgs {
    /// Which model: cnn or dnn (the report's), or a variant of the CNN: cnn-crop44 (on 44x44
    /// crops), cnn-double (a second convolution in blocks 4 and 5).
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Summarise a saved model file instead.
    #[arg(long, conflicts_with = "model")]
    model_file: Option<PathBuf>,
    /// Print JSON: total_params, trainable_params, non_trainable_params, layers[{name, kind, output_shape, params}].
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A model file written by `fer train` (e.g. RUN_DIR/best.fer).
    #[arg(long)]
    model_file: PathBuf,
    /// Output file: `.safetensors` (weights for PyTorch users), or `.ferc`, fer's compact file
    /// (16-bit values, loaded as f32; the same weights always give the same bytes; the form in
    /// which models ship in models/, docs/MODEL-FILES.md).
    #[arg(long)]
    to: PathBuf,
    /// Value type of a `.ferc` file: f16 (11 significant bits; values beyond 65,504 are refused)
    /// or bf16 (8 significant bits, any f32 range).
    #[arg(long, value_enum, default_value = "f16")]
    half: HalfArg,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum HalfArg {
    F16,
    Bf16,
}

pub fn summary(args: SummaryArgs) -> anyhow::Result<()> {
    let device = DeviceChoice::Cpu.device()?;
    let model = match &args.model_file {
        Some(path) => fer_model::load_model(path, &device)?,
        None => FerModel::new(&ModelConfig::by_name(&args.model)?, &device)?,
    };
    let summary = Summary::of(&model);
    if args.json {
        println!("{}", summary.to_json());
    } else {
        println!("{summary}");
        println!("Tap names: {}", summary.layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let device = DeviceChoice::Cpu.device()?;
    let model = fer_model::load_model(&args.model_file, &device)?;
    match args.to.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => fer_model::export_safetensors(&model, &args.to)?,
        Some("ferc") => {
            let half = match args.half {
                HalfArg::F16 => fer_model::HalfFormat::F16,
                HalfArg::Bf16 => fer_model::HalfFormat::Bf16,
            };
            fer_model::save_compact(&model, half, &args.to)?;
        }
        _ => anyhow::bail!("--to {}: write a .safetensors or a .ferc file", args.to.display()),
    }
    println!(
        "wrote {} ({} model, {} parameters)",
        args.to.display(),
        model.config().kind(),
        Summary::of(&model).total_params
    );
    Ok(())
}
