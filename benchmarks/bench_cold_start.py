"""Cold-start cost: the first `bayes-lse fit` after install (empty compile cache) against the second.

    python -m benchmarks.bench_cold_start [--quick] [--methods map,nuts]

A small simulated cohort (60 students x 6 steps) is fitted by the command line,
`bayes-lse fit data.csv -o ... --method M`, each run a fresh process:

1. cold: PyTensor's cache (``PYTENSOR_FLAGS=base_compiledir=<empty dir>``, which also
   holds PyTensor's numba cache) and ``NUMBA_CACHE_DIR`` point at new empty folders —
   what a user sees on the first fit after installing;
2. warm: the same command again with the same (now filled) folders.

Each method gets its own empty cache, so each first fit is cold.  Reported: both
wall times, the fit's own ``runtime_seconds`` (optimisation or sampling, compiling
included), the CPU time of each run (user + system: less stretched by other jobs on a
shared machine than wall time), the start-up time of ``bayes-lse --help`` and of importing the package,
how big the caches grew, and where they live by default.

``--quick``: MAP only (one start), 30 students x 4 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.runner import dir_size, emit_result

NUTS_ARGS = ["--draws", "300", "--tune", "300", "--chains", "2"]


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("bayes-lse")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bayes_lse.cli"]


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, CPU seconds (user + system of the child and its reaped descendants) and the result."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, out


def cache_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    flags = env.get("PYTENSOR_FLAGS", "")
    env["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"base_compiledir={root / 'pytensor'}") if f)
    env["NUMBA_CACHE_DIR"] = str(root / "numba")
    return env


def default_locations() -> dict[str, Any]:
    """Where the caches live when nothing is overridden, and how big they are on this machine."""
    probe = (
        "import json, numba; from pytensor.configdefaults import config as c; "
        "print(json.dumps({'base': str(c.base_compiledir), 'compiledir': str(c.compiledir), "
        "'numba': numba.config.CACHE_DIR}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR",)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    loc = json.loads(out.stdout.strip().splitlines()[-1])
    base = Path(loc["base"])
    try:
        import platformdirs

        nutpie_stan = str(Path(platformdirs.user_cache_dir("nutpie")) / "stan")
    except ImportError:
        nutpie_stan = "~/.cache/nutpie/stan"
    return {
        "pytensor_base_compiledir": str(base),
        "pytensor_base_compiledir_size": dir_size(base),
        "pytensor_compiledir": loc["compiledir"],
        "pytensor_numba_cache": str(base / "numba"),
        "pytensor_numba_cache_size": dir_size(base / "numba"),
        "numba_cache_dir": loc["numba"] or "(unset: numba writes cache=True functions to __pycache__ "
        "next to their source, or ~/.cache/numba when that is not writable)",
        "nutpie": "no cache of its own for PyMC models: it compiles the model through PyTensor's numba "
        f"backend, so the PyTensor numba cache above; only Stan models are cached ({nutpie_stan})",
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="MAP only, one start, smaller cohort")
    ap.add_argument("--methods", default=None, help="comma-separated: map, nuts, advi (default map,nuts)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (caches, models)")
    args = ap.parse_args(argv)
    methods = (args.methods or ("map" if args.quick else "map,nuts")).split(",")

    import bayes_lse as bl

    work = Path(tempfile.mkdtemp(prefix="bench_cold_start_"))
    figures: dict[str, Any] = {}
    quality: dict[str, Any] = {}
    cache_sizes: dict[str, Any] = {}
    failures: list[str] = []
    try:
        data = work / "data.csv"
        size = dict(n_students=30, n_steps=4) if args.quick else dict(n_students=60, n_steps=6)
        bl.simulate(**size, n_assessments=15, n_lessons=6, seed=3).write(data)
        cli = _cli()
        env0 = cache_env(work / "cache_startup")
        t_help, _, _ = timed([*cli, "--help"], env0, work)
        t_import, _, _ = timed([sys.executable, "-c", "import bayes_lse, pymc"], env0, work)
        figures["cli_help_s"] = round(t_help, 2)
        figures["import_bayes_lse_pymc_s"] = round(t_import, 2)
        print(f"data: {data.name}, {sum(1 for _ in data.open()) - 1} interactions; cli: {' '.join(cli)}")
        print(f"bayes-lse --help: {t_help:.1f} s;  python -c 'import bayes_lse, pymc': {t_import:.1f} s")
        print(f"\n{'method':6} {'run':5} {'wall s':>7} {'cpu s':>7} {'fit s':>7} {'cache MB':>9} {'files':>6}")
        for method in methods:
            root = work / f"cache_{method}"
            env = cache_env(root)
            extra = ["--seed", "1"] + (NUTS_ARGS if method == "nuts" else [])
            if method == "map" and args.quick:
                extra += ["--starts", "1"]
            for run in ("cold", "warm"):
                out_dir = work / f"model_{method}_{run}"
                wall, cpu, res = timed([*cli, "fit", str(data), "-o", str(out_dir), "--method", method, *extra], env, work)
                size = dir_size(root)
                if res.returncode != 0:
                    failures.append(f"{method} {run}: exit {res.returncode}: {res.stderr.strip()[-300:]}")
                    print(f"{method:6} {run:5} failed (exit {res.returncode})\n{res.stderr[-2000:]}")
                    break
                fit_s = _runtime(res.stdout, out_dir)
                figures[f"{method}_{run}_wall_s"] = round(wall, 2)
                figures[f"{method}_{run}_cpu_s"] = round(cpu, 2)
                if fit_s is not None:
                    figures[f"{method}_{run}_fit_s"] = round(fit_s, 2)
                cache_sizes[f"{method}_after_{run}"] = size
                fit_txt = f"{fit_s:7.1f}" if fit_s is not None else f"{'?':>7}"
                print(f"{method:6} {run:5} {wall:7.1f} {cpu:7.1f} {fit_txt} {size['mb']:9.1f} {size['files']:6}", flush=True)
            if f"{method}_warm_wall_s" in figures:
                saved = figures[f"{method}_cold_wall_s"] - figures[f"{method}_warm_wall_s"]
                quality[f"{method}_cold_minus_warm_s"] = round(saved, 2)
                quality[f"{method}_cold_over_warm"] = round(figures[f"{method}_cold_wall_s"] / figures[f"{method}_warm_wall_s"], 2)
                quality[f"{method}_cpu_cold_minus_warm_s"] = round(
                    figures[f"{method}_cold_cpu_s"] - figures[f"{method}_warm_cpu_s"], 2)
                quality[f"{method}_cache_mb"] = cache_sizes[f"{method}_after_warm"]["mb"]
        locations = default_locations()
        print("\ndefault cache locations:")
        for k, v in locations.items():
            print(f"  {k}: {v}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    notes = "; ".join(
        f"{m}: first fit {figures[f'{m}_cold_wall_s']:.1f} s cold vs {figures[f'{m}_warm_wall_s']:.1f} s warm "
        f"(CPU {figures[f'{m}_cold_cpu_s']:.0f} vs {figures[f'{m}_warm_cpu_s']:.0f} s)"
        for m in methods
        if f"{m}_warm_wall_s" in figures
    )
    emit_result(
        "cold_start",
        quality=quality,
        figures=figures,
        targets={"cold_start": "report first vs second `bayes-lse fit` and where the compile cache lives (no numeric target)"},
        notes=(notes + ("; FAILED: " + " | ".join(failures) if failures else "")
               + f"; default PyTensor cache {locations['pytensor_base_compiledir']}"),
        cache_sizes=cache_sizes,
        cache_locations=locations,
    )
    if failures:
        sys.exit(1)


def _runtime(stdout: str, model_dir: Path) -> float | None:
    """The fit's own runtime_seconds: from the CLI's "fitted in X s" line, else the saved model."""
    m = re.search(r"fitted in ([0-9.]+) s", stdout)
    if m:
        return float(m.group(1))
    try:
        import bayes_lse as bl

        return bl.load(model_dir).runtime_seconds
    except Exception:  # noqa: BLE001 - a missing figure, not a failure
        return None


if __name__ == "__main__":
    main()
