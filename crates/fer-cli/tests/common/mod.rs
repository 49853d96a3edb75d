//! Helpers shared by the CLI's integration tests (each test file includes this module).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn fer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fer")).args(args).output().expect("run fer")
}

pub fn photo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/photos").join(name)
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny CNN trained for one epoch on synthetic faces: enough for every path to run.
pub fn tiny_run(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    let o = fer(&[
        "train",
        "--data",
        "synthetic:10,3,1",
        "--model",
        "tiny-cnn",
        "--out",
        s(&run),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "0",
        "--batch-size",
        "35",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    run
}

pub fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}
