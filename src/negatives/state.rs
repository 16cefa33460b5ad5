//! The negatives sampler's state file: saved atomically in boltz's
//! checkpoint container, restored only for the same settings.

use super::{Init, Method, NegativeSampler, NegativeState};
use crate::error::{Error, Result};

impl NegativeSampler {
    /// The settings a state file records: a sampler is only restored for
    /// the same method, initialisation, chains, dimension and seed.
    pub(super) fn settings(
        method: &Method,
        init: &Init,
        n_chains: usize,
        dim: usize,
        seed: u64,
        tag: &str,
    ) -> String {
        format!(
            "{method:?} {} chains {n_chains} dim {dim} seed {seed} tag {tag}",
            init.describe()
        )
    }

    /// Saves the complete state (buffer, persistent chains, every stream)
    /// atomically in boltz's checkpoint container (the arrays as binary).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::io::write_atomic(path, &self.save_bytes(path)?)
    }

    /// The bytes [`NegativeSampler::save`] writes (`path` names it in
    /// errors), for a state file that is one output of a transaction.
    pub fn save_bytes(&self, path: &std::path::Path) -> Result<Vec<u8>> {
        let mut s = self.state();
        let mut data = std::mem::take(&mut s.persistent);
        data.extend(std::mem::take(&mut s.buffer));
        let lens = (self.state.persistent.len(), self.state.buffer.len());
        let settings = Self::settings(&s.method, &s.init, s.n_chains, s.dim, s.seed, &s.tag);
        crate::io::checkpoint::checkpoint_bytes(path, "negatives", &settings, &(s, lens), &data)
    }

    /// Loads a state saved by [`NegativeSampler::save`]; refuses one made
    /// with other settings, another format version, or a corrupt file.
    pub fn load(
        path: &std::path::Path,
        method: Method,
        init: Init,
        n_chains: usize,
        dim: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::load_tagged(path, method, init, n_chains, dim, seed, "")
    }

    /// Marks the sampler's state as belonging to `tag` (a model's
    /// fingerprint, say); [`NegativeSampler::load_tagged`] then refuses
    /// the state for another tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.state.tag = tag.into();
        self
    }

    /// [`NegativeSampler::load`] for a state saved with `tag`.
    pub fn load_tagged(
        path: &std::path::Path,
        method: Method,
        init: Init,
        n_chains: usize,
        dim: usize,
        seed: u64,
        tag: &str,
    ) -> Result<Self> {
        let settings = Self::settings(&method, &init, n_chains, dim, seed, tag);
        Self::read_state(path, Some(&settings))
    }

    /// Loads a state file whatever its settings: the settings come from the
    /// file (checked against the state it holds: a file whose header and
    /// state disagree is refused). The caller checks them against what it
    /// needs, the tag first ([`NegativeState::tag`]).
    pub fn load_any(path: &std::path::Path) -> Result<Self> {
        Self::read_state(path, None)
    }

    /// A state file's sampler; with `settings`, only one saved with them.
    fn read_state(path: &std::path::Path, settings: Option<&str>) -> Result<Self> {
        let ((mut s, (np, nb)), data, stored): ((NegativeState, (usize, usize)), Vec<f64>, String) =
            crate::io::checkpoint::read_checkpoint_as(path, "negatives", settings)?;
        if stored != Self::settings(&s.method, &s.init, s.n_chains, s.dim, s.seed, &s.tag) {
            return Err(Error::checkpoint(
                path,
                "the header's settings do not describe the state it holds (corrupt?)",
            ));
        }
        if np.checked_add(nb) != Some(data.len()) {
            return Err(Error::checkpoint(
                path,
                "array lengths do not match the file",
            ));
        }
        s.persistent = data[..np].to_vec();
        s.buffer = data[np..].to_vec();
        Self::restore(s).map_err(|e| Error::checkpoint(path, e.to_string()))
    }
}
