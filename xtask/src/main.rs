//! `cargo xtask reproduce-report`: regenerate the report — every figure, table and number — from
//! raw data in one command.
//!
//! Stages, each reusing its saved result under `--out` when present (so a rerun is cheap and an
//! interrupted run picks up where it stopped): train and evaluate the CNN, the DNN, the CNN on
//! train+val (when the data has a separate test split) and an ensemble; explain the CNN; render
//! figures; write REPORT.md and index.html.

mod fuzz;
mod layers;
mod llvm;
mod pipeline;
mod report;

use pipeline::Profile;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Xtask {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Train, evaluate, explain and write the report (REPORT.md, index.html, figures/) under --out.
    ReproduceReport {
        /// FER2013 in any supported form; without it, the embedded synthetic faces.
        #[arg(long)]
        data: Option<String>,
        #[arg(long, value_enum, default_value = "smoke")]
        profile: Profile,
        #[arg(long, default_value = "report")]
        out: PathBuf,
        /// Regenerate the report from the saved stages and fail if REPORT.md would change.
        #[arg(long)]
        check: bool,
        /// cpu (burn's flex with fer's kernels) or cuda (GPU 0; build xtask with `--features cuda`).
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Lay out the LLVM folder burn's CUDA backend builds against, over an installed LLVM, so
    /// `cargo build -p fer-cli --features cuda` needs no download (README, section "GPU").
    Llvm {
        /// An installed LLVM 23 prefix holding bin/llvm-config, include/ and lib/. Without it,
        /// LLVM 23 with NVPTX is installed from PyPI (mlc-llvm-static) into target/llvm-sdk.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Folder to create (default: where tracel-llvm-bundler looks,
        /// ~/.local/share/tracel/tracel-llvm-<locked version>).
        #[arg(long)]
        dest: Option<PathBuf>,
    },
    /// Mutation-fuzz a parser (or all of them) for a time: no panic, hang, oversized allocation
    /// or error that does not name its input may come out. Findings are saved under
    /// target/fuzz-findings/ to become regression tests.
    Fuzz {
        /// What to fuzz; all of them in turn when omitted.
        #[arg(value_enum)]
        target: Option<fuzz::Target>,
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seed of the mutation generator (a run is reproducible from it).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Check the file-level architecture invariants (docs/ARCHITECTURE.md): no circle of files
    /// importing each other in any crate, and no import running up fer-kernels' module order.
    Layers,
}

/// The global allocator: the system's, with a ceiling on any single allocation. fer's parsers
/// must never reserve memory sized by an unchecked number from a file; under `cargo xtask fuzz`
/// (and its bounded run in the tests) a request over the ceiling is refused, which aborts the
/// process with "memory allocation of N bytes failed": a finding, never a machine out of memory.
struct GuardedAllocator;

/// 2 GiB: above anything fer needs for FER2013 (the CSV is 300 MB, a batch of the CNN's
/// activations a few hundred MB), far below what a hostile length field asks for.
const ALLOCATION_LIMIT: usize = 2 << 30;

// SAFETY: every call is forwarded to the system allocator, which upholds `GlobalAlloc`'s
// contract, or refused with a null pointer, which the contract allows.
unsafe impl std::alloc::GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.size() > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: as `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if new_size > ALLOCATION_LIMIT {
            return std::ptr::null_mut();
        }
        // SAFETY: as `dealloc`; the caller upholds `realloc`'s contract.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: GuardedAllocator = GuardedAllocator;

/// The only place xtask picks a backend.
fn choose_device(name: &str) -> anyhow::Result<burn::tensor::Device> {
    match name {
        "cpu" => Ok(burn::tensor::Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => {
            anyhow::ensure!(
                std::path::Path::new("/proc/driver/nvidia/version").exists(),
                "--device cuda: no NVIDIA GPU driver on this machine; use --device cpu"
            );
            std::panic::catch_unwind(|| {
                let device = burn::tensor::Device::cuda(0);
                let _ = burn::tensor::Tensor::<1>::zeros([1], &device).into_data();
                device
            })
            .map_err(|_| anyhow::anyhow!("CUDA GPU 0 could not be started; check `nvidia-smi`, or use --device cpu"))
        }
        #[cfg(not(feature = "cuda"))]
        "cuda" => {
            anyhow::bail!(
                "this xtask was built without CUDA: cargo run --release -p xtask --features cuda -- reproduce-report \
                    --device cuda ..."
            )
        }
        other => anyhow::bail!("unknown device {other:?}; valid: cpu, cuda"),
    }
}

fn main() {
    fer_kernels::tune_allocator();
    let result = match Xtask::parse().command {
        Task::ReproduceReport { data, profile, out, check, device } => {
            let started = Instant::now();
            choose_device(&device)
                .and_then(|device| report::reproduce(data, profile, out, check, device))
                .map(|path| println!("wrote {} in {:.0}s", path.display(), started.elapsed().as_secs_f64()))
        }
        Task::Llvm { from, dest } => llvm::run(from, dest),
        Task::Fuzz { target, seconds, seed } => run_fuzz(target, seconds, seed),
        Task::Layers => layers::run(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new("."))),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run_fuzz(target: Option<fuzz::Target>, seconds: u64, seed: u64) -> anyhow::Result<()> {
    let targets = target.map_or(fuzz::Target::ALL.to_vec(), |t| vec![t]);
    let save_to = PathBuf::from("target/fuzz-findings");
    let mut total = 0;
    for target in targets {
        let report = fuzz::fuzz(target, seed, u64::MAX, Some(std::time::Duration::from_secs(seconds)), Some(&save_to))?;
        println!(
            "{:<11} {:>9} cases in {seconds}s ({:.0}/s), {} accepted as valid, slowest {:.1} ms, {} findings",
            target.name(),
            report.cases,
            report.cases as f64 / seconds.max(1) as f64,
            report.accepted,
            report.slowest.as_secs_f64() * 1000.0,
            report.findings.len()
        );
        for f in report.findings.iter().take(20) {
            println!("  {f}");
        }
        total += report.findings.len();
    }
    anyhow::ensure!(total == 0, "{total} findings (cases saved in {})", save_to.display());
    Ok(())
}
