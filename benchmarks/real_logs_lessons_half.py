"""The lessons check on a log whose lessons come early (MoFaCTS: every study trial in the
first 55 % of its student's rows, so the last-10 % protocol scores none after a lesson):
hold out the last FRACTION (default 50 %) and compare the LSE with and without lessons
(d = 1, 2; defaults otherwise, history "auto") with 1PL and PFA, lessons check on.

    python -m benchmarks.real_logs_lessons_half TABLE.csv [FRACTION]

Quoted in docs/results.md ("What did not close the gap to PFA").
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from bayes_lse.api import LatentSkillEmbedding
    from bayes_lse.data.log import read_interactions
    from bayes_lse.evaluate.protocols import evaluate

    argv = sys.argv[1:] if argv is None else argv
    frac = float(argv[1]) if len(argv) > 1 else 0.5
    log = read_interactions(argv[0])
    models = {f"lse-d{d}{'' if les else '-nolessons'}": LatentSkillEmbedding(n_skills=d, lessons=les)
              for d in (1, 2) for les in (True, False)}
    res = evaluate(log, {**models, "irt1pl": "irt1pl", "pfa": "pfa"}, folds=1, protocol="last-fraction",
                   fraction=frac, seed=0, lessons=True, n_boot=100, progress=lambda m: print(m, flush=True))
    print(res.to_text())


if __name__ == "__main__":
    main()
