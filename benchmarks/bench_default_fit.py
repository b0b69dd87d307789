"""Default LSE fit time against the 1PL baseline's, side by side on real logs (issue 15:
"default fit time on a log of ~50k answers is at most 10× the 1PL baseline's").

Fits, one after the other in this process (so machine load hits both alike), the LSE
exactly as `bayes-lse fit DATA` would — `LatentSkillEmbedding(history="auto")` with
`method="auto"` and every fit setting at its default — and the `irt1pl` baseline, on
each log, and prints wall seconds and their ratio.  The logs: the MoFaCTS DataShop
export (58k rows, 55k answers, study trials as lessons) and a ~50k-answer slice of
ASSISTments 2009 (the first 600 students of the ckyeungac train file); the quick
version uses 150 MoFaCTS students.

    python -m benchmarks.bench_default_fit [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MOFACTS = SHARED / "mofacts_statistics_cloze" / "largerawsample.csv.gz"
ASSISTMENTS = SHARED / "assistments2009" / "ckyeungac_problem_id_train.csv"


def _logs(quick: bool):
    from bayes_lse.data.log import read_interactions
    from bayes_lse.data.readers import convert

    mof = convert("datashop", MOFACTS)
    if quick:
        keep = mof["student_id"].drop_duplicates().iloc[:150]
        mof = mof[mof["student_id"].isin(keep)]
    out = {"mofacts": read_interactions(mof, name="MoFaCTS")}
    if not quick:
        a09 = convert("assistments-dkt", ASSISTMENTS)
        keep = a09["student_id"].drop_duplicates().iloc[:600]
        out["assistments-600"] = read_interactions(a09[a09["student_id"].isin(keep)], name="ASSISTments, 600 students")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from benchmarks.runner import emit_result

    if not MOFACTS.exists():
        emit_result("default_fit", skipped=f"{MOFACTS} is absent")
        return
    from bayes_lse import LatentSkillEmbedding
    from bayes_lse.evaluate.baselines import make_baseline

    figures: dict[str, float] = {}
    for name, log in _logs(args.quick).items():
        n_answers = int((log.table["module_type"] == "assessment").sum())
        t0 = time.perf_counter()
        fitted = LatentSkillEmbedding(history="auto").fit(log, progressbar=False)
        t_lse = time.perf_counter() - t0
        t0 = time.perf_counter()
        make_baseline("irt1pl").fit(log, seed=0)
        t_irt = time.perf_counter() - t0
        ratio = t_lse / t_irt
        print(f"{name}: {log.n_students} students, {n_answers} answers; default LSE {t_lse:.1f} s "
              f"({fitted.method.upper()}; {'; '.join(fitted.choices)}); 1PL {t_irt:.1f} s; ratio {ratio:.1f}x")
        figures[f"{name}_lse_seconds"] = round(t_lse, 2)
        figures[f"{name}_irt1pl_seconds"] = round(t_irt, 2)
        figures[f"{name}_ratio"] = round(ratio, 2)
    emit_result("default_fit", figures=figures,
                targets={"ratio": "default LSE fit <= 10x the 1PL fit on a ~50k-answer log"},
                notes="wall seconds, measured one after the other in one process")


if __name__ == "__main__":
    main()
