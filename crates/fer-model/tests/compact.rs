//! The compact (16-bit) model file that ships with fer.

use burn::tensor::{Device, Distribution, Tensor};
use fer_model::{
    CnnConfig, FerModel, HalfFormat, ModelConfig, ModelError, compact_bytes, flatten, model_from_bytes, save_compact,
    with_values,
};

fn tiny_cnn(device: &Device) -> FerModel {
    let config = CnnConfig::new().with_conv_channels(vec![4, 8, 8, 8, 8]).with_dense_units(vec![16, 8]);
    FerModel::new(&ModelConfig::Cnn(config), device).unwrap()
}

#[test]
fn round_trip_rounds_each_value_once_and_writes_the_same_bytes_again() {
    let device = Device::flex();
    let model = tiny_cnn(&device);
    let values = flatten(&model);
    for format in [HalfFormat::F16, HalfFormat::Bf16] {
        let bytes = compact_bytes(&model, format).unwrap();
        assert_eq!(bytes, compact_bytes(&model, format).unwrap(), "{format:?}: the same weights give the same bytes");
        let loaded = model_from_bytes(&bytes, "tiny.ferc".as_ref(), &device).unwrap();
        let back = flatten(&loaded);
        assert_eq!(back.len(), values.len());
        for (i, (&a, &b)) in values.iter().zip(&back).enumerate() {
            let expected = match format {
                HalfFormat::F16 => half::f16::from_f32(a).to_f32(),
                HalfFormat::Bf16 => half::bf16::from_f32(a).to_f32(),
            };
            assert_eq!(b.to_bits(), expected.to_bits(), "{format:?}: value {i}");
        }
        // Burn's parameter ids are not in the file: a loaded model writes the identical file.
        assert_eq!(compact_bytes(&loaded, format).unwrap(), bytes, "{format:?}");
        // And predicts what the rounded weights predict.
        let x = Tensor::<4>::random([2, 1, 48, 48], Distribution::Uniform(0.0, 1.0), &device);
        let rounded = with_values(tiny_cnn(&device), &back).unwrap();
        assert_eq!(
            loaded.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap(),
            rounded.forward(x).into_data().try_to_vec::<f32>().unwrap()
        );
    }
}

#[test]
fn damaged_truncated_and_mismatched_files_are_refused_by_name() {
    let device = Device::flex();
    let bytes = compact_bytes(&tiny_cnn(&device), HalfFormat::F16).unwrap();
    for at in [30, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let err = model_from_bytes(&bad, "flipped.ferc".as_ref(), &device).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }), "byte {at}: {err}");
        assert!(err.to_string().starts_with("flipped.ferc: corrupt file"), "{err}");
    }
    let err = model_from_bytes(&bytes[..bytes.len() - 2], "short.ferc".as_ref(), &device).unwrap_err();
    assert!(matches!(err, ModelError::Truncated { .. }), "{err}");
    let err = model_from_bytes(&bytes[..20], "header.ferc".as_ref(), &device).unwrap_err();
    assert!(err.to_string().contains("header.ferc") && err.to_string().contains("truncated"), "{err}");
    let mut unknown = bytes.clone();
    unknown[8] = 9;
    let err = model_from_bytes(&unknown, "type.ferc".as_ref(), &device).unwrap_err();
    assert!(err.to_string().contains("unknown value type 9"), "{err}");

    // The values of a smaller model under the config of a larger one: the count is checked.
    assert!(with_values(tiny_cnn(&device), &[0.0; 3]).is_err());
    let values = flatten(&tiny_cnn(&device));
    assert_eq!(with_values(tiny_cnn(&device), &values).map(|m| flatten(&m)).unwrap(), values);
}

#[test]
fn values_beyond_f16_are_refused_and_bf16_keeps_them() {
    let device = Device::flex();
    let model = tiny_cnn(&device);
    let mut values = flatten(&model);
    values[5] = 1.0e6;
    let big = with_values(model, &values).unwrap();
    let err = compact_bytes(&big, HalfFormat::F16).unwrap_err().to_string();
    assert!(err.contains("value 5") && err.contains("F16"), "{err}");
    let bytes = compact_bytes(&big, HalfFormat::Bf16).unwrap();
    let back = flatten(&model_from_bytes(&bytes, "big.ferc".as_ref(), &device).unwrap());
    assert!((back[5] - 1.0e6).abs() / 1.0e6 < 0.01, "{}", back[5]);
}

#[test]
fn compact_files_load_through_load_model_and_write_atomically() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.ferc");
    let model = tiny_cnn(&device);
    save_compact(&model, HalfFormat::F16, &path).unwrap();
    let loaded = fer_model::load_model(&path, &device).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), compact_bytes(&loaded, HalfFormat::F16).unwrap());
    assert_eq!(serde_json::to_string(loaded.config()).unwrap(), serde_json::to_string(model.config()).unwrap());
}
