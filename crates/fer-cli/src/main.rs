//! `fer`: facial-expression recognition on FER2013, from the command line.

mod builtin;
mod commands;
mod device;
mod photos;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fer",
    version,
    about = "Facial-expression recognition on FER2013: data, models, training, explanations"
)]
#[command(long_about = "Facial-expression recognition on FER2013 (48x48 grayscale faces, 7 emotions: \
0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral).\n\n\
Data can be the original fer2013.csv (also .csv.gz), the course's train.csv / test.csv, an \
image-folder tree ([<split>/]<class>/*.jpg), or Parquet as the \
Hugging Face Hub ships it (a file, a folder of shards, or data/train-*.parquet); the format is detected.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Largest data file read (CSV bytes after gzip decompression), a guard against files that
    /// expand without end. Default 4 GiB; docs/RELIABILITY.md lists every limit.
    #[arg(long, global = true, value_name = "BYTES")]
    max_input_bytes: Option<u64>,
    /// Parquet data: the image column (default: detected by name, image/img/pixels, or by type).
    #[arg(long, global = true, value_name = "NAME")]
    image_col: Option<String>,
    /// Parquet data: the label column (default: detected by name, label/labels/emotion).
    #[arg(long, global = true, value_name = "NAME")]
    label_col: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect, convert, synthesise and augment FER2013 data.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Print a Keras-style summary of the report's CNN or DNN.
    Summary(commands::model::SummaryArgs),
    /// Write a model file's weights as SafeTensors, or as fer's compact .ferc file (docs/MODEL-FILES.md).
    Export(commands::model::ExportArgs),
    /// Train the CNN or DNN with the report's recipe (resumable, time-budgeted, ensembles).
    Train(Box<commands::train::TrainArgs>),
    /// Accuracy, per-class precision/recall and the confusion matrix of a run on a split.
    Eval(commands::eval::EvalArgs),
    /// Emotions of the faces in photos: each face found, boxed, framed like FER2013, classified.
    Predict(commands::predict::PredictArgs),
    /// A local web page (and JSON API) for photos and the webcam: faces boxed, emotions, saliency.
    Serve(commands::serve::ServeArgs),
    /// Time a training step and inference of the CNN or DNN on random data.
    Bench(commands::bench::BenchArgs),
    /// What a trained model sees: saliency, SmoothGrad, Grad-CAM, integrated gradients,
    /// activation maps, gradient ascent.
    #[command(subcommand)]
    Explain(commands::explain::ExplainCommand),
}

fn main() {
    fer_kernels::tune_allocator();
    let cli = Cli::parse();
    if let Some(limit) = cli.max_input_bytes {
        fer_data::set_default_max_input_bytes(limit);
    }
    if cli.image_col.is_some() || cli.label_col.is_some() {
        fer_data::set_default_columns(cli.image_col.clone(), cli.label_col.clone());
    }
    let result = match cli.command {
        Command::Data(cmd) => commands::data::run(cmd),
        Command::Summary(args) => commands::model::summary(args),
        Command::Export(args) => commands::model::export(args),
        Command::Train(args) => commands::train::run(*args),
        Command::Eval(args) => commands::eval::eval(args),
        Command::Predict(args) => commands::predict::predict(args),
        Command::Serve(args) => commands::serve::serve(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Explain(cmd) => commands::explain::run(cmd),
    };
    if let Err(err) = result {
        eprintln!("error: {err}");
        let mut source = err.source();
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
        std::process::exit(1);
    }
}
