"""Every job on callback energies against exact answers.

Tolerances come from Monte Carlo error: means and variances within 4 MCSE
(ESS-based, from boltz.diagnose), log Z within 3 reported standard errors.
With fixed seeds the tests are deterministic; the rate at which a correct
sampler would fail a 4-MCSE check is about 6e-5 per check (two-sided normal
tail), a 3-se check about 3e-3.
"""

import json
import math
import os

import numpy as np
import pytest

import boltz

# A correlated 3-D Gaussian: F(y) = 0.5 (y - m)^T P (y - m).
MEAN = np.array([1.0, -0.5, 2.0])
COV = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, -0.3], [0.0, -0.3, 0.5]])
PREC = np.linalg.inv(COV)
LOGZ = 0.5 * 3 * math.log(2 * math.pi) + 0.5 * math.log(np.linalg.det(COV))


def gauss(y):
    d = y - MEAN
    g = d @ PREC
    return 0.5 * np.einsum("ij,ij->i", d, g), g


def quartic(y):
    """F(y) = |y|^2 / 2 + y_0^4 / 4."""
    e = 0.5 * (y**2).sum(1) + 0.25 * y[:, 0] ** 4
    g = y.copy()
    g[:, 0] += y[:, 0] ** 3
    return e, g


def quartic_logz(dim):
    t, h = np.linspace(-12, 12, 200001, retstep=True)
    one = np.log(np.exp(-0.5 * t**2 - 0.25 * t**4).sum() * h)  # the tails are < 1e-30
    return one + 0.5 * (dim - 1) * math.log(2 * math.pi)


def test_sample_moments_of_a_correlated_gaussian():
    e = boltz.CallbackEnergy(gauss, 3)
    draws, rep = boltz.sample(e, "mala", chains=8, warmup=1000, draws=2000, seed=3)
    assert draws.shape == (8, 2000, 3) and draws.dtype == np.float64
    for key in ("acceptance", "divergences", "step_size", "ess_bulk_min", "ess_tail_min",
                "rhat_max", "grad_evals", "wall_s", "warnings"):
        assert key in rep, key
    assert rep["rhat_max"] < 1.01 and rep["warnings"] == []
    d = boltz.diagnose(draws)
    z = (d["mean"] - MEAN) / d["mcse_mean"]
    assert np.all(np.abs(z) < 4), z
    # Variances: E[(y - m)^2] with its own MCSE.
    sq = boltz.diagnose((draws - MEAN) ** 2)
    zv = (sq["mean"] - np.diag(COV)) / sq["mcse_mean"]
    assert np.all(np.abs(zv) < 4), zv


def test_hmc_nuts_automala_and_rwm_sample_the_same_gaussian():
    # A callback is a batch energy: NUTS runs its chains in lockstep here.
    e = boltz.CallbackEnergy(gauss, 3)
    for sampler in ("hmc", "nuts", "automala", "rwm"):
        draws, rep = boltz.sample(e, sampler, chains=8, warmup=1000, draws=2000, seed=5)
        d = boltz.diagnose(draws)
        z = (d["mean"] - MEAN) / d["mcse_mean"]
        assert np.all(np.abs(z) < 4), (sampler, z)


def test_logz_and_log_prob_of_a_callback():
    e = boltz.CallbackEnergy(gauss, 3)
    # No exact answer: the default holds AIS, SMC and PT against each other.
    r = boltz.logz(e, particles=1024, temps=300, seed=1)
    assert r["method"] == "check" and r["check"]["verdict"] == "agree", r["warnings"]
    assert r["log_z"].shape == (1,)
    assert abs(r["log_z"][0] - LOGZ) < 3 * r["stderr"][0], (r["log_z"], LOGZ, r["stderr"])
    for k in ("ess", "wall_s", "warnings"):
        assert k in r
    pts = np.array([[1.0, -0.5, 2.0], [0.0, 0.0, 0.0]])
    lp, rep = boltz.log_prob(e, pts, particles=1024, temps=300, seed=1, return_report=True)
    exact = -gauss(pts)[0] - LOGZ
    assert lp.shape == (1, 2)
    assert np.all(np.abs(lp[0] - exact) < 3 * rep["stderr"][0])


def test_logz_of_a_non_gaussian_target():
    e = boltz.CallbackEnergy(quartic, 4)
    r = boltz.logz(e, particles=1024, temps=500, seed=2)
    assert abs(r["log_z"][0] - quartic_logz(4)) < 3 * r["stderr"][0]


def test_conditional_callback_per_context_log_z():
    # F(x, y) = 0.5 |y - x|^2 / s(x)^2 with s = 1 + x_0^2 / 4: log Z(x) = 2 (0.5 log 2 pi + log s).
    def f(y, x):
        s = 1 + x[:, :1] ** 2 / 4
        d = (y - x) / s
        return 0.5 * (d**2).sum(1), d / s

    e = boltz.CallbackEnergy(f, 2, x_dim=2)
    assert (e.dim, e.x_dim) == (2, 2)
    ctx = np.array([[0.0, 0.0], [2.0, -1.0], [-3.0, 1.0]])
    r = boltz.logz(e, context=ctx, particles=512, temps=300, seed=0)
    exact = math.log(2 * math.pi) + 2 * np.log(1 + ctx[:, 0] ** 2 / 4)
    assert r["log_z"].shape == (3,)
    assert np.all(np.abs(r["log_z"] - exact) < 3 * r["stderr"]), (r["log_z"], exact)
    lp = boltz.log_prob(e, np.zeros((5, 2)), context=ctx, particles=512, temps=300)
    assert lp.shape == (3, 5)
    paired = boltz.log_prob(e, ctx[:, :2], context=ctx, paired=True, particles=256, temps=100)
    assert paired.shape == (3,)
    draws, rep = boltz.sample(e, chains=4, warmup=300, draws=300, context=ctx[1])
    assert abs(draws[..., 0].mean() - 2.0) < 0.3


def test_callback_and_builtin_give_the_same_draws(tmp_path):
    mean, std = [0.5, -1.0, 2.0], [1.0, 0.5, 2.0]
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"kind": "gaussian", "mean": mean, "std": std}))
    native = boltz.load_model(p)
    m, s = np.array(mean), np.array(std)

    w = 1.0 / (s * s)

    def cb(y):
        # The built-in's arithmetic: g = (y - m) w, F = 0.5 sum (y - m) g,
        # summed in its lane order ((t0 + t2) + t1 for 3 terms).
        g = (y - m) * w
        t = (y - m) * g
        return 0.5 * ((t[:, 0] + t[:, 2]) + t[:, 1]), g

    e = boltz.CallbackEnergy(cb, 3)
    y = np.random.default_rng(0).normal(size=(7, 3))
    en, gn = native.energy_and_grad(y)
    ec, gc = e.energy_and_grad(y)
    assert np.array_equal(ec, en) and np.array_equal(gc, gn)
    for sampler in ("mala", "hmc", "ula"):
        a, _ = boltz.sample(native, sampler, warmup=200, draws=200, seed=7)
        b, _ = boltz.sample(e, sampler, warmup=200, draws=200, seed=7)
        assert np.max(np.abs(a - b)) < 1e-12, sampler
    na = boltz.Negatives(native, steps=30, buffer=64, seed=2).sample(chains=16)
    nb = boltz.Negatives(e, steps=30, buffer=64, seed=2).sample(chains=16)
    assert np.max(np.abs(na - nb)) < 1e-12
    za = boltz.logz(native, method="ais", particles=128, temps=50, reverse=False)
    zb = boltz.logz(e, method="ais", particles=128, temps=50)
    assert abs(za["log_z"][0] - zb["log_z"][0]) < 1e-9


def test_suite_models_and_exact_log_z():
    g = boltz.load_model("gauss-ill")
    r = boltz.logz(g)
    assert r["method"] == "exact" and r["stderr"][0] == 0
    assert abs(r["log_z"][0] - g.exact_log_z) < 1e-9
    rbm = boltz.load_model("rbm20")
    assert rbm.binary and rbm.kind == "rbm"
    draws, rep = boltz.sample(rbm, "gibbs", chains=2, warmup=20, draws=20)
    assert set(np.unique(draws)) <= {0.0, 1.0}


def test_binary_callback_runs_heat_bath_gibbs():
    # Independent bits with P(y_i = 1) = sigmoid(h_i): F = -h.y, log Z = sum softplus(h).
    h = np.array([1.0, -0.5, 0.0, 2.0])

    def f(y):
        return -(y @ h), np.tile(-h, (y.shape[0], 1))

    e = boltz.CallbackEnergy(f, 4, binary=True)
    draws, rep = boltz.sample(e, "gibbs", chains=4, warmup=100, draws=2000, seed=0)
    p = 1 / (1 + np.exp(-h))
    d = boltz.diagnose(draws)
    assert np.all(np.abs(d["mean"] - p) < 4 * d["mcse_mean"]), (d["mean"], p)
    r = boltz.logz(e, method="exact")
    assert abs(r["log_z"][0] - np.logaddexp(0, h).sum()) < 1e-9


def test_compare_returns_the_table():
    rows = boltz.compare(boltz.load_model("gauss-ill"), ["mala", "hmc"], warmup=200, draws=200)
    assert [r["sampler"] for r in rows] == ["mala", "hmc"]
    assert all("ess_bulk_min" in r and "warnings" in r and "var_error" in r for r in rows)


def test_diagnose_iid_draws():
    x = np.random.default_rng(1).normal(size=(4, 1000, 2))
    d = boltz.diagnose(x)
    assert d["ess_bulk"].shape == (2,)
    assert np.all(np.abs(d["rhat"] - 1) < 0.01)
    assert np.all(d["ess_bulk"] > 3000)
    assert d["warnings"] == [] and d["warning_kinds"] == []
    # Two chains in different places: R-hat sees it, and says which kind.
    far = np.concatenate([x[:2], x[2:] + 5.0])
    d = boltz.diagnose(far)
    assert "rhat" in d["warning_kinds"] and len(d["warning_kinds"]) == len(d["warnings"])
    with pytest.raises(boltz.BoltzError):
        boltz.diagnose(np.zeros((2, 2, 2)))
    # The CLI's rules (one library job): non-finite draws are refused, a
    # constant coordinate is noted and left out of the worst cases.
    y = x.copy()
    y[1, 5, 0] = np.nan
    with pytest.raises(boltz.BoltzError, match="non-finite"):
        boltz.diagnose(y)
    z = np.concatenate([x, np.full((4, 1000, 1), 7.0)], axis=2)
    d = boltz.diagnose(z)
    assert "constant" in d["notes"][0] and np.isfinite(d["rhat_max"])


def test_init_and_thin():
    e = boltz.CallbackEnergy(gauss, 3)
    start = np.tile(MEAN, (3, 1))
    draws, rep = boltz.sample(e, chains=3, warmup=0, draws=5, thin=2, init=start, step_size=1e-9)
    assert draws.shape == (3, 5, 3)
    assert np.max(np.abs(draws - MEAN)) < 1e-3
    _, rep = boltz.sample(e, chains=2, warmup=10, draws=10, init="gaussian:0.5")
    assert "Gaussian" in rep["init"]


def test_help_teaches_the_call():
    assert "chains" in boltz.sample.__doc__ and "warnings" in boltz.sample.__doc__
    assert boltz.CallbackEnergy.__doc__
    assert os.path.exists(os.path.join(os.path.dirname(boltz.__file__), "py.typed"))


def test_persistent_negatives_follow_the_target():
    # PCD with MALA: every call continues the chains with an exact kernel,
    # so the calls' outputs are (autocorrelated) draws of the target.
    e = boltz.CallbackEnergy(gauss, 3)
    neg = boltz.Negatives(e, method="pcd", kernel="mala", steps=10, step_size=0.5, seed=3)
    calls = np.stack([neg.sample(chains=32) for _ in range(300)], axis=1)[:, 50:]
    d = boltz.diagnose(calls)
    assert np.all(np.abs(d["mean"] - MEAN) < 4 * d["mcse_mean"]), (d["mean"], d["mcse_mean"])
    sq = boltz.diagnose((calls - MEAN) ** 2)
    assert np.all(np.abs(sq["mean"] - np.diag(COV)) < 4 * sq["mcse_mean"])
    assert neg.last_report["stats"]["acceptance"] > 0.3


def test_the_readme_example_runs():
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    if not os.path.exists(readme):
        pytest.skip("README.md not next to the package (installed elsewhere)")
    text = open(readme).read()
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert 5 <= len(block.strip().splitlines()) <= 12
    exec(compile(block, "README.md", "exec"), {})


def ring(y):
    """Eight Gaussians (sd 0.3) on a circle of radius 4: the suite's gmm-ring."""
    a = 2 * np.pi * np.arange(8) / 8
    m = 4 * np.stack([np.cos(a), np.sin(a)], 1)
    d = y[:, None, :] - m[None]
    lw = -0.5 * (d**2).sum(2) / 0.09
    top = lw.max(1, keepdims=True)
    w = np.exp(lw - top)
    e = -(top[:, 0] + np.log(w.sum(1)))
    g = (w[:, :, None] * d / 0.09).sum(1) / w.sum(1, keepdims=True)
    return e, g


def test_parallel_tempering_of_a_callback_covers_every_mode():
    # PT advances every replica of every chain in one callback per step.
    e = boltz.CallbackEnergy(ring, 2)
    draws, rep = boltz.sample(e, "pt", chains=8, warmup=500, draws=2000, seed=1, replicas=8)
    assert draws.shape == (8, 2000, 2)
    pt = rep["pt"]
    assert pt["replicas"] == 8 and pt["round_trips"] > 100 and rep["kernel"] == "mala"
    mode = np.round(np.arctan2(draws[..., 1], draws[..., 0]) / (2 * np.pi / 8)).astype(int) % 8
    for k in range(8):
        ind = (mode == k).astype(float)[..., None]
        d = boltz.diagnose(ind)
        assert abs(d["mean"][0] - 1 / 8) < 4 * d["mcse_mean"][0], (k, d["mean"][0])
    # The stepping-stone estimate against log(8 * 2 pi * 0.09).
    r = boltz.logz(e, method="pt", replicas=8, chains=8, warmup=500, draws=2000, seed=2)
    exact = math.log(8 * 2 * math.pi * 0.09)
    assert abs(r["log_z"][0] - exact) < 3 * r["stderr"][0], (r["log_z"], r["stderr"])
    assert r["pt"]["lambda"] > 0


def test_f32_precision_of_rbm_and_mlp():
    # The f32 path (issue 14): energies within 1e-5 relative of f64, the
    # exact log Z of rbm20 recovered by AIS within 3 se, refused elsewhere.
    rbm = boltz.load_model("rbm20")
    rbm32 = boltz.load_model("rbm20", precision="f32")
    assert (rbm.precision, rbm32.precision) == ("f64", "f32")
    v = (np.random.default_rng(0).random((50, rbm.dim)) < 0.5).astype(float)
    e64, _ = rbm.energy_and_grad(v)
    e32, _ = rbm32.energy_and_grad(v)
    assert np.max(np.abs(e32 - e64) / np.maximum(np.abs(e64), 1)) < 1e-5
    r = boltz.logz(rbm32, method="ais")
    assert abs(r["log_z"][0] - rbm.exact_log_z) < 3 * r["stderr"][0]
    mlp = boltz.load_model("mlp")
    mlp32 = mlp.with_precision("f32")
    x = np.random.default_rng(1).normal(size=(20, mlp.x_dim))
    y = np.random.default_rng(2).normal(size=(20, mlp.dim))
    (a, ga), (b, gb) = mlp.energy_and_grad(y, x), mlp32.energy_and_grad(y, x)
    assert np.max(np.abs(a - b) / np.maximum(np.abs(a), 1)) < 1e-5
    assert np.max(np.abs(ga - gb)) < 1e-5 * max(1.0, np.max(np.abs(ga)))
    with pytest.raises(boltz.BoltzError, match="mlp and rbm"):
        boltz.load_model("gauss-ill", precision="f32")
    with pytest.raises(boltz.BoltzError, match="f64 or f32"):
        mlp.with_precision("f16")


def test_kernels_come_from_the_registry():
    ks = boltz.kernels()
    names = [k["name"] for k in ks]
    assert {"mala", "hmc", "nuts", "gibbs"} <= set(names)
    nuts = next(k for k in ks if k["name"] == "nuts")
    assert [s["name"] for s in nuts["settings"]] == ["step_size", "target_accept", "max_depth"]
    assert nuts["space"] == "continuous" and nuts["invariance"] == "exact"
    # Every registered name is in the docstrings that list kernels.
    for f in (boltz.sample, boltz.logz, boltz.Negatives):
        assert all("``%s``" % n in f.__doc__ for n in names), f
    # max_depth reaches NUTS: a depth-1 trajectory is at most one leapfrog step.
    e = boltz.CallbackEnergy(lambda y: (0.5 * (y**2).sum(1), y.copy()), 2)
    _, r1 = boltz.sample(e, "nuts", chains=2, warmup=50, draws=50, max_depth=1)
    _, r6 = boltz.sample(e, "nuts", chains=2, warmup=50, draws=50, max_depth=6)
    assert r1["grad_evals"] < r6["grad_evals"]


def test_logz_by_smc_reports_its_islands():
    # Annealed SMC with resample-move on gmm-ring (exact log Z known):
    # within 3 of its standard errors, both standard errors reported.
    r = boltz.logz("gmm-ring", method="smc", seed=3)
    assert r["method"] == "smc"
    smc = r["smc"]
    assert smc["islands"] == 8 and smc["moves_per_temp"] == 5
    se = r["stderr"][0]
    assert se >= max(smc["stderr_genealogy"][0], smc["stderr_islands"][0]) - 1e-15
    assert abs(r["log_z"][0] - r["exact_log_z"]) < 3 * se
    with pytest.raises(boltz.BoltzError, match="cess"):
        boltz.logz("gmm-ring", method="smc", cess=1.5)


def test_binary_models_refuse_non_binary_points():
    # Issue 32: log P of an RBM at 0.5 or 7 is a number that means nothing;
    # log_prob refuses it, naming the entry (energy_and_grad keeps the free
    # energy's continuous extension, which relaxations use).
    rbm = boltz.load_model("rbm20")
    v = np.ones((3, rbm.dim))
    assert np.isfinite(boltz.log_prob(rbm, v, method="exact")).all()
    for bad in (0.5, 7.0):
        v[2, 5] = bad
        with pytest.raises(boltz.BoltzError, match="row 2, column 5"):
            boltz.log_prob(rbm, v, method="exact")


def test_data_start_the_pilot_where_the_mass_is():
    # The separated-modes mixture (mass 0.8 in a narrow mode at +8, 0.2 at
    # -8; log Z = 0): SMC's over-dispersed pilot misses the narrow mode,
    # while positives drawn from the model start it there.
    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "models", "separated-modes.json")
    m = boltz.load_model(path)
    rng = np.random.default_rng(0)
    narrow = rng.random(200) < 0.8
    data = np.where(narrow[:, None], 8 + 0.5 * rng.standard_normal((200, 5)), -8 + rng.standard_normal((200, 5)))
    r = boltz.logz(m, method="smc", data=data, seed=0)
    assert abs(r["log_z"][0]) < 3 * r["stderr"][0] and not r["warnings"], r
    with pytest.raises(boltz.BoltzError, match="data"):
        boltz.logz(m, method="smc", data=np.zeros((4, 3)))


def test_sample_without_diagnostics_and_whole_wall_time():
    # diagnostics=False skips R-hat/ESS (the same draws); wall_s covers
    # the whole call, its parts reported apart; the report names the start.
    _, with_diag = boltz.sample("gauss-ill", chains=64, warmup=50, draws=100, seed=2)
    draws, r = boltz.sample("gauss-ill", chains=64, warmup=50, draws=100, seed=2, diagnostics=False)
    draws2, _ = boltz.sample("gauss-ill", chains=64, warmup=50, draws=100, seed=2)
    np.testing.assert_array_equal(draws, draws2)
    assert r["diagnostics"] is False and np.isnan(r["ess_bulk_min"]) and np.isnan(r["rhat_max"])
    assert with_diag["diagnostics"] is True and with_diag["ess_bulk_min"] > 0
    for rep in (r, with_diag):
        assert rep["wall_s"] >= rep["sampling_s"] > 0
        assert abs(rep["wall_s"] - rep["sampling_s"] - rep["diagnostics_s"]) < 1e-9
    assert with_diag["diagnostics_s"] > r["diagnostics_s"]
    init = np.zeros((4, 100))
    _, r = boltz.sample("gauss-ill", warmup=10, draws=10, init=init)
    assert r["init"] == "the positions given (4 x 100)"


def test_logz_reverse_from_draws():
    # Reverse AIS from given draws of the target: an upper bound.
    draws, _ = boltz.sample("gmm-ring", chains=8, warmup=500, draws=200, seed=1)
    r = boltz.logz("gmm-ring", method="ais", particles=256, temps=200,
                   reverse_from=draws.reshape(-1, 2)[:256])
    assert "log_z_upper" in r and np.isfinite(r["log_z_upper"])


def test_negatives_defaults_are_the_clis():
    # The CLI's `negatives` defaults (steps 100, step 0.01, short-run, ULA,
    # reinit 0.05, append): the package promises the CLI's defaults.
    s = boltz.Negatives("gauss-ill").settings
    assert (s["steps"], s["step_size"], s["method"], s["reinit"], s["buffer_policy"]) == (
        100, 0.01, "short-run", 0.05, "append",
    )


def test_negatives_cost_what_each_kernel_states():
    # A counting callback: each call of `gauss` is one batch evaluation of
    # every chain. Without end energies, K ULA moves cost exactly K
    # evaluations (the last move is not evaluated), MALA K + 1 (the starts
    # and K proposals), HMC with L leapfrog steps K L + 1; with them (the
    # default) ULA costs one more, and `data` one more again.
    calls = []

    def counted(y):
        calls.append(y.shape[0])
        return gauss(y)

    e = boltz.CallbackEnergy(counted, 3)
    data = np.tile(MEAN, (16, 1))
    cases = [
        ("ula", {}, False, lambda k: k),
        ("mala", {}, False, lambda k: k + 1),
        ("hmc", {"leapfrog": 4}, False, lambda k: 4 * k + 1),
        ("ula", {}, True, lambda k: k + 1),
    ]
    for kernel, extra, ends, cost in cases:
        for k in (1, 5, 40):
            neg = boltz.Negatives(e, method="pcd", kernel=kernel, steps=k, step_size=0.05,
                                  end_energies=ends, **extra)
            for _ in range(3):  # PCD: every call continues the chains
                calls.clear()
                neg.sample(chains=16)
                assert len(calls) == cost(k), (kernel, ends, k, len(calls))
                assert all(n == 16 for n in calls)
                stats = neg.last_report["stats"]
                assert stats["grad_evals"] == cost(k)
                assert (stats["energy_neg"] is None) == (not ends)
            calls.clear()
            neg.sample(data)
            assert len(calls) == cost(k) + (1 if ends else 0), (kernel, ends, k)
    # The draws do not depend on it.
    a = boltz.Negatives(e, method="pcd", steps=7, step_size=0.05, seed=2)
    b = boltz.Negatives(e, method="pcd", steps=7, step_size=0.05, seed=2, end_energies=False)
    for _ in range(3):
        assert np.array_equal(a.sample(chains=8), b.sample(chains=8))
    assert b.last_report["energies"] is None and len(a.last_report["energies"]) == 8


def test_negatives_follow_the_batch_size():
    # A training loop whose last batch is smaller: the replay buffer and
    # the streams carry on; chain i keeps stream (seed, i).
    e = boltz.CallbackEnergy(gauss, 3)
    neg = boltz.Negatives(e, steps=5, step_size=0.05, buffer=100, seed=4)
    assert neg.sample(np.zeros((16, 3))).shape == (16, 3)
    assert neg.sample(np.zeros((5, 3))).shape == (5, 3)
    assert neg.last_report["buffer"] == 21
    assert neg.sample().shape == (5, 3)  # the last call's size
    assert neg.sample(chains=32).shape == (32, 3)
    back = boltz.Negatives(e, steps=5, step_size=0.05, buffer=100, seed=4)
    back.load_state_dict(neg.state_dict())
    assert np.array_equal(back.sample(chains=7), neg.sample(chains=7))
    # PCD keeps its chains: data of another size gives only the energy gap.
    pcd = boltz.Negatives(e, method="pcd", steps=5, step_size=0.05)
    assert pcd.sample(np.zeros((8, 3))).shape == (8, 3)
    assert pcd.sample(np.zeros((3, 3))).shape == (8, 3)
    with pytest.raises(boltz.BoltzError, match="pcd"):
        pcd.sample(chains=4)
    assert pcd.sample().shape == (8, 3)


def test_negatives_adapt_their_step_across_calls():
    # A step far too large freezes MALA: with a fixed step the sampler says
    # so; with adapt_step it shrinks the step until the acceptance is near
    # MALA's target (0.574) and stays quiet.
    e = boltz.CallbackEnergy(gauss, 3)
    kw = dict(method="pcd", kernel="mala", steps=10, step_size=50.0, seed=1)
    fixed = boltz.Negatives(e, **kw)
    adapt = boltz.Negatives(e, adapt_step=True, **kw)
    acc = []
    for _ in range(40):
        fixed.sample(chains=32)
        adapt.sample(chains=32)
        acc.append(adapt.last_report["stats"]["acceptance"])
    assert fixed.last_report["stats"]["acceptance"] < 0.05 and fixed.last_report["warnings"]
    # Each warning's kind, in the same order.
    assert fixed.last_report["warning_kinds"] == ["frozen"], fixed.last_report
    assert fixed.last_report["stats"]["step_size"] == 50.0
    assert 0.45 < np.mean(acc[-20:]) < 0.7, acc
    assert adapt.last_report["warnings"] == []
    assert adapt.last_report["stats"]["step_size"] < 5.0
    # The adapted step is part of the state.
    back = boltz.Negatives(e, adapt_step=True, **kw)
    back.load_state_dict(adapt.state_dict())
    assert np.array_equal(back.sample(chains=32), adapt.sample(chains=32))
    with pytest.raises(boltz.BoltzError, match="adapt_step"):
        boltz.Negatives(e, adapt_step=True).sample(chains=4)  # ULA has no acceptance


def test_draws_as_arviz_inference_data():
    # ArviZ takes boltz's draws, and its ess and rhat equal boltz.diagnose's
    # (the diagnostics follow ArviZ's definitions).
    az = pytest.importorskip("arviz")
    draws, report = boltz.sample("gmm-ring", "mala", chains=4, warmup=200, draws=300, seed=3)
    energies = boltz.load_model("gmm-ring").energy_and_grad(draws.reshape(-1, 2))[0].reshape(4, 300)
    idata = boltz.to_inference_data(draws, report, energies=energies)
    assert idata.posterior["y"].shape == (4, 300, 2)
    np.testing.assert_allclose(idata.sample_stats["lp"].values, -energies)
    assert idata.posterior.attrs["sampler"] == "mala"
    assert idata.posterior.attrs["inference_library"] == "boltz"
    d = boltz.diagnose(draws)
    np.testing.assert_allclose(az.ess(idata)["y"].values, d["ess_bulk"], rtol=1e-9)
    np.testing.assert_allclose(az.ess(idata, method="tail")["y"].values, d["ess_tail"], rtol=1e-9)
    np.testing.assert_allclose(az.rhat(idata)["y"].values, d["rhat"], rtol=1e-9)
    with pytest.raises(boltz.BoltzError, match="energies"):
        boltz.to_inference_data(draws, energies=energies[:, :10])


def test_sample_stats_per_draw_reach_arviz():
    # sample_stats=True: each draw's transition statistics in the report,
    # consistent with the report's own totals, and in ArviZ's sample_stats.
    az = pytest.importorskip("arviz")
    draws, report = boltz.sample("gauss-ill", "nuts", chains=4, warmup=300, draws=200, seed=4, sample_stats=True)
    st = report["sample_stats"]
    assert set(st) == {"lp", "acceptance_rate", "diverging", "n_steps", "step_size", "tree_depth"}
    assert all(v.shape == (4, 200) for v in st.values())
    dim = draws.shape[2]
    energies = boltz.load_model("gauss-ill").energy_and_grad(draws.reshape(-1, dim))[0].reshape(4, 200)
    np.testing.assert_allclose(st["lp"], -energies, rtol=1e-12)
    # the chains' mean acceptance statistic and divergences are the report's
    np.testing.assert_allclose(st["acceptance_rate"].mean(), report["acceptance"], rtol=1e-9)
    assert int(st["diverging"].sum()) == report["divergences"]
    # NUTS to depth 10: 1 to 1023 leapfrog steps; the step fixed after warm-up
    assert st["n_steps"].min() >= 1 and st["n_steps"].max() <= 1023
    # a row energy: each chain's own steps, 2^j - 1 kept and at most 2^j
    # more discarded at its tree depth j
    j = st["tree_depth"]
    assert np.all((2**j - 1 <= st["n_steps"]) & (st["n_steps"] < 2 ** (j + 1))) and j.max() <= 10
    assert np.all(st["step_size"] == st["step_size"][:, :1])
    np.testing.assert_allclose(np.median(st["step_size"][:, 0]), report["step_size"], rtol=1e-12)
    idata = boltz.to_inference_data(draws, report)
    for k in st:
        np.testing.assert_array_equal(idata.sample_stats[k].values, st[k])
    assert az.summary(idata).shape[0] == dim
    # A batch energy (a callback): the chains in lockstep, each draw's
    # steps the batch's longest trajectory, its depth the chain's own.
    cb = boltz.CallbackEnergy(lambda y: (0.5 * (y * y).sum(1), y.copy()), 3)
    _, lock = boltz.sample(cb, "nuts", chains=4, warmup=100, draws=100, seed=4, sample_stats=True)
    n, j = lock["sample_stats"]["n_steps"], lock["sample_stats"]["tree_depth"]
    assert np.all(n == n[:1]) and np.all(n >= (2**j - 1).max(0)) and np.any(j != j[:1])
    # not asked for: a report without it (JSON-clean)
    _, plain = boltz.sample("gauss-ill", "nuts", chains=2, warmup=50, draws=20, seed=4)
    assert "sample_stats" not in plain
    # parallel tempering has none to give: refused, not dropped
    with pytest.raises(boltz.BoltzError, match="`sample_stats`: parallel tempering records no"):
        boltz.sample("gauss-ill", "pt", chains=2, warmup=10, draws=10, sample_stats=True)


def test_mass_windows_reach_the_run_and_a_bad_name_is_refused():
    # Stan's expanding windows give another warm-up (other draws); the
    # default equals naming the proportional windows.
    e = boltz.load_model("gauss-ill")
    kw = dict(sampler="nuts", chains=2, warmup=300, draws=50, seed=4, diagnostics=False)
    d0, _ = boltz.sample(e, **kw)
    dp, _ = boltz.sample(e, mass_windows="proportional", **kw)
    de, r = boltz.sample(e, mass_windows="expanding", **kw)
    assert np.array_equal(d0, dp)
    assert not np.array_equal(d0, de)
    assert np.all(np.isfinite(de)) and isinstance(r["warnings"], list)
    with pytest.raises(boltz.BoltzError, match="mass_windows|proportional"):
        boltz.sample(e, mass_windows="stan", **kw)


def test_dense_mass_reaches_the_run_and_gives_the_covariance():
    # A ridge (correlation -0.9999, scales 1 and 50) as a NumPy callback:
    # AutoStep HMC with a dense mass gives the moments (4 MCSE) and the
    # report's inverse mass is the adapted matrix's diagonal; shards and
    # tempering refuse it by its Python name.
    cov = np.array([[1.0, -0.9999 * 50], [-0.9999 * 50, 2500.0]])
    prec = np.linalg.inv(cov)

    def ridge(y):
        g = y @ prec
        return 0.5 * np.einsum("ij,ij->i", y, g), g

    e = boltz.CallbackEnergy(ridge, 2)
    d, r = boltz.sample(e, "autohmc", chains=4, warmup=1000, draws=1000, seed=2, dense_mass=True)
    assert r["warnings"] == []
    diag = boltz.diagnose(d)
    for j in range(2):
        mcse = math.sqrt(cov[j, j] / diag["ess_bulk"][j])
        assert abs(d[..., j].mean()) < 4 * mcse
    assert np.allclose(r["inv_mass"], np.diag(cov), rtol=0.05)
    with pytest.raises(boltz.BoltzError, match="dense_mass"):
        boltz.sample(e, "pt", chains=2, warmup=10, draws=10, dense_mass=True)
