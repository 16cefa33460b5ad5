//! Files in and out: npy arrays, model files, atomic writes.

pub mod atomic;
pub mod model_file;
pub mod npy;

pub use atomic::{write_atomic, write_json_atomic};
pub use model_file::load_model_file;
pub use npy::{NpyArray, read_npy, read_npy_bytes, write_npy};
