use std::collections::BTreeMap;
use std::fmt;

use burn::module::Module;
use burn::nn::BatchNorm;

use crate::cnn::DenseBlock;
use crate::model::{FerModel, Net};

/// One row of the summary.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LayerSummary {
    /// The tap name (`block1.conv`).
    pub name: String,
    /// Keras' layer type name (`Conv2D`), so the table reads like the report's.
    pub kind: String,
    /// Output shape without the batch axis, channels last as Keras prints it.
    pub output_shape: Vec<usize>,
    pub params: usize,
    #[serde(skip)]
    pub non_trainable: usize,
}

/// A Keras `model.summary()` for a fer model, computed from the model itself.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Summary {
    pub model: String,
    pub total_params: usize,
    pub trainable_params: usize,
    pub non_trainable_params: usize,
    pub layers: Vec<LayerSummary>,
}

fn kind_of(name: &str) -> &'static str {
    // A block's second convolution is `conv2`, `bn2`, `act2`.
    match name.rsplit('.').next().unwrap_or(name).trim_end_matches('2') {
        "conv" => "Conv2D",
        "bn" => "BatchNormalization",
        "act" => "LeakyReLU",
        "pool" => "MaxPooling2D",
        "dropout" => "Dropout",
        "flatten" => "Flatten",
        _ => "Dense",
    }
}

/// Parameters of a BatchNorm: (total, non-trainable running statistics).
fn bn_params(bn: &BatchNorm) -> (usize, usize) {
    let running = bn.running_mean.value().dims()[0] + bn.running_var.value().dims()[0];
    (bn.num_params(), running)
}

fn dense_params(prefix: &str, block: &DenseBlock, out: &mut BTreeMap<String, (usize, usize)>) {
    out.insert(format!("{prefix}.dense"), (block.dense.num_params(), 0));
    if let Some(bn) = &block.bn {
        out.insert(format!("{prefix}.bn"), bn_params(bn));
    }
}

impl Summary {
    pub fn of(model: &FerModel) -> Summary {
        let mut params: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        match &model.net {
            Net::Cnn(cnn) => {
                for (i, b) in cnn.blocks.iter().enumerate() {
                    params.insert(format!("block{}.conv", i + 1), (b.conv.num_params(), 0));
                    params.insert(format!("block{}.bn", i + 1), bn_params(&b.bn));
                    if let Some(second) = &b.second {
                        params.insert(format!("block{}.conv2", i + 1), (second.conv.num_params(), 0));
                        params.insert(format!("block{}.bn2", i + 1), bn_params(&second.bn));
                    }
                }
                for (i, b) in cnn.dense.iter().enumerate() {
                    dense_params(&format!("fc{}", i + 1), b, &mut params);
                }
                params.insert("logits".into(), (cnn.logits.num_params(), 0));
            }
            Net::Dnn(dnn) => {
                for (i, b) in dnn.blocks.iter().enumerate() {
                    dense_params(&format!("fc{}", i + 1), b, &mut params);
                }
                params.insert("logits".into(), (dnn.logits.num_params(), 0));
            }
        }
        let layers: Vec<LayerSummary> = model
            .layer_shapes()
            .into_iter()
            .map(|(name, shape)| {
                let (p, nt) = params.get(&name).copied().unwrap_or((0, 0));
                // Taps are channels-first; Keras prints channels last.
                let output_shape = match shape.as_slice() {
                    [c, h, w] => vec![*h, *w, *c],
                    other => other.to_vec(),
                };
                LayerSummary { kind: kind_of(&name).to_string(), name, output_shape, params: p, non_trainable: nt }
            })
            .collect();
        let total_params = model.num_params();
        let non_trainable_params = layers.iter().map(|l| l.non_trainable).sum();
        Summary {
            model: model.config().name().to_string(),
            total_params,
            trainable_params: total_params - non_trainable_params,
            non_trainable_params,
            layers,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// `4087879` → `4,087,879`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = "-".repeat(72);
        writeln!(f, "Model: \"{}\"", self.model)?;
        writeln!(f, "{}", "=".repeat(72))?;
        writeln!(f, "{:<16} {:<20} {:<22} {:>10}", "Layer", "Type", "Output Shape", "Param #")?;
        writeln!(f, "{rule}")?;
        for l in &self.layers {
            let shape =
                format!("(None, {})", l.output_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
            writeln!(f, "{:<16} {:<20} {:<22} {:>10}", l.name, l.kind, shape, thousands(l.params))?;
        }
        writeln!(f, "{}", "=".repeat(72))?;
        writeln!(f, "Total params: {}", thousands(self.total_params))?;
        writeln!(f, "Trainable params: {}", thousands(self.trainable_params))?;
        writeln!(f, "Non-trainable params: {}", thousands(self.non_trainable_params))?;
        write!(f, "{rule}")
    }
}
