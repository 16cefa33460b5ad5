//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `boltz` binary with `args` in `dir` (rayon's default threads).
pub fn boltz(dir: &Path, args: &[&str]) -> Output {
    boltz_threads(dir, args, None)
}

/// Runs the `boltz` binary with `args` in `dir`, with `RAYON_NUM_THREADS`
/// set to `threads` if given (unset otherwise).
pub fn boltz_threads(dir: &Path, args: &[&str], threads: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_boltz"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RAYON_NUM_THREADS");
    if let Some(t) = threads {
        cmd.env("RAYON_NUM_THREADS", t);
    }
    cmd.output().expect("run boltz")
}

/// Asserts a failed run: exit code `code`, one `error:` line on stderr, no panic.
pub fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

/// Asserts success and returns stdout.
pub fn assert_ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {err}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Writes a 2-D f64 array as npy.
pub fn npy(path: &Path, rows: usize, cols: usize, data: &[f64]) {
    boltz::io::write_npy(path, &[rows, cols], data).unwrap();
}

/// Reads an npy file.
pub fn read(path: &Path) -> boltz::io::NpyArray {
    boltz::io::read_npy(path).unwrap()
}
