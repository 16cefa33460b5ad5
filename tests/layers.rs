//! The library's top-level modules form no dependency cycle: each module's
//! `crate::NAME` paths (and `use crate::{...}` groups, and `super::NAME`
//! in a top-level module's own file) are read off its sources, comments
//! and `#[cfg(test)]` modules left out, and the graph is checked for
//! strongly connected components of more than one module. A failure lists
//! each edge of the cycle with the files that make it.
//!
//! The same check on the command line: `cargo test --release --test layers
//! -- --nocapture` prints every edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if p.extension().is_some_and(|x| x == "rs") {
        out.push(p.to_path_buf());
    }
}

/// The source without comments and without its `#[cfg(test)]` tail.
fn code(src: &str) -> String {
    let src = &src[..src.find("#[cfg(test)]").unwrap_or(src.len())];
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Modules named after `prefix` (`crate::`, `super::`) in `src`.
fn named_after<'a>(src: &'a str, prefix: &str) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    for (i, _) in src.match_indices(prefix) {
        let rest = &src[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first name of each item.
            let (mut depth, mut start) = (0usize, true);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphabetic() || c == '_') => {
                        out.insert(ident_at(&group[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident_at(rest));
        }
    }
    out
}

#[test]
fn top_level_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&p, &mut files);
        modules.entry(name).or_default().extend(files);
    }
    let mut edges: BTreeMap<&str, BTreeMap<&str, BTreeSet<String>>> = BTreeMap::new();
    for (m, files) in &modules {
        let deps = edges.entry(m).or_default();
        for f in files {
            let text = code(&std::fs::read_to_string(f).unwrap());
            let mut names = named_after(&text, "crate::");
            let top = f.parent() == Some(src.as_path())
                || (f.file_name().is_some_and(|n| n == "mod.rs")
                    && f.parent().and_then(|p| p.parent()) == Some(src.as_path()));
            if top {
                names.extend(named_after(&text, "super::"));
            }
            for n in names {
                if let Some((k, _)) = modules.get_key_value(n)
                    && k != m
                {
                    let rel = f.strip_prefix(src.parent().unwrap()).unwrap();
                    deps.entry(k.as_str())
                        .or_default()
                        .insert(rel.display().to_string());
                }
            }
        }
    }
    for (m, deps) in &edges {
        for (t, files) in deps {
            println!(
                "{m} -> {t}  ({})",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    // Reachability: a cycle is a pair that reach each other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(v) = todo.pop() {
            for t in edges.get(v).into_iter().flat_map(|d| d.keys()) {
                if seen.insert(*t) {
                    todo.push(t);
                }
            }
        }
        seen
    };
    let mut cycles = Vec::new();
    for (m, deps) in &edges {
        for (t, files) in deps {
            if reach(t).contains(m) {
                cycles.push(format!(
                    "{m} -> {t} ({})",
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "edges on a cycle among the top-level modules:\n  {}",
        cycles.join("\n  ")
    );
}
