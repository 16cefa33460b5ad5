//! Checkpoints edited as a careful forger would (one field of the header
//! set to another value, the checksum recomputed): every edit of a field
//! that decides the run is refused on resume or changes nothing; the
//! fields a checkpoint cannot check against anything (positions and the
//! streams' positions, which are the state itself, and the elapsed time)
//! are listed, not hidden (issue 34's checkpoint fuzz target, for sampling
//! and parallel-tempering checkpoints).

use boltz::kernels::{KernelSpec, Mala};
use boltz::pt::PtSettings;
use boltz::{Base, Control, NoObserver, SampleConfig};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

struct StopAt(usize, Arc<AtomicBool>);
impl boltz::Observer for StopAt {
    fn observe(&mut self, p: &boltz::run::Progress) {
        if p.step >= self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
    }
}

fn control(ck: &Path, flag: Option<Arc<AtomicBool>>) -> Control {
    Control {
        checkpoint: Some(ck.to_path_buf()),
        checkpoint_every: 0,
        stop: flag,
        settings: "edits".into(),
    }
}

/// The container's JSON header and values, and the bytes back with another
/// header (checksum recomputed).
fn unpack(b: &[u8]) -> (Value, Vec<u8>) {
    let hlen = u64::from_le_bytes(b[12..20].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&b[20..20 + hlen]).unwrap(),
        b[20 + hlen..b.len() - 8].to_vec(),
    )
}

fn pack(orig: &[u8], head: &Value, rest: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(head).unwrap();
    let mut out = orig[..12].to_vec();
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(rest);
    out.extend_from_slice(&boltz::io::fnv1a(&out).to_le_bytes());
    out
}

/// Every leaf of `v` (arrays: their first two entries), as JSON pointers.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, c)| leaves(c, format!("{at}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .take(2)
            .enumerate()
            .for_each(|(i, c)| leaves(c, format!("{at}/{i}"), out)),
        _ => out.push(at),
    }
}

/// Other values for a leaf: nearby and extreme ones of its own type.
fn paints(v: &Value) -> Vec<Value> {
    match v {
        Value::Number(n) if n.is_u64() => {
            let x = n.as_u64().unwrap();
            vec![(x + 1).into(), (x / 2).into(), (1u64 << 62).into()]
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap();
            vec![(x * 1.5 + 0.25).into(), 1e300.into(), (-x - 1.0).into()]
        }
        Value::Bool(b) => vec![(!b).into()],
        Value::String(_) => vec!["x".into()],
        Value::Null => vec![1.into()],
        _ => vec![],
    }
}

/// Edits every field of the checkpoint at `ck` in turn and resumes it with
/// `resume`; returns the fields whose edit was accepted and changed the
/// output (`same` compares it with the uninterrupted run's).
fn silent_edits<T>(
    ck: &Path,
    resume: &dyn Fn(&Path) -> boltz::Result<T>,
    same: &dyn Fn(&T) -> bool,
) -> Vec<String> {
    let b = std::fs::read(ck).unwrap();
    let (head, rest) = unpack(&b);
    let mut fields = Vec::new();
    leaves(&head["state"], "/state".into(), &mut fields);
    let dir = tempfile::tempdir().unwrap();
    let forged = dir.path().join("forged");
    let mut silent = Vec::new();
    for f in &fields {
        for v in paints(head.pointer(f).unwrap()) {
            let mut h = head.clone();
            *h.pointer_mut(f).unwrap() = v.clone();
            std::fs::write(&forged, pack(&b, &h, &rest)).unwrap();
            if let Ok(out) = resume(&forged)
                && !same(&out)
                && !uncheckable(f)
            {
                silent.push(format!("{f} = {v}"));
            }
        }
    }
    silent
}

/// The fields no check can see, because any value in their range is a
/// state some run reaches: the chains' positions and streams' positions
/// (the state a checkpoint exists to carry); running sums of the run so
/// far (warm-up's variance window and averaged log step, the inverse mass
/// it gave, acceptance, swap and stepping-stone sums, round trips, and
/// tempering's replica directions); evaluation counts (they
/// shape only the report's `energy_evals`); the elapsed time (only
/// `wall_s`). Every other field (settings, counters, step sizes, the dual
/// averages' other fields, swap attempts, streams' keys, tallies out of
/// range) is checked.
fn uncheckable(field: &str) -> bool {
    let state = [
        "/positions/",
        "/word_pos",
        // Each chain's (or the pooled) variance window: /tuner/mass/i/...
        "/mean/",
        "/m2/",
        "/log_step_bar",
        "/tuning/inv_mass/values/",
        "/run/acceptance/",
        "/engine/chain_acceptance/",
        "/engine/accept_sum",
        "/run/round_accept/",
        "/run/swap_accept/",
        "/run/trips",
        "/heading/",
        "/run/ss/",
        "/run/energy_evals",
        "/engine/extra_evals",
        "elapsed_s",
    ];
    state.iter().any(|s| field.contains(s))
}

#[test]
fn an_edited_sampling_checkpoint_is_refused_or_changes_nothing() {
    let energy = boltz::model::load("gmm-ring")
        .unwrap()
        .energy(None)
        .unwrap();
    let kernel = Mala::new(0.3).unwrap();
    let mut config = SampleConfig::new();
    (
        config.n_chains,
        config.warmup,
        config.draws,
        config.observe_every,
    ) = (4, 60, 40, 1);
    config.record_energies = true;
    let whole =
        boltz::sampler::sample(energy.as_ref(), &kernel, &config, None, &mut NoObserver).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for stop in [30, 80] {
        let ck = dir.path().join(format!("s{stop}"));
        let flag = Arc::new(AtomicBool::new(false));
        let part = boltz::sampler::sample_with(
            energy.as_ref(),
            &kernel,
            &config,
            None,
            &mut StopAt(stop, flag.clone()),
            &control(&ck, Some(flag)),
        )
        .unwrap();
        assert!(!part.complete);
        let resume = |p: &Path| {
            boltz::sampler::resume(
                energy.as_ref(),
                &kernel,
                &config,
                p,
                &mut NoObserver,
                &control(&ck, None),
            )
        };
        let unedited = resume(&ck).unwrap();
        assert_eq!(unedited.samples, whole.samples);
        let same = |o: &boltz::sampler::SampleOutput| {
            o.samples == whole.samples
                && o.energies == whole.energies
                && o.stats.acceptance == whole.stats.acceptance
                && o.stats.divergences == whole.stats.divergences
                && o.stats.step_sizes == whole.stats.step_sizes
                && o.stats.energy_evals == whole.stats.energy_evals
        };
        let silent = silent_edits(&ck, &resume, &same);
        assert!(
            silent.is_empty(),
            "stopped at {stop}: accepted edits that change the run: {silent:#?}"
        );
    }
}

#[test]
fn an_edited_tempering_checkpoint_is_refused_or_changes_nothing() {
    let energy = boltz::model::load("gmm-ring")
        .unwrap()
        .energy(None)
        .unwrap();
    let base = Base::isotropic(2, 4.0).unwrap();
    let spec = KernelSpec::new("mala").unwrap();
    let settings = PtSettings::new(4);
    let mut config = SampleConfig::new();
    (
        config.n_chains,
        config.warmup,
        config.draws,
        config.observe_every,
    ) = (2, 64, 40, 1);
    let go = |c: &Control, obs: &mut dyn boltz::Observer| {
        boltz::pt::sample(
            energy.as_ref(),
            &base,
            &spec,
            &config,
            &settings,
            None,
            obs,
            c,
        )
    };
    let whole = go(&Control::default(), &mut NoObserver).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for stop in [40, 80] {
        let ck = dir.path().join(format!("p{stop}"));
        let flag = Arc::new(AtomicBool::new(false));
        assert!(
            !go(&control(&ck, Some(flag.clone())), &mut StopAt(stop, flag))
                .unwrap()
                .complete
        );
        let resume = |p: &Path| {
            boltz::pt::resume(
                energy.as_ref(),
                &base,
                &spec,
                (&config, &settings),
                p,
                &mut NoObserver,
                &control(&ck, None),
            )
        };
        assert_eq!(resume(&ck).unwrap().samples, whole.samples);
        let same = |o: &boltz::pt::PtOutput| {
            o.samples == whole.samples
                && o.stats.log_z.to_bits() == whole.stats.log_z.to_bits()
                && o.stats.log_z_stderr.to_bits() == whole.stats.log_z_stderr.to_bits()
                && o.stats.swap_accept == whole.stats.swap_accept
                && o.stats.round_trips == whole.stats.round_trips
                && o.stats.acceptance == whole.stats.acceptance
                && o.stats.chain_acceptance == whole.stats.chain_acceptance
                && o.stats.betas == whole.stats.betas
                && o.stats.energy_evals == whole.stats.energy_evals
        };
        let silent = silent_edits(&ck, &resume, &same);
        assert!(
            silent.is_empty(),
            "stopped at {stop}: accepted edits that change the run: {silent:#?}"
        );
    }
}
