#!/usr/bin/env bash
# Every test of boltz, on a fresh machine with a Rust toolchain and Python 3.9+:
#  1. the Rust tests (library, CLI, examples, doctests): cargo test --release;
#  2. the Python package: a virtual environment of its own (target/test-venv,
#     or $BOLTZ_TEST_VENV) with maturin, numpy, pytest, safetensors and
#     dask[distributed] (boltz.distributed is tested on a LocalCluster), the
#     package built from python/ and installed with pip, then pytest.
# torch is optional: its tests run where it is installed in that
# environment (BOLTZ_TEST_TORCH=1 installs it) and are skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
venv="${BOLTZ_TEST_VENV:-target/test-venv}"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check maturin numpy pytest safetensors "dask[distributed]"
if [ "${BOLTZ_TEST_TORCH:-0}" = 1 ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch
fi
# The build uses the environment's maturin (no second, isolated download).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./python
"$venv/bin/python" -m pytest -q python/tests
