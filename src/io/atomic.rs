//! Outputs as one transaction: every output path is checked before a run
//! ([`Outputs::declare`]), each output is written to a temporary file in
//! its folder, flushed ([`Outputs::stage`]), and all are renamed over
//! their final names at the end ([`Outputs::commit`]); on any failure
//! before that, the temporaries are removed and no earlier file is
//! replaced. Outputs that are special files (`/dev/null`) are written
//! through, and symbolic links are followed, never replaced. Temporary
//! files of killed runs are removed when the same output is next written.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One declared output.
struct Entry {
    /// The flag that named it (`--out`), for errors.
    flag: String,
    /// The path as given.
    given: PathBuf,
    /// Where the bytes go: the path, or the file a symbolic link points to.
    target: PathBuf,
    /// The target exists and is not a regular file (a device): written
    /// through at commit, never replaced.
    special: bool,
    /// Staged: the temporary file (regular targets) or the bytes (special).
    staged: Option<Staged>,
}

enum Staged {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// The outputs of one run (see the module documentation).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
/// let mut out = boltz::io::Outputs::new(&[]);
/// out.declare("--out", &a)?;
/// out.declare("--report", &b)?;
/// assert!(out.declare("--energies", &a).is_err()); // one path, two outputs
/// out.stage(&a, b"first")?;
/// out.stage(&b, b"second")?;
/// out.commit()?;
/// assert_eq!(std::fs::read(&a).unwrap(), b"first");
/// # Ok::<(), boltz::Error>(())
/// ```
pub struct Outputs {
    inputs: Vec<PathBuf>,
    entries: Vec<Entry>,
    /// Paths the run writes itself (flag, given, resolved).
    reserved: Vec<(String, PathBuf, PathBuf)>,
}

/// The file a path names for comparisons: symbolic links followed, the
/// folder made absolute (the file itself need not exist).
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    // A dangling link: its target, relative to the link's folder.
    if let Ok(t) = std::fs::read_link(path) {
        let base = path.parent().unwrap_or(Path::new("."));
        return resolve(&base.join(t));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    match path.file_name() {
        Some(n) => dir.join(n),
        None => dir,
    }
}

/// The temporary name for `target` of process `pid`: `.NAME.tmp-PID`, or
/// a hashed name where that would pass the 255-byte limit of file names.
fn temp_name(target: &Path, pid: u32) -> PathBuf {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let plain = format!(".{name}.tmp-{pid}");
    if plain.len() <= 255 {
        return dir.join(plain);
    }
    dir.join(format!(
        ".boltz-{:016x}.tmp-{pid}",
        super::fnv1a(name.as_bytes())
    ))
}

/// Removes temporaries of `target` left by processes that no longer run
/// (a run killed while writing). Only where `/proc` shows processes.
fn remove_stale(target: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Some(dir) = target.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let probe = temp_name(target, 0);
    let prefix = probe
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches('0').to_string())
        .unwrap_or_default();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::Write {
        path: path.into(),
        source: e,
    }
}

impl Outputs {
    /// A transaction whose outputs may not be any of `inputs`.
    pub fn new(inputs: &[&Path]) -> Self {
        Outputs {
            inputs: inputs.iter().map(|p| resolve(p)).collect(),
            entries: Vec::new(),
            reserved: Vec::new(),
        }
    }

    /// Declares output `path`, named by `flag`, and checks it before any
    /// work: not an input, not another output, not a folder, in a folder
    /// that exists and can be written.
    pub fn declare(&mut self, flag: &str, path: &Path) -> Result<()> {
        let target = resolve(path);
        let shown = || format!("{flag} ({})", path.display());
        if self.inputs.contains(&target) {
            return Err(Error::param(shown(), "is also an input of this run"));
        }
        let other = self
            .entries
            .iter()
            .map(|e| (&e.flag, &e.given, &e.target))
            .chain(self.reserved.iter().map(|(f, g, t)| (f, g, t)))
            .find(|(_, _, t)| **t == target);
        if let Some((f, g, _)) = other {
            return Err(Error::param(
                shown(),
                format!("is the same file as {f} ({})", g.display()),
            ));
        }
        let meta = std::fs::metadata(&target).ok();
        if meta.as_ref().is_some_and(std::fs::Metadata::is_dir) {
            return Err(Error::param(shown(), "is a folder, not a file"));
        }
        let special = meta.as_ref().is_some_and(|m| !m.is_file());
        if !special {
            let dir = target.parent().unwrap_or(Path::new("."));
            if !dir.is_dir() {
                return Err(Error::param(
                    shown(),
                    format!("its folder {} does not exist", dir.display()),
                ));
            }
            // Can the folder take the temporary file? Find out now.
            let probe = temp_name(&target, std::process::id());
            std::fs::File::create(&probe).map_err(|e| write_error(path, e))?;
            let _ = std::fs::remove_file(&probe);
        }
        self.entries.push(Entry {
            flag: flag.to_string(),
            given: path.to_path_buf(),
            target,
            special,
            staged: None,
        });
        Ok(())
    }

    /// Reserves `path` (named by `flag`) for a file the run writes itself,
    /// such as a checkpoint: no output of the transaction may take it. It
    /// may be an input (a checkpoint resumed and written again).
    pub fn reserve(&mut self, flag: &str, path: &Path) -> Result<()> {
        let target = resolve(path);
        if let Some(e) = self.entries.iter().find(|e| e.target == target) {
            return Err(Error::param(
                format!("{flag} ({})", path.display()),
                format!("is the same file as {} ({})", e.flag, e.given.display()),
            ));
        }
        self.reserved
            .push((flag.to_string(), path.to_path_buf(), target));
        Ok(())
    }

    /// Writes `bytes` for the declared output `path` to its temporary file
    /// (or holds them, for a special file); nothing final is replaced yet.
    pub fn stage(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let i = self
            .entries
            .iter()
            .position(|e| e.given == path)
            .ok_or_else(|| Error::param(path.display().to_string(), "output not declared"))?;
        let e = &mut self.entries[i];
        if e.special {
            e.staged = Some(Staged::Bytes(bytes.to_vec()));
            return Ok(());
        }
        remove_stale(&e.target);
        let tmp = temp_name(&e.target, std::process::id());
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_error(path, err));
        }
        if let Some(Staged::File(old)) = e.staged.replace(Staged::File(tmp.clone()))
            && old != tmp
        {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// Declares and stages in one call (an output added late).
    pub fn put(&mut self, flag: &str, path: &Path, bytes: &[u8]) -> Result<()> {
        if !self.entries.iter().any(|e| e.given == path) {
            self.declare(flag, path)?;
        }
        self.stage(path, bytes)
    }

    /// Stages an npy array (float64, version 1.0).
    pub fn stage_npy(&mut self, path: &Path, shape: &[usize], data: &[f64]) -> Result<()> {
        self.stage(path, &super::npy::npy_bytes(shape, data))
    }

    /// Stages an ndarray of any shape and memory layout as npy (C order).
    pub fn stage_array<S, D>(&mut self, path: &Path, a: &ndarray::ArrayBase<S, D>) -> Result<()>
    where
        S: ndarray::Data<Elem = f64>,
        D: ndarray::Dimension,
    {
        let a = a.as_standard_layout();
        let data: Vec<f64>;
        let slice = match a.as_slice() {
            Some(s) => s,
            None => {
                data = a.iter().copied().collect();
                &data
            }
        };
        self.stage_npy(path, a.shape(), slice)
    }

    /// Stages a value as pretty JSON with a final newline.
    pub fn stage_json<T: serde::Serialize>(&mut self, path: &Path, value: &T) -> Result<()> {
        let mut s = serde_json::to_string_pretty(value)
            .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        s.push('\n');
        self.stage(path, s.as_bytes())
    }

    /// Puts every staged output in place: special files first (written
    /// through), then the renames. Declared outputs never staged are left
    /// as they were. Two runs committing outputs in the same folders take
    /// turns (an advisory lock on each folder, taken in path order), so
    /// each run's outputs land together: never one run's `--out` beside the
    /// other's `--report`.
    pub fn commit(mut self) -> Result<()> {
        let _turn = self.lock_folders()?;
        for e in &self.entries {
            if let Some(Staged::Bytes(b)) = &e.staged {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&e.target)
                    .map_err(|err| write_error(&e.given, err))?;
                f.write_all(b)
                    .and_then(|()| f.flush())
                    .map_err(|err| write_error(&e.given, err))?;
            }
        }
        for e in &mut self.entries {
            if let Some(Staged::File(tmp)) = &e.staged {
                std::fs::rename(tmp, &e.target).map_err(|err| write_error(&e.given, err))?;
                e.staged = None;
            }
        }
        Ok(())
    }
}

impl Outputs {
    /// Locks (flock, waiting) every folder a staged output goes into, in
    /// sorted order (so two runs cannot each hold one the other waits
    /// for); released when the returned handles drop. Folders that cannot
    /// be opened are not locked (the writes then report the error).
    fn lock_folders(&self) -> Result<Vec<std::fs::File>> {
        let mut dirs: Vec<PathBuf> = self
            .entries
            .iter()
            .filter(|e| e.staged.is_some())
            .filter_map(|e| e.target.parent().map(Path::to_path_buf))
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d
                }
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        let mut held = Vec::with_capacity(dirs.len());
        for d in dirs {
            let Ok(f) = std::fs::File::open(&d) else {
                continue;
            };
            f.lock().map_err(|err| write_error(&d, err))?;
            held.push(f);
        }
        Ok(held)
    }
}

impl Drop for Outputs {
    /// Removes the temporaries of a transaction that was not committed.
    fn drop(&mut self) {
        for e in &self.entries {
            if let Some(Staged::File(tmp)) = &e.staged {
                let _ = std::fs::remove_file(tmp);
            }
        }
    }
}

/// Writes `bytes` to `path` atomically: an [`Outputs`] of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut out = Outputs::new(&[]);
    out.declare("output", path)?;
    out.stage(path, bytes)?;
    out.commit()
}

/// Writes a value as pretty JSON (with a final newline) atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut out = Outputs::new(&[]);
    out.declare("output", path)?;
    out.stage_json(path, value)?;
    out.commit()
}
