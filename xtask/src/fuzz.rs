//! `cargo xtask fuzz TARGET --seconds N`: mutation fuzzing of every parser fer runs on files
//! from elsewhere, on stable Rust (no libFuzzer, no nightly): valid seed inputs are mutated
//! (bit flips, interesting integers in length fields, insertions, deletions, splices,
//! truncation) by a seeded generator, and each case is run under `catch_unwind`.
//!
//! The contract checked on every case: no panic, no hang (a case over `SLOW_CASE` is a
//! finding), no allocation larger than `ALLOCATION_LIMIT` (see `GuardedAllocator` in main.rs:
//! such a request aborts the run with its size), and every error names the input. Binary
//! formats are fuzzed twice over: as mutated, which the checksum rejects, and with the checksum
//! recomputed after mutation, which lets the mutation reach the parser behind it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::tensor::Device;

/// Slower than this for one case is a finding (a hang, or work out of proportion to the input).
pub const SLOW_CASE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// FER2013 CSVs: fer2013.csv, the course's train.csv and test.csv.
    Csv,
    /// The same, gzip-compressed (the compressed bytes are mutated).
    CsvGz,
    /// Face images as the image-folder loader decodes them (PNG, JPEG).
    FaceImage,
    /// Photos as `fer predict` and `fer serve` decode them, then face detection.
    Photo,
    /// Model files (.fer).
    Model,
    /// Training checkpoints (checkpoint.ckpt).
    Checkpoint,
    /// Parquet as the Hub ships FER2013 (image struct of PNG bytes, label column).
    Parquet,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Csv,
        Target::CsvGz,
        Target::FaceImage,
        Target::Photo,
        Target::Model,
        Target::Checkpoint,
        Target::Parquet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Csv => "csv",
            Target::CsvGz => "csv-gz",
            Target::FaceImage => "face-image",
            Target::Photo => "photo",
            Target::Model => "model",
            Target::Checkpoint => "checkpoint",
            Target::Parquet => "parquet",
        }
    }

    /// The name each case is given: errors must contain it.
    fn input_name(self) -> &'static str {
        match self {
            Target::Csv => "fuzz-input.csv",
            Target::CsvGz => "fuzz-input.csv.gz",
            Target::FaceImage => "fuzz-input.png",
            Target::Photo => "fuzz-photo.jpg",
            Target::Model => "fuzz-input.fer",
            Target::Checkpoint => "fuzz-checkpoint.ckpt",
            Target::Parquet => "train-fuzz.parquet",
        }
    }
}

/// What a fuzz run found.
#[derive(Debug, Default)]
pub struct Report {
    pub cases: u64,
    pub accepted: u64,
    pub findings: Vec<String>,
    pub slowest: Duration,
}

/// SplitMix64: tiny, seedable, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

const INTERESTING: [u64; 12] = [0, 1, 2, 7, 48, 255, 2304, 65_535, 0x7fff_ffff, 0xffff_ffff, 1 << 40, u64::MAX];

/// One to four mutations of `input` (with `other` for splices).
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 if len >= 8 => {
                // An interesting integer, little- or big-endian, 4 or 8 bytes: length fields.
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let i = rng.below(len - width + 1);
                let bytes = if rng.below(2) == 0 { value.to_le_bytes() } else { value.to_be_bytes() };
                let bytes = if width == 4 { &bytes[..4] } else { &bytes[..] };
                out[i..i + width].copy_from_slice(bytes);
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(64);
                let fill: Vec<u8> =
                    (0..n).map(|_| *b"0123456789 ,\n\r\"-.e\xff\x00".get(rng.below(20)).unwrap_or(&0)).collect();
                out.splice(i..i, fill);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(4096));
                out.drain(i..i + n);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(4096));
                let copy = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, copy);
            }
            6 if len > 0 => out.truncate(rng.below(len)),
            7 if !other.is_empty() && len > 0 => {
                let i = rng.below(len);
                let j = rng.below(other.len());
                let n = 1 + rng.below((other.len() - j).min(4096));
                out.splice(i..(i + n).min(len), other[j..j + n].iter().copied());
            }
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, rng.next() as u8);
            }
        }
    }
    out
}

/// The valid inputs mutation starts from.
pub fn seeds(target: Target) -> anyhow::Result<Vec<Vec<u8>>> {
    let faces = fer_data::synth::default_dataset(1, 0, 5);
    let row = |i: usize| faces.image(i).iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ");
    let csvs = vec![
        format!("emotion,pixels,Usage\n3,{},Training\n0,{},PublicTest\n6,{},PrivateTest\n", row(0), row(1), row(2))
            .into_bytes(),
        format!("label,feature\n4,{}\n5,{}\n", row(3), row(4)).into_bytes(),
        format!("id,feature\n0,{}\n", row(5)).into_bytes(),
    ];
    let png = |w: u32, h: u32| -> anyhow::Result<Vec<u8>> {
        let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 5 + y * 3) as u8]));
        let mut out = Vec::new();
        image::DynamicImage::ImageLuma8(img).write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
        Ok(out)
    };
    let jpeg = |w: u32, h: u32| -> anyhow::Result<Vec<u8>> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 2) as u8, 90]));
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg)?;
        Ok(out)
    };
    Ok(match target {
        Target::Csv => csvs,
        Target::CsvGz => csvs
            .iter()
            .map(|c| {
                use std::io::Write;
                let mut gz = flate2_encoder();
                gz.write_all(c)?;
                Ok(gz.finish()?)
            })
            .collect::<anyhow::Result<_>>()?,
        Target::FaceImage => vec![png(48, 48)?, jpeg(48, 48)?, png(60, 40)?],
        Target::Photo => vec![jpeg(96, 64)?, png(80, 80)?],
        Target::Model => vec![fer_model::model_bytes(&tiny_model()?)?],
        Target::Checkpoint => vec![tiny_checkpoint()?],
        Target::Parquet => {
            let dir = tempfile_dir()?;
            let file = dir.join("seed.parquet");
            fer_data::write_parquet_file(&fer_data::synth::default_dataset(1, 1, 2), &file)?;
            let bytes = std::fs::read(&file)?;
            let _ = std::fs::remove_dir_all(&dir);
            vec![bytes]
        }
    })
}

fn flate2_encoder() -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())
}

fn tiny_model() -> anyhow::Result<fer_model::FerModel> {
    Ok(fer_model::FerModel::new(&fer_train::RunConfig::tiny_cnn(), &Device::flex())?)
}

/// The recipe of the seed checkpoint.
fn checkpoint_recipe() -> fer_train::Recipe {
    let mut recipe = fer_train::RunConfig::new("synthetic:2,1,0", fer_train::RunConfig::tiny_cnn()).recipe;
    recipe.epochs = 1;
    recipe.batch_size = 4;
    recipe.steps_per_epoch = Some(1);
    recipe.ema_decay = Some(0.9);
    recipe
}

/// A real checkpoint: one training step of the tiny CNN on a few synthetic faces.
fn tiny_checkpoint() -> anyhow::Result<Vec<u8>> {
    let dir = tempfile_dir()?;
    let mut config = fer_train::RunConfig::new("synthetic:2,1,0", fer_train::RunConfig::tiny_cnn());
    config.recipe = checkpoint_recipe();
    let data = fer_data::synth::default_dataset(2, 1, 0);
    let options = fer_train::TrainOptions { time_budget: None, stop: None, max_steps: None, observer: &mut () };
    fer_train::train(&dir, &config, &data, &Device::flex(), options)?;
    let bytes = std::fs::read(dir.join("checkpoint.ckpt"))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(bytes)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "fer-fuzz-seed-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Recomputes the checksum of a mutated model file or checkpoint, so the case reaches the
/// parser behind it. Leaves anything else as it is.
fn fix_checksum(target: Target, bytes: &mut [u8]) {
    match target {
        Target::Model if bytes.len() >= 28 && bytes.starts_with(b"FERMODEL") => {
            let crc = crc32fast::hash(&bytes[28..]);
            bytes[24..28].copy_from_slice(&crc.to_le_bytes());
        }
        Target::Checkpoint if bytes.len() >= 44 && bytes.starts_with(b"FERCKPT3") => {
            let crc = crc32fast::hash(&bytes[44..]);
            bytes[40..44].copy_from_slice(&crc.to_le_bytes());
        }
        _ => {}
    }
}

/// Runs one case. `Ok(true)`: accepted as valid; `Ok(false)`: refused with an error that names
/// the input; `Err`: a contract violation.
fn run_case(target: Target, bytes: &[u8], device: &Device) -> Result<bool, String> {
    let name = target.input_name();
    let named = |message: String| {
        if message.contains(name) {
            Ok(false)
        } else {
            Err(format!("an error that does not name the input: {message}"))
        }
    };
    match target {
        Target::Csv | Target::CsvGz => {
            let options =
                fer_data::LoadOptions { skip_invalid: false, max_bytes: 8 << 20, image_col: None, label_col: None };
            match fer_data::load_bytes(bytes, Path::new(name), &options) {
                Ok(_) => Ok(true),
                Err(e) => named(e.to_string()),
            }
        }
        Target::FaceImage => {
            let mut out = vec![0u8; fer_data::PIXELS];
            match fer_data::decode_face_bytes(bytes, Path::new(name), &mut out) {
                Ok(_) => Ok(true),
                Err(e) => named(e.to_string()),
            }
        }
        Target::Photo => {
            let limits = fer_detect::PhotoLimits { max_bytes: 1 << 20, max_pixels: 1 << 20 };
            match fer_detect::decode_photo(bytes, name, &limits) {
                Ok(photo) => {
                    let detector = fer_detect::FaceDetector::new().map_err(|e| e.to_string())?;
                    for face in detector.detect(&photo.to_luma8()) {
                        let _ = fer_detect::crop_face(&photo.to_luma8(), face.bbox, fer_detect::FER_MARGIN);
                    }
                    Ok(true)
                }
                Err(e) => named(e.to_string()),
            }
        }
        Target::Parquet => {
            match fer_data::load_parquet_bytes(bytes, Path::new(name), &fer_data::ParquetColumns::default(), false) {
                Ok(_) => Ok(true),
                Err(e) => named(e.to_string()),
            }
        }
        Target::Model => match fer_model::model_from_bytes(bytes, Path::new(name), device) {
            Ok(_) => Ok(true),
            Err(e) => named(e.to_string()),
        },
        Target::Checkpoint => {
            // As --resume reads it: the checkpoint, then its optimizer state for the seed's recipe.
            let loaded = fer_train::checkpoint_from_bytes(bytes, Path::new(name), &device.clone().autodiff())
                .and_then(|c| fer_train::check_optimizer_state(&checkpoint_recipe(), c.optimizer, Path::new(name)));
            match loaded {
                Ok(()) => Ok(true),
                Err(e) => named(e.to_string()),
            }
        }
    }
}

/// Fuzzes `target` for `cases` cases or until `deadline`, whichever comes first. Findings are
/// saved under `save_to` (when given) as `TARGET-N.bin`, to become regression tests.
pub fn fuzz(
    target: Target,
    seed: u64,
    cases: u64,
    deadline: Option<Duration>,
    save_to: Option<&Path>,
) -> anyhow::Result<Report> {
    let seeds = seeds(target)?;
    let device = Device::flex();
    let mut rng = Rng(seed ^ (target as u64) << 56);
    let mut report = Report::default();
    let started = Instant::now();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    while report.cases < cases && deadline.is_none_or(|d| started.elapsed() < d) {
        let base = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        let mut case = if report.cases % 16 == 0 { base.clone() } else { mutate(&mut rng, base, other) };
        if rng.below(2) == 0 {
            fix_checksum(target, &mut case);
        }
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| run_case(target, &case, &device)));
        let took = t.elapsed();
        report.slowest = report.slowest.max(took);
        report.cases += 1;
        let finding = match outcome {
            Ok(Ok(accepted)) => {
                report.accepted += accepted as u64;
                (took > SLOW_CASE).then(|| format!("case took {took:?}"))
            }
            Ok(Err(violation)) => Some(violation),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                Some(format!("panic: {}", message.unwrap_or_else(|| "(no message)".into())))
            }
        };
        if let Some(finding) = finding {
            if let Some(dir) = save_to {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join(format!("{}-{}.bin", target.name(), report.findings.len())), &case)?;
            }
            report.findings.push(format!("{} case {} ({} bytes): {finding}", target.name(), report.cases, case.len()));
        }
    }
    std::panic::set_hook(previous_hook);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_is_deterministic_and_changes_the_input() {
        let input = b"emotion,pixels,Usage\n3,1 2 3,Training\n".to_vec();
        let (mut a, mut b) = (Rng(9), Rng(9));
        let (x, y) = (mutate(&mut a, &input, &input), mutate(&mut b, &input, &input));
        assert_eq!(x, y);
        let changed = (0..200).filter(|_| mutate(&mut a, &input, &input) != input).count();
        assert!(changed > 190, "{changed}");
    }

    #[test]
    fn every_seed_is_accepted_as_it_is() {
        let device = Device::flex();
        for target in Target::ALL {
            for (i, seed) in seeds(target).unwrap().iter().enumerate() {
                assert_eq!(run_case(target, seed, &device), Ok(true), "{} seed {i}", target.name());
            }
        }
    }

    /// Regression test for the Parquet findings: with this seed the first 300 cases include at
    /// least nine on which polars' reader panics (slice index out of range). They must come back
    /// as errors naming the file. (The aborting allocations have their own test,
    /// `counts_that_would_make_polars_abort_are_refused` in fer-data.)
    #[test]
    fn damaged_parquet_files_that_panic_polars_are_errors() {
        let report = fuzz(Target::Parquet, 1, 300, None, None).unwrap();
        assert_eq!(report.cases, 300);
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
    }

    /// The bounded run of the test suite: a fixed seed, a few thousand cases, seconds.
    #[test]
    fn bounded_fuzz_of_every_parser_finds_nothing() {
        for (target, cases) in [
            (Target::Csv, 3000),
            (Target::CsvGz, 2000),
            (Target::FaceImage, 2000),
            (Target::Photo, 500),
            (Target::Model, 400),
            (Target::Checkpoint, 300),
            (Target::Parquet, 3000),
        ] {
            let report = fuzz(target, 1, cases, None, None).unwrap();
            assert_eq!(report.cases, cases);
            assert!(report.findings.is_empty(), "{:#?}", report.findings);
        }
    }
}
