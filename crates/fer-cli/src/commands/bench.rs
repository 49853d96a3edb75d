use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Distribution, Int, Tensor};
use clap::Args;
use fer_model::{FerModel, ModelConfig};

use crate::device::DeviceChoice;

#[derive(Args)]
pub struct BenchArgs {
    /// cnn or dnn.
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Batch size of the training step and of the throughput measurement.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Timed training steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    train_steps: usize,
    /// Timed inference batches (after one warm-up batch).
    #[arg(long, default_value_t = 5)]
    infer_batches: usize,
    /// Timed batch-1 forward passes.
    #[arg(long, default_value_t = 50)]
    latency_runs: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Times one full training step (forward, backward, Adam) and inference on random data.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let config = ModelConfig::by_name(&args.model)?;
    let b = args.batch_size;
    let ad = device.clone().autodiff();
    let mut model = FerModel::new(&config, &ad)?;
    let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
    let loss_fn = CrossEntropyLoss::new(None, &ad);
    let mut step = |model: FerModel| {
        let x = Tensor::<4>::random([b, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &ad);
        let y = Tensor::<1, Int>::random([b], Distribution::Uniform(0.0, 7.0), &ad);
        let loss = loss_fn.forward(model.forward(x), y);
        let _ = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-3, model, grads)
    };
    model = step(model);
    let t = Instant::now();
    for _ in 0..args.train_steps {
        model = step(model);
    }
    let train_s = t.elapsed().as_secs_f64() / args.train_steps.max(1) as f64;

    let eval = model.valid();
    let x = Tensor::<4>::random([b, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
    let _ = eval.forward(x.clone()).into_data();
    let t = Instant::now();
    for _ in 0..args.infer_batches {
        let _ = eval.forward(x.clone()).into_data();
    }
    let infer_s = t.elapsed().as_secs_f64() / args.infer_batches.max(1) as f64;
    let x1 = Tensor::<4>::random([1, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
    let _ = eval.forward(x1.clone()).into_data();
    let t = Instant::now();
    for _ in 0..args.latency_runs {
        let _ = eval.forward(x1.clone()).into_data();
    }
    let latency_ms = 1e3 * t.elapsed().as_secs_f64() / args.latency_runs.max(1) as f64;

    let result = serde_json::json!({
        "impl": "fer (burn flex)",
        "model": args.model,
        "batch_size": b,
        "train_step_s": train_s,
        "train_img_per_s": b as f64 / train_s,
        "infer_img_per_s": b as f64 / infer_s,
        "latency_b1_ms": latency_ms,
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "fer {} batch {b}: train step {:.3}s = {:.1} img/s; inference {:.1} img/s; batch-1 latency {:.2} ms",
            args.model,
            train_s,
            b as f64 / train_s,
            b as f64 / infer_s,
            latency_ms
        );
    }
    Ok(())
}
