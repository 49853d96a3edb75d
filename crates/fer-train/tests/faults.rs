//! What happens on real disks and with real users: damaged checkpoints, a checkpoint that cannot
//! be written, two trainers on one folder, a resume pointed at other data. Each is a clear error
//! naming the run, and nothing already saved is lost.

mod common;

use burn::tensor::Device;
use common::{data, run, tiny};
use fer_train::{RunLock, StopReason, TrainError, TrainOptions, load_checkpoint, resume};

fn opts(max_steps: Option<usize>) -> TrainOptions<'static> {
    TrainOptions { time_budget: None, stop: None, max_steps, observer: Box::leak(Box::new(())) }
}

#[test]
fn faults_are_clear_errors_and_lose_nothing() {
    // One function, steps in order: burn's generator is global to the process (see resume.rs).
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint.ckpt");
    // 9 steps per epoch: stop at the end of epoch 1 of 3.
    let first = run(dir.path(), &tiny(3), Some(9)).unwrap();
    assert_eq!(first.stop, StopReason::StepLimit);
    let saved = std::fs::read(&ckpt).unwrap();

    // A second writer on the same folder is refused, naming the holder.
    {
        let _held = RunLock::acquire(dir.path()).unwrap();
        let err = resume(dir.path(), &data(), &device, opts(None)).unwrap_err();
        assert!(matches!(err, TrainError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another fer train (pid "), "{err}");
    }

    // Other data: same counts but other faces, and other counts.
    let mut other = data();
    other = other.filter(|i| i != 3);
    let err = resume(dir.path(), &other, &device, opts(None)).unwrap_err();
    assert!(matches!(err, TrainError::DataChanged { .. }), "{err}");
    assert!(err.to_string().contains("training and 70 validation faces, the data given now has"), "{err}");
    let shuffled = fer_data::synth::default_dataset(40, 10, 22);
    let err = resume(dir.path(), &shuffled, &device, opts(None)).unwrap_err();
    assert!(err.to_string().contains("same counts, but other pixels or labels"), "{err}");

    // A checkpoint that cannot be written (its temp file's name is taken by a folder, as a full
    // or read-only disk would refuse it): the error names the checkpoint, the previous one stays.
    let blocker = dir.path().join(format!(".checkpoint.ckpt.tmp-{}", std::process::id()));
    std::fs::create_dir(&blocker).unwrap();
    let err = resume(dir.path(), &data(), &device, opts(Some(9))).unwrap_err();
    assert!(matches!(err, TrainError::CheckpointWrite { .. }), "{err}");
    assert!(
        err.to_string().contains("checkpoint.ckpt: the checkpoint cannot be written")
            && err.to_string().contains("--resume continues from it"),
        "{err}"
    );
    assert_eq!(std::fs::read(&ckpt).unwrap(), saved, "the previous checkpoint is untouched");
    std::fs::remove_dir(&blocker).unwrap();

    // A flipped byte is "corrupt", never a resume on garbage.
    let mut damaged = saved.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(&ckpt, &damaged).unwrap();
    let err = load_checkpoint(dir.path(), &device).err().expect("a damaged checkpoint must not load");
    assert!(err.to_string().contains("checkpoint.ckpt: not a usable checkpoint: corrupt file"), "{err}");
    assert!(resume(dir.path(), &data(), &device, opts(None)).is_err());

    // Put back, the run continues to its end.
    std::fs::write(&ckpt, &saved).unwrap();
    let last = resume(dir.path(), &data(), &device, opts(None)).unwrap();
    assert_eq!(last.stop, StopReason::Finished);
    assert_eq!(last.state.history.len(), 3);
}

/// Regression test for `cargo xtask fuzz checkpoint`'s finding: an optimizer record whose tensor
/// lost its parameter id made burn-optim panic on --resume. Now it is a clear error.
#[test]
fn an_optimizer_record_without_parameter_ids_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(1);
    run(dir.path(), &config, Some(1)).unwrap();
    let bytes = std::fs::read(dir.path().join("checkpoint.ckpt")).unwrap();
    let len = |i: usize| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().unwrap()) as usize;
    let start = 44 + len(0) + len(1);
    let mut optimizer = bytes[start..start + len(2)].to_vec();
    // The CBOR key "param_id" of the first tensor, renamed: that tensor no longer has an id.
    let at = optimizer.windows(9).position(|w| w == b"hparam_id").expect("burnpack metadata names param_id");
    optimizer[at + 8] = b'X';
    let err = fer_train::check_optimizer_state(&config.recipe, optimizer, "damaged.ckpt".as_ref()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("damaged.ckpt: not a usable checkpoint: optimizer state: a tensor without its parameter id"),
        "{err}"
    );
}
