//! Files in and out: npy arrays, safetensors, checkpoints, atomic writes
//! (model files are read by [`crate::model`]).

pub mod atomic;
pub mod checkpoint;
pub mod npy;
pub mod safetensors;

pub use crate::hash::{Fnv1a, fnv1a};
pub use atomic::{Outputs, write_atomic, write_json_atomic};
pub use checkpoint::{CHECKPOINT_VERSION, read_checkpoint, settings_change, write_checkpoint};
pub use npy::{NpyArray, read_npy, read_npy_bytes, write_npy};
pub use safetensors::SafeTensors;

/// Reads an input file whole, refusing what is not a regular file (a
/// directory, a device such as `/dev/zero`, a FIFO that would block) and
/// files larger than the memory budget ([`crate::budget`]), before reading.
pub fn read_input(path: &std::path::Path) -> crate::Result<Vec<u8>> {
    use std::io::Read;
    let invalid = |msg: String| {
        crate::Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| crate::Error::io(path, e))?;
    if !meta.is_file() {
        return Err(invalid(if meta.is_dir() {
            "is a directory, not a file".into()
        } else {
            "is not a regular file (a device, FIFO or socket): give a file".into()
        }));
    }
    let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    crate::budget::check("file", "reading it", Some(len)).map_err(|e| invalid(e.to_string()))?;
    let f = std::fs::File::open(path).map_err(|e| crate::Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(len);
    // A file that grows while read stops at its size when checked.
    f.take(len as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::Error::io(path, e))?;
    if bytes.len() > len {
        return Err(invalid("grew while being read".into()));
    }
    Ok(bytes)
}

/// An advisory lock on a state or checkpoint file, held by one boltz
/// process at a time: a lock file `.NAME.lock` beside it (the file itself
/// is replaced by renames, so it cannot carry the lock). Released when
/// dropped or when the process ends.
pub struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// Takes the lock of `path`, waiting while another process holds it
    /// (saying so once on stderr); gives up with [`crate::Error::Interrupted`]
    /// when `stop` is set while waiting.
    pub fn acquire(
        path: &std::path::Path,
        stop: Option<&std::sync::atomic::AtomicBool>,
    ) -> crate::Result<FileLock> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let lock_path = dir.join(format!(".{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| crate::Error::Write {
                path: lock_path.clone(),
                source: e,
            })?;
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !said {
                        eprintln!("waiting: another boltz run is using {}", path.display());
                        said = true;
                    }
                    if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
                        return Err(crate::Error::Interrupted(format!(
                            "stopped while waiting for {}",
                            path.display()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(crate::Error::Write {
                        path: lock_path,
                        source: e,
                    });
                }
            }
        }
    }
}
