#!/usr/bin/env python3
"""Fits the digits GMM of issue 27: a scikit-learn GaussianMixture with 20
full-covariance components on the 8x8 digits (scikit-learn's bundled
`load_digits`, 1797 images, pixels scaled to [0, 1]), written as a boltz
mixture model file. At beta = 1 its log Z is exactly 0 (its weights are
probabilities): a realistic 64-dimensional multimodal target with a known
answer.

    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn numpy
    /tmp/skvenv/bin/python scripts/fit_digits_gmm.py [OUT_DIR]

writes OUT_DIR (default examples/models/digits-gmm) model.json, weights.npy,
means.npy, precision_cholesky.npy and first3.npy (the first three digits,
whose log densities under scikit-learn tests/energy.rs checks).
"""
import json
import os
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "examples", "models", "digits-gmm")
os.makedirs(out, exist_ok=True)
x = load_digits().data / 16.0
gmm = GaussianMixture(n_components=20, covariance_type="full", reg_covar=1e-2,
                      max_iter=500, random_state=0).fit(x)
print(f"converged {gmm.converged_}, {gmm.n_iter_} iterations, "
      f"mean log-likelihood {gmm.score(x):.3f} nats/image", file=sys.stderr)
np.save(os.path.join(out, "weights.npy"), gmm.weights_.astype(np.float64))
np.save(os.path.join(out, "means.npy"), gmm.means_.astype(np.float64))
u = gmm.precisions_cholesky_.astype(np.float64)
# Exactly upper triangular (scikit-learn's factor is; zero round-off below).
u = np.triu(u)
np.save(os.path.join(out, "precision_cholesky.npy"), u)
with open(os.path.join(out, "model.json"), "w") as f:
    json.dump({"kind": "mixture", "weights": "weights.npy", "means": "means.npy",
               "precision_cholesky": "precision_cholesky.npy"}, f)
    f.write("\n")
np.save(os.path.join(out, "first3.npy"), x[:3])
# A check the Rust side repeats: log density of the data under the file's
# parameters equals scikit-learn's.
print(json.dumps({"score_samples_first3": gmm.score_samples(x[:3]).tolist()}))
