"""Amortised minibatch SVI (`inference.amortised_fit`) at three cohort sizes: wall time and
peak RSS per size, each size in its own process (so peaks are not shared).

    python -m benchmarks.bench_amortised_fit [--quick] [--steps N]

Fixed number of steps per size (cost per step independent of N). Held-out AUC here is on
new simulated students' answers predicted from the fitted module parameters and the
*true* states (a check of the globals only); the comparison with full-batch ADVI on a
subsample is NOT implemented yet. Has not been run on a GPU (the code is JAX; install
jax[cuda12] and run it as it is).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def one(n_students: int, steps: int, seed: int = 0) -> dict:
    from bayes_lse.core.config import DEFAULT_MODEL_CONFIG
    from bayes_lse.evaluate.metrics import auc
    from bayes_lse.inference.amortised import ModuleSource
    from bayes_lse.inference.amortised_fit import Cohort, fit_amortised
    from bayes_lse.inference.encoder import module_tables
    from bayes_lse.model import terms as eq

    priors = DEFAULT_MODEL_CONFIG["priors"]
    r = np.random.default_rng(seed)
    A, L, d = 50, 20, 2
    req = np.abs(r.normal(size=(1, A, d))) * 1.5
    gain = np.abs(r.normal(size=(1, L, d)))
    pre = np.abs(r.normal(size=(1, L, d)))
    ab = r.normal(size=(1, A))
    src = ModuleSource(req, ab, gain, pre, 0.5, priors, True, module_tables(req[0], ab[0], gain[0], pre[0]),
                       max_steps=5, max_answers=3)
    parts, off = [], 0
    for _ in range(0, n_students, 50_000):  # simulate in chunks
        s = src.simulate(min(50_000, n_students - off), r)
        parts.append((s.student + off, s.kind, s.code, s.outcome, s.step))
        off += s.n_students
    cols = [np.concatenate([p[i] for p in parts]) for i in range(5)]
    del parts
    c = Cohort(*cols, n_students=n_students)
    n_answers = int((c.kind == 0).sum())
    t0 = time.perf_counter()
    res = fit_amortised(c, n_assessments=A, n_lessons=L, n_skills=d, priors=priors, learning_noise=0.5,
                        batch_size=256, steps=steps, hidden=32, learning_rate=2e-2, seed=seed)
    wall = time.perf_counter() - t0
    test = src.simulate(2000, np.random.default_rng(seed + 99))
    ia = np.flatnonzero(test.kind == 0)
    p = eq.pass_probability(test.states[test.student[ia], test.step[ia]], res.mean("requirement")[test.code[ia]],
                            test.bias[test.student[ia]], res.mean("assessment_bias")[test.code[ia]])
    return {"students": n_students, "rows": int(len(c.student)), "answers": n_answers, "steps": steps,
            "fit_seconds": round(wall, 1), "seconds_per_step": round(wall / steps, 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "auc_globals_true_states": round(float(auc(test.outcome[ia], p)), 4),
            "final_loss": round(float(res.losses[-50:].mean()), 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    steps = a.steps or (100 if a.quick else 2000)
    if a.one is not None:
        print(json.dumps(one(a.one, steps)))
        return
    sizes = [5_000, 20_000, 80_000] if a.quick else [20_000, 80_000, 320_000]
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_amortised_fit", "--one", str(n),
                              "--steps", str(steps)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print("RESULT " + json.dumps({"case": "amortised_fit", "sizes": rows, "gpu": "not run on a GPU"}))


if __name__ == "__main__":
    main()
