"""NUTS per sampler (nutpie, pymc, numpyro): wall time until every identified quantity
has bulk ESS >= 400 on a simulated 300-student x 10-step cohort.  Prints figures, asserts nothing.

    python -m benchmarks.bench_nuts                 # the full case (tens of minutes)
    python -m benchmarks.bench_nuts --quick         # 60 students x 5 steps, 2 chains x 200 draws, < 1 min per sampler
    python -m benchmarks.bench_nuts --samplers nutpie,numpyro --no-variants

Protocol, per sampler: fit `bayes_lse.simulate(300, 10, seed=1)` (simulator defaults,
model defaults, non-centred trajectory) with 4 chains, `tune` tuning steps (default 500) and `draws`
draws; read the smallest bulk ESS over the identified quantities exactly as
`FittedLSE.diagnostics()` computes it (pass probabilities and D-values of a fixed
subsample of 500 observed rows, D(s, q) of 300 transitions, |a|, |l|, |q|, biases);
if it is below the target, refit from scratch with more draws (scaled by target/ESS,
with a margin) until the target is met or the next run would pass the time cap.  The
time that counts is the wall time of the *first run that meets the target*, fit
included (model build, compilation, tuning, sampling), as a user who knows the draw
count would wait; the cumulative time of every attempt is printed too.

Variants (full run, after the main table; single runs at the best sampler's draw
count): the cartesian requirement form against the polar default (model.py),
target_accept 0.8 against 0.9, tune 1000 against 500, how 4 chains share
2 cores (nutpie/pymc `cores=4` against the default 2; numpyro `chain_method`
'parallel' (4 XLA host devices), 'sequential', 'vectorized'), and the same total
draws in 2 chains (half the tuning work).  `--variants 'k=v,k=v;k=v'` runs other
ones instead (e.g. `adaptation=low_rank` for nutpie: far slower here, see notes).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time
import warnings
from typing import Any

import numpy as np

import bayes_lse as bl
from bayes_lse.diagnostics import diagnose
from benchmarks.runner import emit_result

SAMPLERS = ("nutpie", "pymc", "numpyro")


def _available(sampler: str) -> str | None:
    if sampler != "numpyro":
        return None
    try:
        import jax  # noqa: F401
        import numpyro  # noqa: F401
    except ImportError:
        return "jax/numpyro not installed (pip install 'bayes-lse[jax]')"
    return None


def _cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _verdict(d: Any, check: str) -> float:
    rows = d.verdicts[d.verdicts["check"] == check]
    return float(rows["value"].iloc[0]) if len(rows) else math.nan  # e.g. no R-hat with one chain


def fit_once(table: Any, sampler: str, *, chains: int, draws: int, tune: int, seed: int, **opts: Any) -> dict[str, Any]:
    """One NUTS fit, timed from the call (model build + compile + tune + sample) and
    diagnosed on identified quantities as `FittedLSE.diagnostics()` does."""
    t0, c0 = time.perf_counter(), _cpu_seconds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = bl.LatentSkillEmbedding().fit(
            table, method="nuts", sampler=sampler, chains=chains, draws=draws, tune=tune, seed=seed,
            progressbar=False, **opts,
        )
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    t1 = time.perf_counter()
    d = diagnose(fitted.idata, loo=False, predictive=False)
    diag_s = time.perf_counter() - t1
    summ = d["identified_summary"].set_index("variable")
    worst = summ["min_ess_bulk"].idxmin()
    ss = fitted.idata["sample_stats"].to_dataset()
    depth = ss["tree_depth"] if "tree_depth" in ss else ss.get("depth")
    return {
        "sampler": sampler,
        "chains": chains,
        "draws": draws,
        "tune": tune,
        **opts,
        "wall_s": wall,
        "cpu_s": cpu,  # this process's threads + reaped children (PyMC's chain processes)
        "fit_runtime_s": fitted.runtime_seconds,  # pm.sample alone (no model build)
        "min_bulk_ess": _verdict(d, "Bulk ESS (identified)"),
        "min_tail_ess": _verdict(d, "Tail ESS (identified)"),
        "max_rhat": _verdict(d, "R-hat (identified)"),
        "worst_variable": str(worst),
        "divergences": int(np.asarray(ss["diverging"]).sum()),
        "mean_tree_depth": float(np.asarray(depth).mean()) if depth is not None else math.nan,
        "diagnose_s": diag_s,
    }


VARIANT_KEYS = ("requirement", "target_accept", "cores", "chain_method", "adaptation")


def _parse_option(kv: str) -> tuple[str, Any]:
    k, v = kv.split("=", 1)
    for cast in (int, float):
        try:
            return k.strip(), cast(v)
        except ValueError:
            pass
    return k.strip(), v.strip()


def _line(r: dict[str, Any]) -> str:
    extra = "".join(f" {k}={r[k]}" for k in VARIANT_KEYS if k in r)
    return (f"  {r['sampler']:8} {r['chains']}x{r['draws']:<5} tune {r['tune']:<5}{extra}: "
            f"{r['wall_s']:7.1f} s (cpu {r['cpu_s']:6.1f} s), min bulk ESS {r['min_bulk_ess']:7.1f} ({r['worst_variable']}), "
            f"tail {r['min_tail_ess']:6.1f}, R-hat {r['max_rhat']:.3f}, div {r['divergences']}, "
            f"depth {r['mean_tree_depth']:.2f}")


def until_target(table: Any, sampler: str, *, target: float, chains: int, draws: int, tune: int, seed: int,
                 cap_s: float, max_draws: int, probe: int = 50, **opts: Any) -> dict[str, Any]:
    """Fit with more draws until the smallest identified bulk ESS reaches `target`.

    With `probe` > 0, a short run (`probe` tuning + `probe` draws) first measures how long
    an iteration takes, so that a run the cap cannot afford is predicted instead of
    started (numpyro on CPU: ~12-20 ms per gradient on this model against ~1 ms with
    numba).  The prediction scales the probe's whole wall time, compilation included:
    an over-estimate, so it is used only where it is needed."""
    spent = 0.0
    pr: dict[str, Any] | None = None
    predicted = 0.0
    if probe:
        pr = fit_once(table, sampler, chains=chains, draws=probe, tune=probe, seed=seed, **opts)
        pr["probe"] = True
        spent += pr["wall_s"]
        print(_line(pr) + "  [probe]", flush=True)
        predicted = pr["wall_s"] * (tune + draws) / (2 * probe)
    attempts: list[dict[str, Any]] = []
    while spent + predicted <= cap_s and draws <= max_draws:
        r = fit_once(table, sampler, chains=chains, draws=draws, tune=tune, seed=seed, **opts)
        attempts.append(r)
        spent += r["wall_s"]
        print(_line(r), flush=True)
        if r["min_bulk_ess"] >= target:
            break
        ratio = target / max(r["min_bulk_ess"], 1.0)
        nxt = int(math.ceil(draws * max(1.5, 1.25 * ratio) / 100.0) * 100)
        # the fixed part plus the per-iteration part, scaled to the new length
        predicted = r["wall_s"] * (tune + nxt) / (tune + draws)
        draws = nxt
    met = bool(attempts) and attempts[-1]["min_bulk_ess"] >= target
    if not met:
        print(f"  {sampler}: stop — the next run ({chains} x {draws} draws, tune {tune}) is predicted to take "
              f"~{predicted:.0f} s; with {spent:.0f} s spent that passes the cap ({cap_s:.0f} s, {max_draws} draws)",
              flush=True)
    last = attempts[-1] if attempts else pr
    return {
        "sampler": sampler,
        "met": met,
        "seconds_to_target": last["wall_s"] if met else math.nan,
        "cumulative_seconds": spent,
        "draws_needed": last["draws"] if met else math.nan,
        "ess_per_second": last["min_bulk_ess"] / last["wall_s"] if attempts else math.nan,
        "divergences": last["divergences"],
        "predicted_next_seconds": math.nan if met else predicted,
        **({"probe": pr} if pr else {}),
        "last": last,
        "attempts": attempts,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 students x 5 steps, 2 chains x 200 draws, one run per sampler")
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--students", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--chains", type=int, default=None)
    ap.add_argument("--draws", type=int, default=None, help="first attempt's draws per chain")
    ap.add_argument("--tune", type=int, default=None)
    ap.add_argument("--target-ess", type=float, default=400.0)
    ap.add_argument("--cap-seconds", type=float, default=None, help="per sampler, all attempts")
    ap.add_argument("--max-draws", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--probe", type=int, default=50, help="tune and draws of the timing probe before the attempts")
    ap.add_argument("--probe-samplers", default="numpyro",
                    help="samplers that get the probe (a probe costs a compile; numpyro on CPU is the one that needs it)")
    ap.add_argument("--no-variants", action="store_true", help="skip the target_accept / tune / cores runs")
    ap.add_argument("--variants", default=None,
                    help="instead of the default variants: 'k=v,k=v;k=v' (keys: fit options, chains, draws, tune)")
    args = ap.parse_args(argv)
    q = args.quick
    students = args.students or (60 if q else 300)
    steps = args.steps or (5 if q else 10)
    chains = args.chains or (2 if q else 4)
    draws = args.draws or (200 if q else 400)
    tune = args.tune or (200 if q else 500)
    cap = args.cap_seconds or (120.0 if q else 1800.0)
    samplers = [s for s in args.samplers.split(",") if s]
    for s in samplers:
        if s not in SAMPLERS:
            raise SystemExit(f"unknown sampler {s!r}; choose from {', '.join(SAMPLERS)}")

    cohort = bl.simulate(n_students=students, n_steps=steps, seed=args.seed)
    table = cohort.table
    n_ans = int((table["module_type"] == "assessment").sum())
    print(f"cohort: {students} students x {steps} steps (seed {args.seed}), {n_ans} answers, "
          f"{len(table) - n_ans} lessons; {chains} chains, tune {tune}; target: min bulk ESS of identified "
          f"quantities >= {args.target_ess:g}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for s in samplers:
        why = _available(s)
        if why:
            skipped[s] = why
            print(f"  {s}: skipped — {why}")
            continue
        if q:  # one run, no retries: the quick case is a smoke test of the protocol
            r = fit_once(table, s, chains=chains, draws=draws, tune=tune, seed=args.seed)
            print(_line(r), flush=True)
            met = r["min_bulk_ess"] >= args.target_ess
            results[s] = {"sampler": s, "met": met, "seconds_to_target": r["wall_s"] if met else math.nan,
                          "cumulative_seconds": r["wall_s"], "draws_needed": draws if met else math.nan,
                          "ess_per_second": r["min_bulk_ess"] / r["wall_s"], "divergences": r["divergences"],
                          "last": r, "attempts": [r]}
        else:
            results[s] = until_target(table, s, target=args.target_ess, chains=chains, draws=draws, tune=tune,
                                      seed=args.seed, cap_s=cap, max_draws=args.max_draws,
                                      probe=args.probe if s in args.probe_samplers.split(",") else 0)

    print(f"\n{'sampler':8} {'met':>4} {'s to ESS>=' + format(args.target_ess, 'g'):>14} {'draws':>6} "
          f"{'cpu s':>7} {'all tries s':>11} {'min bulk':>8} {'ESS/s':>6} {'R-hat':>6} {'div':>4} {'depth':>5}")
    for s, r in results.items():
        last = r["last"]
        print(f"{s:8} {'yes' if r['met'] else 'no':>4} {r['seconds_to_target']:14.1f} {last['draws']:6d} "
              f"{last['cpu_s']:7.1f} {r['cumulative_seconds']:11.1f} {last['min_bulk_ess']:8.1f} {r['ess_per_second']:6.2f} "
              f"{last['max_rhat']:6.3f} {last['divergences']:4d} {last['mean_tree_depth']:5.2f}"
              + ("  (probe only; next run predicted ~%.0f s)" % r["predicted_next_seconds"] if last.get("probe") else ""))
    met = {s: r for s, r in results.items() if r["met"]}
    best = min(met, key=lambda s: met[s]["seconds_to_target"]) if met else (
        max(results, key=lambda s: np.nan_to_num(results[s]["ess_per_second"], nan=-1.0)) if results else None)
    print(f"best: {best}" + ("" if met else " (by ESS/s; no sampler met the target)"), flush=True)

    variants: list[dict[str, Any]] = []
    if not q and not args.no_variants and best is not None:
        d_best = int(results[best]["last"]["draws"])
        print(f"\nvariants of {best} at {chains} x {d_best} draws (single runs):", flush=True)
        plans: list[dict[str, Any]] = [{"requirement": "cartesian"}, {"target_accept": 0.8}, {"tune": 1000}]
        plans += [{"cores": 4}] if best in ("nutpie", "pymc") else [
            {"chain_method": "sequential"}, {"chain_method": "vectorized"}]
        # the same total draws in 2 chains: half the tuning work on 2 cores
        plans += [{"chains": 2, "draws": 2 * d_best}]
        if args.variants:
            plans = [dict(_parse_option(kv) for kv in v.split(",")) for v in args.variants.split(";") if v]
        for plan in plans:
            kw = {"tune": tune, "chains": chains, "draws": d_best, **plan}
            r = fit_once(table, best, seed=args.seed, **kw)
            print(_line(r), flush=True)
            variants.append(r)

    quality: dict[str, Any] = {}
    figures: dict[str, Any] = {"students": students, "steps": steps, "chains": chains, "tune": tune}
    for s, r in results.items():
        quality[f"{s}_min_bulk_ess"] = r["last"]["min_bulk_ess"]
        quality[f"{s}_max_rhat"] = r["last"]["max_rhat"]
        quality[f"{s}_divergences"] = r["divergences"]
        figures[f"{s}_seconds_to_ess"] = r["seconds_to_target"]
        figures[f"{s}_cumulative_seconds"] = r["cumulative_seconds"]
        figures[f"{s}_draws_needed"] = r["draws_needed"]
        figures[f"{s}_ess_per_second"] = r["ess_per_second"]
        figures[f"{s}_cpu_seconds_last_run"] = r["last"]["cpu_s"]
        if not r["met"] and "predicted_next_seconds" in r:
            figures[f"{s}_predicted_next_run_seconds"] = r["predicted_next_seconds"]
        if "probe" in r:
            figures[f"{s}_probe_seconds"] = r["probe"]["wall_s"]
    for v in variants:
        tag = "_".join(f"{k}{v[k]}" for k in VARIANT_KEYS if k in v) or f"chains{v['chains']}_draws{v['draws']}_tune{v['tune']}"
        figures[f"variant_{tag}_seconds"] = v["wall_s"]
        figures[f"variant_{tag}_min_bulk_ess"] = v["min_bulk_ess"]
    if best is not None and met:
        figures["best_seconds_to_ess"] = met[best]["seconds_to_target"]
    notes = (f"best={best}; " + ", ".join(f"{s}: {r['seconds_to_target']:.0f} s" if r["met"] else f"{s}: not met"
                                         for s, r in results.items())
             + ("; skipped " + ", ".join(skipped) if skipped else "") + ("; quick: one run per sampler" if q else ""))
    emit_result(
        "nuts",
        quality=quality,
        figures=figures,
        targets={"best_seconds_to_ess": f"<= 120 s to min identified bulk ESS >= {args.target_ess:g} "
                                        f"({students} students x {steps} steps, {chains} chains) with the best sampler"},
        notes=notes,
    )


if __name__ == "__main__":
    main()
