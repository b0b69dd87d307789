"""Reading speed: a 400k-row interaction table through `read_interactions` and
`transitions()`, and the ASSISTments 2009 DKT train file (268k answers) through its reader.

These were wall-clock asserts in tests (< 10 s each, typically ~2 s); issue 19 asked for
no timing in tests, so the figures are printed here.

    python -m benchmarks.bench_read [--quick]
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
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    main()
