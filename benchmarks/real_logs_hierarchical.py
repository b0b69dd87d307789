"""Issue 15's comparison on the real logs: LSE d = 1, 2 with the history term, flat vs
hierarchical priors (and, on logs with lessons, with vs without lessons), against 1PL,
2PL and PFA — `bayes_lse.evaluate.evaluate` with the last-10 % protocol, the test run
only (20 % of students), seed 0, MAP with 1 start of `MAXITER` iterations.

    python -m benchmarks.real_logs_hierarchical TABLE.csv [MAXITER] [--lessons]

TABLE.csv is an interaction table, e.g. from
`bayes-lse convert --from datashop ../shared/data/mofacts_statistics_cloze/largerawsample.csv.gz -o mofacts.csv`
or `bayes-lse convert --from assistments-dkt ../shared/data/assistments2009/ckyeungac_problem_id_train.csv -o a09.csv`.
The printed tables are the ones quoted in docs/results.md ("Hierarchical priors and defaults").
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from bayes_lse.api import LatentSkillEmbedding
    from bayes_lse.data.log import read_interactions
    from bayes_lse.evaluate.protocols import evaluate

    argv = sys.argv[1:] if argv is None else argv
    lessons = "--lessons" in argv
    args = [a for a in argv if a != "--lessons"]
    data, maxiter = args[0], int(args[1]) if len(args) > 1 else 1000
    log = read_interactions(data)
    models = {}
    for d in (1, 2):
        for hier in (False, True):
            for les in ((False, True) if lessons else (False,)):
                name = f"d{d}{'-lessons' if les else ''}-history{'-hier' if hier else ''}"
                models[name] = LatentSkillEmbedding(n_skills=d, lessons=les, history=True, hierarchical=hier)
    res = evaluate(log, {**models, "irt1pl": "irt1pl", "irt2pl": "irt2pl", "pfa": "pfa"}, folds=1,
                   protocol="last-fraction", fraction=0.1, seed=0, fit_options={"starts": 1, "maxiter": maxiter},
                   lessons=lessons, n_boot=100, progress=lambda m: print(m, flush=True))
    print(res.to_text())


if __name__ == "__main__":
    main()
