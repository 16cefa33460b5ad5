"""boltz.distributed on a LocalCluster of 2 single-threaded workers: the
merged log Z, log P and draws equal the one-process run's bit for bit."""

import numpy as np
import pytest

import boltz

distributed = pytest.importorskip("dask.distributed")
import boltz.distributed as bd  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_sharded_logz_equals_the_one_process_run(client):
    for model in ("gmm-ring", "rbm20"):
        one = boltz.logz(model, method="ais", particles=120, temps=80, seed=4, reverse=False)
        for shards in (1, 3):
            r = bd.logz(client, model, shards=shards, particles=120, temps=80, seed=4)
            for k in ("log_z", "stderr", "ess"):
                np.testing.assert_array_equal(r[k], one[k], err_msg=f"{model} {shards} {k}")
            assert r["shards"] == shards and isinstance(r["warnings"], list)


def test_sharded_log_prob_and_sample(client):
    pts = np.array([[4.0, 0.0], [0.0, 0.0]])
    lp1, _ = boltz.log_prob("gmm-ring", pts, method="ais", particles=90, temps=60, seed=2,
                            reverse=False, return_report=True)
    lp, rep = bd.log_prob(client, "gmm-ring", pts, shards=2, particles=90, temps=60, seed=2)
    np.testing.assert_array_equal(lp, lp1)
    # Sharded sampling: every split gives the same draws (shards=1 is the one-process run).
    d1, _ = bd.sample(client, "gmm-far", "mala", shards=1, chains=5, warmup=100, draws=50, seed=1)
    d3, r3 = bd.sample(client, "gmm-far", "mala", shards=3, chains=5, warmup=100, draws=50, seed=1)
    np.testing.assert_array_equal(d1, d3)
    assert d3.shape == (5, 50, 32) and r3["chains"] == 5
    # Parallel tempering with a ladder per chain: the one-process run's
    # draws and stepping-stone log Z (issue 29).
    pt = dict(sampler="pt", chains=3, warmup=100, draws=40, seed=4, replicas=4, ladder="per-chain")
    p1, q1 = boltz.sample("gmm-ring", **pt)
    p3, q3 = bd.sample(client, "gmm-ring", shards=3, **pt)
    np.testing.assert_array_equal(p1, p3)
    assert q3["pt"]["log_z"] == q1["pt"]["log_z"] and q3["pt"]["betas"] == q1["pt"]["betas"]
    with pytest.raises(boltz.BoltzError, match="ladder"):
        bd.sample(client, "gmm-ring", shards=2, **{**pt, "ladder": "pooled"})


def test_native_energies_are_refused(client):
    with pytest.raises(boltz.BoltzError, match="suite name or a model file"):
        bd.logz(client, boltz.load_model("gmm-ring"), shards=2)


def test_shards_of_different_models_behind_one_path_do_not_merge(tmp_path, monkeypatch):
    # Workers in different directories whose `model.json` differ: the same
    # spec and settings string, other models (issue 34: merged to 2.76
    # between 1.84 and 3.23, no warning). The worker adds the model's
    # fingerprint to the settings, so the merge refuses them.
    import json

    blobs = []
    for i, std in enumerate((1.0, 2.0)):
        d = tmp_path / f"worker{i}"
        d.mkdir()
        (d / "model.json").write_text(json.dumps({"kind": "gaussian", "mean": [0, 0], "std": [std, std]}))
        monkeypatch.chdir(d)
        job = {"method": "ais", "particles": 40, "temps": 20, "no_reverse": True,
               "shard": {"index": i, "count": 2}}
        blobs.append(bd._run_shard("model.json", "logz", json.dumps(job), "logz model.json same",
                                   None, None, None, False, None))
    paths = []
    for i, b in enumerate(blobs):
        p = tmp_path / f"s{i}"
        p.write_bytes(b)
        paths.append(str(p))
    with pytest.raises(boltz.BoltzError, match="settings"):
        boltz._native.merge_shards(paths)


def test_a_relative_model_path_names_the_same_file_on_the_workers(client, tmp_path, monkeypatch):
    # The workers were started in another directory: the path is made
    # absolute before it is sent (it was resolved in each worker's own).
    import json

    (tmp_path / "model.json").write_text(json.dumps({"kind": "gaussian", "mean": [1, 0], "std": [1, 2]}))
    monkeypatch.chdir(tmp_path)
    one = boltz.logz(str(tmp_path / "model.json"), method="ais", particles=40, temps=30, reverse=False)
    r = bd.logz(client, "model.json", shards=2, particles=40, temps=30)
    np.testing.assert_array_equal(r["log_z"], one["log_z"])
    with pytest.raises(boltz.BoltzError, match="missing.json"):
        bd.sample(client, "missing.json", shards=2)


class _FailingFuture:
    def __init__(self, i, fail):
        self.i, self.fail = i, fail

    def result(self):
        if self.fail:
            raise OSError("connection to the worker lost")
        return b""


class _FakeClient:
    """A client whose shard 1 fails every attempt (what Dask raises once its
    retries are spent)."""

    def __init__(self):
        self.retries, self.cancelled = [], 0

    def submit(self, fn, *args, retries=None, **kw):
        self.retries.append(retries)
        return _FailingFuture(len(self.retries) - 1, len(self.retries) - 1 == 1)

    def cancel(self, futures):
        self.cancelled += len(futures)


def test_a_shard_that_keeps_failing_is_named_and_the_rest_cancelled():
    c = _FakeClient()
    with pytest.raises(boltz.BoltzError, match=r"shard 1 of 3 failed after 5 retries \(OSError: connection"):
        bd.logz(c, "gmm-ring", shards=3, particles=30, temps=10, retries=5)
    assert c.retries == [5, 5, 5] and c.cancelled == 3
    with pytest.raises(boltz.BoltzError, match="retries"):
        bd.logz(c, "gmm-ring", shards=3, retries=-1)


def test_a_worker_killed_mid_run_loses_nothing(client):
    # One worker process is killed (SIGKILL) while its shard runs: Dask's
    # scheduler reruns the lost shard on a worker that lives, and the merged
    # result is still the one-process run's, bit for bit.
    import os
    import signal
    import threading
    import time

    kw = dict(particles=512, temps=4000, seed=9)
    one = boltz.logz("rbm20", method="ais", reverse=False, **kw)
    out, killed = {}, []

    def run():
        out["r"] = bd.logz(client, "rbm20", shards=2, **kw)

    t = threading.Thread(target=run)
    t.start()
    pids = client.run(os.getpid)
    deadline = time.monotonic() + 60
    while not killed and time.monotonic() < deadline:
        busy = {w: ks for w, ks in client.processing().items() if ks}
        if busy:
            time.sleep(0.1)  # inside the shard (each runs for about 1.5 s here)
            w = sorted(busy)[0]
            if client.processing().get(w):
                os.kill(pids[w], signal.SIGKILL)
                killed.append(w)
        time.sleep(0.02)
    t.join(120)
    assert killed, "no shard was seen running"
    for k in ("log_z", "stderr", "ess"):
        np.testing.assert_array_equal(out["r"][k], one[k], err_msg=k)
