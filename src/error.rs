//! The one error type of the library.
//!
//! Every fallible call in boltz returns [`Result<T>`]. Errors say *what* was
//! wrong and *where* (a file, a key, a parameter name), in one line, so the
//! command-line tool can print them unchanged. [`Error::is_input`] separates
//! bad input (exit code 2 in the CLI) from faults while running (exit code 1).

use std::path::PathBuf;

/// Everything that can go wrong in boltz.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of its allowed range (chains = 0, step size <= 0, ...).
    #[error("invalid value for `{name}`: {reason}")]
    InvalidParameter {
        /// The name of the setting, as the user wrote it.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Arrays whose shapes do not fit together.
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    Shape {
        /// Which call or which array.
        context: String,
        /// The shape that was expected, in words (e.g. "(n, 32)").
        expected: String,
        /// The shape that was found.
        got: String,
    },
    /// A model file (JSON) that cannot be turned into an energy.
    #[error("{}: {reason}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong, naming the key where there is one.
        reason: String,
    },
    /// An `.npy` file that cannot be read (bad header, wrong dtype, truncated).
    #[error("{}: {reason}", path.display())]
    Npy {
        /// The npy file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file that cannot be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file that cannot be written (disk full, read-only folder, a folder
    /// in the way): a failure while running, so the CLI exits 1.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint or state file that cannot be used: wrong format or
    /// version, corrupt, truncated, or written by a run with other settings.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file given by a flag or setting that cannot be read: the error
    /// names the flag first (`--points: data.npy: No such file ...`).
    #[error("{flag}: {source}")]
    Input {
        /// The flag or setting (`--points`).
        flag: String,
        /// What went wrong reading the file.
        #[source]
        source: Box<Error>,
    },
    /// A name that is not one of the suite's targets.
    #[error(
        "unknown model `{0}` (not a suite target, and no such file); `boltz suite` lists the targets"
    )]
    UnknownModel(String),
    /// A run stopped by a signal (its state saved where asked).
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// A numerical failure that makes a result meaningless (all weights -inf, ...).
    #[error("numerical failure: {0}")]
    Numerical(String),
}

impl Error {
    /// True when the error is the user's input (file, shape, setting) rather
    /// than a fault while running; the CLI exits 2 for these and 1 otherwise.
    pub fn is_input(&self) -> bool {
        match self {
            Error::Io { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::PermissionDenied
                        | std::io::ErrorKind::IsADirectory
                        | std::io::ErrorKind::InvalidData
                ) && !matches!(source.kind(), std::io::ErrorKind::StorageFull)
            }
            Error::Input { source, .. } => source.is_input(),
            Error::Numerical(_) | Error::Write { .. } | Error::Interrupted(_) => false,
            _ => true,
        }
    }

    /// Names the flag that gave the file, for errors reading it (I/O, npy,
    /// model file); other errors are returned as they are.
    pub fn for_flag(self, flag: &str) -> Self {
        match self {
            Error::Io { .. } | Error::Npy { .. } | Error::Model { .. } => Error::Input {
                flag: flag.to_string(),
                source: Box::new(self),
            },
            other => other,
        }
    }

    /// Shorthand for [`Error::InvalidParameter`].
    pub fn param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name: name.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Shape`].
    pub fn shape(
        context: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::Shape {
            context: context.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`Error::Checkpoint`].
    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `Result` with boltz's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Checks that a setting is finite and strictly positive.
pub fn check_positive(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::param(
            name,
            format!("must be finite and > 0, got {value}"),
        ))
    }
}

/// Checks that every number in a slice is finite.
pub fn check_finite(name: &str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::param(
            name,
            format!("entry {i} is not finite ({})", values[i]),
        )),
    }
}

/// Largest inverse temperature boltz accepts: beyond it `beta F` overflows
/// for ordinary energies and no sampler moves.
pub const MAX_BETA: f64 = 1e6;

/// Checks an inverse temperature: finite, > 0 and at most [`MAX_BETA`].
pub fn check_beta(name: &str, beta: f64) -> Result<()> {
    check_positive(name, beta)?;
    if beta > MAX_BETA {
        return Err(Error::param(
            name,
            format!(
                "{beta} is above {MAX_BETA:e}: exp(-beta F) would underflow for any energy but 0"
            ),
        ));
    }
    Ok(())
}
