#!/usr/bin/env bash
# Every test of boltz, on a fresh machine with a Rust toolchain and Python 3.9+:
#  1. the Rust tests (library, CLI, examples, doctests): cargo test in the
#     `ci` profile (release without link-time optimisation: Cargo.toml),
#     every test binary run even when one fails (--no-fail-fast);
#  2. the Python package: a virtual environment of its own (target/test-venv,
#     or $BOLTZ_TEST_VENV) with maturin, numpy, pytest, safetensors,
#     dask[distributed] (boltz.distributed is tested on a LocalCluster),
#     arviz (boltz.to_inference_data), jax and torch (boltz.jax_energy,
#     boltz.torch_energy, W7's posteriors; PyPI's Linux torch brings CUDA's
#     libraries, 5.3 GB installed, 70 s here without a pip cache;
#     BOLTZ_TEST_TORCH=0 leaves torch out and its tests are then skipped),
#     the package built from python/ and installed with pip, then pytest;
#     this runs whatever the Rust tests did.
# Exits 0 when everything passed; otherwise lists what failed, last, and
# exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
cargo test --profile ci --no-fail-fast || failed+=("Rust tests (cargo test --profile ci: the failing binaries are listed above)")
venv="${BOLTZ_TEST_VENV:-target/test-venv}"
python="${PYTHON:-python3}"
# Each step only after the one before succeeded (set -e does not act in
# the condition of an if, where setup runs).
setup() {
    { [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"; } &&
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check maturin numpy pytest safetensors "dask[distributed]" jax arviz &&
        { [ "${BOLTZ_TEST_TORCH:-1}" = 0 ] ||
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch; } &&
        # The build uses the environment's maturin (no second, isolated download).
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps ./python
}
if setup; then
    "$venv/bin/python" -m pytest -q python/tests || failed+=("Python tests (pytest python/tests)")
else
    failed+=("the Python package's environment or build (no Python test ran)")
fi
if [ "${#failed[@]}" -gt 0 ]; then
    echo >&2
    echo "FAILED:" >&2
    for f in "${failed[@]}"; do
        echo "  - $f" >&2
    done
    exit 1
fi
echo "all tests passed"
