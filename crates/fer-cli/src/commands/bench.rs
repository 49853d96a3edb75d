use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLoss;
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNormConfig, DropoutConfig, LeakyReluConfig, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor};
use clap::{Args, ValueEnum};
use fer_model::{FerModel, ModelConfig};
use fer_train::{Recipe, RunConfig, StepInfo, TrainOptions, TrainStep};

use crate::device::DeviceChoice;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KernelPath {
    /// fer's own CPU kernels (the default everywhere).
    Fast,
    /// burn's operations only.
    Plain,
    /// Both, one after the other in this process, with the ratio.
    Both,
}

/// What `--breakdown` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Breakdown {
    /// Every fer-kernels call inside real training steps, and the rest of the step (burn's
    /// graph and gradient bookkeeping, dense layers, loss, optimizer) as one remainder.
    Step,
    /// Every operation on its own at the CNN's shapes, forward then `sum().backward()` (also
    /// covers the plain path; its backward times include copying the broadcast gradient of `sum`).
    Isolated,
}

#[derive(Args)]
pub struct BenchArgs {
    /// cnn or dnn (the report's), or a variant of the CNN: cnn-crop44, cnn-double.
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Batch size of the training step and of the throughput measurement.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Timed training steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    train_steps: usize,
    /// Recipe whose step is timed (loss, optimizer): `report` or `fast`, as `fer train --recipe`.
    #[arg(long, default_value = "report")]
    recipe: String,
    /// Also time `fer train`'s own loop on synthetic faces for the same number of steps: the step
    /// plus batch preparation (augmentation on its own thread), the weight average and the
    /// schedule, wall clock between the first and the last step.
    #[arg(long)]
    train_loop: bool,
    /// Feed the training step uniform random pixels and labels instead of synthetic faces (this
    /// bench's input before; measured 10-15% slower per step than faces, same kernels).
    #[arg(long)]
    random_input: bool,
    /// Timed inference batches (after one warm-up batch).
    #[arg(long, default_value_t = 5)]
    infer_batches: usize,
    /// Timed batch-1 forward passes.
    #[arg(long, default_value_t = 50)]
    latency_runs: usize,
    /// Which kernels to time.
    #[arg(long, value_enum, default_value = "fast")]
    path: KernelPath,
    /// Also break the training step down by operation: `step` (the default when no value is given)
    /// records fer's kernels inside real steps, `isolated` times each operation on its own.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "step")]
    breakdown: Option<Breakdown>,
    /// What the convolutions and dense layers multiply: `f32`, or `bf16` operands with f32 sums (AVX512-BF16 CPUs,
    /// on AMX tiles where the CPU has them; `f32` elsewhere), as `fer train --precision`.
    #[arg(long, value_parser = crate::commands::precision_parser(), default_value = "f32")]
    precision: fer_kernels::Precision,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceChoice,
    /// Print one JSON object per measured path (and one for the breakdown).
    #[arg(long)]
    json: bool,
}

struct Timing {
    train_s: f64,
    infer_s: f64,
    latency_ms: f64,
    /// fer-kernels' calls recorded over `profile_steps` further steps, and those steps' mean time.
    profile: Option<(Vec<fer_kernels::profile::Record>, f64)>,
}

/// Times one full training step (forward, the recipe's loss, backward, its optimizer) through
/// `fer_train::TrainStep`, the value `fer train` runs, on synthetic faces; then inference.
/// (Uniform random pixels, what this bench fed before, train 10-15% slower through the same
/// kernels, which is most of why it disagreed with `fer train`'s history; `--random-input` keeps
/// them for comparison.)
fn time_model(args: &BenchArgs, device: &Device, config: &ModelConfig, recipe: &Recipe) -> anyhow::Result<Timing> {
    let b = args.batch_size;
    let ad = device.clone().autodiff();
    let mut model = FerModel::new(config, &ad)?;
    let mut trainer = TrainStep::new(recipe, &ad);
    let faces = fer_data::synth::default_dataset(40, 0, 7);
    let mut k = 0usize;
    let mut step = |model: FerModel| {
        let (x, y) = if args.random_input {
            (
                Tensor::<4>::random([b, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &ad),
                Tensor::<1, Int>::random([b], Distribution::Uniform(0.0, 7.0), &ad),
            )
        } else {
            // A different batch each step, as training has: faces k*b.., in a stride that mixes
            // classes, prepared as training prepares them (augmentation aside: in training it runs
            // on its own thread, outside the step).
            let idx: Vec<usize> = (0..b).map(|i| (k * b + i) * 7 % faces.len()).collect();
            let batch =
                fer_train::make_batch(&faces, &idx, &fer_data::augment::AugmentConfig::none(), recipe.seed, 0, k, None);
            k += 1;
            fer_train::batch_to_tensors(batch, &ad)
        };
        trainer.run(model, x, y, recipe.lr).0
    };
    model = step(model);
    let t = Instant::now();
    for _ in 0..args.train_steps {
        model = step(model);
    }
    let train_s = t.elapsed().as_secs_f64() / args.train_steps.max(1) as f64;
    // The profile runs on steps of its own, so recording never touches the timed steps.
    let profile = (args.breakdown == Some(Breakdown::Step)).then(|| {
        fer_kernels::profile::enable(true);
        let t = Instant::now();
        for _ in 0..args.train_steps {
            model = step(model.clone());
        }
        let step_s = t.elapsed().as_secs_f64() / args.train_steps.max(1) as f64;
        fer_kernels::profile::enable(false);
        (fer_kernels::profile::take(), step_s)
    });

    let eval = model.valid();
    let x = Tensor::<4>::random([b, 1, 48, 48], Distribution::Uniform(0.0, 1.0), device);
    let _ = eval.forward(x.clone()).into_data();
    let t = Instant::now();
    for _ in 0..args.infer_batches {
        let _ = eval.forward(x.clone()).into_data();
    }
    let infer_s = t.elapsed().as_secs_f64() / args.infer_batches.max(1) as f64;
    let x1 = Tensor::<4>::random([1, 1, 48, 48], Distribution::Uniform(0.0, 1.0), device);
    let _ = eval.forward(x1.clone()).into_data();
    let t = Instant::now();
    for _ in 0..args.latency_runs {
        let _ = eval.forward(x1.clone()).into_data();
    }
    let latency_ms = 1e3 * t.elapsed().as_secs_f64() / args.latency_runs.max(1) as f64;
    Ok(Timing { train_s, infer_s, latency_ms, profile })
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let device = args.device.device()?;
    let config = ModelConfig::by_name(&args.model)?;
    let recipe = bench_recipe(&args, &config)?;
    let b = args.batch_size;
    fer_kernels::set_precision(args.precision);
    let paths: &[bool] = match args.path {
        KernelPath::Fast => &[true],
        KernelPath::Plain => &[false],
        KernelPath::Both => &[false, true],
    };
    let mut results = Vec::new();
    for &fast in paths {
        fer_kernels::set_fast_path(fast);
        let t = time_model(&args, &device, &config, &recipe)?;
        let loop_rate = if args.train_loop { Some(time_train_loop(&args, &device, &config, &recipe)?) } else { None };

        let name = match (fast, fer_kernels::uses_fast_path(&device, burn::tensor::DType::F32)) {
            (true, true) => "fer (fer-kernels on burn flex)",
            (true, false) | (false, _) => "fer (burn ops only)",
        };
        let result = serde_json::json!({
            "impl": name,
            "model": args.model,
            "batch_size": b,
            "train_step_s": t.train_s,
            "train_img_per_s": b as f64 / t.train_s,
            "infer_img_per_s": b as f64 / t.infer_s,
            "latency_b1_ms": t.latency_ms,
            "recipe": args.recipe,
            "train_loop_img_per_s": loop_rate,
            "simd": fer_kernels::simd_level(),
            "precision": fer_kernels::effective_precision().name(),
            "bf16_kernel": fer_kernels::bf16_kernel(),
            "threads": cpu_threads(),
        });
        if args.json {
            println!("{result}");
        } else {
            println!(
                "{name} {} batch {b} ({}, {}, {} threads): train step {:.3}s = {:.1} img/s; inference {:.1} img/s; \
                    batch-1 latency {:.2} ms",
                args.model,
                fer_kernels::simd_level(),
                match fer_kernels::effective_precision() {
                    fer_kernels::Precision::Bf16 => format!("bf16 on {}", fer_kernels::bf16_kernel()),
                    fer_kernels::Precision::F32 => "f32".to_string(),
                },
                cpu_threads(),
                t.train_s,
                b as f64 / t.train_s,
                b as f64 / t.infer_s,
                t.latency_ms
            );
            if let Some(rate) = loop_rate {
                println!(
                    "  fer train's loop, same steps on synthetic faces (augmentation, schedule{}): {rate:.1} img/s \
                        ({:.2}x the isolated step)",
                    if recipe.ema_decay.is_some() { ", weight average" } else { "" },
                    rate * t.train_s / b as f64
                );
            }
        }
        results.push(t);
    }
    if let [plain, fast] = results.as_slice() {
        println!(
            "fast/plain: train {:.2}x, inference {:.2}x, batch-1 latency {:.2}x",
            plain.train_s / fast.train_s,
            plain.infer_s / fast.infer_s,
            plain.latency_ms / fast.latency_ms
        );
    }
    for (t, &fast) in results.iter().zip(paths) {
        if let Some((records, step_s)) = &t.profile {
            print_step_profile(records, *step_s, args.train_steps.max(1), fast, Output::of(&args));
        }
    }
    if args.breakdown == Some(Breakdown::Isolated) {
        for &fast in paths {
            fer_kernels::set_fast_path(fast);
            let rows = breakdown(&device, b, args.train_steps.max(1));
            print_breakdown(&rows, fast, Output::of(&args));
        }
    }
    fer_kernels::set_fast_path(true);
    Ok(())
}

/// The recipe named by `--recipe`, at the bench's batch size.
fn bench_recipe(args: &BenchArgs, config: &ModelConfig) -> anyhow::Result<Recipe> {
    let mut recipe = match args.recipe.as_str() {
        "report" => Recipe::for_model(config),
        "fast" => Recipe::fast_cnn(),
        other => anyhow::bail!("--recipe {other:?}: valid recipes are report, fast"),
    };
    recipe.batch_size = args.batch_size;
    Ok(recipe)
}

/// Runs `fer_train::train` on synthetic faces for one epoch of `train_steps + 1` steps and times
/// the steps after the first by wall clock, as they happen (an observer notes each one).
fn time_train_loop(args: &BenchArgs, device: &Device, config: &ModelConfig, recipe: &Recipe) -> anyhow::Result<f64> {
    struct Clock(Vec<Instant>);
    impl fer_train::Observer for Clock {
        fn on_step(&mut self, _: &StepInfo) {
            self.0.push(Instant::now());
        }
    }
    let mut run = RunConfig::new("synthetic", config.clone());
    run.recipe = recipe.clone();
    run.recipe.epochs = 1;
    run.recipe.steps_per_epoch = Some(args.train_steps + 1);
    let data = fer_data::synth::default_dataset(40, 2, 7);
    let dir = tempfile::tempdir()?;
    let mut clock = Clock(Vec::new());
    fer_train::train(
        dir.path(),
        &run,
        &data,
        device,
        TrainOptions { time_budget: None, stop: None, max_steps: None, observer: &mut clock },
    )?;
    let (Some(first), Some(last)) = (clock.0.first(), clock.0.last()) else {
        anyhow::bail!("the training loop ran no steps");
    };
    Ok((clock.0.len() - 1).max(1) as f64 * args.batch_size as f64 / last.duration_since(*first).as_secs_f64().max(1e-9))
}

fn cpu_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One operation of the training step timed on its own.
struct OpRow {
    op: String,
    shape: String,
    forward_ms: f64,
    backward_ms: f64,
}

/// Best of `reps` runs of `f`, which returns (forward seconds, backward seconds).
fn best(reps: usize, mut f: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    (0..reps + 1).map(|_| f()).skip(1).fold((f64::MAX, f64::MAX), |(a, b), (x, y)| (a.min(x), b.min(y)))
}

/// Times forward and backward of `op` on a fresh tracked input (`y.sum().backward()`).
fn time_op<const D: usize, const E: usize>(
    reps: usize,
    input: impl Fn() -> Tensor<D>,
    op: impl Fn(Tensor<D>) -> Tensor<E>,
) -> (f64, f64) {
    best(reps, || {
        let x = input().require_grad();
        let _ = x.clone().into_data();
        let t = Instant::now();
        let y = op(x);
        let forward = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let grads = y.sum().backward();
        drop(grads);
        (forward, t.elapsed().as_secs_f64())
    })
}

/// Every operation of the report CNN's training step, at its shapes, on `device` with autodiff.
fn breakdown(device: &Device, b: usize, reps: usize) -> Vec<OpRow> {
    let ad = device.clone().autodiff();
    let mut isolated =
        Isolated { fast: fer_kernels::uses_fast_path(device, burn::tensor::DType::F32), ad, b, reps, rows: Vec::new() };
    let cnn = fer_model::CnnConfig::new();
    let (mut cin, mut side) = (1, 48);
    for i in 0..cnn.conv_channels.len() {
        side = isolated.conv_block(&cnn, i, cin, side);
        cin = cnn.conv_channels[i];
    }
    let mut features = cnn.flatten_size();
    for j in 0..cnn.dense_units.len() {
        isolated.dense_block(&cnn, j, features);
        features = cnn.dense_units[j];
    }
    isolated.head(&cnn, features);
    isolated.rows
}

/// The rows of `fer bench --breakdown isolated` as they are timed.
struct Isolated {
    ad: Device,
    /// Whether fer's kernels run on this device (then the fused BatchNorm+LeakyReLU is timed too).
    fast: bool,
    b: usize,
    reps: usize,
    rows: Vec<OpRow>,
}

impl Isolated {
    fn push(&mut self, op: &str, shape: String, (f, bw): (f64, f64)) {
        self.rows.push(OpRow { op: op.into(), shape, forward_ms: f * 1e3, backward_ms: bw * 1e3 })
    }

    /// Conv block `i` (convolution, BatchNorm, LeakyReLU, pooling, dropout) on `cin` channels of
    /// `side` pixels; returns the side after its pooling.
    fn conv_block(&mut self, cnn: &fer_model::CnnConfig, i: usize, cin: usize, mut side: usize) -> usize {
        let (ad, b, reps, fast) = (self.ad.clone(), self.b, self.reps, self.fast);
        let uniform = |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), &ad);
        let mut push = |op: &str, shape: String, timing: (f64, f64)| self.push(op, shape, timing);
        let (cout, k) = (cnn.conv_channels[i], cnn.kernel_sizes[i]);
        let x_dims = [b, cin, side, side];
        let shape = format!("{cin}->{cout} {k}x{k} @{side}x{side}");
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Uniform(-0.1, 0.1), &ad);
        let bias = Tensor::<1>::random([cout], Distribution::Uniform(-0.1, 0.1), &ad);
        let conv = |x: Tensor<4>, w: Tensor<4>, bias: Tensor<1>| fer_kernels::conv2d(x, w, Some(bias), [k / 2, k / 2]);
        // Input gradient only, then weight and bias gradients only.
        push(
            &format!("block{} conv (fwd, bwd data)", i + 1),
            shape.clone(),
            time_op(reps, || uniform(x_dims), |x| conv(x, w.clone(), bias.clone())),
        );
        let x = uniform(x_dims);
        let (_, weight_bwd) = time_op(reps, || w.clone(), |w| conv(x.clone(), w, bias.clone().require_grad()));
        push(&format!("block{} conv (bwd weight+bias)", i + 1), shape, (0.0, weight_bwd));
        let y_dims = [b, cout, side, side];
        let act_shape = format!("{cout}x{side}x{side}");
        let bn = BatchNormConfig::new(cout).init(&ad);
        push(
            &format!("block{} batchnorm", i + 1),
            act_shape.clone(),
            time_op(reps, || uniform(y_dims), |x| fer_kernels::batch_norm(&bn, x)),
        );
        let act = LeakyReluConfig::new().with_negative_slope(cnn.leaky_slope).init();
        push(
            &format!("block{} leaky relu", i + 1),
            act_shape.clone(),
            time_op(reps, || uniform(y_dims), |x| fer_kernels::leaky_relu(&act, x)),
        );
        if fast {
            // What the model runs instead of the two rows above when nothing taps the layers.
            let fused = |x: Tensor<4>| {
                fer_kernels::batch_norm_leaky_train(&bn, &act, x).unwrap_or_else(|x| act.forward(bn.forward(x)))
            };
            push(
                &format!("block{} (batchnorm+leaky fused)", i + 1),
                act_shape.clone(),
                time_op(reps, || uniform(y_dims), fused),
            );
        }
        if cnn.pool[i] {
            let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
            push(
                &format!("block{} max pool", i + 1),
                act_shape.clone(),
                time_op(reps, || uniform(y_dims), |x| fer_kernels::max_pool2d(&pool, x)),
            );
            side /= 2;
        }
        let dropout = DropoutConfig::new(cnn.conv_dropout[i]).init();
        push(
            &format!("block{} dropout", i + 1),
            format!("{cout}x{side}x{side}"),
            time_op(reps, || uniform([b, cout, side, side]), |x| fer_kernels::dropout(&dropout, x)),
        );
        side
    }

    /// Dense block `j` (dense, BatchNorm, LeakyReLU, dropout) on `features` inputs.
    fn dense_block(&mut self, cnn: &fer_model::CnnConfig, j: usize, features: usize) {
        let (ad, b, reps) = (self.ad.clone(), self.b, self.reps);
        let (units, p) = (cnn.dense_units[j], cnn.dense_dropout[j]);
        let uniform2 = |dims: [usize; 2]| Tensor::<2>::random(dims, Distribution::Uniform(-1.0, 1.0), &ad);
        let mut push = |op: &str, shape: String, timing: (f64, f64)| self.push(op, shape, timing);
        let dense = LinearConfig::new(features, units).init(&ad);
        push(
            &format!("fc{} dense", j + 1),
            format!("{features}->{units}"),
            time_op(reps, || uniform2([b, features]), |x| dense.forward(x)),
        );
        let bn = BatchNormConfig::new(units).init(&ad);
        push(
            &format!("fc{} batchnorm", j + 1),
            format!("{units}"),
            time_op(reps, || uniform2([b, units]), |x| fer_kernels::batch_norm(&bn, x)),
        );
        let act = LeakyReluConfig::new().with_negative_slope(cnn.leaky_slope).init();
        push(
            &format!("fc{} leaky relu", j + 1),
            format!("{units}"),
            time_op(reps, || uniform2([b, units]), |x| fer_kernels::leaky_relu(&act, x)),
        );
        let dropout = DropoutConfig::new(p).init();
        push(
            &format!("fc{} dropout", j + 1),
            format!("{units}"),
            time_op(reps, || uniform2([b, units]), |x| fer_kernels::dropout(&dropout, x)),
        );
    }

    /// The logits, the loss, and Adam's update of the whole model.
    fn head(&mut self, cnn: &fer_model::CnnConfig, features: usize) {
        let (ad, b, reps) = (self.ad.clone(), self.b, self.reps);
        let uniform = |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Uniform(-1.0, 1.0), &ad);
        let uniform2 = |dims: [usize; 2]| Tensor::<2>::random(dims, Distribution::Uniform(-1.0, 1.0), &ad);
        let mut push = |op: &str, shape: String, timing: (f64, f64)| self.push(op, shape, timing);
        let logits = LinearConfig::new(features, cnn.num_classes).init(&ad);
        push(
            "logits dense",
            format!("{features}->{}", cnn.num_classes),
            time_op(reps, || uniform2([b, features]), |x| logits.forward(x)),
        );
        let loss_fn = CrossEntropyLoss::new(None, &ad);
        let targets = Tensor::<1, Int>::random([b], Distribution::Uniform(0.0, 7.0), &ad);
        push(
            "cross-entropy loss",
            format!("{}", cnn.num_classes),
            time_op(reps, || uniform2([b, cnn.num_classes]), |x| loss_fn.forward(x, targets.clone()).reshape([1, 1])),
        );

        // Adam on the whole model: gradients from one step, then the update alone.
        let (adam, _) = best(reps, || {
            let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
            let Ok(model) = FerModel::new(&ModelConfig::by_name("cnn").expect("the report's cnn"), &ad) else {
                return (f64::NAN, 0.0);
            };
            let x = uniform([b.min(8), 1, 48, 48]);
            let grads = GradientsParams::from_grads(model.forward(x).sum().backward(), &model);
            let t = Instant::now();
            let model = optim.step(1e-3, model, grads);
            let s = t.elapsed().as_secs_f64();
            drop(model);
            (s, 0.0)
        });
        push("adam update", "4,084,295 params".into(), (adam, 0.0));
    }
}

/// How a table is printed: for people, or as one JSON object (`--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

impl Output {
    fn of(args: &BenchArgs) -> Self {
        if args.json { Output::Json } else { Output::Text }
    }
}

/// The step profile: milliseconds per step of each fer-kernels operation and shape, totals per
/// operation, and the remainder of the step.
fn print_step_profile(records: &[fer_kernels::profile::Record], step_s: f64, steps: usize, fast: bool, output: Output) {
    let per_step = |seconds: f64| 1e3 * seconds / steps as f64;
    let kernels_ms: f64 = records.iter().map(|r| per_step(r.seconds)).sum();
    let step_ms = 1e3 * step_s;
    if output == Output::Json {
        let ops: Vec<_> = records
            .iter()
            .map(|r| {
                let calls = r.calls as f64 / steps as f64;
                let ms = per_step(r.seconds);
                serde_json::json!({"op": r.op, "shape": r.shape, "calls_per_step": calls, "ms_per_step": ms})
            })
            .collect();
        let profile = if fast { "fast" } else { "plain" };
        println!(
            "{}",
            serde_json::json!({"step_profile": profile, "step_ms": step_ms, "kernels_ms": kernels_ms, "ops": ops})
        );
        return;
    }
    println!(
        "\nwhere a training step's time goes ({} path), mean of {steps} recorded steps of {step_ms:.0} ms:",
        if fast { "fast" } else { "plain" }
    );
    if records.is_empty() {
        println!("  (no fer-kernels calls: every operation ran through burn)");
        return;
    }
    println!("{:<28} {:<26} {:>6} {:>9} {:>6}", "operation", "shape", "calls", "ms/step", "share");
    for r in records {
        let ms = per_step(r.seconds);
        println!(
            "{:<28} {:<26} {:>6.0} {ms:>9.1} {:>5.1}%",
            r.op,
            r.shape,
            r.calls as f64 / steps as f64,
            100.0 * ms / step_ms
        );
    }
    let mut by_op: Vec<(String, f64)> = Vec::new();
    for r in records {
        match by_op.iter_mut().find(|(o, _)| *o == r.op) {
            Some((_, ms)) => *ms += per_step(r.seconds),
            None => by_op.push((r.op.clone(), per_step(r.seconds))),
        }
    }
    by_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("totals per operation:");
    for (op, ms) in by_op {
        println!("  {op:<34} {ms:>9.1} ms {:>5.1}%", 100.0 * ms / step_ms);
    }
    println!("  {:<34} {kernels_ms:>9.1} ms {:>5.1}%", "all fer-kernels calls", 100.0 * kernels_ms / step_ms);
    println!(
        "  {:<34} {:>9.1} ms {:>5.1}%",
        "the rest (burn: graph, dense, loss, adam)",
        step_ms - kernels_ms,
        100.0 * (step_ms - kernels_ms) / step_ms
    );
}

fn print_breakdown(rows: &[OpRow], fast: bool, output: Output) {
    // Rows in parentheses are alternatives to rows above them, not extra work.
    let counted = |r: &&OpRow| !r.op.contains('(') || r.op.contains("conv (");
    let total: f64 = rows.iter().filter(counted).map(|r| r.forward_ms + r.backward_ms).sum();
    if output == Output::Json {
        let ops: Vec<_> = rows
            .iter()
            .map(|r| {
                let (forward_ms, backward_ms) = (r.forward_ms, r.backward_ms);
                serde_json::json!({"op": r.op, "shape": r.shape, "forward_ms": forward_ms, "backward_ms": backward_ms})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"breakdown": if fast { "fast" } else { "plain" }, "total_ms": total, "ops": ops})
        );
        return;
    }
    println!(
        "\nper-operation breakdown ({} path), best of runs, milliseconds per batch:",
        if fast { "fast" } else { "plain" }
    );
    println!("{:34} {:22} {:>10} {:>10} {:>7}", "operation", "shape", "forward", "backward", "share");
    for r in rows {
        println!(
            "{:34} {:22} {:>10.1} {:>10.1} {:>6.1}%",
            r.op,
            r.shape,
            r.forward_ms,
            r.backward_ms,
            100.0 * (r.forward_ms + r.backward_ms) / total
        );
    }
    let kind = |key: &str| {
        rows.iter().filter(counted).filter(|r| r.op.contains(key)).map(|r| r.forward_ms + r.backward_ms).sum::<f64>()
    };
    println!("{:34} {:22} {:>21.1}", "sum of operations", "", total);
    for key in ["conv", "batchnorm", "leaky relu", "max pool", "dropout", "dense", "adam"] {
        println!("  {key:32} {:>6.1}% ({:.0} ms)", 100.0 * kind(key) / total, kind(key));
    }
}
