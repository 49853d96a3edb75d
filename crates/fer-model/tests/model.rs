use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use fer_interpret::{NamedActivations, capture};
use fer_model::{CnnConfig, DnnConfig, FerModel, ModelConfig, ModelError, Summary, load_model, save_model};

fn cnn(device: &Device) -> FerModel {
    FerModel::new(&ModelConfig::Cnn(CnnConfig::new()), device).unwrap()
}

fn dnn(device: &Device) -> FerModel {
    FerModel::new(&ModelConfig::Dnn(DnnConfig::new()), device).unwrap()
}

#[test]
fn parameter_counts_match_the_report() {
    let device = Device::flex();
    let s = Summary::of(&cnn(&device));
    assert_eq!((s.total_params, s.trainable_params, s.non_trainable_params), (4_087_879, 4_084_295, 3_584));
    assert_eq!(s.layers.iter().map(|l| l.params).sum::<usize>(), 4_087_879);
    let d = Summary::of(&dnn(&device));
    assert_eq!((d.total_params, d.trainable_params, d.non_trainable_params), (4_099_847, 4_099_847, 0));
}

#[test]
fn output_shapes_follow_the_report_table() {
    let device = Device::flex();
    let s = Summary::of(&cnn(&device));
    let shape = |name: &str| s.layers.iter().find(|l| l.name == name).unwrap().output_shape.clone();
    assert_eq!(shape("block1.act"), [48, 48, 64]);
    assert_eq!(shape("block2.pool"), [24, 24, 64]);
    assert_eq!(shape("block3.conv"), [24, 24, 128]);
    assert_eq!(shape("block4.pool"), [6, 6, 256]);
    assert_eq!(shape("block5.dropout"), [3, 3, 512]);
    assert_eq!(shape("flatten"), [4608]);
    assert_eq!(shape("fc1.act"), [512]);
    assert_eq!(shape("fc2.act"), [256]);
    assert_eq!(shape("logits"), [7]);
    assert!(s.layers.iter().all(|l| l.name != "block1.pool"), "block 1 has no pooling");
}

#[test]
fn logits_have_the_right_shape_at_batch_1_and_128() {
    let device = Device::flex();
    for model in [cnn(&device), dnn(&device)] {
        for batch in [1, 128] {
            let x = Tensor::<4>::random([batch, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
            assert_eq!(model.forward(x).dims(), [batch, 7]);
        }
    }
}

#[test]
fn eval_is_deterministic_and_training_is_not() {
    let device = Device::flex().autodiff();
    let model = cnn(&device);
    let x = Tensor::<4>::random([4, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
    let a = model.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    let b = model.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    assert_ne!(a, b, "dropout should make two training passes differ");

    let eval = model.valid();
    let plain = Device::flex();
    let x = x.without_autodiff().to_device(&plain);
    let c = eval.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    let d = eval.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(c, d);
    // Eval uses the BN running statistics (which the two training passes moved off 0/1).
    let (_, conv) = capture(&eval, x.clone(), "block1.conv").unwrap();
    let (_, bn) = capture(&eval, x, "block1.bn").unwrap();
    let fer_model::Net::Cnn(net) = &eval.net else { unreachable!() };
    let layer = &net.blocks[0].bn;
    let per_channel = |t: Tensor<1>| t.reshape([1, 64, 1, 1]);
    let mean = per_channel(layer.running_mean.value());
    let var = per_channel(layer.running_var.value());
    assert!(mean.clone().abs().sum().into_scalar::<f32>() > 0.0, "training passes update the running mean");
    let expected = (conv - mean) / (var + 1e-5).sqrt() * per_channel(layer.gamma.val()) + per_channel(layer.beta.val());
    let diff = (expected - bn).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-4, "{diff}");
}

#[test]
fn save_and_load_round_trip_is_bit_identical() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for model in [cnn(&device), dnn(&device)] {
        let path = dir.path().join(format!("{}.fer", model.config().kind()));
        save_model(&model, &path).unwrap();
        let loaded = load_model(&path, &device).unwrap();
        let x = Tensor::<4>::random([2, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
        let a = model.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        let b = loaded.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

/// A model file in format version 1 (no checksum), as fer wrote before version 2.
fn version_1_file(config: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut out = b"FERMODEL".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(config.len() as u32).to_le_bytes());
    out.extend_from_slice(&(weights.len() as u64).to_le_bytes());
    out.extend_from_slice(config);
    out.extend_from_slice(weights);
    out
}

#[test]
fn a_flipped_byte_anywhere_is_a_corrupt_file_and_version_1_files_still_load() {
    let device = Device::flex();
    let model = dnn(&device);
    let bytes = fer_model::model_bytes(&model).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
    for at in [30, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        let err = fer_model::model_from_bytes(&bad, "flipped.fer".as_ref(), &device).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }), "byte {at}: {err}");
        assert!(err.to_string().starts_with("flipped.fer: corrupt file"), "{err}");
    }
    let config_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let old = version_1_file(&bytes[28..28 + config_len], &bytes[28 + config_len..]);
    let loaded = fer_model::model_from_bytes(&old, "old.fer".as_ref(), &device).unwrap();
    assert_eq!(fer_model::model_bytes(&loaded).unwrap(), bytes, "a version-1 file loads to the same model");
}

/// A disk whose every step can be made to fail, the way full, read-only and failing disks do.
struct FaultyDisk {
    /// Bytes written before the write fails (None: the write succeeds).
    fail_write_after: Option<usize>,
    fail_rename: bool,
}

impl fer_model::Disk for FaultyDisk {
    fn write_synced(&mut self, path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
        match self.fail_write_after {
            Some(n) => {
                std::fs::write(path, &bytes[..n.min(bytes.len())])?;
                Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device (os error 28)"))
            }
            None => std::fs::write(path, bytes),
        }
    }
    fn rename(&mut self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        if self.fail_rename {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ReadOnlyFilesystem,
                "Read-only file system (os error 30)",
            ));
        }
        std::fs::rename(from, to)
    }
    fn remove(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }
}

#[test]
fn a_write_that_fails_part_way_leaves_the_previous_file_loadable_and_says_what_happened() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best.fer");
    let first = dnn(&device);
    save_model(&first, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let newer = fer_model::model_bytes(&dnn(&device)).unwrap();
    for (disk, expected) in [
        (FaultyDisk { fail_write_after: Some(1000), fail_rename: false }, "No space left on device"),
        (FaultyDisk { fail_write_after: Some(0), fail_rename: false }, "No space left on device"),
        (FaultyDisk { fail_write_after: None, fail_rename: true }, "Read-only file system"),
    ] {
        let mut disk = disk;
        let err = fer_model::write_atomic_on(&mut disk, &path, &newer).unwrap_err();
        assert!(err.to_string().contains(expected) && err.to_string().contains(".best.fer.tmp-"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "the previous file is untouched");
        assert!(load_model(&path, &device).is_ok());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("best.fer")], "no temp file left behind");
    }
}

#[test]
fn bad_model_files_give_clear_errors() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.fer");
    assert!(matches!(load_model(&missing, &device), Err(ModelError::NotFound { .. })));

    let path = dir.path().join("cnn.fer");
    save_model(&dnn(&device), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.path().join("truncated.fer");
    std::fs::write(&truncated, &bytes[..bytes.len() - 1000]).unwrap();
    let err = load_model(&truncated, &device).unwrap_err();
    assert!(matches!(err, ModelError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("truncated.fer"));

    let junk = dir.path().join("junk.fer");
    std::fs::write(&junk, b"hello world, not a model at all").unwrap();
    assert!(matches!(load_model(&junk, &device), Err(ModelError::NotAModel { .. })));

    // A DNN's weights under a CNN's config: another architecture (as a version-1 file, which
    // has no checksum to stop it first).
    let cnn_bytes = fer_model::model_bytes(&cnn(&device)).unwrap();
    let config_len = u32::from_le_bytes(cnn_bytes[12..16].try_into().unwrap()) as usize;
    let dnn_config_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let dnn_weights = &bytes[28 + dnn_config_len..];
    let mixed = version_1_file(&cnn_bytes[28..28 + config_len], dnn_weights);
    let err = fer_model::model_from_bytes(&mixed, "mixed.fer".as_ref(), &device).unwrap_err();
    assert!(matches!(err, ModelError::Mismatch { .. }), "{err}");
}

#[test]
fn every_tap_resolves_with_the_summary_shape() {
    let device = Device::flex();
    for model in [cnn(&device), dnn(&device)] {
        let summary = Summary::of(&model);
        assert_eq!(model.layer_names(), summary.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>());
        let x = Tensor::<4>::random([2, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
        for layer in &summary.layers {
            let (_, act) = capture(&model, x.clone(), &layer.name).unwrap();
            let [b, c, h, w] = act.dims();
            let keras = if h == 1 && w == 1 && !layer.name.starts_with("block") { vec![c] } else { vec![h, w, c] };
            assert_eq!((b, keras), (2, layer.output_shape.clone()), "{}", layer.name);
        }
    }
}

#[test]
fn logits_tap_equals_the_forward_output() {
    let device = Device::flex();
    let model = cnn(&device);
    let x = Tensor::<4>::random([3, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
    let (logits, tapped) = capture(&model, x.clone(), "logits").unwrap();
    assert_eq!(tapped.reshape([3, 7]).into_data(), logits.into_data());
    let err = capture(&model, x, "block9.conv").unwrap_err().to_string();
    assert!(err.contains("block9.conv") && err.contains("block5.act"), "{err}");
}

#[test]
fn summary_tables_snapshot() {
    let device = Device::flex();
    insta::assert_snapshot!("cnn_summary", Summary::of(&cnn(&device)).to_string());
    insta::assert_snapshot!("dnn_summary", Summary::of(&dnn(&device)).to_string());
}

#[test]
fn configs_are_parameters() {
    let device = Device::flex();
    let small = CnnConfig::new().with_conv_channels(vec![8, 8, 16, 16, 16]).with_dense_units(vec![32, 16]);
    let model = FerModel::new(&ModelConfig::Cnn(small), &device).unwrap();
    assert!(model.num_params() < 100_000);
    let bn_dnn = FerModel::new(&ModelConfig::Dnn(DnnConfig::new().with_batch_norm(true)), &device).unwrap();
    assert!(bn_dnn.layer_names().contains(&"fc1.bn".to_string()));
    let bad = CnnConfig::new().with_pool(vec![true]);
    assert!(FerModel::new(&ModelConfig::Cnn(bad), &device).is_err());
    assert!(ModelConfig::by_name("resnet").unwrap_err().to_string().contains("cnn, dnn"));
}

#[test]
fn forward_to_stops_at_the_layer_with_the_captured_output() {
    let device = Device::flex();
    let model = cnn(&device);
    let x = Tensor::<4>::random([2, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
    for layer in ["block1.act", "block5.act", "fc1.dense", "logits"] {
        let (_, captured) = capture(&model, x.clone(), layer).unwrap();
        let early = model.forward_to(x.clone(), layer).unwrap();
        assert_eq!(early.into_data(), captured.into_data(), "{layer}");
    }
    assert!(model.forward_to(x, "block6.act").is_none());
}

fn variant(name: &str, device: &Device) -> FerModel {
    FerModel::new(&ModelConfig::by_name(name).unwrap(), device).unwrap()
}

#[test]
fn the_cnn_variants_have_their_own_summaries() {
    let device = Device::flex();
    for (name, total, non_trainable) in [("cnn-crop44", 2_777_159, 3_584), ("cnn-double", 7_040_839, 5_120)] {
        let model = variant(name, &device);
        let s = Summary::of(&model);
        assert_eq!((s.total_params, s.non_trainable_params), (total, non_trainable), "{name}");
        assert_eq!(s.layers.iter().map(|l| l.params).sum::<usize>(), total, "{name}: every parameter in a row");
        assert_eq!(model.config().parameter_estimate(), total as u64, "{name}");
        // Training scales the dropout rates; the architecture keeps its name.
        assert_eq!(model.config().with_dropout_scaled(0.25).name(), name);
        insta::assert_snapshot!(format!("{name}_summary"), s.to_string());
    }
    assert!(ModelConfig::by_name("resnet").unwrap_err().to_string().contains("cnn, dnn, cnn-crop44, cnn-double"));
}

#[test]
fn a_crop_model_looks_at_the_centre_of_a_48x48_face() {
    let device = Device::flex();
    let model = variant("cnn-crop44", &device);
    assert_eq!(model.input_shape(), [1, 44, 44]);
    let face = Tensor::<4>::random([3, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
    let centre = face.clone().slice([0..3, 0..1, 2..46, 2..46]);
    let logits = |x: Tensor<4>| model.forward(x).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(logits(face.clone()), logits(centre));
    // The border is outside what it sees; the centre is not.
    let border = face.clone().slice_assign([0..3, 0..1, 0..2, 0..48], Tensor::zeros([3, 1, 2, 48], &device));
    assert_eq!(logits(border), logits(face.clone()));
    let middle = face.clone().slice_assign([0..3, 0..1, 20..22, 0..48], Tensor::zeros([3, 1, 2, 48], &device));
    assert_ne!(logits(middle), logits(face));
}

#[test]
fn the_report_cnn_config_is_written_as_it_always_was() {
    // The shipped model's header holds this JSON (with its own dropout rates): rewriting it
    // must give the same bytes, so a field added for a variant is left out when unset.
    let json = serde_json::to_string(&ModelConfig::Cnn(CnnConfig::new())).unwrap();
    assert_eq!(
        json,
        r#"{"kind":"cnn","input_side":48,"input_channels":1,"num_classes":7,"conv_channels":[64,64,128,256,512],"kernel_sizes":[5,3,3,3,3],"pool":[false,true,true,true,true],"conv_dropout":[0.2,0.2,0.3,0.4,0.4],"dense_units":[512,256],"dense_dropout":[0.5,0.5],"leaky_slope":0.1}"#
    );
    let double = ModelConfig::by_name("cnn-double").unwrap();
    let json = serde_json::to_string(&double).unwrap();
    assert!(json.ends_with(r#""second_conv":[false,false,false,true,true]}"#), "{json}");
    let back: ModelConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    let short = CnnConfig::new().with_second_conv(vec![true]);
    let err = FerModel::new(&ModelConfig::Cnn(short), &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("second_conv needs one entry per block (5) or none (found 1)"), "{err}");
}

#[test]
fn a_variant_saves_and_loads_bit_identically() {
    let device = Device::flex();
    let small = CnnConfig::new()
        .with_conv_channels(vec![4, 8, 8, 8, 8])
        .with_dense_units(vec![16, 8])
        .with_input_side(44)
        .with_second_conv(vec![false, true, false, false, true]);
    let model = FerModel::new(&ModelConfig::Cnn(small), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variant.fer");
    save_model(&model, &path).unwrap();
    let loaded = load_model(&path, &device).unwrap();
    assert_eq!(fer_model::flatten(&loaded), fer_model::flatten(&model));
    let x = Tensor::<4>::random([2, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
    assert_eq!(
        loaded.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap(),
        model.forward(x).into_data().try_to_vec::<f32>().unwrap()
    );
}
