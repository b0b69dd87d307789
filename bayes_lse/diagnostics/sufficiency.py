"""Is there enough data behind each parameter?  Answers per assessment and per student,
uses per lesson, from the fit's own index arrays.

Issue 20: thin data was never flagged.  EdNet questions had a median of one answer, and
lessons seen once were recommended with wide bands; every other check can pass on such
a fit, because a parameter with no data simply stays at its prior.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayes_lse.diagnostics.arrays import dim_labels, group_of, json_attr, student_labels
from bayes_lse.diagnostics.result import CheckResult

__all__ = ["THINNEST_PER_KIND", "check_data_sufficiency", "data_counts"]

#: rows per kind (assessment, lesson, student) in the table of the thinnest entities
THINNEST_PER_KIND = 10


def _count_arrays(idata: xr.DataTree) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(counts, labels) per kind, as arrays: what `data_counts` labels.  The check works on
    these: a Series over 3.65M students (25M rows), its thin subset and its sort were the
    fit's sampled memory peak (+0.2 GB); labels are only looked up for the thinnest."""
    cd = group_of(idata, "constant_data")
    post = group_of(idata, "posterior")
    if cd is None:
        return {}
    # labels of assessments and lessons from the posterior's coordinates; the "ids"
    # attribute (a JSON text with every student id) only when a coordinate is missing
    ids: dict | None = None

    def labels(dim: str, n: int) -> np.ndarray:
        nonlocal ids
        if post is not None and dim in post.coords and post[dim].size == n:
            return dim_labels(post, dim, n)
        ids = json_attr(idata, "ids") if ids is None else ids
        given = ids.get(dim)
        if isinstance(given, list) and len(given) == n:
            return np.asarray(given, dtype=str)
        return dim_labels(post, dim, n)

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    obs_a = np.asarray(cd["obs_assessment"].values) if "obs_assessment" in cd else np.zeros(0, int)
    n_a = post.sizes.get("assessment", 0) if post is not None else 0
    if not n_a:
        ids = json_attr(idata, "ids") if ids is None else ids
        n_a = len(ids.get("assessment", []) or [])
    n_a = max(n_a, int(obs_a.max()) + 1 if obs_a.size else 0)
    out["assessment"] = (np.bincount(obs_a, minlength=n_a), labels("assessment", n_a))

    model = json_attr(idata, "model_config")
    n_l = post.sizes.get("lesson", 0) if post is not None else 0
    if model.get("lessons", True) and n_l and "transition_lesson" in cd:
        les = np.asarray(cd["transition_lesson"].values)
        out["lesson"] = (np.bincount(les[les >= 0], minlength=n_l), labels("lesson", n_l))

    students = student_labels(idata)
    obs_s = np.asarray(cd["obs_student"].values) if "obs_student" in cd else np.zeros(0, int)
    n_s = max(len(students), int(obs_s.max()) + 1 if obs_s.size else 0)
    s_labels = students if len(students) == n_s else np.array([str(i) for i in range(n_s)])
    out["student"] = (np.bincount(obs_s, minlength=n_s), s_labels)
    return out


def data_counts(idata: xr.DataTree) -> dict[str, pd.Series]:
    """Answers per assessment, uses per lesson and answers per student, labelled by id.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree (`constant_data` holds the index arrays).

    Returns
    -------
    dict of pandas.Series
        ``"assessment"``, ``"lesson"`` (only when the model has lessons) and ``"student"``,
        each an int Series indexed by the user's ids, zeros included.
    """
    return {kind: pd.Series(c, index=lab) for kind, (c, lab) in _count_arrays(idata).items()}


def check_data_sufficiency(idata: xr.DataTree, th: dict[str, float]) -> CheckResult:
    """"Data sufficiency": warn when too many modules or students have too little data.

    An assessment with fewer than ``min_module_answers`` answers, a lesson taken fewer
    than ``min_module_answers`` times, a student with fewer than ``min_student_answers``
    answers is *thin*: its parameters stay close to their prior (wide intervals, and for
    a lesson, wide recommendation bands).  The verdict warns when more than
    ``thin_share_max`` of the assessments, lessons or students are thin.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree.
    th : dict
        Thresholds (``min_module_answers``, ``min_student_answers``, ``thin_share_max``).

    Returns
    -------
    CheckResult
        One verdict (none without index arrays), the table ``data_sufficiency`` (one row
        per kind: count, thin, share, min / median / max) and ``thin_entities`` (the
        thinnest of each kind, at most `THINNEST_PER_KIND` each).
    """
    res = CheckResult()
    counts = _count_arrays(idata)
    if not counts:
        res.notes.append("No constant_data group: data sufficiency was not checked.")
        return res
    k_mod, k_stu = int(th["min_module_answers"]), int(th["min_student_answers"])
    share_max = float(th["thin_share_max"])
    what = {"assessment": ("assessments", "answers", k_mod), "lesson": ("lessons", "uses", k_mod),
            "student": ("students", "answers", k_stu)}
    rows, thinnest, worst_share, parts = [], [], 0.0, []
    for kind, (c, lab) in counts.items():
        plural, unit, k = what[kind]
        n = len(c)
        if n == 0:
            continue
        is_thin = c < k
        thin = int(is_thin.sum())
        share = thin / n
        worst_share = max(worst_share, share)
        rows.append({"kind": kind, "count": n, "measure": unit, "fewer_than": k, "thin": thin, "share_thin": share,
                     "min": int(c.min()), "median": float(np.median(c)), "max": int(c.max())})
        if thin:
            parts.append(f"{thin} of {n} {plural} ({share:.0%}) have fewer than {k} {unit}")
            where = np.flatnonzero(is_thin)
            low = where[np.argsort(c[where], kind="stable")[:THINNEST_PER_KIND]]  # fewest first, then id order
            thinnest.append(pd.DataFrame({"kind": kind, "id": [str(lab[i]) for i in low], "n": c[low],
                                          "measure": unit, "fewer_than": k}))
    if not rows:
        return res
    table = pd.DataFrame(rows)
    res.tables["data_sufficiency"] = table
    if thinnest:
        res.tables["thin_entities"] = pd.concat(thinnest, ignore_index=True)
    med = dict(zip(table["kind"], table["median"], strict=True))
    medians = f"median {med['assessment']:g} answers per assessment" if "assessment" in med else ""
    if "lesson" in med:
        medians += f", {med['lesson']:g} uses per lesson"
    if "student" in med:
        medians += f", {med['student']:g} answers per student"
    ok = worst_share <= share_max
    if not parts:
        message = f"Every module and student has enough data ({medians})."
    else:
        message = (f"{'; '.join(parts)} ({medians}). Their parameters stay close to the prior: wide intervals, "
                   "and wide bands for recommendations through thin lessons"
                   + ("." if ok else "; collect more answers, or merge rare modules (e.g. by knowledge "
                      "component) before trusting per-module estimates."))
    res.add("Data sufficiency", "ok" if ok else "warn", round(worst_share, 3),
            f"≤ {share_max:.0%} thin (< {k_mod} answers or uses per module, < {k_stu} answers per student)",
            message)
    return res
