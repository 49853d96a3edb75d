//! Loading and augmentation speed.
//!
//! `cargo bench -p fer-data` times augmentation on synthetic faces. Set `FER_BENCH_CSV` (a
//! full-size fer2013.csv, e.g. made with `fer data convert ../shared/fer2013 /tmp/fer2013.csv`) and
//! `FER_BENCH_TREE` (e.g. `../shared/fer2013`) to time loading real data too.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fer_data::{LoadOptions, PIXELS, augment::AugmentConfig, rng::Rng};
use std::hint::black_box;

fn augmentation(c: &mut Criterion) {
    let faces = fer_data::synth::dataset("Training", 20, 1);
    let config = AugmentConfig::report();
    let mut group = c.benchmark_group("augment");
    group.throughput(Throughput::Elements(faces.len() as u64));
    group.bench_function("report_recipe_one_core", |b| {
        let mut rng = Rng::seed(9);
        let mut out = vec![0.0f32; PIXELS];
        b.iter(|| {
            for i in 0..faces.len() {
                config.augment_f32(faces.image(i), &mut rng, &mut out);
                black_box(&out);
            }
        })
    });
    group.finish();
}

fn loading(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for (name, var) in [("fer2013_csv", "FER_BENCH_CSV"), ("image_tree", "FER_BENCH_TREE")] {
        if let Ok(path) = std::env::var(var) {
            group.bench_function(name, |b| {
                b.iter(|| black_box(fer_data::load(&path, &LoadOptions::default()).expect("bench data loads")))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, augmentation, loading);
criterion_main!(benches);
