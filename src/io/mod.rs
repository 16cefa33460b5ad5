//! Files in and out: npy arrays, model files, checkpoints, atomic writes.

pub mod atomic;
pub mod checkpoint;
pub mod model_file;
pub mod npy;

pub use atomic::{write_atomic, write_json_atomic};
pub use checkpoint::{CHECKPOINT_VERSION, read_checkpoint, write_checkpoint};
pub use model_file::load_model_file;
pub use npy::{NpyArray, read_npy, read_npy_bytes, write_npy};
