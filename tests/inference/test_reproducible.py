"""Same seed, same draws: NUTS run twice in fresh processes, first with an empty compile
cache and then with the cache the first run filled (issue 19, item 5).

Before `engine.reproducible_compilation`, PyMC's sampler drew different chains in the two
runs (posterior hash 618af1ac... cold, 35430d17... warm): PyTensor's numba backend
compiled with fast-math, and the log density compiled from scratch and loaded from the
cache differed in the last bit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import hashlib, json
    import numpy as np
    import bayes_lse as bl

    log = bl.read_interactions(bl.simulate(n_students=12, n_steps=3, n_assessments=5, n_lessons=3, seed=1).table)
    out = {}
    for sampler in ("pymc",):  # the sampler that drew differently (nutpie happened to agree)
        fit = bl.LatentSkillEmbedding(n_skills=1).fit(
            log, method="nuts", draws=60, tune=60, chains=2, seed=0, sampler=sampler, progressbar=False)
        post = fit.idata["posterior"]
        h = hashlib.sha256()
        for name in sorted(post.data_vars):
            h.update(np.ascontiguousarray(post[name].values).tobytes())
        out[sampler] = h.hexdigest()
    print("HASHES " + json.dumps(out))
""")


def _run(cache, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "NUMBA_CACHE_DIR")}
    env["PYTENSOR_FLAGS"] = f"base_compiledir={cache}"
    env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("HASHES ")][-1]
    import json

    return json.loads(line[len("HASHES "):])


@pytest.mark.slow
def test_same_seed_nuts_is_identical_with_cold_and_warm_compile_caches(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cold = _run(cache, tmp_path)
    assert any(cache.rglob("*")), "the first run should have filled the compile cache"
    warm = _run(cache, tmp_path)
    assert cold == warm


def test_fits_compile_without_fastmath(monkeypatch):
    """The setting is off while a fit compiles, and the caller's setting is back afterwards."""
    import pytensor
    import xarray as xr

    import bayes_lse as bl
    from bayes_lse.inference import engine

    seen = []

    def fake_run_fit(*args, **kwargs):
        seen.append(pytensor.config.numba__fastmath)
        return xr.DataTree()

    monkeypatch.setattr(engine, "_run_fit", fake_run_fit)
    before = pytensor.config.numba__fastmath
    log = bl.read_interactions(bl.simulate(n_students=4, n_steps=2, n_assessments=3, n_lessons=1, seed=0).table)
    engine.run_fit(bl.LatentSkillEmbedding(n_skills=1, history=False), log, "nuts")
    assert seen == [False]
    assert pytensor.config.numba__fastmath == before
