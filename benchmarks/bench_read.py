"""Reading speed: a 400k-row interaction table through `read_interactions` and
`transitions()`, and the ASSISTments 2009 DKT train file (268k answers) through its reader.

These were wall-clock asserts in tests (< 10 s each, typically ~2 s); issue 19 asked for
no timing in tests, so the figures are printed here.

    python -m benchmarks.bench_read [--quick]
    python -m benchmarks.bench_read --log /work/exp/e2e2/log.csv --log /work/exp/e2e25/log.csv \
        [--code-root DIR] [--detailed]

``--log PATH`` (issue 16) reads each CSV log with `read_interactions` in a fresh Python
process and reports its wall seconds (imports excluded), the process's peak RSS
(``ru_maxrss``: Python, imports and the read) and the size of ``log.table``
(``memory_usage(deep=True)``); the 400k-row and ASSISTments figures are then skipped.
``--code-root DIR`` imports ``bayes_lse`` from DIR instead of this checkout (for the
"before" column: ``git archive 9043d42 bayes_lse | tar -x -C /tmp/before``);
``--detailed`` skips the lean CSV path (the detailed pandas path, as for unusual files).

Issue 16, measured 2026-12-04 on this machine (2 cores, shared with another benchmark
at the time, so seconds are indicative), CSV logs with columns
student_id,module_id,module_type,outcome,timestep (quoted strings):

    rows (file)                      code                          read s   peak RSS    table
    2,494,772 (e2e2, 76 MB,          before (9043d42)                 5.6     951 MB   215 MB
      365,444 students)              after, lean path                 1.5     382 MB   105 MB
                                     after, --detailed                4.8     879 MB   105 MB
    24,945,295 (e2e25, 758 MB,       before (9043d42)                67.3    7679 MB  2178 MB
      3,653,493 students)            after, lean path                16.2    2077 MB  1054 MB
                                     after, --detailed               72.1    7077 MB  1054 MB

    before:   python -m benchmarks.bench_read --log /work/exp/e2e2/log.csv \
                  --log /work/exp/e2e25/log.csv --code-root /tmp/before
    after:    python -m benchmarks.bench_read --log /work/exp/e2e2/log.csv --log /work/exp/e2e25/log.csv
    detailed: the same with --detailed

Before: ids as per-row pandas ``str`` columns, codes int64, one Python object per row
in the merged-ids check. After: ids as ``category`` of str, codes int32; the lean path
streams the CSV through pyarrow into int32 codes per column and checks the distinct
values only. ``--detailed`` is what an unusual file (blank line, extra column,
``timestamp``, compression, a bad value...) still costs: pandas reads per-row strings.
The table's remaining bulk at 25M rows is its documented float64 ``outcome`` and int64
``timestep`` / ``source_row`` (200 MB each) and 3.65M student ids.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ASSISTMENTS = SHARED / "assistments2009" / "ckyeungac_problem_id_train.csv"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100k rows; skip the ASSISTments file")
    ap.add_argument("--log", action="append", type=Path, default=[], metavar="PATH",
                    help="a CSV log to read in a fresh process (repeatable): seconds, peak RSS, table MB")
    ap.add_argument("--code-root", type=Path, default=None,
                    help="import bayes_lse from this directory (default: this checkout)")
    ap.add_argument("--detailed", action="store_true", help="with --log: skip the lean CSV path")
    args = ap.parse_args(argv)
    if args.log:
        return _logs(args.log, args.code_root, args.detailed)
    import numpy as np
    import pandas as pd

    from benchmarks.runner import emit_result
    from bayes_lse.data.log import read_interactions
    from bayes_lse.data.readers import read_assistments_dkt

    n = 100_000 if args.quick else 400_000
    rng = np.random.default_rng(0)
    is_lesson = rng.random(n) < 0.3
    df = pd.DataFrame({
        "student_id": rng.integers(0, 5000, n).astype(str),
        "module_id": np.where(is_lesson, "L", "A") + rng.integers(0, 100, n).astype(str),
        "module_type": np.where(is_lesson, "lesson", "assessment"),
        "outcome": np.where(is_lesson, np.nan, rng.integers(0, 2, n)),
    })
    t0 = time.perf_counter()
    log = read_interactions(df)
    log.transitions()
    figures = {"table_rows": n, "read_table_seconds": round(time.perf_counter() - t0, 2)}
    print(f"read_interactions + transitions, {n} rows: {figures['read_table_seconds']:.2f} s")
    if not args.quick and ASSISTMENTS.is_file():
        t0 = time.perf_counter()
        a09 = read_assistments_dkt(ASSISTMENTS)
        figures["assistments_rows"] = len(a09)
        figures["read_assistments_seconds"] = round(time.perf_counter() - t0, 2)
        print(f"read_assistments_dkt, {len(a09)} rows: {figures['read_assistments_seconds']:.2f} s")
    emit_result("read", figures=figures,
                targets={"read_table_seconds": "< 10 s for 400k rows (typically ~2 s)",
                         "read_assistments_seconds": "< 10 s"},
                notes="wall seconds; shared machine")


_CHILD = """
import json, resource, sys, time
if {detailed}:
    import bayes_lse.data.log as log_module
    log_module._read_csv_lean = lambda *a, **k: None
from bayes_lse.data.log import read_interactions
t0 = time.perf_counter()
log = read_interactions(sys.argv[1])
seconds = time.perf_counter() - t0
print(json.dumps({{
    "rows": len(log), "students": log.n_students, "read_seconds": round(seconds, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    "table_mb": round(log.table.memory_usage(deep=True).sum() / 2**20),
}}))
"""


def _logs(paths: list[Path], code_root: Path | None, detailed: bool) -> None:
    """Each log read in its own process (peak RSS is per process: nothing else in it)."""
    import json
    import os
    import subprocess
    import sys

    from benchmarks.runner import emit_result

    # the child runs in `root` (python -c puts the working directory first on sys.path)
    root = (code_root or Path(__file__).resolve().parents[1]).resolve()
    env = {**os.environ, "PYTHONPATH": str(root)}
    figures: dict[str, object] = {"code_root": str(root), "detailed": detailed}
    for path in paths:
        out = subprocess.run([sys.executable, "-c", _CHILD.format(detailed=detailed), str(path)],
                             env=env, cwd=root, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        figures[str(path)] = row
        print(f"{path}: {row['rows']} rows, {row['students']} students: read {row['read_seconds']:.1f} s, "
              f"peak RSS {row['peak_rss_mb']} MB, table {row['table_mb']} MB")
    emit_result("read", figures=figures,
                targets={"peak_rss_mb": "well under 4 GB at 25M rows (issue 16; aim <= 2.5 GB)"},
                notes="fresh process per log; peak RSS includes Python and imports; shared machine")


if __name__ == "__main__":
    main()
