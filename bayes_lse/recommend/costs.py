"""Lesson time costs predicted from the interaction log's timestamps (issue 17).

A budget needs costs, and a costs file is rarely at hand; the log often has clock
times. The time a student spent on a lesson is read as the time from the lesson row
to the student's next row (the next thing they did), capped at the 95th percentile
of those gaps — a gap that long is a break, not study. The last row of a student has
no next row and is not used.

The times are modelled as log-normal with crossed random effects,

    log t[u, k] = μ + α_k + β_u + ε,   α_k ~ N(0, τ_a²), β_u ~ N(0, τ_b²), ε ~ N(0, σ²),

fitted by EM on the variance components (each effect's conditional mean and variance
given the other effect, alternated; the posterior covariance between α and β is
ignored, which is what makes it cheap: O(rows) per iteration). Why this and not a
non-negative matrix factorisation: a student times only the few lessons they took, so
the student × lesson matrix is mostly empty, and a rank-1 factorisation of it in log
time is this additive model without the shrinkage — the shrinkage is what keeps a
lesson timed once from getting an extreme cost, and it gives each cost a band. A
lesson never timed gets the typical lesson's cost with the whole between-lesson
spread as its band.

Measured on a simulated log (tests/recommend/test_recommend_readable.py `timed_log`:
2,000 students, lessons of 5 / 20 / 60 minutes, students ×exp(N(0, 0.3²)), rows
×exp(N(0, 0.25²)), 3 % of lessons followed by a 50-hour break): 6.1 / 23.3 / 66.9
minutes against true expected times of 5.4 / 21.6 / 64.7 — high by 3-13 %, because
the capped breaks still widen σ² — in 0.10 s for 18,000 rows (60 students: 6.5 /
22.7 / 70.4, bands ±10 %).

The cost of lesson k for student u is the expected time exp(μ + α_k + β_u + σ²/2)
(β_u = 0 for a student without timed rows: a typical student); its band is the
5–95% interval of that expectation over the uncertainty of α_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["LessonCosts", "lesson_costs_from_log"]

#: gaps above this quantile of all lesson gaps are capped (breaks, not study)
CAP_QUANTILE = 0.95
_Z90 = 1.6448536269514722  # the 95% normal quantile: a 5–95% band


@dataclass
class LessonCosts:
    """Per-lesson costs, their 5–95% bands, and where they came from (`source`, in words).
    `table`: lesson, timed (rows with a time), cost, cost_low, cost_high."""

    costs: dict[str, float]
    bands: dict[str, tuple[float, float]]
    source: str
    unit: str
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    predicted: bool = False


def _unit_costs(lessons: Sequence[str], why: str) -> LessonCosts:
    return LessonCosts(
        costs={k: 1.0 for k in lessons}, bands={}, unit="lessons", predicted=False,
        source=f"1 per lesson: {why}, so a budget counts lessons",
        table=pd.DataFrame({"lesson": list(lessons), "timed": 0, "cost": 1.0, "cost_low": np.nan,
                            "cost_high": np.nan}),
    )


def _clock(values: pd.Series) -> tuple[np.ndarray, str] | None:
    """Timestamps as floats and their unit: numbers as given, dates and times in minutes."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=float), "timestamp units"
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all():
        return num.to_numpy(dtype=float), "timestamp units"
    when = pd.to_datetime(values.astype(str), format="ISO8601", utc=True, errors="coerce")
    if when.isna().any():
        return None
    return (when - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy() / 60.0, "minutes"


def lesson_costs_from_log(
    table: pd.DataFrame,
    lessons: Sequence[str],
    *,
    student: str | None = None,
    n_iter: int = 100,
) -> LessonCosts:
    """Costs of `lessons` predicted from the log's timestamps (module docstring), for
    `student` (None: a typical student); unit costs, with the reason in `source`, when
    the log has no usable timestamps."""
    lessons = [str(k) for k in lessons]
    if "timestamp" not in table.columns or table["timestamp"].isna().all():
        return _unit_costs(lessons, "the log has no timestamps to predict lesson times from")
    t = table[table["timestamp"].notna()]
    clock = _clock(t["timestamp"])
    if clock is None:
        return _unit_costs(lessons, "the log's timestamps are neither numbers nor ISO dates")
    when, unit = clock
    order_cols = ["student_id", "_when"] + (["timestep"] if "timestep" in t.columns else [])
    d = pd.DataFrame({"student_id": t["student_id"].astype(str).to_numpy(), "_when": when,
                      "module_id": t["module_id"].astype(str).to_numpy(),
                      "lesson": (t["module_type"].astype(str).str.strip().str.lower() == "lesson").to_numpy()})
    if "timestep" in t.columns:
        d["timestep"] = t["timestep"].to_numpy()
    d = d.sort_values(order_cols, kind="stable")
    nxt = d.groupby("student_id")["_when"].shift(-1)
    gap = (nxt - d["_when"]).to_numpy()
    use = d["lesson"].to_numpy() & np.isfinite(gap)
    if not use.any():
        return _unit_costs(lessons, "no lesson row in the log has a later row of the same student to time it by")
    g = gap[use]
    pos = g[g > 0]
    if len(pos) == 0:
        return _unit_costs(lessons, "every lesson row has the same timestamp as the row after it")
    g = np.maximum(g, pos.min() / 2)  # same-time rows: half the smallest gap seen
    cap = float(np.quantile(g, CAP_QUANTILE))
    g = np.minimum(g, cap)
    y = np.log(g)
    les = d["module_id"].to_numpy()[use]
    stu = d["student_id"].to_numpy()[use]
    k_ids, k = np.unique(les, return_inverse=True)
    u_ids, u = np.unique(stu, return_inverse=True)
    K, U = len(k_ids), len(u_ids)
    nk = np.bincount(k, minlength=K).astype(float)
    nu = np.bincount(u, minlength=U).astype(float)

    # EM for the crossed random effects (alternating conditional means and variances)
    mu = float(y.mean())
    var = float(y.var()) if len(y) > 1 else 1.0
    var = max(var, 1e-6)
    ta, tb, s2 = var / 3, var / 3, var / 3
    a, b = np.zeros(K), np.zeros(U)
    va, vb = np.full(K, ta), np.full(U, tb)
    for _ in range(n_iter):
        a = np.bincount(k, y - mu - b[u], minlength=K) / (nk + s2 / ta)
        va = 1.0 / (nk / s2 + 1.0 / ta)
        b = np.bincount(u, y - mu - a[k], minlength=U) / (nu + s2 / tb)
        vb = 1.0 / (nu / s2 + 1.0 / tb)
        mu = float((y - a[k] - b[u]).mean())
        r = y - mu - a[k] - b[u]
        ta = max(float(np.mean(a**2 + va)), 1e-6)
        tb = max(float(np.mean(b**2 + vb)), 1e-6)
        s2 = max(float(np.mean(r**2 + va[k] + vb[u])), 1e-6)

    bu = 0.0
    if student is not None and str(student) in set(u_ids):
        bu = float(b[np.searchsorted(u_ids, str(student))])
    pos_k = {kid: i for i, kid in enumerate(k_ids)}
    costs, bands, rows = {}, {}, []
    for lesson in lessons:
        i = pos_k.get(lesson)
        ak, vk, n = (float(a[i]), float(va[i]), int(nk[i])) if i is not None else (0.0, ta, 0)
        centre = mu + ak + bu + s2 / 2
        c = float(np.exp(centre))
        lo, hi = float(np.exp(centre - _Z90 * np.sqrt(vk))), float(np.exp(centre + _Z90 * np.sqrt(vk)))
        costs[lesson], bands[lesson] = c, (lo, hi)
        rows.append({"lesson": lesson, "timed": n, "cost": c, "cost_low": lo, "cost_high": hi})
    who = f"student {student}" if bu != 0.0 else "a typical student"
    source = (f"predicted from the log's timestamps, in {unit}: the time from each lesson row to the student's "
              f"next row (capped at {cap:.3g}, the 95th percentile), {int(use.sum()):,} timed lesson rows, "
              f"log-normal with lesson and student effects; expected time for {who}, band 5–95% over the "
              "lesson's effect")
    return LessonCosts(costs=costs, bands=bands, source=source, unit=unit, table=pd.DataFrame(rows), predicted=True)
