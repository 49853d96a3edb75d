//! `cargo xtask reproduce-report`: regenerate the report — every figure, table and number — from
//! raw data in one command.
//!
//! Stages, each reusing its saved result under `--out` when present (so a rerun is cheap and an
//! interrupted run picks up where it stopped): train and evaluate the CNN, the DNN, the CNN on
//! train+val (when the data has a separate test split) and an ensemble; explain the CNN; render
//! figures; write REPORT.md and index.html.

mod pipeline;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Train, evaluate, explain and write the report (REPORT.md, index.html, figures/) under --out.
    ReproduceReport {
        /// FER2013 in any supported form; without it, the embedded synthetic faces.
        #[arg(long)]
        data: Option<String>,
        #[arg(long, value_enum, default_value = "smoke")]
        profile: Profile,
        #[arg(long, default_value = "report")]
        out: PathBuf,
        /// Regenerate the report from the saved stages and fail if REPORT.md would change.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Small models on synthetic faces: a few minutes, what the tests use.
    Smoke,
    /// The report's models on real data within about 2 hours on a 2-core CPU
    /// (CNN 8 epochs x 100 steps, DNN 40 epochs, no ensemble).
    Cpu,
    /// The report's protocol: CNN 30 epochs x 500 steps, DNN 100 epochs, 5-member ensemble. For a GPU.
    Full,
}

fn main() {
    fer_kernels::tune_allocator();
    let result = match Xtask::parse().command {
        Task::ReproduceReport { data, profile, out, check } => {
            let started = Instant::now();
            report::reproduce(data, profile, out, check).map(|path| println!("wrote {} in {:.0}s", path.display(), started.elapsed().as_secs_f64()))
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
