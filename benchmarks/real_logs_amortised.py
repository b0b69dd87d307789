"""Amortised ADVI against full-batch ADVI on a real log (issue 16): the same split, the
same model without the history term (the amortised fit has none yet), last-10 % protocol,
test run only, seed 0; the paired difference amortised − full-batch with its bootstrap SE
over students and DeLong p.

    python -m benchmarks.real_logs_amortised TABLE.csv
    python -m benchmarks.real_logs_amortised TABLE.csv --default   # history "auto": amortised ADVI vs the default MAP fit

TABLE.csv as in `benchmarks.real_logs_hierarchical` (e.g. MoFaCTS from `bayes-lse convert
--from datashop ../shared/data/mofacts_statistics_cloze/largerawsample.csv.gz -o mofacts.csv`).
Quoted in docs/benchmarks.md ("A real log: MoFaCTS"): AUC 0.8354 against 0.8224, +0.0130
(SE 0.0057, DeLong p 0.03); log-loss 0.4923 against 0.5090.
"""

from __future__ import annotations

import json
import sys
import time
import warnings


def main(path: str, default: bool = False) -> None:
    import bayes_lse as bl
    from bayes_lse.evaluate.protocols import evaluate, paired_comparison

    warnings.simplefilter("ignore")
    log = bl.read_interactions(path)
    res = {}
    # default: both without the history term, full-batch vs amortised ADVI; --default: the model
    # as `fit` chooses it (history "auto") by the default MAP and by amortised ADVI
    runs = ((("map", "map", {}), ("advi-amortised", "advi", {"amortised": True})) if default else
            (("advi", "advi", {}), ("advi-amortised", "advi", {"amortised": True})))
    for name, method, opts in runs:
        t = time.time()
        # d = 2 for both methods (n_skills="auto" would choose d for the MAP fit only)
        model = bl.LatentSkillEmbedding(n_skills=2) if default else bl.LatentSkillEmbedding(n_skills=2, history=False)
        r = evaluate(log, {"lse-d2": model}, folds=1, protocol="last-fraction",
                     method=method, fit_options=opts, seed=0, lessons=False)
        print(f"{name}: {time.time() - t:.0f} s", flush=True)
        print(r.metrics.to_string(), flush=True)
        res[name] = r.predictions
    pa, pb = res[runs[0][0]], res["advi-amortised"]
    m = pa["scored"].astype(bool).to_numpy()
    y = pa["outcome"].to_numpy()[m]
    cmp = paired_comparison(y, pb["lse-d2"].to_numpy()[m], pa["lse-d2"].to_numpy()[m],
                            groups=pa["student_id"].to_numpy()[m], seed=0)
    print(f"amortised - {runs[0][0]}:", json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in cmp.items()}))


if __name__ == "__main__":
    main(sys.argv[1], "--default" in sys.argv[2:])
