"""Does the student's *recent* performance carry information PFA's counts miss?
PFA against PFA plus the student's exponentially weighted recent outcome (±1 coded,
decay 0.7; for held-out rows its value at the cut), and against PFA plus the LSE history
term's recency feature R = lag^(-1/2) (`pfa-lag`: lag = the student's answers since its
last answer to the same item, the rows being predicted counting as answers in between —
the same numbers as `FitResult.history_of`), last-10 % protocol, seed 0.

    python -m benchmarks.real_logs_recency TABLE.csv [DECAY] [--folds K] [--lse]

Without --folds: the test run (20 % of students); with it, K-fold CV over all students.
--lse adds the default LSE (the comparison of docs/results.md, "Forgetting").

TABLE.csv as in `benchmarks.real_logs_hierarchical`. The tables are quoted in
docs/results.md ("What did not close the gap to PFA"): +0.001 AUC on MoFaCTS (p 0.60),
−0.012 on ASSISTments (p 3e-10) — recency is not where a win over PFA lies; and PFA
without the student's overall counts (only the per-item memory the LSE's history term also
has) loses 0.001 on MoFaCTS (p 0.014) and 0.000 on ASSISTments (p 0.85).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def _ewma(student: np.ndarray, y: np.ndarray, decay: float) -> tuple[np.ndarray, dict]:
    """Per row the EWMA of the student's earlier outcomes (rows in time order), and the
    value after each student's last row."""
    before, after, e, prev = np.zeros(len(y)), {}, 0.0, None
    for i in range(len(y)):
        if student[i] != prev:
            e, prev = 0.0, student[i]
        before[i] = e
        e = decay * e + (1 - decay) * (2 * y[i] - 1)
        after[student[i]] = e
    return before, after


def _item_lag(student: np.ndarray, item: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per row (in each student's time order) the answers since the student's last *known*
    answer to the same item (0: none), every row counting as an answer — for the rows to
    predict, after the training answers (training rows: `assessment_history_counts`)."""
    out = np.zeros(len(student))
    last: dict = {}
    q, prev = 0, None
    for i in range(len(student)):
        if student[i] != prev:
            last, q, prev = {}, 0, student[i]
        j = item[i]
        if j in last:
            out[i] = q - last[j]
        if known[i]:
            last[j] = q
        q += 1
    return out


def main(argv: list[str] | None = None) -> None:
    import pymc as pm

    from bayes_lse.model.terms import assessment_history_counts, history_features

    from bayes_lse.data.log import read_interactions
    from bayes_lse.evaluate.baselines import PerformanceFactors, pfa_history_counts
    from bayes_lse.evaluate.protocols import evaluate

    argv = sys.argv[1:] if argv is None else argv
    decay = float(argv[1]) if len(argv) > 1 and not argv[1].startswith("--") else 0.7

    class PFARecency(PerformanceFactors):
        def __init__(self) -> None:
            super().__init__()
            self.name = "pfa-recency"

        def _features(self, frame: pd.DataFrame) -> np.ndarray:
            n = len(frame)
            order = np.lexsort((np.arange(n), frame["timestep"].to_numpy(), pd.factorize(frame["student_id"])[0]))
            f = frame.iloc[order]
            rec = np.empty(n)
            rec[order] = _ewma(f["student_id"].to_numpy(), f["outcome"].to_numpy(float), decay)[0]
            return np.column_stack([np.log1p(pfa_history_counts(frame)), rec])

        def _params(self, n_students: int, n_assessments: int) -> None:
            super(PerformanceFactors, self)._params(n_students, n_assessments)
            pm.Normal("coefficients", 0.0, self.priors["coefficient_sd"], shape=5)

        def _predict_features(self, fitted, rows: pd.DataFrame) -> np.ndarray:
            h = fitted.history.reset_index(drop=True)
            after = _ewma(h["student_id"].to_numpy(), h["outcome"].to_numpy(float), decay)[1]
            sid = rows["student_id"].astype(str).to_numpy()
            return np.column_stack([super()._predict_features(fitted, rows), [after.get(x, 0.0) for x in sid]])

    class PFAItemOnly(PerformanceFactors):
        """PFA without the student's overall counts: only the per-item memory (what the
        LSE's history term has)."""

        def __init__(self) -> None:
            super().__init__()
            self.name = "pfa-item-only"

        def _features(self, frame: pd.DataFrame) -> np.ndarray:
            return super()._features(frame)[:, 2:]

        def _params(self, n_students: int, n_assessments: int) -> None:
            super(PerformanceFactors, self)._params(n_students, n_assessments)
            pm.Normal("coefficients", 0.0, self.priors["coefficient_sd"], shape=2)

        def _predict_features(self, fitted, rows: pd.DataFrame) -> np.ndarray:
            return super()._predict_features(fitted, rows)[:, 2:]

    class PFALag(PerformanceFactors):
        """PFA plus the LSE history term's recency feature R (a fifth coefficient)."""

        def __init__(self) -> None:
            super().__init__()
            self.name = "pfa-lag"

        @staticmethod
        def _recency(lag: np.ndarray) -> np.ndarray:
            return history_features(np.column_stack([np.zeros((len(lag), 2)), lag]))[2]

        def _features(self, frame: pd.DataFrame) -> np.ndarray:
            counts = assessment_history_counts(pd.factorize(frame["student_id"])[0], pd.factorize(frame["module_id"])[0],
                                               frame["outcome"].to_numpy(float), frame["timestep"].to_numpy())
            return np.column_stack([super()._features(frame), self._recency(counts[:, 2])])

        def _params(self, n_students: int, n_assessments: int) -> None:
            super(PerformanceFactors, self)._params(n_students, n_assessments)
            pm.Normal("coefficients", 0.0, self.priors["coefficient_sd"], shape=5)

        def _predict_features(self, fitted, rows: pd.DataFrame) -> np.ndarray:
            h = fitted.history.reset_index(drop=True)  # training answers, in time order per student
            sid = rows["student_id"].astype(str).to_numpy()
            both = pd.DataFrame({"s": np.concatenate([h["student_id"].astype(str).to_numpy(), sid]),
                                 "m": np.concatenate([h["module_id"].astype(str).to_numpy(),
                                                      rows["module_id"].astype(str).to_numpy()]),
                                 "known": np.r_[np.ones(len(h), bool), np.zeros(len(rows), bool)]})
            order = np.argsort(pd.factorize(both["s"])[0], kind="stable")  # history, then the rows
            lag = np.empty(len(both))
            lag[order] = _item_lag(both["s"].to_numpy()[order], both["m"].to_numpy()[order],
                                   both["known"].to_numpy()[order])
            return np.column_stack([super()._predict_features(fitted, rows), self._recency(lag[len(h):])])

    folds = int(argv[argv.index("--folds") + 1]) if "--folds" in argv else 1
    models = {"pfa": "pfa", "pfa-lag": PFALag(), "pfa-recency": PFARecency(), "pfa-item-only": PFAItemOnly(),
              "irt1pl": "irt1pl"}
    if "--lse" in argv:
        from bayes_lse.api import LatentSkillEmbedding

        models = {"lse-auto": LatentSkillEmbedding(), **models}  # the default model (d chosen per fit)
    log = read_interactions(argv[0])
    res = evaluate(log, models, folds=folds, test_students=0.2 if folds == 1 else 0.0,
                   protocol="last-fraction", fraction=0.1, seed=0, n_boot=100, reference="pfa",
                   progress=lambda m: print(m, flush=True))
    print(res.to_text())


if __name__ == "__main__":
    main()
