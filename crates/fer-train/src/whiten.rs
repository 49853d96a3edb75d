//! airbench's whitened first layer: the first convolution starts as a whitening of the training
//! faces' patches and stays fixed, so the layers above see decorrelated, unit-variance inputs
//! from the first step.
//!
//! The filters are the eigenvectors of the patches' second-moment matrix scaled by
//! `1/√(λ + ε)`, each also negated (a LeakyReLU follows, so both signs carry signal), largest
//! eigenvalue first. With more filters than that (the report's first layer has 64 for 25-pixel
//! patches) the rest keep their random start, fixed too; with fewer, the smallest components go.

use burn::tensor::{Tensor, TensorData};
use fer_data::{Dataset, PIXELS, SIDE};
use fer_model::{FerModel, Net};

use crate::TrainError;

/// Added to each eigenvalue before scaling, as airbench does (its `eps=5e-4`).
pub const WHITEN_EPSILON: f64 = 5e-4;
/// Faces the statistics are gathered over: evenly spaced through the training set.
pub const WHITEN_FACES: usize = 2_000;

/// The first convolution's filters, `[out, 1, k, k]` row-major, for the faces of `data`.
pub fn whitening_filters(data: &Dataset, out: usize, k: usize) -> Vec<f32> {
    let d = k * k;
    let moments = patch_moments(data, k);
    let (values, vectors) = symmetric_eigen(moments, d);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut filters = Vec::with_capacity(2 * d * d);
    for &i in &order {
        let scale = 1.0 / (values[i].max(0.0) + WHITEN_EPSILON).sqrt();
        let filter: Vec<f32> = (0..d).map(|r| (vectors[r * d + i] * scale) as f32).collect();
        filters.extend(filter.iter().copied());
        filters.extend(filter.iter().map(|v| -v));
    }
    filters.truncate(out * d);
    filters
}

/// The second moments of every `k`x`k` patch inside the faces (pixels scaled as the model sees
/// them), over up to [`WHITEN_FACES`] faces.
fn patch_moments(data: &Dataset, k: usize) -> Vec<f64> {
    let d = k * k;
    let faces = data.len().clamp(1, WHITEN_FACES);
    let step = (data.len() / faces).max(1);
    let mut sums = vec![0.0f64; d * d];
    let mut count = 0u64;
    let mut patch = vec![0.0f64; d];
    for face in (0..data.len()).step_by(step).take(faces) {
        let image = data.image(face);
        debug_assert_eq!(image.len(), PIXELS);
        for top in 0..=SIDE - k {
            for left in 0..=SIDE - k {
                for r in 0..k {
                    for c in 0..k {
                        patch[r * k + c] =
                            f64::from(image[(top + r) * SIDE + left + c]) / f64::from(fer_model::INPUT_SCALE);
                    }
                }
                for a in 0..d {
                    let pa = patch[a];
                    for b in a..d {
                        sums[a * d + b] += pa * patch[b];
                    }
                }
                count += 1;
            }
        }
    }
    let n = count.max(1) as f64;
    for a in 0..d {
        for b in a..d {
            sums[a * d + b] /= n;
            sums[b * d + a] = sums[a * d + b];
        }
    }
    sums
}

/// Eigenvalues and eigenvectors (the columns of a row-major `n`x`n` matrix) of the symmetric
/// matrix `a`, by cyclic Jacobi rotations: exact to rounding for the small matrices here.
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "symmetric_eigen: an {n}x{n} matrix");
    let mut v: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q].powi(2))
            .sum();
        if off <= scale * 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← Jᵀ A J and V ← V J, J the rotation in the (p, q) plane.
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// `model` with its first convolution's filters whitened for the faces of `data` (a CNN on
/// one-channel faces; the bias is left as it is).
pub fn whiten_first_conv(mut model: FerModel, data: &Dataset) -> Result<FerModel, TrainError> {
    let Net::Cnn(cnn) = &mut model.net else {
        return Err(TrainError::InvalidOption("--whiten-first-layer needs a CNN: the DNN has no convolution".into()));
    };
    let Some(first) = cnn.blocks.first_mut() else {
        return Err(TrainError::InvalidOption("--whiten-first-layer needs a convolution".into()));
    };
    let [out, channels, k, k2] = first.conv.weight.val().dims();
    if channels != 1 || k != k2 {
        return Err(TrainError::InvalidOption(format!(
            "--whiten-first-layer needs a square filter on one-channel faces; the first layer is {out}x{channels}x{k}x{k2}"
        )));
    }
    let whitened = whitening_filters(data, out, k);
    let weight = first.conv.weight.clone().map(|random| {
        let mut values: Vec<f32> =
            random.to_data().convert::<f32>().try_to_vec::<f32>().expect("a float tensor's values");
        values[..whitened.len()].copy_from_slice(&whitened);
        let fresh = Tensor::<4>::from_data(TensorData::new(values, [out, channels, k, k]), &random.device());
        if random.is_require_grad() { fresh.require_grad() } else { fresh }
    });
    first.conv.weight = weight;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn faces(n: usize) -> Dataset {
        fer_data::synth::default_dataset(n, 0, 5)
    }

    #[test]
    fn jacobi_finds_a_known_eigensystem() {
        let (values, vectors) = symmetric_eigen(vec![2.0, 1.0, 1.0, 2.0], 2);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert!((sorted[0] - 1.0).abs() < 1e-12 && (sorted[1] - 3.0).abs() < 1e-12, "{values:?}");
        let big = if values[0] > values[1] { 0 } else { 1 };
        let half = std::f64::consts::FRAC_1_SQRT_2;
        assert!((vectors[big].abs() - half).abs() < 1e-12 && (vectors[2 + big] - vectors[big]).abs() < 1e-12);
    }

    #[test]
    fn jacobi_diagonalises_a_symmetric_matrix() {
        let n = 9;
        let mut a = vec![0.0f64; n * n];
        for p in 0..n {
            for q in p..n {
                let v = (((p * 7 + q * 13) % 11) as f64 - 5.0) / 3.0;
                a[p * n + q] = v;
                a[q * n + p] = v;
            }
        }
        let (values, v) = symmetric_eigen(a.clone(), n);
        for i in 0..n {
            for j in 0..n {
                // Vᵀ V = I and A V = V Λ.
                let dot: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-10, "VᵀV[{i}][{j}] = {dot}");
                let av: f64 = (0..n).map(|k| a[j * n + k] * v[k * n + i]).sum();
                assert!((av - values[i] * v[j * n + i]).abs() < 1e-9, "(AV)[{j}][{i}]");
            }
        }
    }

    #[test]
    fn the_filters_whiten_the_patches() {
        let data = faces(30);
        let k = 3;
        let d = k * k;
        let moments = patch_moments(&data, k);
        let filters = whitening_filters(&data, 2 * d, k);
        assert_eq!(filters.len(), 2 * d * d);
        let response = |i: usize, j: usize| -> f64 {
            let (wi, wj) = (&filters[i * d..(i + 1) * d], &filters[j * d..(j + 1) * d]);
            (0..d)
                .flat_map(|a| (0..d).map(move |b| (a, b)))
                .map(|(a, b)| f64::from(wi[a]) * moments[a * d + b] * f64::from(wj[b]))
                .sum()
        };
        let (values, _) = symmetric_eigen(moments.clone(), d);
        let mut values = values;
        values.sort_by(|a, b| b.total_cmp(a));
        for i in 0..d {
            for j in 0..d {
                // Filter 2i is component i; 2i + 1 its negation.
                let want = if i == j { values[i] / (values[i] + WHITEN_EPSILON) } else { 0.0 };
                assert!(
                    (response(2 * i, 2 * j) - want).abs() < 1e-4,
                    "component {i} x {j}: {}",
                    response(2 * i, 2 * j)
                );
            }
            let negated: Vec<f32> = filters[2 * i * d..(2 * i + 1) * d].iter().map(|v| -v).collect();
            assert_eq!(negated, filters[(2 * i + 1) * d..(2 * i + 2) * d]);
        }
        // The largest component first; fewer filters keep the largest.
        assert!(values[0] > values[d - 1]);
        assert_eq!(whitening_filters(&data, 5, k), filters[..5 * d]);
    }

    #[test]
    fn the_first_convolution_is_whitened_and_the_rest_kept() {
        let device = Device::flex();
        let data = faces(20);
        let model = FerModel::new(&crate::RunConfig::tiny_cnn(), &device).unwrap();
        let Net::Cnn(cnn) = &model.net else { unreachable!("tiny_cnn is a cnn") };
        let before: Vec<f32> = cnn.blocks[0].conv.weight.val().into_data().convert::<f32>().try_to_vec().unwrap();
        let second: Vec<f32> = cnn.blocks[1].conv.weight.val().into_data().convert::<f32>().try_to_vec().unwrap();
        let [out, _, k, _] = cnn.blocks[0].conv.weight.val().dims();
        let id = cnn.blocks[0].conv.weight.id;
        let whitened = whiten_first_conv(model, &data).unwrap();
        let Net::Cnn(cnn) = &whitened.net else { unreachable!("still a cnn") };
        let after: Vec<f32> = cnn.blocks[0].conv.weight.val().into_data().convert::<f32>().try_to_vec().unwrap();
        let filters = whitening_filters(&data, out, k);
        // The tiny CNN's first layer: 8 filters of 5x5, all of them whitening filters.
        assert_eq!((out, k, filters.len()), (8, 5, 8 * 25));
        assert_eq!(after, filters);
        assert_ne!(after, before);
        assert_eq!(cnn.blocks[0].conv.weight.id, id, "the parameter keeps its id");
        assert_eq!(cnn.blocks[1].conv.weight.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap(), second);
        let dnn = FerModel::new(&crate::RunConfig::tiny_dnn(), &device).unwrap();
        let err = whiten_first_conv(dnn, &data).unwrap_err().to_string();
        assert!(err.contains("--whiten-first-layer needs a CNN"), "{err}");
    }
}
