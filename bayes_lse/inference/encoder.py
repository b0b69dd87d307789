"""The amortised encoder's forward pass, in plain numpy (no JAX needed to place students).

An encoder maps one student's interactions (answers and lessons, in time order) and
the fit's module parameters (posterior means) to a Gaussian-family posterior over that
student's state at its current timestep and its bias: per skill a normal truncated to
(0, ∞) (the states are non-negative, as in the model), and a normal for the bias.

Architecture (a deep-sets encoder, `network`): per-row features (`row_features`: the
module's parameters — requirement vector, its norm, the assessment bias; the lesson's
gain and prerequisite —, the signed outcome, and what is still to come after the row:
the gains of the later lessons and the steps left) → two dense tanh layers → pooled per
student (sum / 16 and mean) → with per-student features (`student_features`: counts,
current timestep, total gain taken, pass share) two dense tanh layers → a context per
student → heads: the bias's location and scale (`bias_distribution`), and the state's
at a timestep (`state_head`: context + the timestep's distance to the current one and
the gains still to come; placement asks for the current timestep only).  The same `network` function runs in JAX for training (`inference.amortised`,
``xp=jax.numpy``) and here in numpy for placement; only the pooling differs
(`jax.ops.segment_sum` there, cumulative sums here).

Weights live as named arrays (`Encoder.params`) with a JSON-able architecture
(`Encoder.spec`): saved as ``encoder.npz`` + ``encoder.json`` in the model folder
(`results.encoder`), never pickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from bayes_lse.core.config import skills_of
from bayes_lse.model import terms as eq

#: Version of the encoder's file layout and feature definitions
ENCODER_FORMAT = 1
#: Pooled sums are divided by this, so that a long history does not saturate tanh
SUM_POOL_SCALE = 16.0
#: Floor added to every softplus scale
MIN_SCALE = 1e-3
#: Above this many rows `histories_from_table` uses pandas' vectorised operations
LARGE_TABLE = 2000


# --------------------------------------------------------------------------- inputs
@dataclass
class ModuleTables:
    """The module parameters an encoder conditions on: (A, d + 2) per assessment
    [requirement, |requirement|, assessment bias] and (L, 2d) per lesson [gain,
    prerequisite] (zeros where the model has none)."""

    assessment: np.ndarray
    lesson: np.ndarray

    @property
    def n_skills(self) -> int:
        return self.assessment.shape[1] - 2

    def fingerprint(self) -> str:
        """sha256 of the tables (rounded to 1e-9): an encoder trained on other module
        parameters is refused (`results.encoder`)."""
        h = hashlib.sha256()
        for a in (self.assessment, self.lesson):
            h.update(np.ascontiguousarray(np.round(a, 9), dtype="<f8").tobytes())
            h.update(str(a.shape).encode())
        return h.hexdigest()


def module_tables(
    requirement: np.ndarray,
    assessment_bias: np.ndarray | None = None,
    gain: np.ndarray | None = None,
    prerequisite: np.ndarray | None = None,
) -> ModuleTables:
    """`ModuleTables` from point values (e.g. posterior means): requirement (A, d),
    assessment_bias (A,), gain / prerequisite (L, d)."""
    req = np.asarray(requirement, dtype=float)
    A, d = req.shape
    ab = np.zeros(A) if assessment_bias is None else np.asarray(assessment_bias, dtype=float)
    gain = np.zeros((0, d)) if gain is None else np.asarray(gain, dtype=float)
    pre = np.zeros_like(gain) if prerequisite is None else np.asarray(prerequisite, dtype=float)
    return ModuleTables(
        assessment=np.column_stack([req, eq.norm(req), ab]),
        lesson=np.column_stack([gain, pre]) if len(gain) else np.zeros((0, 2 * d)),
    )


@dataclass
class Histories:
    """Many students' interactions as flat rows sorted by student, step, answers before
    the step's lesson: ``student`` (0..n-1), ``kind`` (0 answer, 1 lesson), ``code``
    (assessment or lesson code), ``outcome`` (0/1; ignored for lessons), ``step``;
    ``last`` (n,) each student's current timestep (the last answer's, or one past the
    last lesson, as `recommend.sequences.place_student` states it)."""

    student: np.ndarray
    kind: np.ndarray
    code: np.ndarray
    outcome: np.ndarray
    step: np.ndarray
    last: np.ndarray
    ids: list[str] = field(default_factory=list)

    @property
    def n_students(self) -> int:
        return len(self.last)

    @classmethod
    def from_arrays(cls, student: Any, kind: Any, code: Any, outcome: Any, step: Any, n_students: int,
                    ids: Sequence[str] = ()) -> Histories:
        student = np.asarray(student, dtype=np.int64)
        kind = np.asarray(kind, dtype=np.int64)
        step = np.asarray(step, dtype=np.int64)
        order = np.lexsort((kind, step, student))
        last = np.zeros(int(n_students), dtype=np.int64)
        np.maximum.at(last, student, step + kind)
        return cls(student[order], kind[order], np.asarray(code, dtype=np.int64)[order],
                   np.asarray(outcome, dtype=float)[order], step[order], last, list(ids))


_OUTCOMES = {"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0, "1.0": 1.0, "0.0": 0.0}


def histories_from_table(table: pd.DataFrame, assessment_ids: Sequence[str] | dict[str, int],
                         lesson_ids: Sequence[str] | dict[str, int]) -> Histories:
    """`Histories` from interaction rows (DESIGN §2 columns student_id, module_id,
    module_type, outcome, optional timestep: one or many students). Without a complete
    timestep column the timestep is counted from row order (+1 after each lesson).
    Unknown module ids and answers without a 0/1 outcome are refused. The ids may be
    given as maps id -> code (faster when called once per student).

    Plain numpy on the columns (no per-row pandas work): placing one student at a time
    is dominated by this step, 0.1 ms for a 20-row history."""
    for col in ("module_id", "module_type"):
        if col not in table.columns:
            raise ValueError(f"history is missing column {col!r}")
    amap = assessment_ids if isinstance(assessment_ids, dict) else {str(a): i for i, a in enumerate(assessment_ids)}
    lmap = lesson_ids if isinstance(lesson_ids, dict) else {str(x): i for i, x in enumerate(lesson_ids)}
    R = len(table)
    if "student_id" in table.columns:
        codes_s, uniq = pd.factorize(table["student_id"].to_numpy().astype(str), sort=False)
        ids = [str(i) for i in uniq]
    else:
        codes_s, ids = np.zeros(R, dtype=np.int64), (["new student"] if R else [])
    if R > LARGE_TABLE:  # many rows: pandas' vectorised string and index operations
        mtype_s = table["module_type"].astype(str).str.strip().str.lower()
        bad = sorted(set(mtype_s.unique()) - {"assessment", "lesson"})
        is_l = (mtype_s == "lesson").to_numpy()
        mid_s = table["module_id"].astype(str)
        ac = pd.Index(list(amap), dtype=object).get_indexer(mid_s)
        lc = pd.Index(list(lmap), dtype=object).get_indexer(mid_s)
        a_codes = np.fromiter(amap.values(), dtype=np.int64, count=len(amap))
        l_codes = np.fromiter(lmap.values(), dtype=np.int64, count=len(lmap))
        code = np.where(is_l, np.where(lc >= 0, l_codes[np.maximum(lc, 0)] if len(l_codes) else -1, -1),
                        np.where(ac >= 0, a_codes[np.maximum(ac, 0)] if len(a_codes) else -1, -1))
        mid = mid_s.to_numpy()
    else:  # a few rows (one student at a time): plain Python is faster than pandas' overhead
        mtype = [str(m).strip().lower() for m in table["module_type"].to_numpy()]
        bad = sorted(set(mtype) - {"assessment", "lesson"})
        is_l = np.fromiter((m == "lesson" for m in mtype), dtype=bool, count=R)
        mid = [str(m) for m in table["module_id"].to_numpy()]
        code = np.fromiter(((lmap if l else amap).get(m, -1) for m, l in zip(mid, is_l)), dtype=np.int64, count=R)
    if bad:
        raise ValueError(f"module_type must be 'assessment' or 'lesson'; got {', '.join(bad)}")
    if (code < 0).any():
        unknown = sorted({m for m, c in zip(mid, code) if c < 0})
        raise ValueError("history uses module id(s) the model does not know: " + ", ".join(unknown[:20])
                         + " (the module parameters come from the fit; place students only on known modules)")
    if "timestep" in table.columns and table["timestep"].notna().all():  # as place_student reads it
        ts = pd.to_numeric(table["timestep"], errors="coerce").to_numpy(dtype=float)
        if np.isnan(ts).any() or (ts < 0).any() or (ts != np.floor(ts)).any():
            raise ValueError("timestep must hold integers >= 0")
        step = ts.astype(np.int64)
    else:  # DESIGN §2: +1 after each lesson, per student in row order
        step = pd.Series(is_l.astype(np.int64)).groupby(codes_s).cumsum().to_numpy() - is_l
    out = np.full(R, np.nan)
    if (~is_l).any():
        if "outcome" not in table.columns:
            raise ValueError("history is missing column 'outcome' (needed for assessment rows)")
        raw = table["outcome"].to_numpy()[~is_l]
        num = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
        ok = np.isin(num, (0.0, 1.0))
        if not ok.all():  # words ('true', ' 1 ', ...) and anything else, one by one
            num[~ok] = [_outcome(v) for v in raw[~ok]]
        out[~is_l] = num
        badrows = np.nonzero(~is_l & np.isnan(out))[0]
        if len(badrows):
            raise ValueError(f"outcome must be 0/1 on assessment rows; bad row(s): {', '.join(map(str, badrows[:10]))}")
    return Histories.from_arrays(codes_s, is_l.astype(np.int64), code, out, step, len(ids), ids)


def _outcome(v: Any) -> float:
    """0/1, booleans or 'true'/'false'/'0'/'1' → float 0/1; NaN for anything else."""
    if isinstance(v, str):
        return _OUTCOMES.get(v.strip().lower(), np.nan)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return np.nan
    return f if f in (0.0, 1.0) else np.nan


# --------------------------------------------------------------------------- features
def row_features(h: Histories, tables: ModuleTables) -> np.ndarray:
    """(rows, 9 + 6d) features per row (see the module docstring)."""
    d = tables.n_skills
    R = len(h.student)
    is_a = (h.kind == 0).astype(float)
    is_l = 1.0 - is_a
    ysgn = np.where(h.kind == 0, 2.0 * np.nan_to_num(h.outcome) - 1.0, 0.0)
    fa = tables.assessment[np.where(h.kind == 0, h.code, 0)] * is_a[:, None] if len(tables.assessment) else np.zeros((R, d + 2))
    fl = tables.lesson[np.where(h.kind == 1, h.code, 0)] * is_l[:, None] if len(tables.lesson) else np.zeros((R, 2 * d))
    gain_row = fl[:, :d]
    # what comes after each row within its student: later lessons' gains and count
    csum = np.cumsum(gain_row[::-1], axis=0)[::-1]  # sum over rows >= i, whole array
    cnt = np.cumsum(is_l[::-1])[::-1]
    end = _segment_ends(h.student, h.n_students)  # one past each student's last row
    nxt = np.append(end, 0)[h.student]  # index one past the row's student's last row
    tail_g = np.vstack([csum, np.zeros((1, d))])
    tail_c = np.append(cnt, 0.0)
    g_after = csum - gain_row - tail_g[nxt]
    n_after = cnt - is_l - tail_c[nxt]
    left = h.last[h.student] - h.step
    return np.column_stack([
        is_a, is_l, ysgn,
        fa, ysgn[:, None] * fa,
        fl,
        g_after, np.log1p(n_after), np.log1p(np.maximum(left, 0)),
    ])


def student_features(h: Histories, tables: ModuleTables) -> np.ndarray:
    """(n, 4 + d): log1p(answers), log1p(lessons), log1p(current timestep), pass share
    (0.5 without answers), total gain of the lessons taken."""
    d = tables.n_skills
    n = h.n_students
    is_a = h.kind == 0
    n_a = np.bincount(h.student[is_a], minlength=n).astype(float)
    n_l = np.bincount(h.student[~is_a], minlength=n).astype(float)
    passes = np.bincount(h.student[is_a], weights=np.nan_to_num(h.outcome[is_a]), minlength=n)
    share = np.where(n_a > 0, passes / np.maximum(n_a, 1), 0.5)
    g = np.zeros((n, d))
    if (~is_a).any() and len(tables.lesson):
        np.add.at(g, h.student[~is_a], tables.lesson[h.code[~is_a], :d])
    return np.column_stack([np.log1p(n_a), np.log1p(n_l), np.log1p(h.last), share, g])


def _segment_ends(student: np.ndarray, n: int) -> np.ndarray:
    return np.cumsum(np.bincount(student, minlength=n))


def numpy_segment_sum(x: np.ndarray, seg: np.ndarray, n: int) -> np.ndarray:
    """Sum of rows of `x` per segment (rows sorted by `seg`), empty segments 0."""
    from scipy.sparse import csr_matrix

    counts = np.bincount(seg, minlength=n)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    # a 0/1 (n, rows) matrix times x: each segment summed on its own (no long running sum
    # to lose precision in float32), and fast for many short segments
    ones = np.ones(len(seg), dtype=x.dtype)
    return np.asarray(csr_matrix((ones, np.arange(len(seg)), indptr), shape=(n, len(seg))) @ x)


# --------------------------------------------------------------------------- the network
def network(
    params: dict[str, Any],
    x: Any,
    seg: Any,
    n: int,
    g: Any,
    *,
    xp: Any = np,
    segment_sum: Callable[[Any, Any, int], Any] = numpy_segment_sum,
) -> Any:
    """A context vector (n, H) per student from standardised row features `x` (rows, F)
    of students `seg` (rows,) and standardised student features `g` (n, G). The one
    definition of the encoder's body, run with numpy (placement) or jax.numpy (training)."""
    hdn = xp.tanh(x @ params["W0"] + params["b0"])
    hdn = xp.tanh(hdn @ params["W1"] + params["b1"])
    total = segment_sum(hdn, seg, n)
    count = segment_sum(xp.ones((x.shape[0], 1), dtype=x.dtype), seg, n)
    pooled = xp.concatenate([total / SUM_POOL_SCALE, total / xp.maximum(count, 1.0), g], axis=1)
    z = xp.tanh(pooled @ params["W2"] + params["b2"])
    return xp.tanh(z @ params["W3"] + params["b3"])


def state_head(params: dict[str, Any], z: Any, sf: Any, xp: Any = np) -> Any:
    """Raw outputs (rows, 2d) of the state posterior at some timestep of a student, from
    its context `z` (rows, H) and the timestep's features `sf` (rows, 1 + d):
    log1p(steps to the current one) and the gains of the lessons from there on (zero at
    the current timestep, which is all that placement asks for; the ELBO objective asks
    for every timestep of the trajectory)."""
    h = xp.tanh(xp.concatenate([z, sf], axis=1) @ params["W5"] + params["b5"])
    return h @ params["W6"] + params["b6"]


def state_distribution(raw: Any, stats: dict[str, Any], d: int, xp: Any = np) -> tuple[Any, Any]:
    """(loc, scale) of the truncated normal per skill, in the model's coordinates."""
    t_mean, t_std = stats["t_mean"], stats["t_std"]
    loc = t_mean[:d] + t_std[:d] * raw[:, :d]
    scale = t_std[:d] * (xp.logaddexp(0.0, raw[:, d : 2 * d]) + MIN_SCALE)
    return loc, scale


def bias_distribution(params: dict[str, Any], z: Any, stats: dict[str, Any], d: int, xp: Any = np) -> tuple[Any, Any]:
    """(loc, scale) of the normal student bias."""
    raw = z @ params["W4"] + params["b4"]
    loc = stats["t_mean"][d] + stats["t_std"][d] * raw[:, 0]
    scale = stats["t_std"][d] * (xp.logaddexp(0.0, raw[:, 1]) + MIN_SCALE)
    return loc, scale


def current_posterior(params: dict[str, Any], z: Any, d: int, bias: bool, xp: Any = np) -> tuple[Any, Any, Any, Any]:
    """(state loc, state scale, bias loc, bias scale) at each student's current timestep."""
    sf = xp.zeros((z.shape[0], 1 + d), dtype=z.dtype)
    loc, scale = state_distribution(state_head(params, z, sf, xp), params, d, xp)
    if not bias:
        return loc, scale, None, None
    bl, bs = bias_distribution(params, z, params, d, xp)
    return loc, scale, bl, bs


PARAM_NAMES = ("W0", "b0", "W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4", "W5", "b5", "W6", "b6")
STAT_NAMES = ("x_mean", "x_std", "g_mean", "g_std", "t_mean", "t_std")


def layer_shapes(n_row: int, n_student: int, hidden: int, n_skills: int, bias: bool) -> dict[str, tuple[int, ...]]:
    """The shape of every weight for an architecture (W4, b4: the bias head, also kept
    without biases so that every encoder has the same names)."""
    H, d = int(hidden), int(n_skills)
    return {"W0": (n_row, H), "b0": (H,), "W1": (H, H), "b1": (H,), "W2": (2 * H + n_student, H), "b2": (H,),
            "W3": (H, H), "b3": (H,), "W4": (H, 2), "b4": (2,), "W5": (H + 1 + d, H), "b5": (H,),
            "W6": (H, 2 * d), "b6": (2 * d,)}


@dataclass
class Posterior:
    """An encoder's output for n students: per skill a normal truncated to (0, ∞)
    (`loc`, `scale`, (n, d)) and a normal bias (`bias_loc`, `bias_scale`, (n,); None
    without student biases)."""

    loc: np.ndarray
    scale: np.ndarray
    bias_loc: np.ndarray | None
    bias_scale: np.ndarray | None
    last: np.ndarray
    ids: list[str]

    def mean_state(self) -> np.ndarray:
        return eq.truncated_normal_mean(self.loc, self.scale)

    def sample(self, n_draws: int, rng: np.random.Generator | int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Draws (n_draws, n, d) of the states (inverse CDF, `terms.truncated_normal_quantile`)
        and (n_draws, n) of the biases (None without biases)."""
        rng = np.random.default_rng(rng)
        u = 1.0 - rng.random((n_draws, *self.loc.shape))  # (0, 1]
        states = eq.truncated_normal_quantile(self.loc[None], self.scale[None], u)
        bias = None
        if self.bias_loc is not None:
            bias = self.bias_loc[None] + self.bias_scale[None] * rng.standard_normal((n_draws, len(self.bias_loc)))
        return states, bias


@dataclass
class Encoder:
    """A trained encoder: `spec` (JSON-able architecture, feature version, the fit it
    belongs to and its module tables' fingerprint, training record) and `params`
    (weights and the feature standardisation, plain float arrays)."""

    spec: dict[str, Any]
    params: dict[str, np.ndarray]

    @property
    def n_skills(self) -> int:
        return skills_of(self.spec)

    @property
    def has_bias(self) -> bool:
        return bool(self.spec["bias"])

    def check(self) -> None:
        """Every weight present with the shape the architecture says (a ValueError otherwise)."""
        if self.spec.get("format") != ENCODER_FORMAT:
            raise ValueError(f"encoder format {self.spec.get('format')!r}, this bayes-lse reads {ENCODER_FORMAT}")
        shapes = layer_shapes(self.spec["n_row_features"], self.spec["n_student_features"], self.spec["hidden"],
                              self.n_skills, self.has_bias)
        for name, shape in shapes.items():
            if name not in self.params or tuple(self.params[name].shape) != shape:
                got = None if name not in self.params else tuple(self.params[name].shape)
                raise ValueError(f"encoder weight {name} has shape {got}, the architecture says {shape}")
        for name in STAT_NAMES:
            if name not in self.params:
                raise ValueError(f"encoder array {name} is missing")

    def weights_hash(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.params):
            a = np.ascontiguousarray(self.params[name], dtype="<f8")
            h.update(name.encode() + str(a.shape).encode() + a.tobytes())
        return h.hexdigest()

    def posterior(self, h: Histories, tables: ModuleTables) -> Posterior:
        """The encoder's posterior for every student of `h` (one numpy forward pass)."""
        p = self.params
        # float32 like training (JAX): twice as fast through the dense layers, and the
        # per-student sums are taken segment by segment (`numpy_segment_sum`), so no
        # long running sum loses precision
        p32 = self.__dict__.get("_float32")
        if p32 is None:
            p32 = self.__dict__["_float32"] = {k: np.asarray(v, dtype=np.float32) for k, v in p.items()}
        x = ((row_features(h, tables) - p["x_mean"]) / p["x_std"]).astype(np.float32)
        g = ((student_features(h, tables) - p["g_mean"]) / p["g_std"]).astype(np.float32)
        z = network(p32, x, h.student, h.n_students, g)
        loc, scale, bl, bs = (None if a is None else np.asarray(a, dtype=float)
                              for a in current_posterior(p32, z, self.n_skills, self.has_bias))
        return Posterior(loc, scale, bl, bs, h.last, list(h.ids))

    def to_json(self) -> str:
        return json.dumps(self.spec, indent=1, sort_keys=True)
