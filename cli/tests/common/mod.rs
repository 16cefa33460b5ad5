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

/// The CPU seconds (user + system, all threads) a running process has
/// used, from `/proc/PID/stat`; also readable while it is a zombie (after
/// it exited, before it is reaped). `None` off Linux.
pub fn cpu_seconds(pid: u32) -> Option<(f64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // first, utime and stime the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((ticks / clock_ticks(), f.first() == Some(&"Z")))
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Sends `signal` to `child` and waits for it: returns its output, the
/// wall seconds from the signal to its exit, and the CPU seconds it used
/// in between (all its threads). "Stops within a second" is a bound on
/// the work a run does after the signal: the CPU seconds, per core this
/// machine has (a busy machine stretches the wall time, not the work);
/// the wall time is bounded separately and loosely, to catch a hang.
pub fn stop_with(child: std::process::Child, signal: &str) -> (Output, f64, f64) {
    let pid = child.id();
    let before = cpu_seconds(pid).map_or(0.0, |c| c.0);
    let t0 = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // Reap it on another thread (which also drains its pipes, so a child
    // writing a long report never blocks); meanwhile follow its CPU time
    // (the last reading is at most 5 ms before it exited).
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output().unwrap();
        (out, t0.elapsed().as_secs_f64())
    });
    let mut after = before;
    while !waiter.is_finished() {
        if t0.elapsed() > std::time::Duration::from_secs(30) {
            // A run that does not stop: end it, and let the caller's
            // wall-time bound fail.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        match cpu_seconds(pid) {
            Some((c, zombie)) => {
                after = c;
                if zombie {
                    break;
                }
            }
            None => break,
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (out, wall) = waiter.join().unwrap();
    (out, wall, after - before)
}

/// Asserts that a run stopped within a second of its own work on this
/// machine's cores (`cpu` seconds over all threads) and within 30 s of
/// wall time whatever the load.
pub fn assert_stopped_soon(what: &str, wall: f64, cpu: f64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(
        cpu / cores < 1.0,
        "{what}: {cpu:.2} CPU seconds after the signal on {cores} cores (wall {wall:.2} s)"
    );
    assert!(wall < 30.0, "{what}: exited {wall:.2} s after the signal");
}
