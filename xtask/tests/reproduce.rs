//! The smoke profile end to end: the report and the data behind every figure are snapshotted
//! (timings masked), a rerun reuses every stage, and `--check` passes on an unchanged report.

use std::process::Command;

fn xtask(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).output().expect("xtask runs")
}

#[test]
fn smoke_report_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let out_s = out.to_str().unwrap();
    let o = xtask(&["reproduce-report", "--profile", "smoke", "--out", out_s]);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("no --data given: running on the embedded synthetic faces"));
    assert!(stdout.contains("train and evaluate the CNN on Training + PublicTest"), "{stdout}");

    let report = std::fs::read_to_string(out.join("REPORT.md")).unwrap();
    for figure in report
        .lines()
        .filter_map(|l| l.strip_prefix("![").and_then(|l| l.split("](").nth(1)).map(|l| l.trim_end_matches(')')))
    {
        assert!(out.join(figure).exists(), "{figure} is referenced but missing");
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<img src=\"figures/confusion-counts.png\""));

    // The numbers are the kernels': AVX-512 machines run fer's panel GEMM and Winograd, AVX2
    // machines the portable path, and the two round differently. One snapshot per path.
    let kernels = fer_kernels::simd_level();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_suffix(kernels);
    // Summary rows end "| seconds | accuracy | the report's |", history rows "| seconds | img/s |".
    settings.add_filter(r"\| \d+ \| (\d\.\d{4}) \| ([^|\n]+) \|\n", "| [seconds] | $1 | $2 |\n");
    settings.add_filter(r"\| \d+ \| \d+\.\d \|\n", "| [seconds] | [img/s] |\n");
    settings.add_filter(r"\(\d+\.\d s on the CPU\)", "([seconds] on the CPU)");
    settings.add_filter(r"\d+\.\d min \(epoch", "[minutes] min (epoch");
    settings.bind(|| insta::assert_snapshot!("smoke_report", report));

    let figure_data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stages/figure-data.json")).unwrap()).unwrap();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_suffix(kernels);
    settings.add_redaction(".curves.*[].seconds", "[seconds]");
    settings.add_redaction(".curves.*[].images_per_s", "[img/s]");
    settings.add_redaction(".curves.*[].eval_seconds", "[seconds]");
    settings.add_redaction(".curves.*[].wall_seconds", "[seconds]");
    settings.add_redaction(".explained.ascent[][4]", "[seconds]");
    settings.bind(|| insta::assert_json_snapshot!("smoke_figure_data", figure_data));

    // A rerun reuses every stage and regenerates the same report.
    let o = xtask(&["reproduce-report", "--profile", "smoke", "--out", out_s, "--check"]);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("cnn: reusing") && stdout.contains("REPORT.md is up to date"), "{stdout}");
    assert!(!stdout.contains("epoch   1"), "nothing is retrained: {stdout}");

    // --check notices a report that would change.
    std::fs::write(out.join("REPORT.md"), "edited").unwrap();
    let o = xtask(&["reproduce-report", "--profile", "smoke", "--out", out_s, "--check"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("would change"));
}
