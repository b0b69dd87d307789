"""Default MAP fits side by side: does the numba kernel's thread use survive a busy machine?

Runs `--copies` default fits of the same log at once, each in its own process (as
evaluation jobs on Dask workers, a test suite under pytest-xdist or two notebooks do),
and one fit alone, in three thread modes of the kernel's answer loop
(`inference.map_kernel_numba`):

- ``chooser``: the default — `AnswerLoop` races one thread against all and keeps the
  faster;
- ``all-threads``: every evaluation on all of numba's threads (the behaviour before the
  chooser: the chooser's races switched off);
- ``one-thread``: ``NUMBA_NUM_THREADS=1`` (the plain serial loop).

Prints each mode's wall seconds for one fit alone and for the copies side by side (the
slowest copy, fit time as `fit` reports it).  The log: MoFaCTS (55k answers) when
``../shared/data`` is there, else a simulated cohort of ~50k answers.

    python -m benchmarks.bench_concurrent_fits [--copies 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_default_fit import MOFACTS

_CHILD = r"""
import sys, time
mode, data, out = sys.argv[1:4]
import bayes_lse.inference.map_kernel_numba as mkn
if mode == "all-threads":
    mkn.AnswerLoop._racing = lambda self: None  # never race: the loop stays on all threads
from bayes_lse import LatentSkillEmbedding
from bayes_lse.data.log import read_interactions
log = read_interactions(data)
t0 = time.perf_counter()
LatentSkillEmbedding(history="auto").fit(log, progressbar=False)
print(f"FIT {time.perf_counter() - t0:.3f}")
"""


def _table(tmp: Path, quick: bool) -> Path:
    """The log as an interaction CSV in `tmp` (MoFaCTS, or a simulated cohort without the data)."""
    path = tmp / "log.csv"
    if MOFACTS.exists():
        from bayes_lse.data.readers import convert

        table = convert("datashop", MOFACTS)
        if quick:
            table = table[table["student_id"].isin(table["student_id"].drop_duplicates().iloc[:150])]
    else:
        from bayes_lse.model.simulate import simulate

        # 500 students x 20 steps x 5 answers: 50k answers
        table = simulate(n_students=150 if quick else 500, n_steps=20, answers_per_step=5, seed=0).table
        table = table.drop(columns=["p_true"])
    table.to_csv(path, index=False)
    return path


def _run(mode: str, data: Path, copies: int, tmp: Path) -> list[float]:
    """Fit seconds of `copies` fits started together in `mode`."""
    env = dict(os.environ)
    if mode == "one-thread":
        env["NUMBA_NUM_THREADS"] = "1"
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, mode, str(data), str(tmp / f"{mode}{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(copies)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"{mode} fit failed:\n{stderr[-2000:]}")
        out.append(float(stdout.strip().splitlines()[-1].split()[1]))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from benchmarks.runner import emit_result

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = _table(tmp, args.quick)
        _run("chooser", data, 1, tmp)  # numba's compile cache warm for every mode
        print(f"log {data.name} ({'MoFaCTS' if MOFACTS.exists() else 'simulated'}); {os.cpu_count()} cores; "
              f"{args.copies} copies side by side")
        for mode in ("chooser", "all-threads", "one-thread"):
            t0 = time.perf_counter()
            alone = _run(mode, data, 1, tmp)[0]
            side = _run(mode, data, args.copies, tmp)
            print(f"{mode:>11}: alone {alone:.1f} s; {args.copies} side by side: slowest {max(side):.1f} s "
                  f"(each {', '.join(f'{s:.1f}' for s in side)}); {time.perf_counter() - t0:.0f} s wall in all")
            figures[f"{mode}_alone_seconds"] = round(alone, 2)
            figures[f"{mode}_side_by_side_slowest_seconds"] = round(max(side), 2)
    emit_result("concurrent_fits", figures=figures,
                targets={"chooser": "alone as fast as all-threads; side by side near one-thread"},
                notes=f"fit seconds as the fit reports them; {args.copies} processes at once")


if __name__ == "__main__":
    main()
