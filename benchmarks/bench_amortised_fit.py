"""Amortised minibatch SVI (`inference.amortised_fit`) at three cohort sizes, and at 25M
interactions: wall time and peak RSS per size, each size in its own process (so peaks
are not shared).

    python -m benchmarks.bench_amortised_fit [--quick] [--steps N]      # three sizes
    python -m benchmarks.bench_amortised_fit --size25m [--steps N]      # ~25M rows
    python -m benchmarks.bench_amortised_fit --rows R [--steps N]       # one size by rows

The cohort is simulated in chunks of 50,000 students straight into lean arrays
(`amortised_fit.LEAN`: int32 / int8, 14 bytes a row), ~6.5 rows (answers + lessons) a
student. Fixed number of steps per size (cost per step independent of N). The default,
5000 steps, is 2.5× where the loss and the held-out AUC stopped moving in the
convergence check in docs/benchmarks.md (1k-20k steps on 320k students); the split of
the pass offset between the requirement norm |a| and the assessment bias, which only
the priors set, was still drifting at 20k steps (see there). Reported: rows, students, steps, simulation / fit / total seconds,
steady-state seconds per step (compilation excluded), peak RSS (ru_maxrss) and RSS at
stages, and the held-out AUC on new simulated students' answers predicted from the
fitted module parameters and their *true* states (a check of the globals only) next to
the same AUC with the true module parameters (the ceiling). The comparison with
full-batch ADVI on a subsample is NOT implemented. Has not been run on a GPU (the code
is JAX; install jax[cuda12] and run it as it is).

Measured 2026-12-04 on 2 shared CPU cores (docs/benchmarks.md): --size25m, 24,993,529
rows / 3,846,154 students, 5,000 steps: 77.8 s in all (12.6 s simulation), peak RSS
1,046 MB; 15,025 steps (about one pass): 221.8 s, 1,077 MB. Three sizes: 619 / 618 /
647 MB peak at 20k / 80k / 320k students.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

ROWS_PER_STUDENT = 6.5  # max_steps=5, max_answers=3: 3 steps × 1.5 answers + 2 lessons on average
ROWS_25M = 25_000_000
DEFAULT_STEPS = 5000
CHUNK = 50_000


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:  # pragma: no cover - not Linux
        return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate_cohort(src, n_students: int, rng: np.random.Generator, chunk: int = CHUNK):
    """A `Cohort` of `n_students` simulated from `src` in chunks of `chunk` students, each
    chunk written at once into lean columns (`amortised_fit.LEAN`) allocated for the most
    rows the design allows (max_steps × max_answers answers + max_steps − 1 lessons a
    student); the unused tail of that allocation is never written, so it never becomes
    resident (RSS holds the rows only). No list of chunks is kept: joining chunks doubled
    the cohort's memory, and glibc kept the freed chunks' heap."""
    from bayes_lse.inference.amortised_fit import LEAN, Cohort

    cap = n_students * (src.max_steps * src.max_answers + max(src.max_steps - 1, 0))
    cols = {k: np.empty(cap, dtype=t) for k, t in LEAN.items()}
    off = n = 0
    while off < n_students:
        s = src.simulate(min(chunk, n_students - off), rng)
        m = len(s.student)
        cols["student"][n:n + m] = s.student + off
        cols["kind"][n:n + m] = s.kind
        cols["code"][n:n + m] = s.code
        cols["outcome"][n:n + m] = np.nan_to_num(s.outcome)  # lessons: 0 (ignored for them)
        cols["step"][n:n + m] = s.step
        off += s.n_students
        n += m
        del s
    return Cohort(*(cols[k][:n] for k in ("student", "kind", "code", "outcome", "step")), n_students=n_students)


def design(seed: int):
    """The benchmark cohort's modules (50 assessments, 20 lessons, d = 2, prerequisites,
    σ_L = 0.5, ≤ 5 steps × 3 answers) as a `ModuleSource`, with the generator that drew them
    (the cohort is simulated from it next) and the true (req, gain, pre, ab). Shared with
    `bench_amortised_end_to_end`."""
    from bayes_lse.core.config import DEFAULT_MODEL_CONFIG
    from bayes_lse.inference.amortised import ModuleSource
    from bayes_lse.inference.encoder import module_tables

    r = np.random.default_rng(seed)
    A, L, d = 50, 20, 2
    req = np.abs(r.normal(size=(1, A, d))) * 1.5
    gain = np.abs(r.normal(size=(1, L, d)))
    pre = np.abs(r.normal(size=(1, L, d)))
    ab = r.normal(size=(1, A))
    src = ModuleSource(req, ab, gain, pre, 0.5, DEFAULT_MODEL_CONFIG["priors"], True,
                       module_tables(req[0], ab[0], gain[0], pre[0]), max_steps=5, max_answers=3)
    return src, r, (req, gain, pre, ab)


def one(n_students: int, steps: int, seed: int = 0) -> dict:
    t_start = time.perf_counter()
    from bayes_lse.core.config import DEFAULT_MODEL_CONFIG
    from bayes_lse.evaluate.metrics import auc
    from bayes_lse.inference.amortised_fit import fit_amortised
    from bayes_lse.model import terms as eq

    stages = {"start": round(_rss_mb(), 1)}
    priors = DEFAULT_MODEL_CONFIG["priors"]
    src, r, (req, gain, pre, ab) = design(seed)
    A, L, d = req.shape[1], gain.shape[1], req.shape[2]
    t0 = time.perf_counter()
    c = simulate_cohort(src, n_students, r)
    sim_seconds = time.perf_counter() - t0
    stages["cohort"] = round(_rss_mb(), 1)
    stages["peak_after_cohort"] = round(_peak_mb(), 1)
    n_rows = int(len(c.student))
    n_answers = int(n_rows - np.count_nonzero(c.kind))
    cohort_mb = sum(a.nbytes for a in (c.student, c.kind, c.code, c.outcome, c.step)) / 2**20
    marks: list[tuple[float, str]] = []

    def progress(msg: str) -> None:
        marks.append((time.perf_counter(), msg))

    t0 = time.perf_counter()
    res = fit_amortised(c, n_assessments=A, n_lessons=L, n_skills=d, priors=priors, learning_noise=0.5,
                        batch_size=256, steps=steps, hidden=32, learning_rate=2e-2, seed=seed, progress=progress)
    wall = time.perf_counter() - t0
    stages["after_fit"] = round(_rss_mb(), 1)
    # steady state: from the first progress mark (a tenth of the steps, compilation done) to the last
    k = max(1, steps // 10)
    per_step = (marks[-1][0] - marks[0][0]) / (steps - k) if len(marks) >= 2 else wall / steps
    test = src.simulate(2000, np.random.default_rng(seed + 99))
    ia = np.flatnonzero(test.kind == 0)
    s_true, g_true = test.states[test.student[ia], test.step[ia]], test.bias[test.student[ia]]
    p = eq.pass_probability(s_true, res.mean("requirement")[test.code[ia]], g_true,
                            res.mean("assessment_bias")[test.code[ia]])
    p0 = eq.pass_probability(s_true, req[0][test.code[ia]], g_true, ab[0][test.code[ia]])
    n_loss = len(res.losses)
    window = max(1, min(500, n_loss // 10))
    trace = {str(i): round(float(res.losses[max(0, i - window):i].mean()), 3)
             for i in sorted({min(n_loss, x) for x in (window, n_loss // 4, n_loss // 2, 3 * n_loss // 4, n_loss)})}
    return {"students": n_students, "rows": n_rows, "answers": n_answers, "steps": steps,
            "cohort_mb": round(cohort_mb, 1), "simulate_seconds": round(sim_seconds, 1),
            "fit_seconds": round(wall, 1), "total_seconds": round(time.perf_counter() - t_start, 1),
            "seconds_per_step": round(per_step, 4),
            "peak_rss_mb": round(_peak_mb(), 1), "rss_mb_at": stages,
            "auc_globals_true_states": round(float(auc(test.outcome[ia], p)), 4),
            "auc_true_globals_true_states": round(float(auc(test.outcome[ia], p0)), 4),
            **_rmse(res, req[0], gain[0], ab[0]),
            "loss_trace": trace, "final_loss": round(float(res.losses[-50:].mean()), 3)}


def _rmse(res, req: np.ndarray, gain: np.ndarray, ab: np.ndarray) -> dict:
    """The fitted globals (posterior means) against the truth, under the skill order that
    fits best (the skills are exchangeable, so labels may swap): RMSE of the requirement
    and gain; the requirement's norm relative to the truth's; and what the answers
    identify — the pass logit is s·a/|a| − |a| + g_j, so the direction a/|a| (mean cosine
    to the truth) and the offset g_j − |a| (RMSE), while |a| and g_j apart are set by
    their priors only."""
    from itertools import permutations

    fr, fg, fab = res.mean("requirement"), res.mean("gain"), res.mean("assessment_bias")
    best = min(permutations(range(req.shape[1])),
               key=lambda o: np.mean((fr[:, o] - req) ** 2) + np.mean((fg[:, o] - gain) ** 2))
    o = list(best)
    nf, nt = np.linalg.norm(fr, axis=1), np.linalg.norm(req, axis=1)
    return {"requirement_rmse": round(float(np.sqrt(np.mean((fr[:, o] - req) ** 2))), 4),
            "gain_rmse": round(float(np.sqrt(np.mean((fg[:, o] - gain) ** 2))), 4),
            "requirement_norm_ratio": round(float(np.linalg.norm(fr) / np.linalg.norm(req)), 3),
            "requirement_direction_cos": round(float(np.mean(np.sum(fr[:, o] * req, axis=1) / (nf * nt))), 4),
            "offset_rmse": round(float(np.sqrt(np.mean(((fab - nf) - (ab - nt)) ** 2))), 4)}


def _run(n: int, steps: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_amortised_fit", "--one", str(n),
                          "--steps", str(steps)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--size25m", action="store_true", help="one cohort of ~25M rows (answers + lessons)")
    ap.add_argument("--rows", type=int, default=None, help="one cohort of about this many rows")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    steps = a.steps or (100 if a.quick else DEFAULT_STEPS)
    if a.one is not None:
        print(json.dumps(one(a.one, steps)))
        return
    if a.size25m or a.rows:
        rows = ROWS_25M if a.size25m else a.rows
        n = int(round(rows / ROWS_PER_STUDENT))
        out = _run(n, steps)
        print(json.dumps(out), flush=True)
        print("RESULT " + json.dumps({"case": "amortised_fit", "sizes": [out], "gpu": "not run on a GPU"}))
        return
    sizes = [5_000, 20_000, 80_000] if a.quick else [20_000, 80_000, 320_000]
    rows_out = []
    for n in sizes:
        rows_out.append(_run(n, steps))
        print(json.dumps(rows_out[-1]), flush=True)
    print("RESULT " + json.dumps({"case": "amortised_fit", "sizes": rows_out, "gpu": "not run on a GPU"}))


if __name__ == "__main__":
    main()
