//! Running jobs: on a worker thread with the interpreter lock released, Ctrl-C polled, panics caught.

use super::*;
use std::sync::atomic::AtomicPtr;

/// Progress on stderr, a few times a second (`progress=True`).
pub(crate) struct StderrProgress {
    pub(crate) on: bool,
    pub(crate) last: Option<Instant>,
}

impl Observer for StderrProgress {
    fn observe(&mut self, p: &Progress) {
        if !self.on {
            return;
        }
        let done = p.step >= p.total;
        if !done
            && self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(Instant::now());
        let phase = p.phase.name();
        eprint!(
            "\rboltz {phase}: {}/{} steps, accept {:.2}, step {:.3e}, divergences {}   ",
            p.step, p.total, p.accept_rate, p.step_size, p.divergences
        );
        if done {
            eprintln!();
        }
    }
}

/// The thread pool of this process, with the process id it was made in.
struct ProcessPool {
    pid: u32,
    pool: rayon::ThreadPool,
}

/// The pool boltz computes on in this process. rayon's global pool does
/// not survive `fork`: its threads stay in the parent, and a forked
/// child's first parallel call would wait for them forever (a
/// `multiprocessing` worker, a PyTorch DataLoader worker). So the pool is
/// made per process: a child builds its own at its first call. A parent's
/// pool is left alone in the child (its threads do not exist there; there
/// is nothing to join or free). One atomic pointer, no lock, so a fork at
/// any moment leaves nothing locked.
pub(crate) fn pool() -> PyResult<&'static rayon::ThreadPool> {
    static POOL: AtomicPtr<ProcessPool> = AtomicPtr::new(std::ptr::null_mut());
    process_pool(&POOL, None)
}

/// The pool jobs on Python callbacks run on: one thread. Such a job's time
/// is the callback's (which holds the interpreter lock, and whose numpy,
/// torch or XLA code runs threads of its own); a second boltz thread only
/// spins while it runs, taking a core from it: on 2 cores a trivial torch
/// module's forward took 120-136 us inside a run on two threads against
/// 39-42 us on one. Draws do not depend on the thread count.
pub(crate) fn callback_pool() -> PyResult<&'static rayon::ThreadPool> {
    static POOL: AtomicPtr<ProcessPool> = AtomicPtr::new(std::ptr::null_mut());
    process_pool(&POOL, Some(1))
}

/// This process's pool in `slot` ([`pool`]'s rules), made at the first
/// call: `threads` threads, else rayon's default (`RAYON_NUM_THREADS` or
/// one per core).
fn process_pool(
    slot: &'static AtomicPtr<ProcessPool>,
    threads: Option<usize>,
) -> PyResult<&'static rayon::ThreadPool> {
    let pid = std::process::id();
    loop {
        let current = slot.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here was made by Box::into_raw below
        // and is never freed (pools live as long as the process).
        if let Some(p) = unsafe { current.as_ref() }
            && p.pid == pid
        {
            return Ok(&p.pool);
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("boltz-{i}"))
            .num_threads(threads.unwrap_or(0))
            .build()
            .map_err(|e| BoltzError::new_err(format!("cannot start the thread pool: {e}")))?;
        let fresh = Box::into_raw(Box::new(ProcessPool { pid, pool }));
        if slot
            .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread of this process made one first: use it.
            // SAFETY: `fresh` was never shared.
            drop(unsafe { Box::from_raw(fresh) });
        }
    }
}

/// How often a waiting call takes the interpreter lock to look for Ctrl-C:
/// often enough to stop within a fraction of a second, rarely enough not to
/// take the lock from a callback running on the worker (each look forces a
/// switch of the lock).
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Runs `job` on a worker thread, in this process's [`pool`] (the
/// [`callback_pool`] when `callbacks` has any), with the interpreter lock
/// released;
/// Ctrl-C (checked every 100 ms) sets the stop flag and raises
/// `KeyboardInterrupt`; the first error of a callback energy is raised as
/// it is; a panic becomes a `BoltzError`.
pub(crate) fn run_job<T: Send + 'static>(
    py: Python<'_>,
    callbacks: &[Arc<Callback>],
    job: impl FnOnce(Arc<AtomicBool>) -> boltz::Result<T> + Send + 'static,
) -> PyResult<T> {
    let stop = Arc::new(AtomicBool::new(false));
    for c in callbacks {
        c.arm(stop.clone());
    }
    let s2 = stop.clone();
    let pool = if callbacks.is_empty() {
        pool()?
    } else {
        callback_pool()?
    };
    // The worker says it is done on a channel: the wait below wakes at
    // once (a 1 ms sleep-and-check loop returned a 10 ms call 0.5 ms late
    // on average), and every POLL to look at signals.
    let (done, finished_rx) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("boltz-job".into())
        .spawn(move || {
            let out =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(|| job(s2))));
            let _ = done.send(());
            out
        })
        .map_err(|e| BoltzError::new_err(format!("cannot start a worker thread: {e}")))?;
    let mut interrupt: Option<PyErr> = None;
    let mut waited_after_stop = Duration::ZERO;
    let mut rx = finished_rx;
    loop {
        // The receiver goes into the detached wait and comes back (it is
        // Send, not Sync).
        let (finished, back) = py.detach(move || {
            use std::sync::mpsc::RecvTimeoutError;
            let timed_out = matches!(rx.recv_timeout(POLL), Err(RecvTimeoutError::Timeout));
            (!timed_out, rx)
        });
        rx = back;
        if finished {
            break;
        }
        if interrupt.is_none() {
            if let Err(e) = py.check_signals() {
                stop.store(true, Ordering::SeqCst);
                interrupt = Some(e);
            }
        } else {
            waited_after_stop += POLL;
            // Every loop stops within a step; one that does not (a long
            // native step) is left to finish on its own.
            if waited_after_stop > Duration::from_secs(2) {
                return Err(interrupt.unwrap_or_else(|| PyKeyboardInterrupt::new_err("")));
            }
        }
    }
    let joined = handle
        .join()
        .map_err(|_| BoltzError::new_err("the worker thread failed"))?;
    let callback_error = callbacks.iter().find_map(|c| c.take_error());
    for c in callbacks {
        if let Ok(mut s) = c.stop.lock() {
            *s = None;
        }
    }
    if let Some(e) = interrupt {
        return Err(e);
    }
    if let Some(e) = callback_error {
        return Err(e);
    }
    match joined {
        Ok(r) => r.map_err(to_py),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(BoltzError::new_err(format!(
                "internal error (a panic in boltz, please report it): {msg}"
            )))
        }
    }
}

pub(crate) fn control(stop: Arc<AtomicBool>) -> Control {
    Control {
        stop: Some(stop),
        ..Control::default()
    }
}

pub(crate) fn owned2(a: Option<PyReadonlyArray2<'_, f64>>) -> Option<Array2<f64>> {
    a.map(|a| a.as_array().to_owned())
}
