"""Bad callbacks, bad input, state round trips, panics, Ctrl-C and the GIL."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import boltz



@pytest.fixture(autouse=True)
def _sigint_raises_keyboard_interrupt():
    """These tests send SIGINT to their own process. A process started in
    the background by a non-interactive shell inherits SIGINT ignored, and
    Python then installs no handler: put the default one in place."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)

def quad(y):
    return 0.5 * (y**2).sum(1), y.copy()


def test_errors_name_settings_as_python_writes_them():
    # Library errors speak of settings, never of CLI flags.
    e = boltz.CallbackEnergy(quad, 2)
    with pytest.raises(boltz.BoltzError, match="buffer_policy") as info:
        boltz.Negatives(e, buffer=8, buffer_policy="nope")
    assert "--" not in str(info.value)
    with pytest.raises(boltz.BoltzError, match="max_depth") as info:
        boltz.sample(e, "nuts", max_depth=40)
    assert "--" not in str(info.value)


def test_boltz_error_is_a_value_error_with_the_cli_message():
    assert issubclass(boltz.BoltzError, ValueError)
    e = boltz.CallbackEnergy(quad, 2)
    with pytest.raises(boltz.BoltzError, match="chains"):
        boltz.sample(e, chains=0)
    with pytest.raises(boltz.BoltzError, match="unknown"):
        boltz.sample(e, sampler="nope")
    with pytest.raises(boltz.BoltzError, match="no-such-model"):
        boltz.load_model("no-such-model")
    with pytest.raises(boltz.BoltzError, match="budget|memory|large"):
        boltz.sample(e, chains=2**40, draws=2**20)
    with pytest.raises(boltz.BoltzError, match="shape"):
        boltz.log_prob(e, np.zeros((3, 5)))
    with pytest.raises(boltz.BoltzError, match="conditional"):
        boltz.logz(e, context=np.zeros((1, 1)))
    with pytest.raises(boltz.BoltzError):
        boltz.CallbackEnergy(quad, 0)
    with pytest.raises(boltz.BoltzError, match="callable"):
        boltz.CallbackEnergy(3, 2)


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda y: (y.sum(1), y[:, :1]), "gradients have shape"),
        (lambda y: (y.sum(1)[:, None], y), "energies have shape"),
        (lambda y: (y.sum(1).astype(np.float32), y), "dtype float32"),
        (lambda y: y.sum(1), "pair"),
        (lambda y: ([0.0] * len(y), y), "numpy array"),
    ],
)
def test_wrong_results_raise_and_name_the_problem(fn, match):
    e = boltz.CallbackEnergy(fn, 3)
    with pytest.raises(boltz.BoltzError, match=match):
        boltz.sample(e, warmup=10, draws=10)
    with pytest.raises(boltz.BoltzError, match=match):
        boltz.logz(e, particles=16, temps=10)
    with pytest.raises(boltz.BoltzError, match=match):
        boltz.Negatives(e, steps=3).sample(chains=4)


def test_an_exception_in_the_callback_is_raised_as_it_is():
    calls = []

    def bad(y):
        calls.append(1)
        if len(calls) > 5:
            raise ZeroDivisionError("boom at call 6")
        return quad(y)

    e = boltz.CallbackEnergy(bad, 2)
    with pytest.raises(ZeroDivisionError, match="boom at call 6"):
        boltz.sample(e, warmup=100, draws=100)
    n = len(calls)
    assert n == 6  # the run stops at the first error: no further calls
    # The energy is usable again.
    calls.clear()
    with pytest.raises(ZeroDivisionError):
        boltz.sample(e, warmup=100, draws=100)


def test_nan_energies_are_divergences_not_errors():
    def f(y):
        e, g = quad(y)
        e[np.abs(y[:, 0]) > 1.5] = np.nan
        return e, g

    draws, rep = boltz.sample(boltz.CallbackEnergy(f, 2), warmup=200, draws=200, seed=1)
    assert np.all(np.isfinite(draws))
    assert rep["divergences"] + rep["warmup_divergences"] > 0


def test_positions_buffer_is_reused():
    seen = set()

    def f(y):
        assert y.flags["C_CONTIGUOUS"] and y.dtype == np.float64
        seen.add(y.__array_interface__["data"][0])
        return quad(y)

    boltz.sample(boltz.CallbackEnergy(f, 4), "mala", chains=8, warmup=50, draws=50)
    # One buffer per batch size (all chains; the warm-up may use another).
    assert len(seen) <= 3, len(seen)


def test_state_dict_round_trip_is_bit_identical(tmp_path):
    e = boltz.load_model("gauss-ill")
    for kw in ({"method": "pcd"}, {"buffer": 50, "reinit": 0.1}, {"method": "short-run"}):
        neg = boltz.Negatives(e, steps=10, seed=4, **kw)
        neg.sample(chains=6)
        sd = neg.state_dict()
        a = [neg.sample(chains=6) for _ in range(3)]
        neg2 = boltz.Negatives(e, steps=10, seed=4, **kw)
        neg2.load_state_dict(sd)
        b = [neg2.sample(chains=6) for _ in range(3)]
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), kw
        neg.save(tmp_path / "s.state")
        neg3 = boltz.Negatives.load(tmp_path / "s.state", e)
        assert neg3.settings == neg.settings
        assert np.array_equal(neg3.sample(chains=6), neg.sample(chains=6))
    # A state of other settings is refused.
    other = boltz.Negatives(e, steps=11, seed=4)
    with pytest.raises(boltz.BoltzError, match="state"):
        other.load_state_dict(sd)
    with pytest.raises(boltz.BoltzError, match="another model"):
        boltz.Negatives.load(tmp_path / "s.state", boltz.load_model("funnel"))
    (tmp_path / "bad.state").write_bytes(b"garbage")
    with pytest.raises(boltz.BoltzError, match="checkpoint"):
        boltz.Negatives.load(tmp_path / "bad.state", e)


def test_negatives_report_and_cd():
    e = boltz.CallbackEnergy(quad, 3)
    data = np.random.default_rng(0).normal(size=(10, 3))
    neg = boltz.Negatives(e, method="cd", steps=5, step_size=0.1)
    x = neg.sample(data)
    assert x.shape == (10, 3)
    r = neg.last_report
    assert r["chains"] == 10 and "energy_gap" in r["stats"] and r["warnings"] == []
    with pytest.raises(boltz.BoltzError, match="one per chain"):
        neg.sample(data, chains=4)
    assert neg.sample(data).shape == (10, 3)  # the failed call changed nothing
    with pytest.raises(boltz.BoltzError, match="method"):
        boltz.Negatives(e, method="nope")


def test_a_panic_is_an_error_and_the_interpreter_lives_on():
    for in_pool in (False, True):
        with pytest.raises(boltz.BoltzError, match="internal error"):
            boltz._native._panic_for_tests(in_pool)
    # Still working afterwards.
    draws, _ = boltz.sample(boltz.CallbackEnergy(quad, 2), warmup=10, draws=10)
    assert draws.shape == (4, 10, 2)


def test_ctrl_c_stops_a_long_run_within_a_second():
    # Within a second of the run's own work: the process's CPU seconds
    # after Ctrl-C per core (a busy machine stretches the wall time, not
    # the work), and a loose wall bound that catches a hang.
    e = boltz.load_model("gauss-ill")
    t0 = []
    cores = os.cpu_count() or 1
    big = np.random.default_rng(0).normal(size=(256, 1000, 64))

    def interrupt():
        t0.append((time.monotonic(), time.process_time()))
        os.kill(os.getpid(), signal.SIGINT)

    for job in (
        lambda: boltz.sample(e, chains=64, warmup=10**6, draws=10**3),
        lambda: boltz.logz(e, method="ais", particles=4096, temps=10**6),
        lambda: boltz.compare(e, ["hmc", "mala"], chains=16, warmup=10**6, draws=100),
        # ~6 s of diagnostics on 2 cores: stopped between coordinates.
        lambda: boltz.diagnose(big),
    ):
        t0.clear()
        timer = threading.Timer(0.5, interrupt)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            job()
        wall, cpu = time.monotonic() - t0[0][0], time.process_time() - t0[0][1]
        assert cpu / cores < 1.0 and wall < 30.0, (wall, cpu)
        # The native work stopped too (it does not go on in the background).
        c0 = time.process_time()
        time.sleep(0.3)
        assert time.process_time() - c0 < 0.15


def test_ctrl_c_in_a_callback_run():
    e = boltz.CallbackEnergy(quad, 2)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        boltz.sample(e, chains=4, warmup=10**7, draws=10)
    assert time.monotonic() - t < 2.0


def test_native_runs_release_the_interpreter_lock():
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)
            time.sleep(0.001)

    th = threading.Thread(target=count)
    th.start()
    try:
        t = time.monotonic()
        boltz.sample(boltz.load_model("gauss-ill"), chains=16, warmup=2000, draws=2000)
        elapsed = time.monotonic() - t
    finally:
        done.set()
        th.join()
    # The other thread ran all along (it would be starved with the lock held).
    assert len(ticks) > 0.3 * elapsed / 0.0011, (len(ticks), elapsed)


def test_negatives_state_survives_an_exception_and_ctrl_c():
    flag = {"fail": False}

    def f(y):
        if flag["fail"]:
            raise RuntimeError("fails this call")
        return quad(y)

    a = boltz.Negatives(boltz.CallbackEnergy(f, 3), method="pcd", steps=5, seed=1)
    b = boltz.Negatives(boltz.CallbackEnergy(quad, 3), method="pcd", steps=5, seed=1)
    assert np.array_equal(a.sample(chains=4), b.sample(chains=4))
    flag["fail"] = True
    with pytest.raises(RuntimeError, match="fails this call"):
        a.sample(chains=4)
    flag["fail"] = False
    # The failed call left the chains and streams as they were.
    assert np.array_equal(a.sample(chains=4), b.sample(chains=4))
    long = boltz.Negatives(boltz.load_model("gauss-ill"), method="pcd", steps=10**7, seed=1)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        long.sample(chains=64)
    assert long.state_dict()["state"] is None  # a first call stopped keeps nothing


# The fork tests run in a fresh interpreter: JAX and torch, imported by
# other test modules of this process, start threads of their own, and a
# fork of a process with them may deadlock in their code (JAX warns so);
# boltz's own behaviour after a fork is what is tested here.
_CHILD = """
import boltz

def sample_in_child():
    draws, _ = boltz.sample("gmm-ring", "mala", chains=2, warmup=50, draws=20, seed=1)
    return draws.shape
"""

_FORK = _CHILD + """
import os, time
# The parent's pool threads do not exist in a forked child: the child
# builds its own pool instead of waiting for them forever (P201).
assert sample_in_child() == (2, 20, 2)
pid = os.fork()
if pid == 0:
    code = 1
    try:
        code = 0 if sample_in_child() == (2, 20, 2) else 3
        code = code if boltz.threads() >= 1 else 4
    finally:
        os._exit(code)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        raise SystemExit(0 if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else 5)
    time.sleep(0.05)
os.kill(pid, 9)
os.waitpid(pid, 0)
raise SystemExit("the forked child hung in its boltz call")
"""

_POOL = _CHILD + """
import multiprocessing
# multiprocessing.Pool with fork (Linux's default before Python 3.14, and
# PyTorch DataLoader workers): every worker computes (P202).
if __name__ == "__main__":
    sample_in_child()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        shapes = pool.starmap_async(sample_in_child, [()] * 4).get(timeout=120)
    assert shapes == [(2, 20, 2)] * 4, shapes
"""


def _run_fresh(code: str, tmp_path) -> None:
    script = tmp_path / "fork_case.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_boltz(tmp_path):
    _run_fresh(_FORK, tmp_path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_multiprocessing_fork_workers_run_boltz(tmp_path):
    _run_fresh(_POOL, tmp_path)


def test_one_negatives_object_shared_by_threads():
    # Six threads calling one object: every call runs (they take turns,
    # none raises "Already borrowed"), and the calls continue one state.
    calls = []
    lock = threading.Lock()

    def slow_quad(y):
        time.sleep(0.002)
        return quad(y)

    neg = boltz.Negatives(boltz.CallbackEnergy(slow_quad, 2), method="pcd", steps=5, seed=3)
    neg.sample(chains=4)
    errors = []

    def work():
        try:
            for _ in range(3):
                neg.sample()
                with lock:
                    calls.append(neg.last_report["call"])
                neg.state_dict()
        except Exception as e:  # pragma: no cover - the failure is the assert below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert neg.state_dict()["state"]["calls"] == 1 + 6 * 3
    # Each thread read the report of the last call to finish then.
    assert len(calls) == 18 and all(2 <= c <= 19 for c in calls)


def _cond(y, x):
    return quad(y)


_BAD_ARGUMENTS = [
    # (case, call, what the message names) -- issue 30's Python audit.
    ("3-D y", lambda: boltz.load_model("gmm-ring").energy_and_grad(np.zeros((2, 2, 2))), "2-D"),
    ("y of strings", lambda: boltz.load_model("gmm-ring").energy_and_grad([["a", "b"]]), "`y`"),
    ("y a string", lambda: boltz.load_model("gmm-ring").energy_and_grad("ab"), "`y`"),
    ("y wrong width", lambda: boltz.load_model("gmm-ring").energy_and_grad(np.zeros((2, 3))), "(n, 2)"),
    ("NaN y", lambda: boltz.load_model("gmm-ring").energy_and_grad(np.array([[0.0, np.nan]])), "finite"),
    ("inf y", lambda: boltz.load_model("gmm-ring").energy_and_grad([[np.inf, 0.0]]), "finite"),
    (
        "10^12-row broadcast view",
        lambda: boltz.load_model("gmm-ring").energy_and_grad(np.broadcast_to(np.zeros(2), (10**12, 2))),
        "would need",
    ),
    ("dim -1", lambda: boltz.CallbackEnergy(quad, -1), "`dim`"),
    ("dim 2.0", lambda: boltz.CallbackEnergy(quad, 2.0), "`dim`"),
    ("dim True", lambda: boltz.CallbackEnergy(quad, True), "`dim`"),
    ("dim 0", lambda: boltz.CallbackEnergy(quad, 0), "`dim`"),
    ("x_dim -1", lambda: boltz.CallbackEnergy(quad, 2, x_dim=-1), "`x_dim`"),
    ("binary 'yes'", lambda: boltz.CallbackEnergy(quad, 2, binary="yes"), "`binary`"),
    ("conditional fn(y)", lambda: boltz.CallbackEnergy(quad, 2, x_dim=1), "fn(y, x)"),
    ("fn(y, x) unconditional", lambda: boltz.CallbackEnergy(_cond, 2), "fn(y)"),
    ("clamp (1,)", lambda: boltz.sample("gmm-ring", "ula", clamp=(1,)), "`clamp`"),
    ("clamp 'ab'", lambda: boltz.Negatives("gmm-ring", clamp="ab"), "`clamp`"),
    ("load_model(None)", lambda: boltz.load_model(None), "name_or_path"),
    ("diagnose of strings", lambda: boltz.diagnose([[["a"]]]), "`samples`"),
    ("diagnose of a string", lambda: boltz.diagnose("abc"), "`samples`"),
    ("log_prob NaN points", lambda: boltz.log_prob("gmm-ring", [[np.nan, 0.0]]), "finite"),
    ("log_prob 0 rows", lambda: boltz.log_prob("gmm-ring", np.zeros((0, 2))), "0 rows"),
    ("log_prob points None", lambda: boltz.log_prob("gmm-ring", None), "`points`"),
]


@pytest.mark.parametrize("case,call,match", _BAD_ARGUMENTS, ids=[c[0] for c in _BAD_ARGUMENTS])
def test_bad_arguments_are_boltz_errors(case, call, match):
    with pytest.raises(boltz.BoltzError) as info:
        call()
    assert match in str(info.value), str(info.value)


def test_points_of_any_real_dtype_or_a_list_are_taken():
    e = boltz.load_model("gmm-ring")
    ref_e, ref_g = e.energy_and_grad(np.array([[0.5, -1.0]]))
    for y in (
        np.array([[0.5, -1.0]], dtype=np.float32),
        [[0.5, -1.0]],
        np.array([0.5, -1.0]),
        np.asfortranarray(np.array([[0.5, -1.0]])),
    ):
        got_e, got_g = e.energy_and_grad(y)
        assert got_e.dtype == np.float64 and got_e.shape == (1,)
        np.testing.assert_array_equal(got_e, ref_e)
        np.testing.assert_array_equal(got_g, ref_g)
    ints_e, _ = e.energy_and_grad(np.array([[1, 2]]))
    np.testing.assert_array_equal(ints_e, e.energy_and_grad([[1.0, 2.0]])[0])


def test_one_callback_energy_shared_by_threads_gives_each_run_its_draws():
    # Six threads sampling one CallbackEnergy with one seed: each gets the
    # single run's draws (the input buffer was shared across concurrent
    # evaluations while fn slept: issue 34's wrong draws).
    def slow_quad(y):
        time.sleep(0.0002)  # releases the interpreter lock mid-call
        return 0.5 * (y**2).sum(1), y.copy()

    e = boltz.CallbackEnergy(slow_quad, 2)
    ref, _ = boltz.sample(e, "mala", chains=4, warmup=30, draws=30, seed=11)
    got, errors = [None] * 6, []

    def work(i):
        try:
            got[i] = boltz.sample(e, "mala", chains=4, warmup=30, draws=30, seed=11)[0]
        except Exception as ex:  # pragma: no cover - reported below
            errors.append(ex)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for g in got:
        np.testing.assert_array_equal(g, ref)


def test_diagnose_within_the_memory_budget():
    # Under `ulimit -v` 3 GB a 1.28 GB array is refused with a BoltzError
    # before its copies are made (the interpreter aborted on allocation).
    import subprocess
    import sys

    code = (
        "import resource, numpy as np\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 * 10**9, 3 * 10**9))\n"
        "import boltz\n"
        "a = np.zeros((100, 1600000, 1))\n"
        "try:\n"
        "    boltz.diagnose(a)\n"
        "    print('ran')\n"
        "except boltz.BoltzError as e:\n"
        "    print('refused:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "refused:" in r.stdout and "would need" in r.stdout, r.stdout


def test_a_save_that_cannot_be_written_keeps_the_older_file(tmp_path):
    # S091: Negatives.save that fails to write (here: a file-size limit,
    # as a full disk would) raises BoltzError and leaves the older state
    # file as it was, with no temporary left.
    import subprocess
    import sys

    path = tmp_path / "st"
    code = (
        "import resource, signal, sys, boltz\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "small = boltz.Negatives('gmm-ring', method='pcd', steps=2)\n"
        "small.sample(chains=4)\n"
        f"small.save({str(path)!r})\n"
        f"old = open({str(path)!r}, 'rb').read()\n"
        "big = boltz.Negatives('gmm-ring', method='short-run', buffer=20000, steps=2)\n"
        "big.sample(chains=512)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (len(old) + 1000, resource.RLIM_INFINITY))\n"
        "try:\n"
        f"    big.save({str(path)!r})\n"
        "    print('saved')\n"
        "except boltz.BoltzError as e:\n"
        "    print('refused:', e)\n"
        f"print('intact' if open({str(path)!r}, 'rb').read() == old else 'changed')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "refused:" in r.stdout and "intact" in r.stdout, r.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["st"]
