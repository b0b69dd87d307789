"""What the held-out check of d and lessons (`results.selection.choose_structure`, the
defaults ``n_skills="auto"``, ``lessons="auto"``) chooses on the training rows of each run
of `bayes-lse evaluate`'s split, and by how much: one block per run with the check's lines.

    python -m benchmarks.real_logs_structure_check TABLE.csv [--runs 0,2] [--folds 5] [--seed 0]
        [--fraction 0.1] [--check-item-lessons]

The split is `evaluate.protocols.make_split` with ``--protocol last-fraction``, no test set
(``--test-students 0``), as in docs/results.md; the check gets the fit's seed (``--seed``,
as `evaluate` passes it).  ``--check-item-lessons`` switches the mirrored rule off
(`selection.ITEMS_AS_LESSONS_SHARE` past 1), so that a log converted with items as lessons
goes through the held-out check of lessons like any other.

Measured 2026-12-05 (docs/results.md, "Lessons chosen from the data"): MoFaCTS kept its
study trials in all five runs, the short fits putting the model with lessons ahead by
0.0009–0.0030 log-loss (± 0.0005); ASSISTments with items as lessons
(``--check-item-lessons``, runs 1, 2, 4) had the model without lessons ahead by 0.046,
0.010 and 0.051 (± 0.009–0.010; run 2 kept the lessons), where the full evaluation has it
ahead by 0.32 — hence the mirrored rule.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> None:
    from bayes_lse import LatentSkillEmbedding
    from bayes_lse.api import FittedLSE
    from bayes_lse.data.log import read_interactions
    from bayes_lse.evaluate.protocols import make_split
    from bayes_lse.inference.engine import run_fit
    from bayes_lse.results import selection

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--runs", default=None, help="comma-separated run indices (default: all)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--check-item-lessons", action="store_true",
                    help="no mirrored rule: item lessons go through the held-out check")
    args = ap.parse_args(argv)
    log = read_interactions(args.table)
    split = make_split(log, folds=args.folds, protocol="last-fraction", fraction=args.fraction, test_students=0.0,
                       seed=args.seed)
    wanted = None if args.runs is None else {int(r) for r in args.runs.split(",")}
    base = ["student_id", "module_id", "module_type", "outcome", "timestep"]

    def fit(spec, table, options):  # a quiet MAP candidate, as `LatentSkillEmbedding.fit` makes it
        return FittedLSE(run_fit(spec, read_interactions(table, name="held-out check"), "map",
                                 **{**options, "progressbar": False}))

    if args.check_item_lessons:
        selection.ITEMS_AS_LESSONS_SHARE = float("inf")
    spec = LatentSkillEmbedding()
    for i, run in enumerate(split.runs):
        if wanted is not None and i not in wanted:
            continue
        train = log.table.loc[split.training_mask(run), base].reset_index(drop=True)
        t0 = time.perf_counter()
        _, why = selection.choose_structure(spec, read_interactions(train, name=f"run {run}"), "map", fit,
                                            {"seed": args.seed})
        print(f"run {run} ({time.perf_counter() - t0:.1f} s)", *why, sep="\n  ", flush=True)


if __name__ == "__main__":
    main()
