//! Assembling the report from the stages' results: figures and the text, every number measured.

use std::path::{Path, PathBuf};

use anyhow::Context;
use fer_data::{Emotion, NUM_CLASSES, SIDE};
use fer_model::Summary;
use fer_report::{Block, Document, PALETTE, Series, thousands};

use crate::pipeline::{
    ConfusedPair, Ctx, Example, Explained, Profile, RunResult, face, most_confident_error, most_confused, stage,
    write_json,
};

const NAMES: [&str; NUM_CLASSES] = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"];

fn pct(x: f64) -> String {
    format!("{:.4}", x)
}

fn curves(runs: &[&RunResult], metric: &str) -> Vec<Series> {
    let colors = [PALETTE[0], PALETTE[1], PALETTE[2]];
    let mut series = Vec::new();
    for (run, color) in runs.iter().zip(colors) {
        let pick = |r: &fer_train::EpochRow, train: bool| match (metric, train) {
            ("accuracy", true) => r.train_acc,
            ("accuracy", false) => r.val_acc,
            (_, true) => r.train_loss,
            (_, false) => r.val_loss,
        };
        for train in [true, false] {
            series.push(Series {
                name: format!("{} {}", run.name.to_uppercase(), if train { "training" } else { "validation" }),
                points: run.history.iter().map(|r| (r.epoch as f64, pick(r, train))).collect(),
                color,
                dashed: train,
            });
        }
    }
    series
}

fn history_table(run: &RunResult) -> Block {
    Block::Table {
        header: ["epoch", "train loss", "train acc", "val loss", "val acc", "seconds", "img/s"]
            .map(String::from)
            .to_vec(),
        rows: run
            .history
            .iter()
            .map(|r| {
                vec![
                    r.epoch.to_string(),
                    format!("{:.4}", r.train_loss),
                    pct(r.train_acc),
                    format!("{:.4}", r.val_loss),
                    pct(r.val_acc),
                    thousands(r.seconds.round() as u64),
                    format!("{:.1}", r.images_per_s),
                ]
            })
            .collect(),
    }
}

fn per_class_table(run: &RunResult) -> Block {
    Block::Table {
        header: ["class", "precision", "recall", "f1", "support"].map(String::from).to_vec(),
        rows: run
            .evaluation
            .per_class
            .iter()
            .map(|c| vec![c.class.clone(), pct(c.precision), pct(c.recall), pct(c.f1), thousands(c.support)])
            .collect(),
    }
}

fn probs_text(p: &[f32; NUM_CLASSES]) -> String {
    format!("[{}]", p.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", "))
}

/// Accuracy thresholds of the time-to-accuracy table: milestones, then the report's single CNN.
const THRESHOLDS: [f64; 5] = [0.50, 0.55, 0.60, 0.65, 0.6719];

/// When the best-so-far validation accuracy first reached `threshold`: (minutes, epoch).
pub fn first_reached(history: &[fer_train::EpochRow], threshold: f64, ema: bool) -> Option<(f64, usize)> {
    history
        .iter()
        .find(|r| (if ema { r.ema_val_acc.unwrap_or(0.0) } else { r.val_acc }) >= threshold)
        .map(|r| (r.wall_seconds / 60.0, r.epoch))
}

fn time_to_accuracy_table(run: &RunResult) -> Block {
    let has_ema = run.history.iter().any(|r| r.ema_val_acc.is_some());
    let cell =
        |hit: Option<(f64, usize)>| hit.map_or("not reached".to_string(), |(m, e)| format!("{m:.1} min (epoch {e})"));
    let mut header = vec!["validation accuracy".to_string(), "trained weights".to_string()];
    if has_ema {
        header.push("weight average".into());
    }
    let rows = THRESHOLDS
        .iter()
        .map(|&t| {
            let label =
                if t == 0.6719 { "≥ 0.6719 (the report's single CNN)".to_string() } else { format!("≥ {t:.2}") };
            let mut row = vec![label, cell(first_reached(&run.history, t, false))];
            if has_ema {
                row.push(cell(first_reached(&run.history, t, true)));
            }
            row
        })
        .collect();
    Block::Table { header, rows }
}

fn time_to_accuracy_series(run: &RunResult) -> Vec<Series> {
    let minutes = |r: &fer_train::EpochRow| r.wall_seconds / 60.0;
    let mut series = vec![Series {
        name: "trained weights".into(),
        points: run.history.iter().map(|r| (minutes(r), r.val_acc)).collect(),
        color: PALETTE[0],
        dashed: false,
    }];
    let ema: Vec<(f64, f64)> = run.history.iter().filter_map(|r| r.ema_val_acc.map(|a| (minutes(r), a))).collect();
    if !ema.is_empty() {
        series.push(Series { name: "weight average".into(), points: ema, color: PALETTE[1], dashed: false });
    }
    series
}

/// The runs the report compares, trained (or continued) by [`train_all`].
struct Runs {
    cnn_config: fer_train::RunConfig,
    dnn_config: fer_train::RunConfig,
    cnn: RunResult,
    dnn: RunResult,
    /// The CNN trained on Training + PublicTest, where the data has a separate test split.
    trainval: Option<RunResult>,
    ensemble: Option<RunResult>,
}

/// What the figures showed, for the text: the most confused pairs and their example faces.
struct Figures {
    pairs: Vec<ConfusedPair>,
    examples: Vec<(String, Example)>,
}

/// Trains and evaluates everything, explains the CNN, draws the figures and writes REPORT.md and
/// index.html under `out` (or, with `check`, fails if REPORT.md would change).
pub fn reproduce(
    data: Option<String>,
    profile: Profile,
    out: PathBuf,
    check: bool,
    device: burn::tensor::Device,
) -> anyhow::Result<PathBuf> {
    let spec = data.unwrap_or_else(|| "synthetic".to_string());
    if spec.starts_with("synthetic") {
        println!("no --data given: running on the embedded synthetic faces ({spec})");
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    stage("load data");
    let ctx = Ctx::open(spec.clone(), profile, out.clone(), device)?;
    println!(
        "    {} faces ({}), splits {:?}; testing on {}",
        ctx.data.len(),
        ctx.format,
        ctx.data.split_names(),
        ctx.test_split
    );
    let runs = train_all(&ctx)?;

    let figures = out.join("figures");
    std::fs::create_dir_all(&figures)?;
    stage("explain the CNN");
    let explained = crate::pipeline::explain(&ctx, &runs.cnn, &figures)?;
    stage("render figures");
    let drawn = render_figures(&ctx, &runs, &explained, &figures)?;

    stage("write REPORT.md and index.html");
    let writer = Writer {
        ctx: &ctx,
        spec: &spec,
        profile,
        runs: &runs,
        figures: &drawn,
        explained: &explained,
        cnn_summary: ctx.summary(&runs.cnn_config.model)?,
        dnn_summary: ctx.summary(&runs.dnn_config.model)?,
    };
    let doc = writer.document();
    let markdown = doc.to_markdown();
    let report_path = out.join("REPORT.md");
    if check {
        let existing = std::fs::read_to_string(&report_path)
            .with_context(|| format!("--check: no {} to compare with", report_path.display()))?;
        anyhow::ensure!(existing == markdown, "--check: {} would change", report_path.display());
        println!("    --check: REPORT.md is up to date");
    } else {
        std::fs::write(&report_path, &markdown)?;
        std::fs::write(out.join("index.html"), doc.to_html())?;
    }
    Ok(report_path)
}

/// The CNN, the DNN, the CNN on train+val (where the data allows) and the ensemble.
fn train_all(ctx: &Ctx) -> anyhow::Result<Runs> {
    let (cnn_config, dnn_config, members) = ctx.configs();
    stage("train and evaluate the CNN");
    let cnn = ctx.train_and_eval("cnn", &cnn_config, 1, ctx.cnn_time_budget())?;
    stage("train and evaluate the DNN");
    let dnn = ctx.train_and_eval("dnn", &dnn_config, 1, None)?;
    let trainval = if ctx.has_separate_test() {
        stage("train and evaluate the CNN on Training + PublicTest");
        let mut c = cnn_config.clone();
        c.train_splits = vec!["Training".into(), "PublicTest".into()];
        Some(ctx.train_and_eval("cnn-trainval", &c, 1, None)?)
    } else {
        println!("==> skip the train+val variant: the data has no separate test split (PrivateTest)");
        None
    };
    let ensemble = if members > 1 {
        stage(&format!("train and evaluate a {members}-member CNN ensemble"));
        Some(ctx.train_and_eval("ensemble", &cnn_config, members, None)?)
    } else {
        None
    };

    Ok(Runs { cnn_config, dnn_config, cnn, dnn, trainval, ensemble })
}

/// The charts under `figures/`, and the data behind them in `stages/figure-data.json`.
fn render_figures(ctx: &Ctx, runs: &Runs, explained: &Explained, figures: &Path) -> anyhow::Result<Figures> {
    let (cnn, dnn, out) = (&runs.cnn, &runs.dnn, &ctx.out);
    let test = ctx.test_faces();
    fer_report::line_chart("Accuracy per epoch", "Epoch", "Accuracy", &curves(&[cnn, dnn], "accuracy"))
        .save(figures.join("curves-accuracy.png"))?;
    fer_report::line_chart("Loss per epoch", "Epoch", "Cross-entropy loss", &curves(&[cnn, dnn], "loss"))
        .save(figures.join("curves-loss.png"))?;
    fer_report::line_chart(
        "CNN validation accuracy against time",
        "Minutes since training started",
        "Accuracy",
        &time_to_accuracy_series(cnn),
    )
    .save(figures.join("time-to-accuracy.png"))?;
    fer_report::confusion_chart("CNN confusion matrix (counts)", &cnn.evaluation.confusion_matrix, &NAMES, false)
        .save(figures.join("confusion-counts.png"))?;
    fer_report::confusion_chart(
        "CNN confusion matrix (% of each true class)",
        &cnn.evaluation.confusion_matrix,
        &NAMES,
        true,
    )
    .save(figures.join("confusion-normalized.png"))?;
    let pairs = most_confused(&cnn.evaluation, 2);
    let mut examples = Vec::new();
    for pair in &pairs {
        let (t, p) = (
            Emotion::parse(&pair.true_class).map_or(0, |e| e.id()),
            Emotion::parse(&pair.predicted).map_or(0, |e| e.id()),
        );
        if let Some(ex) = most_confident_error(&test, &cnn.probabilities, t, p) {
            let file = format!("error-{}-as-{}.png", NAMES[t].to_lowercase(), NAMES[p].to_lowercase());
            let title = format!("{} predicted as {}", NAMES[t], NAMES[p]);
            fer_report::probability_chart(&title, &face(&test, ex.index), SIDE as u32, &ex.probabilities, &NAMES, t, p)
                .save(figures.join(&file))?;
            examples.push((file, ex));
        }
    }
    write_json(
        &out.join("stages").join("figure-data.json"),
        &serde_json::json!({
            "curves": {"cnn": cnn.history, "dnn": dnn.history},
            "confusion_matrix": cnn.evaluation.confusion_matrix,
            "most_confused": pairs,
            "examples": examples,
            "explained": explained,
        }),
    )?;
    Ok(Figures { pairs, examples })
}

/// Writes the report's text from the runs, the figures and the explanations.
struct Writer<'a> {
    ctx: &'a Ctx,
    spec: &'a str,
    profile: Profile,
    runs: &'a Runs,
    figures: &'a Figures,
    explained: &'a Explained,
    cnn_summary: Summary,
    dnn_summary: Summary,
}

impl Writer<'_> {
    /// How far a run went, for the results table: the report's protocol or a shorter profile's.
    fn scale(&self, run: &RunResult) -> &'static str {
        match self.profile {
            _ if run.at_report_scale => "the report's scale",
            Profile::Smoke => "smoke",
            Profile::Cpu => "CPU budget",
            Profile::Full => "shortened",
        }
    }

    fn document(&self) -> Document {
        let mut doc = Document::new("Facial-expression recognition on FER2013, reproduced by fer");
        self.results(&mut doc);
        self.time_to_accuracy(&mut doc);
        self.models(&mut doc);
        self.confusion(&mut doc);
        self.explanations(&mut doc);
        doc
    }

    /// The data, and the table of every run's test accuracy with the evaluation variants.
    fn results(&self, doc: &mut Document) {
        let (ctx, spec, profile, runs) = (self.ctx, self.spec, self.profile, self.runs);
        let (cnn, dnn, cnn_config) = (&runs.cnn, &runs.dnn, &runs.cnn_config);
        let (trainval, ensemble) = (&runs.trainval, &runs.ensemble);
        let (cnn_summary, dnn_summary) = (&self.cnn_summary, &self.dnn_summary);
        doc.push(Block::Paragraph(format!(
            "Data: `{spec}` ({}, {} faces; splits {}). Models are trained on {} and tested on {}. \
             Profile: **{profile:?}**. \
             Every number and figure below was computed by this run of `cargo xtask reproduce-report`; \
             every chart in `figures/` also has an SVG twin (same name, `.svg`) for papers and slides.",
            ctx.format,
            thousands(ctx.data.len() as u64),
            ctx.data.split_names().join(", "),
            cnn.train_splits.join(" + "),
            ctx.test_split
        )));
        if cnn_config.val_split == ctx.test_split {
            doc.push(Block::Paragraph(format!(
                "The data has no separate test split, so {0} also serves as the validation split the best epoch \
                 is chosen on: the accuracies below are slightly optimistic for unseen faces.",
                ctx.test_split
            )));
        }
        // One row per run: name, parameters, scale, epochs, training seconds, test accuracy, and
        // the report's number for the same row.
        let row = |name: String, params: String, run: &RunResult, report: &str| {
            let seconds = thousands(run.train_seconds.round() as u64);
            let scale = format!("{}: {} faces", self.scale(run), thousands(run.faces_seen));
            let epochs = run.history.len().to_string();
            vec![name, params, scale, epochs, seconds, pct(run.evaluation.accuracy), report.into()]
        };
        let cnn_params = thousands(cnn_summary.total_params as u64);
        let mut rows = vec![
            row("CNN".into(), cnn_params.clone(), cnn, "0.6719"),
            row("DNN".into(), thousands(dnn_summary.total_params as u64), dnn, "about 0.44"),
        ];
        if let Some(tv) = &trainval {
            rows.push(row("CNN, trained on train+val".into(), cnn_params.clone(), tv, "0.6755"));
        }
        if let Some(en) = &ensemble {
            let name = format!("CNN ensemble of {}", en.members);
            rows.push(row(name, format!("{} x {cnn_params}", en.members), en, "0.6833 (5 models)"));
        }
        doc.push(Block::Table {
            header: [
                "model",
                "parameters",
                "trained at",
                "epochs",
                "train seconds",
                &format!("{} accuracy", ctx.test_split),
                "the report",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        });
        doc.push(Block::Paragraph(
            "*The report* is the course report's test accuracy for the same row (its CNN on the course's test \
             faces; the ensemble's on the course's Kaggle leaderboard). *Trained at* says how far each run went: \
             **the report's scale** is the report's own recipe run to its end (the CNN: 30 epochs x 500 steps x \
             128 = 1,920,000 faces), so its row compares like with like; **CPU budget** is fer's fast recipe \
             sized to an hour of this machine (`--profile cpu`), fewer faces than the report's; **smoke** is the \
             test profile's tiny models on synthetic faces, comparable with nothing. The `cpu` profile trains no \
             ensemble: on 2 cores one run beats an ensemble of shorter runs of the same faces (74,240) and of \
             the same minutes (two hour-long runs against one of two hours; docs/RECIPES.md)."
                .into(),
        ));
        if let Some(why) = &cnn.stopped_early {
            doc.push(Block::Paragraph(format!(
                "The CNN {why}; its best epoch is what is reported. Rerun the same command to continue it."
            )));
        }
        let mut variant_rows = Vec::new();
        for run in [Some(cnn), trainval.as_ref(), ensemble.as_ref()].into_iter().flatten() {
            variant_rows.push(vec![
                run.name.clone(),
                "plain (the report's protocol)".into(),
                pct(run.evaluation.accuracy),
            ]);
            for v in &run.variants {
                variant_rows.push(vec![run.name.clone(), v.name.clone(), pct(v.accuracy)]);
            }
        }
        doc.push(Block::Paragraph(
            "Beyond the report's protocol, the same models evaluated with the weight average kept during training \
             (recipes that keep one) and with test-time augmentation (each face and its mirror image, probabilities \
             averaged). The table above uses the plain protocol."
                .into(),
        ));
        doc.push(Block::Table {
            header: ["run", "evaluation", &format!("{} accuracy", ctx.test_split)].map(String::from).to_vec(),
            rows: variant_rows,
        });
    }

    fn time_to_accuracy(&self, doc: &mut Document) {
        let (cnn, cnn_config) = (&self.runs.cnn, &self.runs.cnn_config);
        doc.push(Block::Heading(2, "Time to accuracy".into()));
        doc.push(Block::Paragraph(format!(
            "Wall-clock minutes from the start of the CNN's training until its validation ({}) accuracy first \
             reached each threshold, validation included. Recipe: {}.",
            cnn_config.val_split,
            if cnn_config.recipe == fer_train::Recipe::report_cnn() {
                "the report's"
            } else {
                "fer's fast recipe \
                (docs/RECIPES.md)"
            }
        )));
        doc.push(time_to_accuracy_table(cnn));
        doc.push(Block::Figure {
            path: "figures/time-to-accuracy.png".into(),
            caption: "CNN validation accuracy after each epoch against wall-clock minutes since training started"
                .into(),
        });
    }

    /// Q1 and Q2: the CNN and the DNN, their summaries and histories.
    fn models(&self, doc: &mut Document) {
        let (cnn, dnn) = (&self.runs.cnn, &self.runs.dnn);
        let (cnn_summary, dnn_summary) = (&self.cnn_summary, &self.dnn_summary);
        doc.push(Block::Heading(2, "Q1. The CNN".into()));
        doc.push(Block::Paragraph(format!(
            "{} parameters: {} trainable, {} non-trainable (BatchNorm running statistics). Recipe: `{}`.",
            thousands(cnn_summary.total_params as u64),
            thousands(cnn_summary.trainable_params as u64),
            thousands(cnn_summary.non_trainable_params as u64),
            cnn.recipe
        )));
        doc.push(Block::Code(cnn_summary.to_string()));
        doc.push(history_table(cnn));
        doc.push(Block::Figure {
            path: "figures/curves-accuracy.png".into(),
            caption: "Train (dashed) and validation (solid) accuracy per epoch, CNN against DNN".into(),
        });
        doc.push(Block::Figure {
            path: "figures/curves-loss.png".into(),
            caption: "Train (dashed) and validation (solid) loss per epoch".into(),
        });

        doc.push(Block::Heading(2, "Q2. A DNN of about the same size".into()));
        doc.push(Block::Paragraph(format!(
            "{} parameters, all trainable. Test accuracy {} against the CNN's {}. Recipe: `{}`.",
            thousands(dnn_summary.total_params as u64),
            pct(dnn.evaluation.accuracy),
            pct(cnn.evaluation.accuracy),
            dnn.recipe
        )));
        doc.push(Block::Code(dnn_summary.to_string()));
        doc.push(history_table(dnn));
    }

    /// Q3: the confusion matrix, per-class figures and the most confused pairs' example faces.
    fn confusion(&self, doc: &mut Document) {
        let (ctx, cnn) = (self.ctx, &self.runs.cnn);
        let (pairs, examples) = (&self.figures.pairs, &self.figures.examples);
        doc.push(Block::Heading(2, "Q3. Confusion matrix".into()));
        doc.push(Block::Figure {
            path: "figures/confusion-counts.png".into(),
            caption: format!("CNN on {}: counts (rows true, columns predicted)", ctx.test_split),
        });
        doc.push(Block::Figure {
            path: "figures/confusion-normalized.png".into(),
            caption: "The same, each row as percentages of the true class".into(),
        });
        doc.push(per_class_table(cnn));
        let pair_text: Vec<String> = pairs
            .iter()
            .map(|p| {
                format!(
                    "{} predicted as {} ({} faces, {:.1}% of {})",
                    p.true_class,
                    p.predicted,
                    thousands(p.count),
                    100.0 * p.rate,
                    p.true_class
                )
            })
            .collect();
        doc.push(Block::Paragraph(format!("The most confused pairs: {}.", pair_text.join("; "))));
        for (file, ex) in examples.iter() {
            doc.push(Block::Figure {
                path: format!("figures/{file}"),
                caption: format!(
                    "The most confident {} face predicted as {} (test face {}); probabilities (Angry, Disgust, Fear, \
                    Happy, Sad, Surprise, Neutral) = {}",
                    NAMES[ex.true_class],
                    NAMES[ex.predicted],
                    ex.index,
                    probs_text(&ex.probabilities)
                ),
            });
        }
    }

    /// Q4 and Q5: saliency maps, Grad-CAM and integrated gradients, activations and gradient ascent.
    fn explanations(&self, doc: &mut Document) {
        let explained = self.explained;
        doc.push(Block::Heading(2, "Q4. Saliency maps".into()));
        for (class, ex) in &explained.saliency {
            let name = class.to_lowercase();
            doc.push(Block::Figure {
                path: format!("figures/saliency-{name}.png"),
                caption: format!(
                    "Saliency of a correctly predicted {class} face (test face {}, p = {:.3})",
                    ex.index, ex.probabilities[ex.true_class]
                ),
            });
        }
        doc.push(Block::Paragraph(format!(
            "Beyond the report: Grad-CAM at block4.act and integrated gradients (64 steps from a black image; \
                completeness error {}).",
            explained.ig_relative_error.iter().map(|e| format!("{:.2}%", 100.0 * e)).collect::<Vec<_>>().join(", ")
        )));
        for (class, _) in &explained.saliency {
            let name = class.to_lowercase();
            doc.push(Block::Figure {
                path: format!("figures/gradcam-{name}.png"),
                caption: format!("Grad-CAM, {class}"),
            });
            doc.push(Block::Figure {
                path: format!("figures/ig-{name}.png"),
                caption: format!("Integrated gradients, {class}"),
            });
        }

        doc.push(Block::Heading(2, "Q5. What the filters respond to".into()));
        for (layer, channels, side) in &explained.activation_layers {
            doc.push(Block::Figure {
                path: format!("figures/activations-{}.png", layer.replace('.', "-")),
                caption: format!(
                    "Activation maps of all {channels} filters at {layer} ({side}x{side}) for one test face"
                ),
            });
        }
        for (layer, filters, start, end, seconds) in &explained.ascent {
            doc.push(Block::Figure {
                path: format!("figures/ascent-{}.png", layer.replace('.', "-")),
                caption: format!(
                    "Gradient ascent, {filters} filters of {layer}, 20 steps: mean activation {start:.3} -> {end:.3} \
                        ({seconds:.1} s on the CPU)"
                ),
            });
        }
    }
}
