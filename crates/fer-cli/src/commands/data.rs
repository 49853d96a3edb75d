use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use fer_data::augment::{AffineParams, FillMode, apply_affine};
use fer_data::{Dataset, Emotion, LoadOptions, LoadReport, NUM_CLASSES};
use serde_json::{Map, Value, json};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Count faces per class and split; detects the format.
    Stats(StatsArgs),
    /// Convert any supported form to fer2013.csv (DST ends in .csv or .csv.gz), one Parquet file
    /// (DST ends in .parquet), the Hub's Parquet layout (DST a folder, with --parquet:
    /// train/validation/test-00000-of-00001.parquet) or a PNG tree (DST a folder).
    Convert(ConvertArgs),
    /// Write a synthetic image-folder dataset (Training, PublicTest and PrivateTest splits).
    Synth {
        dir: PathBuf,
        /// Training faces per class.
        #[arg(long, default_value_t = 100)]
        per_class: usize,
        /// PublicTest and PrivateTest faces per class (default: a quarter of --per-class, at least 1).
        #[arg(long)]
        val_per_class: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Apply exactly one affine transform, with Keras' apply_affine_transform conventions.
    Augment(AugmentArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Fill {
    Nearest,
    Constant,
}

#[derive(Args)]
pub struct AugmentArgs {
    /// Input face (any image; converted to 48x48 grayscale).
    image: PathBuf,
    /// Output PNG.
    #[arg(long)]
    out: PathBuf,
    /// Rotation in degrees.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    theta: f64,
    /// Shift in pixels along rows (Keras' tx: vertical).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    tx: f64,
    /// Shift in pixels along columns (Keras' ty: horizontal).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    ty: f64,
    /// Shear angle in degrees.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    shear: f64,
    /// Zoom along rows (1 = none; below 1 magnifies, as in Keras).
    #[arg(long, default_value_t = 1.0)]
    zx: f64,
    /// Zoom along columns.
    #[arg(long, default_value_t = 1.0)]
    zy: f64,
    /// Flip horizontally after the affine map.
    #[arg(long)]
    flip: bool,
    #[arg(long, value_enum, default_value = "nearest")]
    fill: Fill,
    /// Fill value for --fill constant.
    #[arg(long, default_value_t = 0.0)]
    cval: f32,
}

/// `fer data stats`.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// fer2013.csv[.gz], train.csv, test.csv, or an image-folder tree.
    path: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Skip bad rows or files (counted per reason) instead of stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
}

/// `fer data convert`.
#[derive(clap::Args)]
pub struct ConvertArgs {
    src: PathBuf,
    dst: PathBuf,
    #[arg(long)]
    skip_invalid: bool,
    /// Write DST as the Hugging Face Hub lays FER2013 out: one Parquet file per split, PNG bytes.
    #[arg(long)]
    parquet: bool,
}

pub fn run(cmd: DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Stats(args) => stats(&args),
        DataCommand::Convert(args) => convert(&args),
        DataCommand::Synth { dir, per_class, val_per_class, seed } => {
            let val = val_per_class.unwrap_or((per_class / 4).max(1));
            let dataset = fer_data::synth::default_dataset(per_class, val, seed);
            fer_data::write_image_tree(&dataset, &dir)?;
            println!(
                "wrote {} synthetic faces ({per_class} + {val} + {val} per class) to {}",
                dataset.len(),
                dir.display()
            );
            Ok(())
        }
        DataCommand::Augment(args) => augment(args),
    }
}

fn per_class_json(counts: [usize; NUM_CLASSES]) -> Value {
    let mut map = Map::new();
    for e in Emotion::ALL {
        map.insert(e.folder_name().into(), json!(counts[e.id()]));
    }
    Value::Object(map)
}

/// The JSON `fer data stats --json` prints.
pub fn stats_json(dataset: &Dataset, report: &LoadReport) -> Value {
    let mut splits = Map::new();
    for name in dataset.split_names() {
        let part = dataset.select_splits(&[name]).unwrap_or_default();
        let counts = per_class_json(part.class_counts());
        splits.insert(name.clone(), json!({"count": part.len(), "per_class": counts, "unlabelled": part.unlabelled()}));
    }
    json!({
        "format": report.format.as_str(),
        "count": dataset.len(),
        "per_class": per_class_json(dataset.class_counts()),
        "unlabelled": dataset.unlabelled(),
        "splits": splits,
        "converted": report.converted,
        "skipped": report.skipped,
    })
}

fn load(path: &PathBuf, skip_invalid: bool) -> anyhow::Result<(Dataset, LoadReport)> {
    Ok(fer_data::load(path, &LoadOptions { skip_invalid, ..LoadOptions::default() })?)
}

fn stats(args: &StatsArgs) -> anyhow::Result<()> {
    let path = &args.path;
    let (dataset, report) = load(path, args.skip_invalid)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats_json(&dataset, &report))?);
        return Ok(());
    }
    println!("{}: {} faces, format {}", path.display(), dataset.len(), report.format);
    print!("{:<12} {:>7}", "split", "total");
    for e in Emotion::ALL {
        print!(" {:>8}", e.folder_name());
    }
    println!();
    let row = |name: &str, d: &Dataset| {
        print!("{name:<12} {:>7}", d.len());
        for c in d.class_counts() {
            print!(" {c:>8}");
        }
        println!();
    };
    for name in dataset.split_names() {
        row(name, &dataset.select_splits(&[name]).unwrap_or_default());
    }
    if dataset.split_names().len() > 1 {
        row("all", &dataset);
    }
    if dataset.unlabelled() > 0 {
        println!("unlabelled: {}", dataset.unlabelled());
    }
    println!("converted to 48x48 grayscale: {}", report.converted);
    let skipped: usize = report.skipped.values().sum();
    println!("skipped: {skipped}");
    for (reason, n) in &report.skipped {
        println!("  {reason}: {n}");
    }
    Ok(())
}

#[cfg(feature = "parquet")]
fn write_parquet(dataset: &fer_data::Dataset, dst: &std::path::Path, one_file: bool) -> anyhow::Result<()> {
    if one_file {
        fer_data::write_parquet_file(dataset, dst)?
    } else {
        fer_data::write_parquet_splits(dataset, dst).map(|_| ())?
    }
    Ok(())
}

#[cfg(not(feature = "parquet"))]
fn write_parquet(_: &fer_data::Dataset, dst: &std::path::Path, _: bool) -> anyhow::Result<()> {
    anyhow::bail!("{}: this fer was built without Parquet; rebuild with its default `parquet` feature", dst.display())
}

fn convert(args: &ConvertArgs) -> anyhow::Result<()> {
    let (src, dst, to_parquet) = (&args.src, &args.dst, args.parquet);
    let (dataset, report) = load(src, args.skip_invalid)?;
    let name = dst.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        fer_data::write_fer2013_csv(&dataset, dst)?;
    } else if name.ends_with(".parquet") || to_parquet {
        write_parquet(&dataset, dst, name.ends_with(".parquet"))?;
    } else {
        fer_data::write_image_tree(&dataset, dst)?;
    }
    let skipped: usize = report.skipped.values().sum();
    println!(
        "wrote {} faces from {} ({}) to {} (converted {}, skipped {skipped})",
        dataset.len(),
        src.display(),
        report.format,
        dst.display(),
        report.converted
    );
    Ok(())
}

fn augment(a: AugmentArgs) -> anyhow::Result<()> {
    let mut pixels = vec![0u8; fer_data::PIXELS];
    let img = image::open(&a.image).with_context(|| format!("{}: unreadable or corrupt image", a.image.display()))?;
    let gray = img.into_luma8();
    let gray = if gray.dimensions() == (48, 48) {
        gray
    } else {
        image::imageops::resize(&gray, 48, 48, image::imageops::FilterType::Triangle)
    };
    pixels.copy_from_slice(gray.as_raw());
    let params = AffineParams {
        theta: a.theta,
        tx: a.tx,
        ty: a.ty,
        shear: a.shear,
        zx: a.zx,
        zy: a.zy,
        flip_horizontal: a.flip,
    };
    let fill = match a.fill {
        Fill::Nearest => FillMode::Nearest,
        Fill::Constant => FillMode::Constant(a.cval),
    };
    let out = apply_affine(&pixels, &params, fill);
    fer_data::write_png(&a.out, &out)?;
    println!("wrote {}", a.out.display());
    Ok(())
}
