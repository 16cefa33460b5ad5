//! The numbers in the README come from the code as it is. Each block of
//! the README between `<!-- generated: NAME -->` and `<!-- end: NAME -->`
//! is produced here by running the commands it shows, and compared with
//! the README (wall-clock times masked). `BOLTZ_UPDATE_README=1 cargo test
//! --release -p boltz-cli --test readme` rewrites the blocks instead.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Runs `boltz args` in `dir`; returns stdout (the run must succeed).
fn boltz(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_boltz"))
        .args(args)
        .current_dir(dir)
        .env_remove("RAYON_NUM_THREADS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boltz {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Masks what depends on the machine and the moment: wall-clock times
/// (`(0.38 s)`, the `wall s` line), the thread count, the timed columns of
/// `compare`'s table (wall s, bulk and tail ESS/s) and the order of its
/// ranking by ESS/s (which samplers are ranked is kept).
fn mask(text: &str) -> String {
    text.lines().map(mask_line).collect::<Vec<_>>().join("\n")
}

fn mask_line(l: &str) -> String {
    if l.trim_start().starts_with("wall s") {
        return "  wall s        (masked)".into();
    }
    let threads;
    let l = match l.find(" threads.") {
        Some(i) => {
            let j = l[..i].rfind(' ').map_or(0, |j| j + 1);
            threads = format!("{}N{}", &l[..j], &l[i..]);
            threads.as_str()
        }
        None => l,
    };
    let cells: Vec<&str> = l.split('|').collect();
    if cells.len() == 15 && !l.starts_with("|---") && !l.starts_with("| sampler") {
        let mut c: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
        for k in [3, 4, 5] {
            c[k] = " (timed) ".into();
        }
        return c.join("|");
    }
    if let Some(rest) = l.strip_prefix("Ranking by bulk ESS/s")
        && let (Some(a), Some(b)) = (rest.find("): "), rest.find(';'))
    {
        let mut names: Vec<&str> = rest[a + 3..b].split(", ").collect();
        names.sort_unstable();
        return format!("Ranking (sorted): {}{}", names.join(", "), &rest[b..]);
    }
    let mut out = String::new();
    let mut rest = l;
    loop {
        let Some(i) = rest.find('(') else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(" s)") {
            Some(j) if after[..j].parse::<f64>().is_ok() => {
                out.push_str("(... s)");
                rest = &after[j + 3..];
            }
            _ => {
                out.push('(');
                rest = after;
            }
        }
    }
}

fn fenced(cmd: &str, output: &str) -> String {
    format!("```console\n$ {cmd}\n{}```\n", output)
}

/// `boltz logz --model rbm20 --method ais` (the README's main command).
fn rbm20(dir: &Path) -> String {
    let out = boltz(dir, &["logz", "--model", "rbm20", "--method", "ais"]);
    format!("```\n{out}```\n")
}

/// The separated-modes example: AIS and MALA on the user's mixture.
fn separated(dir: &Path) -> String {
    let rel = "examples/models/separated-modes.json";
    std::fs::create_dir_all(dir.join("examples/models")).unwrap();
    std::fs::copy(root().join(rel), dir.join(rel)).unwrap();
    let a = ["logz", "--model", rel, "--method", "ais"];
    let b = [
        "sample",
        "--model",
        rel,
        "--sampler",
        "mala",
        "--seed",
        "1",
        "--out",
        "s.npy",
    ];
    format!(
        "{}\n{}",
        fenced(&format!("boltz {}", a.join(" ")), &boltz(dir, &a)),
        fenced(&format!("boltz {}", b.join(" ")), &boltz(dir, &b))
    )
}

/// Parallel tempering on the separated-modes example.
fn separated_pt(dir: &Path) -> String {
    let rel = "examples/models/separated-modes.json";
    std::fs::create_dir_all(dir.join("examples/models")).unwrap();
    std::fs::copy(root().join(rel), dir.join(rel)).unwrap();
    let a = ["logz", "--model", rel, "--method", "pt"];
    fenced(&format!("boltz {}", a.join(" ")), &boltz(dir, &a))
}

/// A two-shard log Z run and its merge.
fn shards(dir: &Path) -> String {
    let mut text = String::new();
    for i in 0..2 {
        let (s, f) = (format!("{i}/2"), format!("s{i}.boltz"));
        let a = ["logz", "--model", "rbm20", "--shard", &s, "--shard-out", &f];
        text.push_str(&console(dir, &a));
    }
    let m = ["merge", "s0.boltz", "s1.boltz"];
    let one = [
        "logz",
        "--model",
        "rbm20",
        "--method",
        "ais",
        "--no-reverse",
    ];
    format!(
        "```console\n{text}$ boltz {}\n{}$ boltz {}\n{}```\n",
        m.join(" "),
        boltz(dir, &m),
        one.join(" "),
        boltz(dir, &one)
    )
}

/// Runs `boltz args` in `dir` and writes the console lines of the call.
fn console(dir: &Path, args: &[&str]) -> String {
    format!("$ boltz {}\n{}", args.join(" "), boltz(dir, args))
}

/// The first screen's negatives: two calls of persistent CD on rbm20 with
/// the bundled digits.
fn start_negatives(dir: &Path) -> String {
    let digits = dir.join("data/digits");
    std::fs::create_dir_all(&digits).unwrap();
    std::fs::copy(
        root().join("data/digits/digits.npy"),
        digits.join("digits.npy"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("scratch")).unwrap();
    let a = [
        "negatives",
        "--model",
        "rbm20",
        "--data",
        "data/digits/digits.npy",
        "--method",
        "pcd",
        "--chains",
        "64",
        "--state",
        "scratch/pcd.state",
        "--out",
        "scratch/neg.npy",
    ];
    let _ = std::fs::remove_file(dir.join("scratch/pcd.state"));
    format!(
        "```console\n$ mkdir -p scratch\n{}{}```\n",
        console(dir, &a),
        console(dir, &a)
    )
}

/// The first screen's model file and its log Z by AIS.
fn start_logz(dir: &Path) -> String {
    let model = r#"{"kind": "mixture", "weights": [0.3, 0.7], "means": [[-3, 0], [3, 1]], "std": [0.5, 1.0]}"#;
    std::fs::create_dir_all(dir.join("scratch")).unwrap();
    std::fs::write(dir.join("scratch/mine.json"), format!("{model}\n")).unwrap();
    let a = ["logz", "--model", "scratch/mine.json", "--method", "ais"];
    format!(
        "```console\n$ cat > scratch/mine.json <<'EOF'\n{model}\nEOF\n{}```\n",
        console(dir, &a)
    )
}

/// The first screen's comparison of samplers.
fn start_compare(dir: &Path) -> String {
    let a = [
        "compare",
        "--model",
        "gauss-ill",
        "--samplers",
        "mala,hmc,nuts,ula",
        "--chains",
        "8",
        "--warmup",
        "2000",
        "--draws",
        "2000",
    ];
    format!("```console\n{}```\n", console(dir, &a))
}

/// The sampling snippet.
fn sample(dir: &Path) -> String {
    let a = [
        "sample",
        "--model",
        "gauss-ill",
        "--sampler",
        "hmc",
        "--chains",
        "8",
        "--out",
        "draws.npy",
        "--report",
        "report.json",
    ];
    fenced(&format!("boltz {}", a.join(" ")), &boltz(dir, &a))
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// AIS with the defaults on the suite targets with exact log Z.
fn ais_table(dir: &Path) -> String {
    let mut t = String::from(
        "| target | log Z (AIS) | stderr | error | reverse AIS upper bound | exact | warnings |\n|---|---|---|---|---|---|---|\n",
    );
    for target in ["gauss-ill", "gmm-ring", "gmm-far", "rbm20", "funnel"] {
        let v: Value = serde_json::from_str(&boltz(
            dir,
            &["logz", "--model", target, "--method", "ais", "--json"],
        ))
        .unwrap();
        let (lz, se, ex) = (num(&v, "log_z"), num(&v, "stderr"), num(&v, "exact_log_z"));
        let up = v["log_z_upper"]
            .as_f64()
            .map_or("- (no exact draws)".to_string(), |u| format!("{u:.4}"));
        t.push_str(&format!(
            "| {target} | {lz:.4} | {se:.4} | {:+.4} | {up} | {ex:.4} | {} |\n",
            lz - ex,
            v["warnings"].as_array().unwrap().len()
        ));
    }
    t
}

/// The funnel over four seeds: forward, reverse, and whether warned.
fn funnel(dir: &Path) -> String {
    let mut t = String::from(
        "| seed | forward log Z | stderr | reverse upper bound | warned |\n|---|---|---|---|---|\n",
    );
    for seed in ["0", "1", "2", "3"] {
        let v: Value = serde_json::from_str(&boltz(
            dir,
            &[
                "logz", "--model", "funnel", "--method", "ais", "--seed", seed, "--json",
            ],
        ))
        .unwrap();
        t.push_str(&format!(
            "| {seed} | {:.4} | {:.4} | {:.4} | {} |\n",
            num(&v, "log_z"),
            num(&v, "stderr"),
            num(&v, "log_z_upper"),
            if v["warnings"].as_array().unwrap().is_empty() {
                "no"
            } else {
                "yes"
            }
        ));
    }
    t
}

/// AutoStep HMC on the funnel, then `boltz diagnose` of its draws.
fn funnel_autohmc(dir: &Path) -> String {
    let a = [
        "sample",
        "--model",
        "funnel",
        "--sampler",
        "autohmc",
        "--leapfrog",
        "8",
        "--chains",
        "24",
        "--warmup",
        "2000",
        "--draws",
        "20000",
        "--thin",
        "4",
        "--init",
        "gaussian:3",
        "--out",
        "s.npy",
    ];
    let b = ["diagnose", "--samples", "s.npy"];
    let first = boltz(dir, &a);
    format!(
        "```console\n$ boltz {}\n{first}$ boltz {}\n{}```\n",
        a.join(" "),
        b.join(" "),
        boltz(dir, &b)
    )
}

/// `cargo run --release --example train_toy`, from its JSON.
fn train_toy(dir: &Path) -> String {
    // The example is built next to this test's executable by `cargo test`.
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("examples").join("train_toy"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} not built: run `cargo test --release` (it builds the examples)",
        bin.display()
    );
    let out = Command::new(&bin)
        .arg("results")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results/train_toy.json")).unwrap())
            .unwrap();
    let (i, p, c) = (
        &v["initial"],
        &v["positives_only"],
        &v["contrastive_replay_buffer"],
    );
    format!(
        "| loss | held-out log-likelihood per point | energy range on [-4, 4]^2 |\n|---|---|---|\n| initial network | {:.3} | {:.1} |\n| positives only (energy loss) | {:.0} | {:.0} (all below {:.0}) |\n| contrastive divergence, write-back replay buffer (JEM), 40 ULA steps | {:.3} | {:.1} |\n",
        num(i, "held_out_log_likelihood"),
        num(i, "grid_energy_range"),
        num(p, "held_out_log_likelihood"),
        num(p, "grid_energy_range"),
        num(p, "grid_energy_max"),
        num(c, "held_out_log_likelihood"),
        num(c, "grid_energy_range"),
    )
}

/// A function that produces a block's text, running commands in a folder.
type Block = fn(&Path) -> String;

/// Replaces (or checks) the block `name` in whichever of `docs` (path,
/// text) holds it.
fn block(
    docs: &mut [(PathBuf, String)],
    name: &str,
    fresh: &str,
    update: bool,
    diffs: &mut Vec<String>,
) {
    let begin = format!("<!-- generated: {name} -->\n");
    let end = format!("<!-- end: {name} -->");
    let readme = &mut docs
        .iter_mut()
        .find(|(_, t)| t.contains(&begin))
        .unwrap_or_else(|| panic!("no README or docs page has the block {name}"))
        .1;
    let a = readme.find(&begin).unwrap() + begin.len();
    let b = a + readme[a..].find(&end).unwrap();
    if update {
        readme.replace_range(a..b, fresh);
    } else if mask(&readme[a..b]) != mask(fresh) {
        diffs.push(format!(
            "block {name}: README has\n{}\nthe code gives\n{fresh}",
            &readme[a..b]
        ));
    }
}

#[test]
fn readme_numbers_come_from_the_code() {
    let update = std::env::var_os("BOLTZ_UPDATE_README").is_some();
    let mut docs: Vec<(PathBuf, String)> = ["README.md", "docs/SCALING.md", "docs/WARNINGS.md"]
        .iter()
        .map(|p| {
            let path = root().join(p);
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut diffs = Vec::new();
    let blocks: [(&str, Block); 12] = [
        ("start-negatives", start_negatives),
        ("start-logz", start_logz),
        ("start-compare", start_compare),
        ("rbm20-logz", rbm20),
        ("separated-modes", separated),
        ("separated-pt", separated_pt),
        ("shards", shards),
        ("sample", sample),
        ("ais-table", ais_table),
        ("funnel-seeds", funnel),
        ("funnel-autohmc", funnel_autohmc),
        ("train-toy", train_toy),
    ];
    for (name, make) in blocks {
        let fresh = make(d);
        block(&mut docs, name, &fresh, update, &mut diffs);
    }
    if update {
        for (path, text) in docs {
            std::fs::write(path, text).unwrap();
        }
    } else {
        assert!(
            diffs.is_empty(),
            "README out of date (BOLTZ_UPDATE_README=1 rewrites it):\n{}",
            diffs.join("\n")
        );
    }
}
