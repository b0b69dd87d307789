"""How the cost of one log-density + gradient evaluation grows with the number of interactions.

    python -m benchmarks.bench_gradient_scaling [--quick] [--sizes 10000,100000,1000000]

Simulated cohorts of 10k, 100k and 1M interactions (students answer 3 assessments
per step over 10 steps and take a lesson between steps: 39 interactions each; 50
assessments, 20 lessons, d = 2, prerequisites and biases on).  For each size and
each parametrisation the PyMC model's joint log-density and its gradient are
compiled as one function of the raveled unconstrained point — the function PyMC's
NUTS calls, ``model.logp_dlogp_function(ravel_inputs=True)`` — and one evaluation
is timed: the median of repeated calls after a warm-up, in wall time and in CPU
time.  The log-log slope of CPU time against interactions is fitted by least
squares (1.0 is linear), also per pair of sizes; CPU time because on a shared
machine long calls are stretched by other jobs more than short ones.

Series: ``noncentered`` (innovations through the truncated-normal inverse CDF; the
default for histories up to 64 steps), ``centered`` (later states free, transition
density as a potential; any history length) and, when ``bayes_lse.map_kernel``
exists, the compiled MAP objective + gradient.

``--quick``: 3k and 30k interactions (a two-point slope), fewer repeats.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

import numpy as np

from benchmarks.runner import emit_result

PER_STUDENT = 39  # 10 steps x 3 answers + 9 lessons


def cohort(n_interactions: int, seed: int = 0):
    import bayes_lse as bl

    n_students = max(2, round(n_interactions / PER_STUDENT))
    sim = bl.simulate(n_students=n_students, n_steps=10, n_assessments=50, n_lessons=20, answers_per_step=3, seed=seed)
    return bl.read_interactions(sim.table)


def time_calls(fn, x: np.ndarray, min_repeats: int, budget: float) -> dict[str, float]:
    """Median wall and CPU time of one call after two warm-up calls; at least `min_repeats`
    calls, more while the total stays under `budget` seconds (at most 50).

    CPU time (``time.process_time``: every thread of this process) is what the slope is
    fitted on: on a shared machine a call longer than a scheduler time slice is stretched
    by the other jobs while a sub-millisecond call usually is not, which bends a
    wall-time slope upwards without the code doing more work."""
    fn(x)
    fn(x)
    wall: list[float] = []
    cpu: list[float] = []
    t_start = time.perf_counter()
    while len(wall) < min_repeats or (time.perf_counter() - t_start < budget and len(wall) < 50):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(x)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(wall), "min_s": min(wall), "cpu_median_s": statistics.median(cpu),
            "repeats": len(wall)}


def pymc_series(log, parametrization: str, min_repeats: int, budget: float) -> dict[str, Any]:
    import pymc as pm

    import bayes_lse as bl

    t0 = time.perf_counter()
    model, _ = bl.LatentSkillEmbedding(n_skills=2).build_model(log, parametrization=parametrization)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn = model.logp_dlogp_function(ravel_inputs=True)
    t_compile = time.perf_counter() - t0
    point = model.initial_point(0)
    x = pm.blocking.DictToArrayBijection.map(point).data
    x = x + np.random.default_rng(1).uniform(-0.3, 0.3, size=x.shape)
    logp, grad = fn(x)
    if not (np.isfinite(logp) and np.all(np.isfinite(grad))):
        raise RuntimeError(f"{parametrization}: non-finite log-density or gradient at the test point")
    out = time_calls(fn, x, min_repeats, budget)
    out.update(build_s=t_build, compile_s=t_compile, n_params=int(x.size))
    return out


def map_kernel_series(log, min_repeats: int, budget: float) -> dict[str, Any] | None:
    """The compiled centred objective of `bayes_lse.map_kernel` (MAP's objective for long
    histories), set to the same density as the ``centered`` PyMC series — truncation
    normaliser kept, log-space positives with the Jacobian — so the two compare term for
    term.  None when the module is absent."""
    try:
        from bayes_lse.inference import map_kernel as mk
    except ImportError:
        return None
    import bayes_lse as bl
    from bayes_lse.model.graph import IndexArrays

    spec = bl.LatentSkillEmbedding(n_skills=2)
    t0 = time.perf_counter()
    idx = IndexArrays.from_log(log)
    obj = mk.CentredObjective(
        idx, spec.config, n_students=log.n_students, n_assessments=log.n_assessments, n_lessons=log.n_lessons,
        normalised=True, log_space=True, jacobian=True,
    )
    t_build = time.perf_counter() - t0
    x = obj.initial_point() + np.random.default_rng(1).uniform(-0.3, 0.3, size=obj.size)
    t0 = time.perf_counter()
    f, g = obj(x)  # first call compiles (or loads numba's cache)
    t_compile = time.perf_counter() - t0
    if not (np.isfinite(f) and np.all(np.isfinite(g))):
        raise RuntimeError("map_kernel: non-finite objective or gradient at the test point")
    out = time_calls(obj, x, min_repeats, budget)
    out.update(build_s=t_build, compile_s=t_compile, n_params=int(x.size))
    return out


def slope(ns: list[int], ts: list[float]) -> float | None:
    if len(ns) < 2:
        return None
    b, _ = np.polyfit(np.log(ns), np.log(ts), 1)
    return float(b)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3k and 30k interactions, fewer repeats")
    ap.add_argument("--sizes", default=None, help="comma-separated interaction counts")
    ap.add_argument("--series", default="noncentered,centered,map_kernel")
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in (args.sizes or ("3000,30000" if args.quick else "10000,100000,1000000")).split(",")]
    min_repeats, budget = (3, 1.0) if args.quick else (5, 5.0)
    series = [s.strip() for s in args.series.split(",") if s.strip()]

    results: dict[str, list[dict[str, Any]]] = {s: [] for s in series}
    skipped: dict[str, str] = {}
    print(f"{'series':12} {'interactions':>12} {'params':>9} {'build s':>8} {'compile s':>9} "
          f"{'wall ms':>9} {'cpu ms':>9} {'cpu ns/interaction':>18} {'repeats':>7}", flush=True)
    for n in sizes:
        t0 = time.perf_counter()
        log = cohort(n)
        n_rows = len(log.table)
        print(f"-- simulated {n_rows:,} interactions ({log.n_students:,} students) in {time.perf_counter() - t0:.1f} s",
              flush=True)
        for s in series:
            if s in skipped:
                continue
            try:
                if s == "map_kernel":
                    r = map_kernel_series(log, min_repeats, budget)
                    if r is None:
                        skipped[s] = "bayes_lse.map_kernel not present"
                        continue
                else:
                    r = pymc_series(log, s, min_repeats, budget)
            except Exception as e:  # noqa: BLE001 - one series failing is reported, the rest goes on
                skipped[s] = f"{type(e).__name__}: {e}"[:300]
                print(f"{s:12} failed: {skipped[s]}", flush=True)
                continue
            r["interactions"] = n_rows
            results[s].append(r)
            print(f"{s:12} {n_rows:>12,} {r['n_params']:>9,} {r['build_s']:>8.1f} {r['compile_s']:>9.1f} "
                  f"{r['median_s'] * 1e3:>9.2f} {r['cpu_median_s'] * 1e3:>9.2f} "
                  f"{r['cpu_median_s'] / n_rows * 1e9:>18.1f} {r['repeats']:>7}", flush=True)
        del log
        gc.collect()

    quality: dict[str, Any] = {}
    figures: dict[str, Any] = {}
    for s, rows in results.items():
        if not rows:
            continue
        ns = [r["interactions"] for r in rows]
        b_cpu = slope(ns, [r["cpu_median_s"] for r in rows])
        b_wall = slope(ns, [r["median_s"] for r in rows])
        quality[f"slope_{s}"] = None if b_cpu is None else round(b_cpu, 3)
        figures[f"{s}_wall_slope"] = None if b_wall is None else round(b_wall, 3)
        for r0, r1 in zip(rows, rows[1:]):
            pair = f"{_size_tag(r0['interactions'])}_{_size_tag(r1['interactions'])}"
            figures[f"{s}_slope_{pair}"] = round(slope([r0["interactions"], r1["interactions"]],
                                                      [r0["cpu_median_s"], r1["cpu_median_s"]]), 3)
        for r in rows:
            tag = _size_tag(r["interactions"])
            figures[f"{s}_cpu_ms_{tag}"] = round(r["cpu_median_s"] * 1e3, 3)
            figures[f"{s}_wall_ms_{tag}"] = round(r["median_s"] * 1e3, 3)
            figures[f"{s}_compile_s_{tag}"] = round(r["compile_s"], 2)
        pairs = ", ".join(f"{k.split('_slope_')[1]}: {v}" for k, v in figures.items() if k.startswith(f"{s}_slope_"))
        print(f"{s}: log-log slope of CPU time per evaluation against interactions = {quality[f'slope_{s}']} "
              f"(wall time: {figures[f'{s}_wall_slope']}; pairwise {pairs})")
    for s, why in skipped.items():
        print(f"{s}: not measured ({why})")
    notes = "; ".join(
        [f"{s} slope {quality[f'slope_{s}']}" for s in series if f"slope_{s}" in quality]
        + [f"{s} not measured: {why}" for s, why in skipped.items()]
    )
    emit_result(
        "gradient_scaling",
        quality=quality,
        figures=figures,
        targets={"slope": "log-density + gradient cost linear in interactions: log-log slope ~1.0 (10k -> 1M)"},
        notes=notes + f"; slopes of median CPU time per call (>= {min_repeats} calls after 2 warm-up calls)",
        skipped_series=skipped,
        sizes=sizes,
    )


def _size_tag(n: int) -> str:
    if n >= 950_000:
        return f"{n / 1e6:.3g}M"
    if n >= 1000:
        return f"{round(n / 1e3)}k"
    return str(n)


if __name__ == "__main__":
    main()
