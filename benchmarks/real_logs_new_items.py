"""Issue 15: assessments added after the fit, predicted from their tags or from the
population.  Items-out cross-validation: the assessments are cut into K folds; for each
fold every row of its assessments (answers, and lesson rows with the same id — a
MoFaCTS study trial shows its item) is removed, and the default LSE is fitted to the
rest twice: with the log's modules table (tag effects on the assessment biases, model
config "tags"; a new assessment's bias centred on its tags) and without it (a new
assessment drawn from all fitted ones).  Each student's first answer to each removed
assessment is scored (no memory of it for the history term to model).  ± is a bootstrap
SE over students, p DeLong's.

    python -m benchmarks.real_logs_new_items [mofacts|riiid] [--folds K] [--seed S]

``mofacts``: the DataShop export (478 students, 144 cloze items in 36 facts of 4, the
fact a ``KC (Cluster)`` tag, each item's own KC a tag no other item has).
``riiid``: the 26-user smoke set with Riiid's questions.csv/lectures.csv (tags and part).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _load(name: str):
    from bayes_lse.data.modules import read_modules, riiid_modules
    from bayes_lse.data.readers import convert

    if name == "mofacts":
        from bayes_lse.data.datashop import datashop_modules

        path = SHARED / "mofacts_statistics_cloze" / "largerawsample.csv.gz"
        return convert("datashop", path), read_modules(datashop_modules(path), name=str(path))
    base = SHARED / "riiid_26users"
    return convert("riiid", base / "train.csv"), riiid_modules(base / "questions.csv", base / "lectures.csv")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", nargs="?", default="mofacts", choices=("mofacts", "riiid"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-answers", action="store_true",
                    help="score every answer to a held-out item, not only each student's first")
    args = ap.parse_args(argv)
    first_only = not args.all_answers
    from bayes_lse import LatentSkillEmbedding
    from bayes_lse.evaluate.metrics import auc, log_loss
    from bayes_lse.evaluate.protocols import paired_comparison

    table, modules = _load(args.log)
    items = np.sort(table.loc[table["module_type"] == "assessment", "module_id"].astype(str).unique())
    rng = np.random.default_rng(args.seed)
    folds = np.array_split(rng.permutation(items), args.folds)
    out = []
    t0 = time.perf_counter()
    for k, fold in enumerate(folds):
        gone = table["module_id"].astype(str).isin(set(fold))
        train = table[~gone]
        test = table[gone & (table["module_type"] == "assessment")]
        test = test[test["student_id"].isin(set(train["student_id"]))]
        if first_only:  # each student's first answer to each held-out item: no memory of it to model
            test = test[~test.duplicated(["student_id", "module_id"])]
        rows = test.drop(columns=["outcome"])
        fitted = LatentSkillEmbedding().fit(train, modules=modules, progressbar=False)
        with_tags = fitted.predict(rows, seed=args.seed)
        fitted.modules = None  # the same fit, new items drawn from all fitted ones
        same_fit = fitted.predict(rows, seed=args.seed)
        plain = LatentSkillEmbedding().fit(train, progressbar=False)
        without = plain.predict(rows, seed=args.seed)
        out.append(pd.DataFrame({"student_id": test["student_id"].to_numpy(), "y": test["outcome"].to_numpy(),
                                 "tags": with_tags["p_mean"].to_numpy(), "population": without["p_mean"].to_numpy(),
                                 "tag-fit, population": same_fit["p_mean"].to_numpy(),
                                 "from": with_tags["assessment_from"].to_numpy(), "fold": k}))
        print(f"fold {k}: {len(fold)} items out, {len(test)} answers; from tags: "
              f"{(with_tags['assessment_from'] == 'tags').mean():.0%}; σ_τ "
              f"{float(fitted.draws('sigma_tag_bias').mean()):.3f} over {fitted.idata.posterior.sizes.get('tag', 0)} "
              f"tags", flush=True)
    res = pd.concat(out, ignore_index=True)
    print(f"{args.log}: {len(res)} answers to {len(items)} held-out items, {res['student_id'].nunique()} students, "
          f"{time.perf_counter() - t0:.0f} s")
    for name in ("tags", "tag-fit, population", "population"):
        print(f"  {name:10s} AUC {auc(res['y'], res[name]):.4f}  log-loss {log_loss(res['y'], res[name]):.4f}")
    c = paired_comparison(res["y"].to_numpy(), res["tags"].to_numpy(), res["population"].to_numpy(),
                          res["student_id"].to_numpy())
    print(f"  tags − population: ΔAUC {c['auc_diff']:+.4f} ± {c['auc_diff_se']:.4f} (DeLong p "
          f"{c['auc_diff_delong_p']:.2g}), Δlog-loss {c['log_loss_diff']:+.4f} ± {c['log_loss_diff_se']:.4f}")


if __name__ == "__main__":
    main()
