"""Offline evaluation: does the model predict better than what I use now? (DESIGN §5)

Protocols (both seeded and reproducible; the split can be written to disk so that
another tool can be scored on exactly the same rows):

``last-batch`` (the original LSE evaluation)
    A fraction ``test_students`` of the students is set apart as the test set; the
    other students are split into ``folds`` folds.  In the run of fold k, the
    students of fold k are held out: each one's history is cut just before its
    last batch of assessments (the assessments at its largest assessment
    timestep); the models are fit on the full histories of the other non-test
    students plus the truncated histories, and predict the cut batch.  The test
    run does the same with the test students held out and every non-test
    student in training.  ``folds=1`` skips cross-validation (test run only);
    ``test_students=0`` skips the test run.
``last-fraction`` (the usual knowledge-tracing protocol)
    As above, but each held-out student loses the chronologically last
    ``fraction`` of its assessments (at least one), together with everything it
    did from the first of them on; the models train on everything before.

A held-out student needs at least one assessment before its cut; a student
without one stays in training with its whole history (role ``train``).  Only
held-out assessments whose module is an assessment of the run's training data
are scored (role ``scored``; the others are ``unseen``).  Held-out lesson rows
(role ``context``) are not trained on; the LSE may use them as the lessons the
student took before a held-out answer (no outcome is revealed by a lesson).

Every model scores the same rows.  Metrics per fold, pooled over the folds
(``cv``) and on the test run (``test``): AUC, log-loss, Brier score, accuracy
and expected calibration error, each with a standard error from a bootstrap
over students (rows of one student are not independent).  Paired comparisons
against a reference model use the same bootstrap resamples for both models
(and DeLong's test for the AUC difference).  The *lessons check* asks whether
the LSE's learning update helps: for held-out answers that follow one or more
lessons, it predicts from the state before those lessons pushed through the
lessons taken, and again ignoring them, and compares the AUCs.  For LSE
variants fit by ADVI or NUTS, :func:`loo_compare` ranks them by PSIS-LOO ELPD.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from bayes_lse.model import terms as eq
from bayes_lse.evaluate import metrics as mt
from bayes_lse.evaluate.baselines import BASELINES, Baseline, make_baseline
from bayes_lse.evaluate.names import DEFAULT_BASELINES, PROTOCOLS, VARIANTS
from bayes_lse.core.errors import InteractionLogError

if TYPE_CHECKING:
    import xarray as xr

    from bayes_lse.data.log import InteractionLog
    from bayes_lse.api import FittedLSE
    from bayes_lse.api import LatentSkillEmbedding

__all__ = [
    "DEFAULT_BASELINES",
    "EvaluationResult",
    "PROTOCOLS",
    "Split",
    "evaluate",
    "lessons_check",
    "lse_variants",
    "loo_compare",
    "make_split",
    "metric_table",
    "paired_comparison",
    "pointwise_log_likelihood",
    "read_split",
]

ROLES = ("train", "scored", "unseen", "context")
#: metrics on held-out answers to assessments not in a run's training rows go in set
#: "cv" / "test" + this suffix
UNSEEN_SUFFIX = " unseen"
#: metric sets of the scored answers split by whether the student answered that assessment
#: before (in any row, held out or not): where a memory term's gain lies (docs/results.md)
ANSWER_KINDS = (" first-time", " repeat")
METRICS = ("auc", "log_loss", "brier", "accuracy", "ece")
_VARIANT_SUFFIX = {"full": "", "no-prerequisites": "-noprereq", "no-biases": "-nobias", "no-lessons": "-nolessons",
                   "lessons": "-lessons", "history": "-history"}
_SPLIT_COLUMNS = ["row", "source_row", "student_id", "module_id", "module_type", "timestep", "fold", "role"]
TEST = "test"


# =========================================================================== #
# the split
# =========================================================================== #
@dataclass
class Split:
    """Which rows each run trains on and which it scores.

    `table` has one row per interaction of the log (same order): ``row`` (position
    in ``log.table``), ``source_row`` (the row as the user counts it), ``student_id``,
    ``module_id``, ``module_type``, ``timestep``, ``fold`` (``"0"``..``"k-1"`` for
    the cross-validation folds, ``"test"`` for the test students, ``"train"`` for
    students that are never held out when there is no cross-validation) and ``role`` — what
    the row is in the run that holds its student out: ``train`` (trained on),
    ``scored`` (held out and scored), ``unseen`` (held out, module not in that run's
    training data, not scored) or ``context`` (a held-out lesson row). In every other
    run a row of a non-test student is trained on; test students appear only in the
    test run.
    """

    table: pd.DataFrame
    protocol: str
    folds: int
    fraction: float
    test_students: float
    seed: int | None

    @property
    def runs(self) -> list[str]:
        present = set(self.table["fold"].unique())
        names = [str(k) for k in range(self.folds)] if self.folds >= 2 else []
        if TEST in present:
            names.append(TEST)
        return [r for r in names if r in present]

    def training_mask(self, run: str) -> np.ndarray:
        """Rows trained on in `run` (boolean, log order)."""
        fold = self.table["fold"].to_numpy()
        own = fold == run
        if run == TEST:
            others = fold != TEST
        else:
            others = (fold != TEST) & ~own
        return others | (own & (self.table["role"].to_numpy() == "train"))

    def heldout_mask(self, run: str, roles: Iterable[str] = ("scored", "unseen", "context")) -> np.ndarray:
        return (self.table["fold"].to_numpy() == run) & self.table["role"].isin(list(roles)).to_numpy()

    def summary(self) -> dict[str, Any]:
        t = self.table
        out: dict[str, Any] = {}
        for run in self.runs:
            own = t[t["fold"] == run]
            held = own[own["role"] != "train"]
            out[run] = {
                "students": int(own["student_id"].nunique()),
                "held_out_students": int(held["student_id"].nunique()),
                "scored_rows": int((own["role"] == "scored").sum()),
                "unseen_rows": int((own["role"] == "unseen").sum()),
                "training_rows": int(self.training_mask(run).sum()),
            }
        return out

    def write(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the split as CSV (one row per interaction, columns row, source_row,
        student_id, module_id, module_type, timestep, fold, role) and its settings as
        JSON beside it (``<path>.json``); :func:`read_split` reads both back."""
        from bayes_lse.core.files import atomic_write_text

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path}: already exists; pass overwrite to replace it")
        meta = {"protocol": self.protocol, "folds": self.folds, "fraction": self.fraction,
                "test_students": self.test_students, "seed": self.seed}
        text = self.table[_SPLIT_COLUMNS].to_csv(index=False)
        atomic_write_text(path, text)
        atomic_write_text(path.with_suffix(path.suffix + ".json"), json.dumps(meta, indent=1))
        return path


def read_split(path: str | Path) -> Split:
    """Read a split written by :meth:`Split.write` (the CSV and its ``.json`` settings)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such split file")
    try:
        table = pd.read_csv(path, dtype={"student_id": str, "module_id": str, "fold": str, "role": str},
                            keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise InteractionLogError(str(path), f"is not a split CSV ({exc})") from None
    missing = [c for c in _SPLIT_COLUMNS if c not in table]
    if missing:
        raise InteractionLogError(str(path), f"is not a split file: missing column(s) {', '.join(missing)}")
    bad = ~table["role"].isin(ROLES)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise InteractionLogError(str(path), f"role must be one of {', '.join(ROLES)}, got {table['role'].iloc[i]!r}",
                                  row=i + 2, column="role", row_kind="line")
    meta_path = path.with_suffix(path.suffix + ".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    folds = int(meta.get("folds", len([f for f in table["fold"].unique() if f != TEST]) or 1))
    return Split(table=table, protocol=str(meta.get("protocol", "custom")), folds=folds,
                 fraction=float(meta.get("fraction", float("nan"))),
                 test_students=float(meta.get("test_students", float("nan"))), seed=meta.get("seed"))


def _check_split(split: Split, log: InteractionLog) -> None:
    t = split.table
    if len(t) != log.n_interactions:
        raise ValueError(f"the split has {len(t)} rows but the log has {log.n_interactions}: it was made for other data")
    for col in ("student_id", "module_id"):
        if not np.array_equal(t[col].astype(str).to_numpy(), log.table[col].astype(str).to_numpy()):
            i = int(np.argmax(t[col].astype(str).to_numpy() != log.table[col].astype(str).to_numpy()))
            raise ValueError(f"the split does not match the log: row {i} has {col} {t[col].iloc[i]!r} "
                             f"in the split and {log.table[col].iloc[i]!r} in the log")


def _chrono_key(t: pd.DataFrame) -> np.ndarray:
    """Order of rows within a student: timestep, then assessments before the lesson of
    that step (a lesson at step t moves the student to t+1), then table order."""
    n = len(t)
    is_lesson = (t["module_type"] == "lesson").to_numpy().astype(np.int64)
    return np.lexsort((np.arange(n), is_lesson, t["timestep"].to_numpy(), t["student"].to_numpy()))


def repeat_answers(log: InteractionLog) -> np.ndarray:
    """Per row of `log.table`: True for an answer to an assessment the student answered
    in an earlier row (by timestep, then table order: the history term's counts,
    `terms.assessment_history_counts`), False otherwise (lessons too)."""
    t = log.table
    a = np.flatnonzero((t["module_type"] == "assessment").to_numpy())
    counts = eq.assessment_history_counts(t["student"].to_numpy()[a], t["assessment"].to_numpy()[a].astype(np.int64),
                                          np.ones(len(a)), t["timestep"].to_numpy()[a])
    out = np.zeros(len(t), dtype=bool)
    out[a] = counts[:, 0] > 0  # with every outcome 1, S counts the earlier answers
    return out


def make_split(
    log: InteractionLog,
    *,
    folds: int = 5,
    protocol: str = "last-batch",
    fraction: float = 0.1,
    test_students: float = 0.2,
    seed: int | None = 0,
    test_ids: Iterable[str] | None = None,
) -> Split:
    """Assign students to folds and the test set and every row its role (see module doc).

    `test_ids`: the test set by student id (e.g. the students of a published test
    file) instead of a random share; `test_students` is then ignored.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if isinstance(folds, bool) or int(folds) != folds or folds < 1:
        raise ValueError(f"folds must be an integer >= 1 (1 = no cross-validation), got {folds!r}")
    folds = int(folds)
    if not 0 <= test_students < 1:
        raise ValueError(f"test_students must be a fraction in [0, 1), got {test_students!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if folds == 1 and test_students == 0 and test_ids is None:
        raise ValueError("nothing to evaluate: folds=1 (no cross-validation) and test_students=0 (no test set)")
    t = log.table
    n_students = log.n_students
    if not (t["module_type"] == "assessment").any():
        raise ValueError("the interaction log has no assessment rows: there is nothing to predict")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_students)
    n_test = 0
    if test_ids is not None:
        wanted = pd.Index([str(x) for x in test_ids]).unique()
        missing = wanted.difference(pd.Index(log.students).astype(str))
        if len(missing):
            raise ValueError(f"{len(missing)} test_ids are not students of the log, e.g. {missing[0]!r}")
        is_test = np.asarray(pd.Index(log.students).astype(str).isin(wanted))
        if is_test.all():
            raise ValueError("test_ids names every student: nobody is left to train on")
        perm = np.concatenate([perm[is_test[perm]], perm[~is_test[perm]]])
        n_test = int(is_test.sum())
        test_students = n_test / n_students
        if folds == 1 and n_test == 0:
            raise ValueError("nothing to evaluate: folds=1 (no cross-validation) and test_ids is empty")
    elif test_students > 0:
        n_test = max(1, int(round(test_students * n_students)))
    rest = perm[n_test:]
    if folds >= 2 and len(rest) < folds:
        raise ValueError(f"{len(rest)} students outside the test set cannot be split into {folds} folds")
    student_fold = np.empty(n_students, dtype=object)
    student_fold[perm[:n_test]] = TEST
    if folds >= 2:
        for k, part in enumerate(np.array_split(rest, folds)):
            student_fold[part] = str(k)
    else:
        student_fold[rest] = "train"  # never held out: always in training
    student = t["student"].to_numpy()

    # ---- cut point per student, in chronological order ------------------- #
    order = _chrono_key(t)
    n = len(t)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)  # chronological position (students contiguous)
    is_a = (t["module_type"] == "assessment").to_numpy()
    step = t["timestep"].to_numpy()
    a_student = student[is_a]
    n_a = np.bincount(a_student, minlength=n_students)
    if protocol == "last-batch":
        last = np.full(n_students, -1, dtype=np.int64)
        np.maximum.at(last, a_student, step[is_a])
        heldout = step >= last[student]
    else:
        n_out = np.maximum(1, np.rint(fraction * n_a).astype(np.int64))
        # chronological rank of every assessment within its student
        a_rank_sorted = np.flatnonzero(is_a[order])
        a_rows = order[a_rank_sorted]
        pos_in_student = np.arange(len(a_rows)) - np.concatenate([[0], np.cumsum(n_a)])[:-1][student[a_rows]]
        first_out = np.full(n_students, np.iinfo(np.int64).max)
        cut_rows = a_rows[pos_in_student == (n_a - n_out)[student[a_rows]]]
        first_out[student[cut_rows]] = rank[cut_rows]
        heldout = rank >= first_out[student]
    history_a = np.bincount(student[is_a & ~heldout], minlength=n_students)
    held_a = np.bincount(student[is_a & heldout], minlength=n_students)
    eligible = (history_a > 0) & (held_a > 0)
    row_fold = student_fold[student]
    can_hold = eligible[student] & (row_fold != "train")
    held = heldout & can_hold
    role = np.where(held, np.where(is_a, "scored", "context"), "train").astype(object)

    table = pd.DataFrame(
        {
            "row": np.arange(n, dtype=np.int64),
            "source_row": t["source_row"].to_numpy(),
            "student_id": t["student_id"].astype(str).to_numpy(),
            "module_id": t["module_id"].astype(str).to_numpy(),
            "module_type": t["module_type"].astype(str).to_numpy(),
            "timestep": step,
            "fold": row_fold.astype(str),
            "role": role,
        }
    )
    split = Split(table=table, protocol=protocol, folds=folds, fraction=float(fraction),
                  test_students=float(test_students), seed=seed)
    # ---- assessments not seen in the run's training data are not scored ---- #
    is_a_col = is_a
    for run in split.runs:
        train = split.training_mask(run) & is_a_col
        seen = set(table["module_id"].to_numpy()[train])
        m = split.heldout_mask(run, ("scored",))
        # pandas' hashed isin: numpy's isin on object arrays took 35 s per run on ASSISTments
        unseen = m & ~table["module_id"].isin(seen).to_numpy()
        table.loc[unseen, "role"] = "unseen"
    return split


# =========================================================================== #
# models
# =========================================================================== #
def lse_variants(skills: Iterable[int | str] = ("auto",), variants: Iterable[str] = ("full",),
                 **options: Any) -> dict[str, LatentSkillEmbedding]:
    """LSE specifications named ``lse-d<d>[-noprereq][-nobias][-nolessons][-history]``, or
    ``lse-auto[...]`` for d = "auto" (chosen by each fit, `results.selection`).

    `variants` from ``full``, ``no-prerequisites``, ``no-biases``, ``no-lessons``,
    ``lessons`` (kept whatever the fit's held-out check says), ``history``, or several
    joined by ``+`` (``no-lessons+history``);
    `options` go to every :class:`LatentSkillEmbedding` (e.g. learning_noise).
    """
    from bayes_lse.api import LatentSkillEmbedding

    out: dict[str, LatentSkillEmbedding] = {}
    for d in skills:
        if d != "auto" and (isinstance(d, (bool, str)) or int(d) != d or d < 1):
            raise ValueError(f"skills must be integers >= 1 or 'auto', got {d!r}")
        for v in variants:
            parts = [p.strip() for p in str(v).split("+")]
            settings: dict[str, Any] = {}
            for part in parts:
                if part not in VARIANTS:
                    raise ValueError(f"unknown LSE variant {part!r}; choose from {', '.join(VARIANTS)} "
                                     "(or several joined by '+')")
                settings.update(VARIANTS[part])
            suffix = "".join(_VARIANT_SUFFIX[k] for k in VARIANTS if k in parts)  # canonical order
            d = d if d == "auto" else int(d)
            out[f"{_skills_name(d)}{suffix}"] = LatentSkillEmbedding(n_skills=d, **{**options, **settings})
    return out


def _skills_name(d: int | str) -> str:
    """``lse-d<d>``, or ``lse-auto`` for a d each fit chooses."""
    return "lse-auto" if d == "auto" else f"lse-d{int(d)}"


def _model_from_name(name: str, n_skills: int = 2) -> Any:
    key = name.strip().lower()
    if key == "lse" or key.startswith("lse-"):
        parts = key.split("-")[1:]
        d: int | str = n_skills
        chosen: list[str] = []
        inverse = {s.lstrip("-"): v for v, s in _VARIANT_SUFFIX.items() if s}
        for part in parts:
            if part.startswith("d") and part[1:].isdigit():
                d = int(part[1:])
            elif part == "auto":
                d = "auto"
            elif part in inverse:
                chosen.append(inverse[part])
            else:
                raise ValueError(f"cannot read LSE model name {name!r}: use "
                                 "lse-d<d>[-noprereq][-nobias][-nolessons][-history] (or lse-auto...)")
        return next(iter(lse_variants([d], ["+".join(chosen) or "full"]).values()))
    return make_baseline(key, n_skills)


def _resolve_models(models: Any, n_skills: int = 2) -> dict[str, Any]:
    from bayes_lse.api import LatentSkillEmbedding

    if models is None:
        names = ["lse-auto", *DEFAULT_BASELINES]
        models = names
    if isinstance(models, Mapping):
        items = list(models.items())
    else:
        items = []
        for m in models:
            if isinstance(m, str):
                obj = _model_from_name(m, n_skills)
                items.append((_default_name(obj, m), obj))
            else:
                items.append((_default_name(m, None), m))
    out: dict[str, Any] = {}
    for name, obj in items:
        if isinstance(obj, str):
            obj = _model_from_name(obj, n_skills)
        if not isinstance(obj, (LatentSkillEmbedding, Baseline)):
            raise TypeError(f"model {name!r} must be a LatentSkillEmbedding, a Baseline or a name, got {type(obj).__name__}")
        if name in out:
            raise ValueError(f"model name {name!r} given twice")
        out[str(name)] = obj
    if not out:
        raise ValueError("no models to evaluate")
    return out


def _default_name(obj: Any, given: str | None) -> str:
    from bayes_lse.api import LatentSkillEmbedding

    if isinstance(obj, LatentSkillEmbedding):
        c = obj.config
        return _skills_name(c["n_skills"]) + "".join(
            _VARIANT_SUFFIX[k] for k, settings in VARIANTS.items()
            if settings and all(c.get(key) == value for key, value in settings.items()))
    if isinstance(obj, Baseline):
        return obj.name
    return str(given)


# =========================================================================== #
# metrics with standard errors (student-cluster bootstrap)
# =========================================================================== #
def _bootstrap_weights(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_rows) row weights: each resample draws the groups (students) with replacement."""
    codes, uniq = pd.factorize(groups)
    g = len(uniq)
    counts = rng.multinomial(g, np.full(g, 1.0 / g), size=n_boot) if g else np.zeros((n_boot, 0))
    return counts[:, codes].astype(float)


def _weighted_metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray, bins: int = 10) -> dict[str, np.ndarray]:
    """Every metric for each row of weights w (k, n); returns arrays of length k."""
    y = y.astype(float)
    p = np.clip(p.astype(float), 1e-12, 1 - 1e-12)
    tot = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ll = -(w @ (y * np.log(p) + (1 - y) * np.log1p(-p))) / tot
        br = (w @ ((p - y) ** 2)) / tot
        acc = (w @ ((p >= 0.5) == (y == 1)).astype(float)) / tot
        b = np.clip((p * bins).astype(np.int64), 0, bins - 1)
        onehot = np.zeros((len(p), bins))
        onehot[np.arange(len(p)), b] = y - p
        ece = np.abs(w @ onehot).sum(axis=1) / tot
        # AUC with ties counted half, weighted
        order = np.argsort(p, kind="stable")
        ps, ys, ws = p[order], y[order] == 1, w[:, order]
        starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
        wpos = np.add.reduceat(ws * ys, starts, axis=1) if len(ps) else np.zeros((len(w), 0))
        wneg = np.add.reduceat(ws * ~ys, starts, axis=1) if len(ps) else np.zeros((len(w), 0))
        neg_before = np.cumsum(wneg, axis=1) - wneg
        num = (wpos * (neg_before + 0.5 * wneg)).sum(axis=1)
        auc = num / (wpos.sum(axis=1) * wneg.sum(axis=1))
    return {"auc": auc, "log_loss": ll, "brier": br, "accuracy": acc, "ece": ece}


def metric_table(y: np.ndarray, p: np.ndarray, groups: np.ndarray | None = None, *, n_boot: int = 200,
                 seed: int | None = 0) -> dict[str, float]:
    """AUC, log-loss, Brier, accuracy, ECE and their bootstrap standard errors (`<m>_se`),
    resampling `groups` (e.g. students) with replacement; rows if `groups` is None."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    out: dict[str, float] = {"n": int(len(y))}
    point = {
        "auc": mt.auc(y, p), "log_loss": mt.log_loss(y, p), "brier": mt.brier(y, p),
        "accuracy": mt.accuracy(y, p), "ece": mt.expected_calibration_error(y, p),
    }
    if len(y) == 0:
        return {**out, **{k: float("nan") for k in point}, **{f"{k}_se": float("nan") for k in point}}
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    rng = np.random.default_rng(seed)
    boot = _weighted_metrics(y, p, _bootstrap_weights(groups, n_boot, rng)) if n_boot > 1 else {}
    for k, v in point.items():
        out[k] = float(v)
        out[f"{k}_se"] = float(np.nanstd(boot[k], ddof=1)) if n_boot > 1 else float("nan")
    return out


def _midrank(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def delong_auc_difference(y: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> dict[str, float]:
    """DeLong's test for AUC(p1) − AUC(p2) on the same rows (rows independent)."""
    y = np.asarray(y).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        return {"diff": float("nan"), "se": float("nan"), "z": float("nan"), "p_value": float("nan")}
    v01, v10, aucs = [], [], []
    for p in (np.asarray(p1, float), np.asarray(p2, float)):
        pos, neg = p[y], p[~y]
        tz = _midrank(np.concatenate([pos, neg]))
        tx, ty = _midrank(pos), _midrank(neg)
        aucs.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v01.append((tz[:m] - tx) / n)
        v10.append(1.0 - (tz[m:] - ty) / m)
    s01 = np.cov(np.vstack(v01))
    s10 = np.cov(np.vstack(v10))
    s = s01 / m + s10 / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    diff = aucs[0] - aucs[1]
    se = math.sqrt(max(var, 0.0))
    z = diff / se if se > 0 else float("nan")
    return {"diff": float(diff), "se": se, "z": float(z),
            "p_value": float(2 * stats.norm.sf(abs(z))) if se > 0 else float("nan")}


def paired_comparison(y: np.ndarray, p_model: np.ndarray, p_ref: np.ndarray, groups: np.ndarray | None = None, *,
                      n_boot: int = 200, seed: int | None = 0) -> dict[str, float]:
    """Metric differences model − reference on the same rows: point value, bootstrap SE
    and 95% percentile interval (same student resamples for both), DeLong for AUC."""
    y = np.asarray(y, dtype=float)
    p_model = np.asarray(p_model, dtype=float)
    p_ref = np.asarray(p_ref, dtype=float)
    out: dict[str, float] = {"n": int(len(y))}
    if len(y) == 0:
        return out
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    w = _bootstrap_weights(groups, n_boot, np.random.default_rng(seed))
    full = np.ones((1, len(y)))
    a, b = _weighted_metrics(y, p_model, np.vstack([full, w])), _weighted_metrics(y, p_ref, np.vstack([full, w]))
    for k in METRICS:
        d = a[k] - b[k]
        out[f"{k}_diff"] = float(d[0])
        boot = d[1:][np.isfinite(d[1:])]
        if len(boot) >= 2:  # n_boot=0 (or all-NaN resamples): no bootstrap figures, not a crash
            out[f"{k}_diff_se"] = float(np.std(boot, ddof=1))
            lo, hi = np.percentile(boot, [2.5, 97.5])
        else:
            out[f"{k}_diff_se"] = lo = hi = float("nan")
        out[f"{k}_diff_low"], out[f"{k}_diff_high"] = float(lo), float(hi)
    dl = delong_auc_difference(y, p_model, p_ref)
    out["auc_diff_delong_se"] = dl["se"]
    out["auc_diff_delong_p"] = dl["p_value"]
    return out


# =========================================================================== #
# the lessons check
# =========================================================================== #
def lessons_check(
    fitted: FittedLSE,
    train: pd.DataFrame,
    heldout: pd.DataFrame,
    *,
    update: str = "auto",
) -> pd.DataFrame:
    """Predictions for held-out answers that follow one or more lessons, with and without them.

    `train`: the rows the model was fit on (student_id, module_id, module_type,
    timestep); `heldout`: held-out rows (assessments to predict, with ``outcome``,
    and the lessons taken after the cut). For each held-out assessment at step t of
    student u, let h be u's last step with a training assessment: the *with*
    prediction pushes the fitted state at h through the learning update of the
    lessons at steps h..t−1; the *without* prediction pushes it through the same
    number of steps with zero gain (the model's own "no lesson" step). The update is
    `update` as in `FittedLSE.predict`: the truncated-normal mean
    (:func:`equations.expected_next_state`) or the mode of each step ("auto", the
    default: the mode for a MAP fit; "sample" counts as "expected" here). Rows with no known lesson in between are
    left out. Returns one row per included answer: student_id, module_id, timestep,
    outcome, n_lessons, p_with, p_without (posterior means).
    """
    cols = ["student_id", "module_id", "timestep", "outcome", "n_lessons", "p_with", "p_without"]
    empty = pd.DataFrame({c: [] for c in cols})
    if not fitted.model_config["lessons"] or not fitted.has("gain"):
        return empty
    lessons = pd.Index(fitted.lessons).astype(str)
    assessments = pd.Index(fitted.assessments).astype(str)
    students = pd.Index(fitted.ids_of("student")).astype(str)
    tr_a = train[train["module_type"] == "assessment"]
    h = tr_a.groupby(tr_a["student_id"].astype(str))["timestep"].max()
    ha = heldout[heldout["module_type"] == "assessment"]
    ha = ha[ha["module_id"].astype(str).isin(assessments) & ha["student_id"].astype(str).isin(h.index)]
    if ha.empty:
        return empty
    sid = ha["student_id"].astype(str).to_numpy()
    t_r = ha["timestep"].to_numpy().astype(np.int64)
    h_r = h.reindex(sid).to_numpy().astype(np.int64)
    # lessons (fit codes) per (student, step), from training and held-out rows
    les = pd.concat([train[train["module_type"] == "lesson"], heldout[heldout["module_type"] == "lesson"]])
    codes = lessons.get_indexer(les["module_id"].astype(str))
    lesson_at = dict(zip(zip(les["student_id"].astype(str), les["timestep"].astype(np.int64)), codes, strict=True))
    span = np.maximum(t_r - h_r, 0)
    n_les = np.array([sum(lesson_at.get((s, int(h0 + k)), -1) >= 0 for k in range(sp))
                      for s, h0, sp in zip(sid, h_r, span, strict=True)], dtype=np.int64)
    keep = n_les > 0
    if not keep.any():
        return empty
    sid, t_r, h_r, span, n_les = sid[keep], t_r[keep], h_r[keep], span[keep], n_les[keep]
    ha = ha[keep]
    si = fitted.state_index()
    first = si.groupby(si["student_id"].astype(str))["state"].min()
    flat = first.reindex(sid).to_numpy().astype(np.int64) + h_r
    noise = fitted.learning_noise_draws()[:, None, None]
    mode = fitted.resolve_update(update) == "mode"
    gain = fitted.draws("gain")
    prereq = fitted.draws("prerequisite") if fitted.has("prerequisite") else None
    with_l = fitted.state_draws(flat)  # (samples, rows, d)
    without = with_l.copy()
    for k in range(int(span.max())):
        active = span > k
        lk = np.array([lesson_at.get((s, int(h0 + k)), -1) for s, h0 in zip(sid, h_r, strict=True)])
        has = active & (lk >= 0)
        step = "mode" if mode else "expected"  # each draw with its own σ_L
        nxt_with = eq.step_states(with_l, np.where(has, lk, -1), gain, prereq, noise, step)
        nxt_without = without if mode else eq.next_state(without, noise, step)
        with_l[:, active] = nxt_with[:, active]
        without[:, active] = nxt_without[:, active]
    a_idx = assessments.get_indexer(ha["module_id"].astype(str))
    s_idx = students.get_indexer(sid) if fitted.has("student_bias") else None
    from bayes_lse.results.posterior import pass_draws

    hist = fitted.history_of(ha)
    p_with = pass_draws(fitted, with_l, a_idx, s_idx, hist).mean(axis=0)
    p_without = pass_draws(fitted, without, a_idx, s_idx, hist).mean(axis=0)
    return pd.DataFrame({
        "student_id": sid, "module_id": ha["module_id"].astype(str).to_numpy(), "timestep": t_r,
        "outcome": ha["outcome"].to_numpy(dtype=float), "n_lessons": n_les, "p_with": p_with, "p_without": p_without,
    })


_LESSONS_SUMMARY_KEYS = ("auc_with", "auc_without", "auc_diff", "auc_diff_se", "auc_diff_low", "auc_diff_high",
                         "log_loss_with", "log_loss_without", "log_loss_diff", "log_loss_diff_se",
                         "log_loss_diff_low", "log_loss_diff_high", "mean_lessons")


def _lessons_summary(rows: pd.DataFrame, *, n_boot: int, seed: int | None) -> dict[str, float]:
    """AUC and log-loss of the lessons-check rows with and without the learning update;
    differences are with − without (AUC: positive helps; log-loss: negative helps),
    with bootstrap SEs and 95% intervals over students."""
    n = len(rows)
    out: dict[str, float] = {"n": n, "students": int(rows["student_id"].nunique()) if n else 0}
    if n == 0:
        return {**out, **{k: float("nan") for k in _LESSONS_SUMMARY_KEYS}}
    y = rows["outcome"].to_numpy()
    cmp = paired_comparison(y, rows["p_with"].to_numpy(), rows["p_without"].to_numpy(),
                            rows["student_id"].to_numpy(), n_boot=n_boot, seed=seed)
    out.update({
        "auc_with": mt.auc(y, rows["p_with"]), "auc_without": mt.auc(y, rows["p_without"]),
        "auc_diff": cmp["auc_diff"], "auc_diff_se": cmp["auc_diff_se"],
        "auc_diff_low": cmp["auc_diff_low"], "auc_diff_high": cmp["auc_diff_high"],
        "log_loss_with": mt.log_loss(y, rows["p_with"]), "log_loss_without": mt.log_loss(y, rows["p_without"]),
        "log_loss_diff": cmp["log_loss_diff"], "log_loss_diff_se": cmp["log_loss_diff_se"],
        "log_loss_diff_low": cmp["log_loss_diff_low"], "log_loss_diff_high": cmp["log_loss_diff_high"],
        "mean_lessons": float(rows["n_lessons"].mean()),
    })
    return out


# =========================================================================== #
# Bayesian comparison: PSIS-LOO
# =========================================================================== #
def pointwise_log_likelihood(fitted: FittedLSE, *, max_cells: float = 5e7) -> xr.DataTree:
    """A DataTree with the Bernoulli log-likelihood of every training row per draw
    (group ``log_likelihood``, variable ``outcome``, dims chain, draw, obs) and the
    ``observed_data``, as ArviZ's loo expects."""
    import xarray as xr

    post = fitted.idata["posterior"]
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    y = np.asarray(fitted.idata["observed_data"]["outcome"].values, dtype=float)
    cells = n_chain * n_draw * len(y) * max(fitted.n_skills, 1)
    if cells > max_cells:
        raise ValueError(
            f"the pointwise log-likelihood would hold {n_chain * n_draw} draws x {len(y)} rows; "
            "refit with fewer draws, or compare on a smaller log (max_cells raises the limit)")
    if n_chain * n_draw < 2:
        raise ValueError("PSIS-LOO needs posterior draws: fit with method='advi' or 'nuts', not 'map'")
    p = np.clip(fitted.pass_probability_draws(), 1e-12, 1 - 1e-12)
    ll = np.where(y[None, :] == 1, np.log(p), np.log1p(-p)).reshape(n_chain, n_draw, len(y))
    coords = {"chain": np.arange(n_chain), "draw": np.arange(n_draw), "obs": np.arange(len(y))}
    return xr.DataTree.from_dict({
        "log_likelihood": xr.Dataset({"outcome": (("chain", "draw", "obs"), ll)}, coords=coords),
        "observed_data": xr.Dataset({"outcome": ("obs", y)}, coords={"obs": coords["obs"]}),
    })


def _relative_eff(ll: np.ndarray) -> float:
    """Mean relative efficiency of exp(log-lik) over observations (as R's loo::relative_eff)."""
    import xarray as xr

    n_chain, n_draw = ll.shape[:2]
    if n_chain == 1:
        return 1.0
    lik = xr.DataArray(np.exp(ll - ll.max(axis=(0, 1), keepdims=True)), dims=("chain", "draw", "obs"))
    ess = xr.Dataset({"lik": lik}).azstats.ess(sample_dims=["chain", "draw"], method="mean")["lik"].values
    return float(np.clip(np.nanmean(ess) / (n_chain * n_draw), 1e-3, None))


def loo_compare(fits: Mapping[str, FittedLSE], *, max_cells: float = 5e7) -> tuple[pd.DataFrame, dict[str, Any]]:
    """PSIS-LOO ELPD of each fit (all on the same training rows) and ArviZ's comparison table.

    Returns (``arviz_stats.compare`` DataFrame with an added ``pareto_k_bad`` column:
    the share of rows with Pareto k above ArviZ's threshold, where LOO is unreliable;
    the ELPDData per model).
    """
    import arviz_stats as azs

    if len(fits) < 1:
        raise ValueError("give at least one fit")
    n_obs = {name: int(f.idata["observed_data"].sizes["obs"]) for name, f in fits.items()}
    if len(set(n_obs.values())) > 1:
        raise ValueError(f"PSIS-LOO comparison needs fits to the same rows; row counts differ: {n_obs}")
    elpd: dict[str, Any] = {}
    bad: dict[str, float] = {}
    for name, f in fits.items():
        tree = pointwise_log_likelihood(f, max_cells=max_cells)
        ll = tree["log_likelihood"]["outcome"].values
        with warnings.catch_warnings():
            # high Pareto k is reported in the table (pareto_k_bad), not as a warning
            warnings.simplefilter("ignore", UserWarning)
            res = azs.loo(tree, pointwise=True, reff=_relative_eff(ll))
        elpd[name] = res
        k = np.asarray(res.pareto_k.values)
        bad[name] = float(np.mean(k > res.good_k))
    if len(elpd) == 1:
        name, r = next(iter(elpd.items()))
        table = pd.DataFrame({"rank": [0], "elpd": [r.elpd], "p": [r.p], "elpd_diff": [0.0], "dse": [0.0],
                              "se": [r.se], "weight": [1.0]}, index=[name])
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            table = azs.compare(elpd, round_to="none")
    table["pareto_k_bad"] = pd.Series(bad)
    return table, elpd


# =========================================================================== #
# the harness
# =========================================================================== #
@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns; `to_text()` / `to_dict()` / `to_json()` present it."""

    metrics: pd.DataFrame
    comparisons: pd.DataFrame
    predictions: pd.DataFrame
    timings: pd.DataFrame
    lessons: pd.DataFrame
    split: Split
    settings: dict[str, Any]
    loo: pd.DataFrame | None = None
    fits: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        def records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
            if df is None:
                return []
            d = df.reset_index() if df.index.name or not isinstance(df.index, pd.RangeIndex) else df
            return json.loads(d.to_json(orient="records"))

        return {
            "settings": self.settings,
            "split": self.split.summary(),
            "metrics": records(self.metrics),
            "comparisons": records(self.comparisons),
            "timings": records(self.timings),
            "lessons_check": records(self.lessons),
            "loo": records(self.loo.rename_axis("model")) if self.loo is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluationResult:
        """Rebuild the tables of a result saved with `to_json` (no predictions, no split rows)."""
        loo_df = pd.DataFrame(d["loo"]).set_index("model") if d.get("loo") else None
        empty_split = Split(table=pd.DataFrame(columns=_SPLIT_COLUMNS), protocol=d["settings"]["protocol"],
                            folds=d["settings"]["folds"], fraction=d["settings"]["fraction"],
                            test_students=d["settings"]["test_students"], seed=d["settings"]["seed"])
        return cls(metrics=pd.DataFrame(d["metrics"]), comparisons=pd.DataFrame(d["comparisons"]),
                   predictions=pd.DataFrame(), timings=pd.DataFrame(d["timings"]),
                   lessons=pd.DataFrame(d["lessons_check"]), split=empty_split, settings=dict(d["settings"]),
                   loo=loo_df)

    def to_text(self) -> str:
        return format_text(self)


def evaluate(
    log: InteractionLog | pd.DataFrame | str | Path,
    models: Any = None,
    *,
    folds: int = 5,
    protocol: str = "last-batch",
    fraction: float = 0.1,
    test_students: float = 0.2,
    seed: int | None = 0,
    method: str = "map",
    fit_options: Mapping[str, Any] | None = None,
    split: Split | str | Path | None = None,
    reference: str | None = None,
    lessons: bool = True,
    loo: bool = False,
    n_boot: int = 200,
    keep_fits: bool = False,
    progress: Callable[[str], None] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    update: str = "auto",
    modules: Any = None,
) -> EvaluationResult:
    """Fit every model on every run of the split and score the held-out rows.

    `models`: names (``lse-auto``, ``lse-d2``, ``lse-d3-noprereq``, baselines from
    :data:`baselines.BASELINES` or ``mirt-d<d>``), model objects
    (:class:`LatentSkillEmbedding`, :class:`baselines.Baseline`) or a dict name → either;
    default: ``lse-auto`` and :data:`DEFAULT_BASELINES`. LSE models are fit by `method`
    with `fit_options` (e.g. ``{"starts": 1}``); baselines always by MAP. `split`
    reuses a saved split (:func:`read_split`) instead of making one. `reference`:
    the model the paired comparisons are against (default: the first LSE model, else
    the first model). `lessons`: run the lessons check for LSE models with lessons.
    `loo`: PSIS-LOO comparison of the LSE fits of the last run (test run if any),
    ADVI/NUTS only. `keep_fits`: keep every fitted model in ``result.fits``.
    `update`: how LSE forecasts move a state through held-out steps, as in
    :meth:`FittedLSE.predict` ("auto", the default: the mode for MAP fits, the mean for
    ADVI/NUTS; "expected": each step's truncated-normal mean; "mode").
    `modules`: a modules table (`data.modules.read_modules`) given to every LSE fit, so
    that held-out answers to assessments a run's training rows never had are predicted
    from the fitted assessments sharing their tags (scored apart as "unseen").

    Every (run, model) fit is one job (baselines that share a fit share a job), run
    in-process by default, on a local Dask cluster of `workers` processes, or on the
    Dask scheduler at `scheduler` (:mod:`bayes_lse.distributed`); the results are the
    same on every engine.
    """
    from bayes_lse.data.log import InteractionLog, read_interactions
    from bayes_lse.api import LatentSkillEmbedding
    from bayes_lse.model.graph import METHODS

    say = progress or (lambda msg: None)
    if not isinstance(log, InteractionLog):
        log = read_interactions(log)
    if modules is not None:
        from bayes_lse.data.modules import read_modules

        modules = read_modules(modules)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if loo and method == "map":
        raise ValueError("PSIS-LOO needs posterior draws: use method 'advi' or 'nuts' with loo")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    from bayes_lse.evaluate.distributed import check_engine, executor

    check_engine(scheduler, workers)
    specs = _resolve_models(models)
    if split is None:
        split = make_split(log, folds=folds, protocol=protocol, fraction=fraction,
                           test_students=test_students, seed=seed)
    else:
        if not isinstance(split, Split):
            split = read_split(split)
        _check_split(split, log)
    lse_names = [n for n, m in specs.items() if isinstance(m, LatentSkillEmbedding)]
    if reference is None:
        reference = lse_names[0] if lse_names else next(iter(specs))
    if reference not in specs:
        raise ValueError(f"reference model {reference!r} is not among the models: {', '.join(specs)}")
    fit_options = dict(fit_options or {})
    runs = split.runs
    if not runs:
        raise ValueError("the split has no run with held-out students")
    base_cols = ["student_id", "module_id", "module_type", "outcome", "timestep"]
    table = log.table
    stab = split.table
    pred_frames: list[pd.DataFrame] = []
    timing_rows: list[dict[str, Any]] = []
    lesson_frames: dict[str, list[pd.DataFrame]] = {}
    fits: dict[str, dict[str, Any]] = {}
    last_lse_fits: dict[str, FittedLSE] = {}
    lse_configs: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    # ---- each run's training and held-out rows, built once here ------------ #
    contexts: list[dict[str, Any]] = []
    for ri, run in enumerate(runs):
        train_mask = split.training_mask(run)
        train = table.loc[train_mask, base_cols].reset_index(drop=True)
        train_log = read_interactions(train, name=f"{log.source} (run {run} training rows)")
        held_mask = split.heldout_mask(run)
        held = table.loc[held_mask, base_cols].copy()
        held["row"] = np.flatnonzero(held_mask)
        held["role"] = stab["role"].to_numpy()[held_mask]
        held_a = held[held["module_type"] == "assessment"]
        preds = pd.DataFrame({
            "run": run, "row": held_a["row"].to_numpy(), "source_row": table["source_row"].to_numpy()[held_a["row"]],
            "student_id": held_a["student_id"].astype(str).to_numpy(),
            "module_id": held_a["module_id"].astype(str).to_numpy(), "timestep": held_a["timestep"].to_numpy(),
            "outcome": held_a["outcome"].to_numpy(dtype=float), "scored": (held_a["role"] == "scored").to_numpy(),
        })
        say(f"run {run} ({ri + 1}/{len(runs)}): {train_log.n_students} students, "
            f"{int((train['module_type'] == 'assessment').sum())} training answers, {int(preds['scored'].sum())} to predict")
        contexts.append({"run": run, "train_log": train_log, "train": train, "held": held, "preds": preds})

    # ---- every (run, model) fit is one job; baselines sharing a fit share one #
    jobs: list[_FitJob] = []
    for ri, run in enumerate(runs):
        grouped: dict[tuple, list[str]] = {}
        for name, spec in specs.items():
            key = ("lse", name) if isinstance(spec, LatentSkillEmbedding) else ("baseline", spec.fit_key())
            grouped.setdefault(key, []).append(name)
        for (kind, _), names in grouped.items():
            jobs.append(_FitJob(run_index=ri, run=run, specs={n: specs[n] for n in names}, method=method,
                                fit_options=fit_options, seed=seed, lessons=lessons, update=update,
                                modules=modules, return_fit=keep_fits or (loo and kind == "lse" and ri == len(runs) - 1)))
    n_done = 0

    def report(i: int, res: dict[str, dict[str, Any]]) -> None:
        nonlocal n_done
        n_done += 1
        preds = contexts[jobs[i].run_index]["preds"]
        sc = preds["scored"].to_numpy()
        for name, r in res.items():
            shared = f" (shares the fit of {r['shares']})" if r["shares"] else ""
            spec = jobs[i].specs[name]
            if isinstance(spec, LatentSkillEmbedding) and spec.config["n_skills"] == "auto" and r["configs"]:
                shared += f" (d = {r['configs']['model_config']['n_skills']} chosen)"
            say(f"  [{n_done}/{len(jobs)}] run {jobs[i].run}, {name}: fit {r['fit_seconds']:.1f} s{shared}, "
                f"predict {r['predict_seconds']:.1f} s, "
                f"AUC {mt.auc(preds['outcome'][sc], np.asarray(r['p'])[sc]):.3f}")

    with executor(scheduler, workers) as ex:
        say(f"{len(jobs)} fit(s) of {len(specs)} model(s) on {len(runs)} run(s), {ex.description}")
        shared_contexts = [ex.share(ctx) for ctx in contexts]
        results = ex.map(_run_fit_job, [shared_contexts[j.run_index] for j in jobs], jobs, on_result=report)
    by_key = {(job.run_index, name): r for job, res in zip(jobs, results, strict=True) for name, r in res.items()}
    for ri, ctx in enumerate(contexts):
        run, preds = ctx["run"], ctx["preds"]
        for name, spec in specs.items():
            r = by_key[(ri, name)]
            preds[name] = r["p"]
            timing_rows.append({"model": name, "run": run, "fit_seconds": r["fit_seconds"],
                                "predict_seconds": r["predict_seconds"],
                                "lessons_check_seconds": r["lessons_check_seconds"], **r["optimizer"]})
            if r["lessons"] is not None:
                lesson_frames.setdefault(name, []).append(r["lessons"])
            if isinstance(spec, LatentSkillEmbedding):
                lse_configs.setdefault(name, r["configs"])
                if loo and ri == len(runs) - 1:
                    last_lse_fits[name] = r["fitted"]
            if keep_fits:
                fits.setdefault(name, {})[run] = r["fitted"]
        pred_frames.append(preds)
    predictions = pd.concat(pred_frames, ignore_index=True)
    scored = predictions[predictions["scored"]].reset_index(drop=True)

    # ---- metrics per run, pooled CV, test ---------------------------------- #
    groups = _groups(runs)
    metric_rows = []
    cmp_rows = []
    for gname, gruns in groups.items():
        sub = scored[scored["run"].isin(gruns)]
        y = sub["outcome"].to_numpy()
        for name in specs:
            m = metric_table(y, sub[name].to_numpy(), sub["student_id"].to_numpy(), n_boot=n_boot, seed=seed)
            metric_rows.append({"model": name, "set": gname, "students": int(sub["student_id"].nunique()), **m})
            if name != reference and gname in ("cv", TEST):
                c = paired_comparison(y, sub[name].to_numpy(), sub[reference].to_numpy(), sub["student_id"].to_numpy(),
                                      n_boot=n_boot, seed=seed)
                cmp_rows.append({"model": name, "reference": reference, "set": gname, **c})
    # answers to assessments that the run's training rows never had (a module added
    # after the fit): scored apart, never pooled with the rest (UNSEEN_SUFFIX)
    unseen = predictions[~predictions["scored"]].reset_index(drop=True)
    for gname, gruns in groups.items():
        if gname not in ("cv", TEST):
            continue
        sub = unseen[unseen["run"].isin(gruns)]
        y = sub["outcome"].to_numpy()
        if len(sub) < 2 or len(np.unique(y)) < 2:
            continue
        for name in specs:
            p_un = sub[name].to_numpy()
            if np.isnan(p_un).any():
                continue
            m = metric_table(y, p_un, sub["student_id"].to_numpy(), n_boot=n_boot, seed=seed)
            metric_rows.append({"model": name, "set": gname + UNSEEN_SUFFIX,
                                "students": int(sub["student_id"].nunique()), **m})
    # first-time and repeat answers apart (ANSWER_KINDS): a memory term gains on repeats only
    rep = repeat_answers(log)[scored["row"].to_numpy()]
    for gname, gruns in groups.items():
        if gname not in ("cv", TEST):
            continue
        in_g = scored["run"].isin(gruns).to_numpy()
        for kind, mask in zip(ANSWER_KINDS, (~rep, rep), strict=True):
            sub = scored[in_g & mask]
            y = sub["outcome"].to_numpy()
            if len(sub) < 2 or len(np.unique(y)) < 2:
                continue
            for name in specs:
                m = metric_table(y, sub[name].to_numpy(), sub["student_id"].to_numpy(), n_boot=n_boot, seed=seed)
                metric_rows.append({"model": name, "set": gname + kind, "students": int(sub["student_id"].nunique()),
                                    **m})
    metrics_df = pd.DataFrame(metric_rows)
    comparisons = pd.DataFrame(cmp_rows)
    timings = pd.DataFrame(timing_rows)

    # ---- lessons check ------------------------------------------------------ #
    lesson_rows = []
    for name, frames in lesson_frames.items():
        allrows = pd.concat(frames, ignore_index=True)
        for gname, gruns in groups.items():
            if gname not in ("cv", TEST):
                continue
            sub = allrows[allrows["run"].isin(gruns)]
            lesson_rows.append({"model": name, "set": gname, **_lessons_summary(sub, n_boot=n_boot, seed=seed)})
    lessons_df = pd.DataFrame(lesson_rows)

    loo_table = None
    if loo and len(last_lse_fits):
        say(f"PSIS-LOO on the fits of run {runs[-1]} ...")
        loo_table, _ = loo_compare(last_lse_fits)

    small = small_set_warnings(metrics_df, protocol=split.protocol)
    for w in small:
        warnings.warn(w, UserWarning, stacklevel=2)

    settings = {
        "warnings": small,
        "source": str(log.source), "protocol": split.protocol, "folds": split.folds, "fraction": split.fraction,
        "test_students": split.test_students, "seed": split.seed, "method": method,
        "fit_options": {k: v for k, v in fit_options.items()}, "models": list(specs), "reference": reference,
        "n_boot": n_boot, "runs": runs, "seconds": time.perf_counter() - t_all,
        "n_students": log.n_students, "n_interactions": log.n_interactions, "update": update,
        "lse_configs": lse_configs, "bayes_lse_version": _package_version(),
    }
    return EvaluationResult(metrics=metrics_df, comparisons=comparisons, predictions=predictions, timings=timings,
                            lessons=lessons_df, split=split, settings=settings, loo=loo_table, fits=fits)


@dataclass
class _FitJob:
    """One job of :func:`evaluate`: a model (or baselines sharing one fit) on one run."""

    run_index: int
    run: str
    specs: dict[str, Any]
    method: str
    fit_options: dict[str, Any]
    seed: int | None
    lessons: bool
    update: str
    return_fit: bool  # send the fitted object back (keep_fits, or PSIS-LOO on the last run)
    modules: Any = None  # the modules table for the LSE fits (data.modules.ModuleTable)


def _run_fit_job(ctx: Mapping[str, Any], job: _FitJob) -> dict[str, dict[str, Any]]:
    """Fit, predict the held-out rows and run the lessons check for one job.

    Runs wherever the engine puts it (this process or a Dask worker), so it returns
    only small things: predictions, timings, configs, and the fit if asked for."""
    from bayes_lse.api import LatentSkillEmbedding

    train_log, train, held, preds = ctx["train_log"], ctx["train"], ctx["held"], ctx["preds"]
    out: dict[str, dict[str, Any]] = {}
    first: tuple[str, Any] | None = None  # the fit the baselines of this job share
    for name, spec in job.specs.items():
        t0 = time.perf_counter()
        t_lessons = float("nan")
        lc = None
        configs = None
        shares = None
        if isinstance(spec, LatentSkillEmbedding):
            opts = {"progressbar": False, **job.fit_options}
            if job.seed is not None and "seed" not in opts:
                opts["seed"] = job.seed
            fitted = spec.fit(train_log, method=job.method, modules=job.modules, **opts)
            t_fit = time.perf_counter() - t0
            t1 = time.perf_counter()
            p = _predict_lse(fitted, held, preds, job.update)
            t_pred = time.perf_counter() - t1
            if job.lessons and spec.config["lessons"]:
                t2 = time.perf_counter()
                lc = lessons_check(fitted, train, held[held["role"].isin(["scored", "context"])], update=job.update)
                lc.insert(0, "run", job.run)
                t_lessons = time.perf_counter() - t2
            configs = {"model_config": fitted.model_config, "fit_config": fitted.fit_config}
        else:
            if first is None:
                fitted = spec.fit(train_log, seed=job.seed)
                first = (name, fitted)
                t_fit = time.perf_counter() - t0
            else:  # e.g. pfa and pfa-online: one fit, two ways to predict
                fitted = spec.with_fit(first[1])
                shares = first[0]
                t_fit = 0.0
            t1 = time.perf_counter()
            p = fitted.predict(held[held["module_type"] == "assessment"])
            t_pred = time.perf_counter() - t1
        out[name] = {"p": p, "fit_seconds": t_fit, "predict_seconds": t_pred, "lessons_check_seconds": t_lessons,
                     "optimizer": _optimizer_info(fitted), "lessons": lc, "configs": configs, "shares": shares,
                     "fitted": fitted if job.return_fit else None}
    return out


def _optimizer_info(fitted: Any) -> dict[str, Any]:
    """Iterations and stop message of a MAP fit (best start), or ADVI iterations."""
    info = getattr(fitted, "info", None)
    if isinstance(info, dict):  # a baseline
        return {"iterations": info.get("n_iterations"), "stop": info.get("message")}
    try:
        opt = fitted.idata["optimization"]
    except KeyError:
        return {"iterations": None, "stop": None}
    if "n_iterations" in opt:
        best = int(opt.attrs.get("best_start", 0))
        return {"iterations": int(opt["n_iterations"].values[best]), "stop": str(opt["message"].values[best])}
    return {"iterations": opt.attrs.get("iterations"), "stop": f"converged={opt.attrs.get('converged')}"}


def _package_version() -> str:
    from bayes_lse import __version__

    return __version__


def _groups(runs: list[str]) -> dict[str, list[str]]:
    """Sets metrics are reported on: each run, the CV folds pooled, the test run."""
    cv = [r for r in runs if r != TEST]
    out: dict[str, list[str]] = {f"fold {r}": [r] for r in cv}
    if cv:
        out["cv"] = cv
    if TEST in runs:
        out[TEST] = [TEST]
    return out


def _predict_lse(fitted: FittedLSE, held: pd.DataFrame, preds: pd.DataFrame, update: str = "auto") -> np.ndarray:
    """Posterior-mean pass probability of the held-out assessment rows; an assessment the
    run's training rows never had (role ``unseen``) is predicted from the population
    of assessments, or from the fitted ones sharing its tags when the fit has a modules
    table (`FitResult.predict`)."""
    known_l = set(pd.Index(fitted.lessons).astype(str)) if fitted.model_config["lessons"] else set()
    is_a = (held["module_type"] == "assessment").to_numpy()
    mid = held["module_id"].astype(str).to_numpy()
    keep_a = is_a & held["role"].isin(["scored", "unseen"]).to_numpy()
    keep_l = ~is_a & pd.Index(mid).isin(known_l)
    table = held.loc[keep_a | keep_l, ["student_id", "module_id", "module_type", "outcome", "timestep"]]
    out = np.full(len(preds), np.nan)
    if not keep_a.any():
        return out
    pred = fitted.predict(table.reset_index(drop=True), update=update)
    rows = held["row"].to_numpy()[keep_a]
    pos = pd.Index(preds["row"].to_numpy()).get_indexer(rows)
    out[pos] = pred["p_mean"].to_numpy()
    return out


# =========================================================================== #
# text output
# =========================================================================== #
def _pm(v: float, se: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ± {se:.{digits}f}"


def _render(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)


# A scored set is "too small to rank anything" when the AUC's bootstrap standard error
# (over students) exceeds SMALL_SET_AUC_SE: two models then need to differ by more than
# about 0.05-0.1 AUC to be told apart, while the models compared on real logs differ by
# 0.001-0.05 (docs/results.md).  Issue 20 measured the old default on 200 ASSISTments
# students: 31 answers, AUC ± 0.10.  Fewer than SMALL_SET_ANSWERS answers warn as well.
SMALL_SET_AUC_SE = 0.025
SMALL_SET_ANSWERS = 200


def small_set_warnings(metrics: pd.DataFrame, *, protocol: str = "") -> list[str]:
    """One message per scored set (CV pooled, test) too small to rank the models."""
    out = []
    if metrics is None or not len(metrics):
        return out
    for g in ("cv", TEST):
        sub = metrics[metrics["set"] == g]
        if not len(sub):
            continue
        n = int(sub["n"].iloc[0])
        se = float(np.nanmedian(sub["auc_se"].to_numpy(dtype=float))) if "auc_se" in sub else float("nan")
        if n >= SMALL_SET_ANSWERS and not (se > SMALL_SET_AUC_SE):
            continue
        hint = ("score more answers per student with --protocol last-fraction" if protocol == "last-batch"
                else "hold out more students (--test-students) or use more data")
        se_txt = f"AUC standard error ±{se:.3f}" if np.isfinite(se) else "AUC standard error undefined"
        out.append(f"the {g} set scores only {n} answers of {int(sub['students'].iloc[0])} students ({se_txt}): "
                   f"models closer than about {2 * se if np.isfinite(se) else 0.1:.2f} AUC cannot be ranked on it; {hint}")
    return out


def format_text(res: EvaluationResult) -> str:
    s = res.settings
    parts = []
    cv_txt = f"{s['folds']}-fold CV" if s["folds"] >= 2 else "no CV"
    test_txt = f"test set {s['test_students']:.0%} of students" if s["test_students"] and s["test_students"] > 0 else "no test set"
    frac = f", last {s['fraction']:.0%} of answers" if s["protocol"] == "last-fraction" else ""
    parts.append(f"{s['source']}: {s['n_students']} students, {s['n_interactions']} interactions")
    parts.append(f"protocol {s['protocol']}{frac}; {cv_txt}, {test_txt}; seed {s['seed']}; "
                 f"LSE fit by {s['method'].upper()}; SEs: bootstrap over students ({s['n_boot']} resamples)")
    for w in s.get("warnings") or small_set_warnings(res.metrics, protocol=s["protocol"]):
        parts.append(f"warning: {w}")
    m = res.metrics
    sets = [g for g in ("cv", TEST) if g in set(m["set"])]
    for g in sets:
        sub = m[m["set"] == g]
        first = sub.iloc[0]
        parts.append("")
        parts.append(f"[{g}] {int(first['n'])} scored answers of {int(first['students'])} students")
        rows = []
        tm = res.timings
        for _, r in sub.iterrows():
            runs = s["runs"] if g == "cv" else [TEST]
            fit_s = tm[(tm["model"] == r["model"]) & tm["run"].isin([x for x in runs if (g == TEST) == (x == TEST)])]["fit_seconds"]
            rows.append([r["model"], _pm(r["auc"], r["auc_se"]), _pm(r["log_loss"], r["log_loss_se"]),
                         _pm(r["brier"], r["brier_se"]), _pm(r["accuracy"], r["accuracy_se"]),
                         _pm(r["ece"], r["ece_se"]), f"{fit_s.mean():.1f}" if len(fit_s) else "-"])
        parts.append(_render(["model", "AUC", "log-loss", "Brier", "accuracy", "ECE", "fit s/run"], rows))
        un = m[m["set"] == g + UNSEEN_SUFFIX]
        if len(un):
            parts.append("")
            parts.append(f"[{g}] {int(un.iloc[0]['n'])} answers to assessments not in the training rows "
                         f"(predicted from the population of assessments; not in the table above)")
            rows = [[r["model"], _pm(r["auc"], r["auc_se"]), _pm(r["log_loss"], r["log_loss_se"]),
                     _pm(r["brier"], r["brier_se"]), _pm(r["accuracy"], r["accuracy_se"]),
                     _pm(r["ece"], r["ece_se"])] for _, r in un.iterrows()]
            parts.append(_render(["model", "AUC", "log-loss", "Brier", "accuracy", "ECE"], rows))
        kinds = [(k, m[m["set"] == g + k]) for k in ANSWER_KINDS]
        if all(len(x) for _, x in kinds):
            parts.append("")
            parts.append(f"[{g}] first-time answers ({int(kinds[0][1].iloc[0]['n'])}) and repeats "
                         f"({int(kinds[1][1].iloc[0]['n'])}: the student answered that assessment before)")
            rows = [[r0["model"], _pm(r0["auc"], r0["auc_se"]), _pm(r0["log_loss"], r0["log_loss_se"]),
                     _pm(r1["auc"], r1["auc_se"]), _pm(r1["log_loss"], r1["log_loss_se"])]
                    for (_, r0), (_, r1) in zip(kinds[0][1].iterrows(), kinds[1][1].iterrows(), strict=True)]
            parts.append(_render(["model", "AUC first", "log-loss first", "AUC repeat", "log-loss repeat"], rows))
    folds = [g for g in m["set"].unique() if g.startswith("fold ")]
    if folds:
        parts.append("")
        parts.append("AUC per fold")
        rows = []
        for name in s["models"]:
            sub = m[(m["model"] == name) & m["set"].isin(folds)].set_index("set")
            rows.append([name, *[_pm(sub.loc[f, "auc"], float("nan")) for f in folds]])
        parts.append(_render(["model", *folds], rows))
    c = res.comparisons
    if len(c):
        for g in sets:
            sub = c[c["set"] == g]
            if sub.empty:
                continue
            parts.append("")
            parts.append(f"[{g}] paired differences, model − {s['reference']} (same rows; ± bootstrap SE; "
                         "AUC also DeLong p)")
            rows = [[r["model"], _pm(r["auc_diff"], r["auc_diff_se"]), f"{r['auc_diff_delong_p']:.3g}",
                     _pm(r["log_loss_diff"], r["log_loss_diff_se"]), _pm(r["brier_diff"], r["brier_diff_se"]),
                     _pm(r["accuracy_diff"], r["accuracy_diff_se"])] for _, r in sub.iterrows()]
            parts.append(_render(["model", "ΔAUC", "DeLong p", "Δlog-loss", "ΔBrier", "Δaccuracy"], rows))
    lc = res.lessons
    if len(lc):
        parts.append("")
        parts.append("lessons check: held-out answers after ≥1 lesson, predicted from the state before the "
                     "lessons with and without the learning update (± bootstrap SE over students)")
        rows = [[r["model"], r["set"], str(int(r["n"])), _pm(r["auc_with"], float("nan")),
                 _pm(r["auc_without"], float("nan")), _pm(r["auc_diff"], r["auc_diff_se"]),
                 f"[{r['auc_diff_low']:.3f}, {r['auc_diff_high']:.3f}]" if r["n"] else "-",
                 _pm(r.get("log_loss_diff", float("nan")), r.get("log_loss_diff_se", float("nan")))]
                for _, r in lc.iterrows()]
        parts.append(_render(["model", "set", "answers", "AUC with", "AUC without", "ΔAUC", "95% interval",
                              "Δlog-loss"], rows))
    if res.loo is not None:
        parts.append("")
        parts.append(f"PSIS-LOO on run {s['runs'][-1]}'s training rows (higher elpd is better)")
        rows = [[str(idx), f"{r['elpd']:.1f}", f"{r['se']:.1f}", f"{r['elpd_diff']:.1f}", f"{r['dse']:.1f}",
                 f"{r['p']:.1f}", f"{r['pareto_k_bad']:.1%}"] for idx, r in res.loo.iterrows()]
        parts.append(_render(["model", "elpd", "se", "Δelpd", "dse", "p_loo", "k>thr"], rows))
    tm = res.timings
    if len(tm):
        parts.append("")
        parts.append("time per run (seconds; mean over runs) and optimiser iterations")
        rows = []
        for name in s["models"]:
            sub = tm[tm["model"] == name]
            it = sub["iterations"].dropna() if "iterations" in sub else pd.Series(dtype=float)
            stop = sub["stop"].dropna().astype(str) if "stop" in sub else pd.Series(dtype=str)
            rows.append([name, f"{sub['fit_seconds'].mean():.1f}", f"{sub['predict_seconds'].mean():.1f}",
                         f"{it.astype(float).mean():.0f}" if len(it) else "-",
                         (stop.iloc[0][:48] if len(stop) else "-")])
        parts.append(_render(["model", "fit", "predict", "iterations", "stop (first run)"], rows))
    parts.append("")
    parts.append(f"total {s['seconds']:.1f} s")
    return "\n".join(parts) + "\n"
