"""Lesson-sequence recommendation over posterior draws (DESIGN §4), and placing a
student who is not in the training data from the interactions they have so far.

Everything works on plain numpy arrays of posterior draws (S draws on the leading
axis), so it does not depend on how the model was fit. All numbers come from
`model/terms.py`; nothing here restates the model.

Searches
--------
* ``exhaustive`` – every ordered sequence of length 0..n, expanded level by level
  as a trie: the states after a prefix are computed once and reused by every
  sequence that extends it; children are evaluated in chunks to bound memory.
* ``beam`` – the same level-by-level expansion keeping only the ``beam_width``
  best prefixes at each level (not exact; for long horizons).
* ``knapsack`` – models without prerequisites, where order is irrelevant, with
  lesson costs and a time budget. Exact branch and bound over lesson *sets*
  (see `_knapsack_search` for why a classical DP table is not exact for this
  objective, and for the bounds: per draw, and an additive-knapsack relaxation);
  it stops at a time limit and says so.

Costs and a budget work with every search: the ordered ones only extend sequences
that stay within the budget, so a model with prerequisites gets budgets too. The
work of enumerating (`estimate_work`: sequences × draws, seconds, memory) is
estimated before any search; "auto" goes to beam search beyond it and an explicit
exhaustive search is refused, each with the estimate in words (issue 17).

`p_best` is over every sequence the search evaluated (`_Wins`: per draw the best
value, its number of ties and one sequence reaching it), not over the rows shown.

Update used when pushing draws along a sequence
-----------------------------------------------
* default (``include_noise=False``): the expected update
  `equations.expected_next_state` (truncated-normal mean under σ_L) with
  prerequisites; **without prerequisites the plain additive update s + Σ l**
  (noise ignored), because only that one makes the order of lessons irrelevant
  (the truncated-normal mean is not additive when σ_L > 0).
* ``include_noise=True``: Monte Carlo, one truncated-normal draw of the learning
  noise per posterior draw and step. The same uniforms are used for every
  sequence at a given depth (common random numbers), so comparisons between
  sequences are not blurred by independent noise and re-evaluating a ranked
  sequence reproduces the numbers found during the search.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from bayes_lse.model import terms as eq

__all__ = [
    "ModuleDraws",
    "Placement",
    "Recommendation",
    "count_sequences",
    "place_student",
    "recommend_sequences",
]

FloatArray = NDArray[np.float64]
SearchKind = Literal["auto", "exhaustive", "beam", "knapsack"]

#: "auto" enumerates every sequence up to this many, and uses beam search beyond.
EXHAUSTIVE_LIMIT = 20_000
#: Number of (sequence × draw) states evaluated at once; bounds peak memory.
CHUNK_STATES = 1 << 18
#: exhaustive search keeps every prefix's states (draws × skills floats) for the next level;
#: above this many bytes it is refused up front (issue 19 item 8: --max-length 8 grew to
#: 5.2 GB in 40 s with no guard) — beam search ranks such spaces in bounded memory
EXHAUSTIVE_MEMORY_LIMIT = 2 * 1024**3
_TIE = 1e-12
#: max_length when neither it nor a budget is given
DEFAULT_MAX_LENGTH = 3
#: measured cost of one (sequence × draw) state in the ordered searches, 2 goals, d = 2, on
#: this project's 2-core machine (12 lessons, length 4, 400-2,000 draws): 340-510 ns with
#: prerequisites (the truncated-normal mean), 140 ns with the additive update
SECONDS_PER_STATE = {True: 5e-7, False: 1.5e-7}
#: "auto" enumerates only when that takes about this long at most; beam search beyond
AUTO_EXHAUSTIVE_SECONDS = 20.0
#: an explicit exhaustive search estimated to take longer is refused (issue 17: --max-length 5
#: with a budget ran > 150 s without a word; 12 lessons to length 5 with 4,000 draws is ~170 s)
EXHAUSTIVE_MAX_SECONDS = 600.0
#: searches estimated to take longer say what they do, and report progress, on `progress`
PROGRESS_AFTER_SECONDS = 2.0
#: branch and bound stops here and returns the best sets found, saying so
KNAPSACK_TIME_LIMIT = 60.0
#: a lesson taken by fewer students than this is flagged: its gain is mostly the prior
#: (the data-sufficiency check's `min_module_answers`, diagnostics/settings.py)
THIN_EVIDENCE = 5


# --------------------------------------------------------------------------- #
# inputs
# --------------------------------------------------------------------------- #
@dataclass
class ModuleDraws:
    """Posterior draws of what a recommendation needs, draws on the leading axis.

    gain, prerequisite: (S, L, d) for the lessons `lesson_ids`; prerequisite None
    for a model without prerequisites. requirement: (S, G, d) for the goal
    assessments `goal_ids`; assessment_bias (S, G), student_bias (S,) of the
    student being advised (None = model without biases, treated as 0).
    noise: σ_L, a float or per-draw (S,) when learned.
    """

    gain: ArrayLike
    prerequisite: ArrayLike | None
    requirement: ArrayLike
    lesson_ids: Sequence[str]
    goal_ids: Sequence[str]
    assessment_bias: ArrayLike | None = None
    student_bias: ArrayLike | None = None
    noise: float | ArrayLike = math.sqrt(0.5)

    def __post_init__(self) -> None:
        self.gain = _as3d(self.gain, "gain")
        S, L, d = self.gain.shape
        if self.prerequisite is not None:
            self.prerequisite = _as3d(self.prerequisite, "prerequisite")
            if self.prerequisite.shape != (S, L, d):
                raise ValueError(f"prerequisite has shape {self.prerequisite.shape}, gain {self.gain.shape}")
        self.requirement = _as3d(self.requirement, "requirement")
        if self.requirement.shape[0] != S or self.requirement.shape[2] != d:
            raise ValueError(f"requirement has shape {self.requirement.shape}; expected (S={S}, G, d={d})")
        G = self.requirement.shape[1]
        self.lesson_ids = tuple(str(x) for x in self.lesson_ids)
        self.goal_ids = tuple(str(x) for x in self.goal_ids)
        if len(self.lesson_ids) != L or len(set(self.lesson_ids)) != L:
            raise ValueError(f"lesson_ids must be {L} distinct ids, got {len(self.lesson_ids)}")
        if len(self.goal_ids) != G or len(set(self.goal_ids)) != G:
            raise ValueError(f"goal_ids must be {G} distinct ids, got {len(self.goal_ids)}")
        if G == 0:
            raise ValueError("at least one goal assessment is needed")
        if self.assessment_bias is not None:
            self.assessment_bias = np.asarray(self.assessment_bias, dtype=float)
            if self.assessment_bias.shape != (S, G):
                raise ValueError(f"assessment_bias has shape {self.assessment_bias.shape}, expected {(S, G)}")
        if self.student_bias is not None:
            self.student_bias = np.asarray(self.student_bias, dtype=float)
            if self.student_bias.shape != (S,):
                raise ValueError(f"student_bias has shape {self.student_bias.shape}, expected {(S,)}")
        self.noise = _noise(self.noise, S)

    @property
    def n_draws(self) -> int:
        return self.gain.shape[0]

    @property
    def n_skills(self) -> int:
        return self.gain.shape[2]

    @classmethod
    def from_arrays(
        cls,
        *,
        gain: ArrayLike,
        lesson_ids: Sequence[str],
        requirement: ArrayLike,
        assessment_ids: Sequence[str],
        goals: Sequence[str],
        prerequisite: ArrayLike | None = None,
        assessment_bias: ArrayLike | None = None,
        student_bias: ArrayLike | None = None,
        noise: float | ArrayLike = math.sqrt(0.5),
    ) -> ModuleDraws:
        """Select the goal assessments out of draws for all assessments (S, A, d)."""
        ids = [str(a) for a in assessment_ids]
        missing = [g for g in goals if str(g) not in ids]
        if missing:
            raise ValueError(f"unknown goal assessment(s): {', '.join(map(str, missing))}")
        idx = [ids.index(str(g)) for g in goals]
        requirement = np.asarray(requirement, dtype=float)[:, idx]
        ab = None if assessment_bias is None else np.asarray(assessment_bias, dtype=float)[:, idx]
        return cls(
            gain=gain,
            prerequisite=prerequisite,
            requirement=requirement,
            lesson_ids=lesson_ids,
            goal_ids=[str(g) for g in goals],
            assessment_bias=ab,
            student_bias=student_bias,
            noise=noise,
        )


def _as3d(x: ArrayLike, name: str) -> FloatArray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 3:
        raise ValueError(f"{name} must have shape (draws, modules, skills), got {a.shape}")
    if np.any(a < 0) or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite and non-negative")
    return a


def _noise(noise: float | ArrayLike, S: int) -> float | FloatArray:
    a = np.asarray(noise, dtype=float)
    if a.ndim == 0:
        if not a >= 0:
            raise ValueError(f"noise must be >= 0, got {noise!r}")
        return float(a)
    if a.shape != (S,) or np.any(a < 0):
        raise ValueError(f"noise must be a number or {S} non-negative per-draw values, got shape {a.shape}")
    return a


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# --------------------------------------------------------------------------- #
# evaluation engine
# --------------------------------------------------------------------------- #
class _Engine:
    """Module draws aligned to the candidate lessons; steps and scores batches of
    states shaped (M, S, d): M sequences × S draws."""

    def __init__(
        self,
        modules: ModuleDraws,
        cand: NDArray[np.int64],
        max_length: int,
        include_noise: bool,
        rng: np.random.Generator,
    ) -> None:
        self.gainT = np.ascontiguousarray(modules.gain[:, cand].transpose(1, 0, 2))  # (C, S, d)
        self.prereqT = (
            None
            if modules.prerequisite is None
            else np.ascontiguousarray(modules.prerequisite[:, cand].transpose(1, 0, 2))
        )
        self.req = modules.requirement
        self.goal_ids = tuple(modules.goal_ids)
        S = modules.n_draws
        self.sb = np.zeros((S, 1)) if modules.student_bias is None else modules.student_bias[:, None]
        self.ab = np.zeros(self.req.shape[:2]) if modules.assessment_bias is None else modules.assessment_bias
        noise = modules.noise
        self.sigma = noise if np.ndim(noise) == 0 else np.asarray(noise)[:, None]  # broadcasts on (M, S, d)
        self.include_noise = include_noise
        self.uniforms = (
            1.0 - rng.random((max_length, S, modules.n_skills)) if include_noise and max_length > 0 else None
        )
        self.wins = _Wins(S, max(max_length, 1))

    def step(self, states: FloatArray, lesson: NDArray[np.int64], depth: int) -> FloatArray:
        """States after taking `lesson[m]` from `states[m]` as the `depth`-th lesson (1-based)."""
        g = self.gainT[lesson]
        q = None if self.prereqT is None else self.prereqT[lesson]
        if self.include_noise:
            mu = eq.expected_update(states, g, q)
            return eq.truncated_normal_quantile(mu, self.sigma, self.uniforms[depth - 1])
        if q is None:  # plain additive: keeps order irrelevant (see module docstring)
            return eq.expected_update(states, g, None)
        return eq.expected_next_state(states, g, q, self.sigma)

    def goal_probs(self, states: FloatArray) -> FloatArray:
        """(M, S, G) per-goal pass probabilities."""
        return eq.pass_probability(states[..., None, :], self.req, self.sb, self.ab)

    def score(
        self, states: FloatArray, target: float | None, paths: NDArray[np.int64] | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Posterior mean of P(all goals) and P(P(all goals) > target), per sequence;
        with `paths` (the sequences, candidate indices) the draws' winners are updated."""
        p = self.goal_probs(states).prod(axis=-1)
        if paths is not None:
            self.wins.add(p, paths)
        conf = (p > target).mean(axis=1) if target is not None else np.zeros(len(p))
        return p.mean(axis=1), conf


class _Wins:
    """Per posterior draw, over every sequence evaluated by the search: the best
    probability of passing all goals, how many sequences reach it (exact ties share
    the draw) and one of them.

    Why: `p_best` was the share of draws in which a row beat the other *rows of the
    table*, so it depended on `top` (issue 17: 1.000 with --top 1, 0.022 with
    --top 20 for the same sequence). Kept this way it is the probability that the
    sequence is the best of all sequences searched, whatever is shown, for S floats
    of state and one max per chunk of the search.
    """

    def __init__(self, S: int, width: int) -> None:
        self.best = np.full(S, -np.inf)
        self.ties = np.zeros(S)
        self.path = np.full((S, width), -1, dtype=np.int64)
        #: knapsack: per draw, an upper bound on what any pruned set could reach
        self.pruned = np.full(S, -np.inf)

    def add(self, p: FloatArray, paths: NDArray[np.int64]) -> None:
        """p (M, S): per-draw probability of every goal after each of M sequences."""
        if len(p) == 0:
            return
        m = p.max(axis=0)
        i = p.argmax(axis=0)
        tol = _TIE * np.maximum(1.0, np.abs(m))
        cnt = (p >= m - tol).sum(axis=0)
        better = m > self.best + tol
        same = ~better & (m >= self.best - tol)
        self.ties = np.where(better, cnt, np.where(same, self.ties + cnt, self.ties))
        self.best = np.where(better, m, self.best)
        upd = np.nonzero(better)[0]
        if len(upd):
            self.path[upd] = -1
            self.path[upd, : paths.shape[1]] = paths[i[upd]]

    def p_best(self, p: FloatArray) -> FloatArray:
        """(R,) share of draws in which each of R sequences (p (R, S)) is the best searched."""
        if len(p) == 0:
            return np.zeros(0)
        tol = _TIE * np.maximum(1.0, np.abs(self.best))
        return ((p >= self.best - tol) / np.maximum(self.ties, 1.0)).mean(axis=1)

    def pruned_share(self) -> float:
        """Share of draws in which a set cut by branch and bound might have been best."""
        return float((self.pruned > self.best + _TIE * np.maximum(1.0, np.abs(self.best))).mean())

    def most_often(self, group: bool) -> tuple[NDArray[np.int64], float]:
        """The sequence (or, with `group`, the lesson set) best in the most draws, and that share
        (ties: the first sequence found)."""
        keys = np.sort(self.path, axis=1) if group else self.path
        rows, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        j = int(np.argmax(counts))
        first = int(np.nonzero(inv.ravel() == j)[0][0])
        row = self.path[first]
        return row[row >= 0], float(counts[j] / len(keys))


class _Top:
    """Keeps the best `k` (sequence, mean, conf) rows seen so far; sequences are
    index rows padded with -1."""

    def __init__(self, k: int | None, width: int, by_target: bool, group: bool = False) -> None:
        self.k, self.width, self.by_target, self.group = k, width, by_target, group
        self.paths = np.zeros((0, width), dtype=np.int64)
        self.mean = np.zeros(0)
        self.conf = np.zeros(0)

    def order(self, mean: FloatArray, conf: FloatArray, length: NDArray[np.int64]) -> NDArray[np.int64]:
        keys = (length, -mean, -conf) if self.by_target else (length, -mean)
        return np.lexsort(keys)

    def add(self, paths: NDArray[np.int64], mean: FloatArray, conf: FloatArray) -> None:
        pad = np.full((len(paths), self.width), -1, dtype=np.int64)
        pad[:, : paths.shape[1]] = paths
        self.paths = np.concatenate([self.paths, pad])
        self.mean = np.concatenate([self.mean, mean])
        self.conf = np.concatenate([self.conf, conf])
        if self.k is not None and len(self.mean) > 4 * self.k + 1024:
            self._trim()

    def _trim(self) -> None:
        o = self.order(self.mean, self.conf, (self.paths >= 0).sum(1))
        if self.group:  # one row per lesson set: its best order (the first in rank order)
            _, first = np.unique(np.sort(self.paths[o], axis=1), axis=0, return_index=True)
            o = o[np.sort(first)]
        if self.k is not None:
            o = o[: self.k]
        self.paths, self.mean, self.conf = self.paths[o], self.mean[o], self.conf[o]

    def threshold(self) -> tuple[float, float]:
        """(conf, mean) of the k-th best so far; (-inf, -inf) while fewer than k."""
        self._trim()
        if self.k is None or len(self.mean) < self.k:
            return -np.inf, -np.inf
        return float(self.conf[-1]), float(self.mean[-1])

    def result(self) -> list[NDArray[np.int64]]:
        self._trim()
        return [row[row >= 0] for row in self.paths]


def _children(
    paths: NDArray[np.int64], cost: FloatArray, C: int, costs: FloatArray, budget: float, allow_repeats: bool
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(parent index, lesson) of every allowed one-lesson extension."""
    ok = cost[:, None] + costs[None, :] <= budget + 1e-9
    if not allow_repeats and paths.shape[1]:
        used = np.zeros((len(paths), C), dtype=bool)
        np.put_along_axis(used, paths, True, axis=1)
        ok &= ~used
    return np.nonzero(ok)


def _level_search(
    eng: _Engine,
    state: FloatArray,
    C: int,
    max_length: int,
    costs: FloatArray,
    budget: float,
    allow_repeats: bool,
    width: int | None,
    top: _Top,
    target: float | None,
    confidence: float,
    progress: _Progress | None = None,
) -> int:
    """Trie expansion, level by level; `width=None` keeps every prefix (exhaustive),
    otherwise the `width` best (beam). Returns the number of sequences evaluated."""
    S = state.shape[0]
    paths = np.zeros((1, 0), dtype=np.int64)
    states = state[None]
    cost = np.zeros(1)
    mean, conf = eng.score(states, target, paths)
    top.add(paths, mean, conf)
    n_eval = 1
    if target is not None and conf[0] >= confidence:
        return n_eval
    per_chunk = max(1, CHUNK_STATES // S)
    for depth in range(1, max_length + 1):
        par, les = _children(paths, cost, C, costs, budget, allow_repeats)
        if len(par) == 0:
            break
        # exhaustive keeps every child as a parent; beam recomputes its few survivors
        keep_states = depth < max_length and width is None
        means, confs, kept = [], [], []
        for lo in range(0, len(par), per_chunk):
            p, k = par[lo : lo + per_chunk], les[lo : lo + per_chunk]
            new = eng.step(states[p], k, depth)
            m, c = eng.score(new, target, np.concatenate([paths[p], k[:, None]], axis=1))
            means.append(m)
            confs.append(c)
            if keep_states:
                kept.append(new)
            if progress is not None:
                progress(f"length {depth} of {max_length}: {n_eval + lo + len(p):,} sequences evaluated")
        mean, conf = np.concatenate(means), np.concatenate(confs)
        child_paths = np.concatenate([paths[par], les[:, None]], axis=1)
        top.add(child_paths, mean, conf)
        n_eval += len(par)
        if target is not None and conf.max() >= confidence:
            break  # the shortest sufficient length is reached
        if depth == max_length:
            break
        if width is None:
            paths, cost, states = child_paths, cost[par] + costs[les], np.concatenate(kept)
            continue
        sel = np.arange(len(par))
        if len(par) > width:
            key = (-mean, -conf) if target is not None else (-mean,)
            sel = np.lexsort(key)[:width]
        states = eng.step(states[par[sel]], les[sel], depth)
        paths, cost = child_paths[sel], cost[par[sel]] + costs[les[sel]]
    return n_eval


def _lex_ge(conf: FloatArray, mean: FloatArray, kc: float, km: float, by_target: bool) -> NDArray[np.bool_]:
    """(conf, mean) ≥ (kc, km): lexicographic in target mode, else on the mean alone."""
    if by_target:
        return (conf > kc) | ((conf >= kc) & (mean >= km - _TIE))
    return mean >= km - _TIE


def _knapsack_search(
    eng: _Engine,
    state: FloatArray,
    C: int,
    max_length: int,
    costs: FloatArray,
    budget: float,
    allow_repeats: bool,
    top: _Top,
    target: float | None,
    confidence: float,
    progress: _Progress | None = None,
    time_limit: float = np.inf,
) -> tuple[int, bool]:
    """Exact best lesson *sets* (or multisets) under a cost budget, no prerequisites.

    Why not the textbook DP: without prerequisites and with the additive update,
    the logit of goal g in draw s after a set K is
        base[s, g] + Σ_{k∈K} c[s, k, g],   c = l_k·a_g/|a_g| ≥ 0
    (D(s, a) is affine in s). The objective mean_s Π_g σ(logit) is not a sum over
    lessons, so a DP table "best value for budget b" is not exact: two sets with
    the same cost have different gain vectors across draws and neither need
    dominate. What is exact: the objective is *monotone* in the set (every c ≥ 0),
    so for any extension T of a set K within the remaining budget and length,
        Σ_{k∈T} c[s,k,g] ≤ UB[s,g] = sum of the m largest c[s,·,g] among the
    lessons still allowed, m = most lessons that fit (cheapest first), and
    mean_s Π_g σ(base + Σ_K c + UB) bounds every descendant. This is branch and
    bound: sets are enumerated level by level (by size; lessons, strongest
    first, in increasing index order so each set is met once), and a branch is
    cut when its bound cannot beat the k-th best value known — from the sets
    evaluated so far or from a greedy beam over sets run first (for `target`:
    the (P(p > target), mean) pair, lexicographically). The result is the exact
    top-k; pruning only saves work, and the worst case is exponential: after
    `time_limit` seconds the search stops with the best sets found so far (the
    greedy beam's among them) and says it did not finish.
    Returns the number of sets evaluated and whether the search finished.
    """
    S = state.shape[0]
    req = eng.req
    zero = np.zeros_like(eng.gainT[:1, :, None, :])
    # per-lesson logit increments (C, S, G), via D's affinity in s
    c = eq.relevance(eng.gainT[:, :, None, :], req) - eq.relevance(zero, req)
    c = np.maximum(c, 0.0)
    base = eq.pass_logit(state[:, None, :], req, eng.sb, eng.ab)  # (S, G)
    G = base.shape[1]
    M = max_length
    by_target = target is not None

    def score(lg: FloatArray, paths: NDArray[np.int64] | None = None) -> tuple[FloatArray, FloatArray]:
        pr = eq.sigmoid(lg).prod(-1)
        if paths is not None:
            eng.wins.add(pr, order[paths])
        return pr.mean(1), ((pr > target).mean(1) if by_target else np.zeros(len(pr)))

    # strongest lessons first: later branches then have weak bounds and are cut early
    order = np.argsort(-c.mean(axis=1).sum(axis=-1), kind="stable")
    c, costs = c[order], costs[order]
    fits = costs <= budget + 1e-9

    # bound tables indexed by the first lesson still allowed (0..C)
    TC = np.zeros((C + 1, S, M + 1, G))  # TC[s0, :, m] = best sum of m increments from lessons ≥ s0
    minc = np.full(C + 1, np.inf)
    CC = np.full((C + 1, C), np.inf)  # ascending cumulative costs of lessons ≥ s0
    if allow_repeats:
        best = np.zeros((S, G))
        for s0 in range(C - 1, -1, -1):
            best = np.maximum(best, c[s0])
            minc[s0] = min(minc[s0 + 1], costs[s0])
            TC[s0] = np.arange(M + 1)[None, :, None] * best[:, None, :]
    else:
        topm = np.zeros((0, S, G))
        for s0 in range(C - 1, -1, -1):
            topm = -np.sort(-np.concatenate([topm, c[s0 : s0 + 1]]), axis=0)[:M]
            cs = np.cumsum(topm, axis=0)
            TC[s0, :, 1 : len(cs) + 1] = cs.transpose(1, 0, 2)
            TC[s0, :, len(cs) + 1 :] = cs[-1][:, None, :]
            cc = np.cumsum(np.sort(costs[s0:]))
            CC[s0, : len(cc)] = cc

    cflat = c.reshape(C, S * G).T / S  # (S·G, C): mean over draws as a matmul
    later = np.arange(C)[None, :]

    def bound(s0: NDArray[np.int64], n: int, spent: FloatArray, lg: FloatArray):
        """Upper bounds (mean, conf) over every extension, and whether one exists.

        Two bounds on the mean, the smaller is used. (1) Per draw: Π_g σ(x + Y),
        Y = top-m increments. (2) Linear in the lessons added, coupling the draws:
        with 0 ≤ y ≤ Y, σ(x+y) − σ(x) ≤ σ'(clip(0, x, x+Y))·y (mean value theorem;
        σ' peaks at 0), and telescoping the product over goals,
        f(x+y) − f(x) ≤ Σ_g slope_g·y_g·Π_{h≠g} σ(x_h+Y_h); so the gain of a set T
        is at most Σ_{k∈T} v_k — an additive knapsack, bounded by its top-m values.
        """
        room = budget - spent + 1e-9
        if allow_repeats:
            with np.errstate(invalid="ignore", divide="ignore"):
                fit = np.floor(room / minc[s0])
            fit = np.where(np.isfinite(fit), fit, 0)
        else:
            fit = (CC[s0] <= room[:, None]).sum(axis=1)
        m = np.minimum(M - n, fit).astype(np.int64)
        Y = TC[s0, :, m, :]  # (N, S, G)
        hi = eq.sigmoid(lg + Y)
        p_hi = hi.prod(-1)
        ubm = p_hi.mean(1)
        ubc = (p_hi > target).mean(1) if by_target else np.zeros(len(p_hi))
        z = np.clip(0.0, lg, lg + Y)
        slope = eq.sigmoid(z) * eq.sigmoid(-z)
        if G == 1:
            others = np.ones_like(hi)
        else:
            others = np.stack([np.delete(hi, g, axis=-1).prod(-1) for g in range(G)], axis=-1)
        v = (slope * others).reshape(len(lg), S * G) @ cflat  # (N, C)
        allowed = later >= s0[:, None]
        v = np.where(allowed & fits[None, :], v, 0.0)
        kmax = min(M, C)
        if kmax:
            # the additive knapsack's optimum is at most (i) the m largest values
            # (count limit) and (ii) its fractional relaxation (cost limit)
            rows = np.arange(len(v))
            vtop = -np.sort(-v, axis=1)[:, :kmax]
            ratio = v / costs[None, :]
            if allow_repeats:  # a lesson may be taken several times
                lin = np.minimum(m * vtop[:, 0], room * ratio.max(axis=1))
            else:
                csum = np.concatenate([np.zeros((len(v), 1)), np.cumsum(vtop, axis=1)], axis=1)
                o = np.argsort(-ratio, axis=1)
                vo, co = np.take_along_axis(v, o, axis=1), costs[o]
                cum = np.cumsum(co, axis=1)
                full = cum <= room[:, None]
                nfull = full.sum(axis=1)
                frac_i = np.minimum(nfull, C - 1)
                left = room - np.where(nfull > 0, cum[rows, np.maximum(nfull - 1, 0)], 0.0)
                frac = np.where(nfull < C, vo[rows, frac_i] * np.clip(left / co[rows, frac_i], 0, 1), 0.0)
                lin = np.minimum(csum[rows, np.minimum(m, kmax)], (vo * full).sum(axis=1) + frac)
            ubm = np.minimum(ubm, eq.sigmoid(lg).prod(-1).mean(1) + lin)
        return ubm, ubc, m > 0, p_hi

    # incumbent: greedy beam over sets, its k-th best value is a floor for pruning
    floor = (-np.inf, -np.inf)
    if top.k is not None and M > 0:
        width = max(2 * top.k, 16)
        bp = np.zeros((1, 0), dtype=np.int64)
        bsp = np.zeros(1)
        seen_m, seen_c, seen_p = [], [], []
        for depth in range(1, M + 1):
            ok = (bsp[:, None] + costs[None, :] <= budget + 1e-9) & fits[None, :]
            if not allow_repeats and depth > 1:
                np.put_along_axis(ok, bp, False, axis=1)
            par, les = np.nonzero(ok)
            if len(par) == 0:
                break
            kids = np.unique(np.sort(np.concatenate([bp[par], les[:, None]], axis=1), axis=1), axis=0)
            lg = base[None] + c[kids].sum(axis=1)
            m, cf = score(lg)
            seen_m.append(m)
            seen_c.append(cf)
            seen_p.append(kids)
            sel = np.lexsort((-m, -cf) if by_target else (-m,))[:width]
            bp, bsp = kids[sel], costs[kids[sel]].sum(axis=1)
        sm, sc = np.concatenate(seen_m), np.concatenate(seen_c)
        if len(sm) >= top.k:
            i = np.lexsort((-sm, -sc) if by_target else (-sm,))[top.k - 1]
            # for `target` only a floor below `confidence` is safe: a shorter
            # sufficient set must survive even if it scores below longer ones
            if not by_target or sc[i] < confidence:
                floor = (float(sc[i]) if by_target else 0.0, float(sm[i]))

    paths = np.zeros((1, 0), dtype=np.int64)
    spent = np.zeros(1)
    m0, c0 = score(base[None], paths)
    top.add(paths, m0, c0)
    n_eval = 1
    if by_target and c0[0] >= confidence:
        return n_eval, True
    per_chunk = max(64, 4 * CHUNK_STATES // (S * G))  # children per chunk
    t0 = time.perf_counter()
    finished = True
    for depth in range(1, M + 1):
        first = (paths[:, -1] if allow_repeats else paths[:, -1] + 1) if depth > 1 else np.zeros(1, np.int64)
        ok = (np.arange(C)[None, :] >= first[:, None]) & (spent[:, None] + costs[None, :] <= budget + 1e-9)
        par_all, les_all = np.nonzero(ok)
        if len(par_all) == 0:
            break
        new_paths, new_spent = [], []
        reached = False
        for lo in range(0, len(par_all), per_chunk):
            par, les = par_all[lo : lo + per_chunk], les_all[lo : lo + per_chunk]
            kid_paths = np.concatenate([paths[par], les[:, None]], axis=1)
            kid_spent = spent[par] + costs[les]
            lg = base[None] + c[les]  # logits recomputed from the path: memory stays bounded
            for j in range(depth - 1):
                lg += c[kid_paths[:, j]]
            m, cf = score(lg, kid_paths)
            top.add(order[kid_paths], m, cf)
            n_eval += len(par)
            if progress is not None:
                progress(f"branch and bound, {depth} of {M} lessons: {n_eval:,} lesson sets evaluated")
            if time.perf_counter() - t0 > time_limit:
                finished = False
                break
            reached |= by_target and bool(cf.max() >= confidence)
            if depth == M or reached:
                continue
            kc, km = top.threshold()
            if _lex_ge(np.array([floor[0]]), np.array([floor[1]]), kc, km, by_target)[0]:
                kc, km = floor
            s0 = les if allow_repeats else les + 1
            ubm, ubc, can, p_hi = bound(s0, depth, kid_spent, lg)
            keep = can & _lex_ge(ubc, ubm, kc, km, by_target)
            cut = can & ~keep
            if cut.any():  # what the cut branches could reach in each draw (p_best's coverage)
                eng.wins.pruned = np.maximum(eng.wins.pruned, p_hi[cut].max(axis=0))
            new_paths.append(kid_paths[keep])
            new_spent.append(kid_spent[keep])
        if not finished or reached or depth == M or not new_paths:
            break
        paths, spent = np.concatenate(new_paths), np.concatenate(new_spent)
        if len(paths) == 0:
            break
    if not finished and seen_p:  # the greedy beam's sets: at least as good as a beam search
        for kp, km_, kc_ in zip(seen_p, seen_m, seen_c):
            top.add(order[kp], km_, kc_)
    return n_eval, finished


def count_sequences(
    n_candidates: int,
    max_length: int,
    allow_repeats: bool = False,
    costs: ArrayLike | None = None,
    budget: float | None = None,
) -> int:
    """Ordered sequences of length 0..max_length (the empty one included); with `costs`
    (one per candidate) and a finite `budget`, an upper bound on those whose total cost
    fits: costs are rounded *down* to a grid of budget/1024, so every sequence that fits
    is counted (a dynamic programme over (length, cost); exact counting is exponential)."""
    if costs is None or budget is None or not np.isfinite(budget):
        total, level = 1, 1
        for t in range(max_length):
            level *= n_candidates if allow_repeats else max(n_candidates - t, 0)
            total += level
        return total
    c = np.asarray(costs, dtype=float)
    c = c[c <= budget + 1e-9]
    grid = 1024
    unit = budget / grid if budget > 0 else 1.0
    w = np.floor(c / unit + 1e-9).astype(np.int64)
    B = grid if budget > 0 else 0
    M = max_length
    if allow_repeats:  # ordered directly: g[k, b] sequences of length k and cost b
        g = np.zeros((M + 1, B + 1))
        g[0, 0] = 1.0
        for k in range(1, M + 1):
            for wi in w:
                g[k, wi:] += g[k - 1, : B + 1 - wi]
        return int(round(g.sum()))
    f = np.zeros((M + 1, B + 1))  # f[k, b]: lesson subsets of size k and cost b
    f[0, 0] = 1.0
    for wi in w:
        f[1:, wi:] = f[1:, wi:] + f[:-1, : B + 1 - wi]
    fact = np.array([math.factorial(k) for k in range(M + 1)], dtype=float)
    return int(round((f.sum(axis=1) * fact).sum()))


def _lessons_within(costs: FloatArray, budget: float, allow_repeats: bool) -> int | None:
    """Most lessons a sequence can hold within `budget` (cheapest first); None: no budget."""
    if not np.isfinite(budget):
        return None
    if allow_repeats:
        return int(np.floor(budget / costs.min() + 1e-9)) if len(costs) else 0
    return int((np.cumsum(np.sort(costs)) <= budget + 1e-9).sum())


@dataclass
class Work:
    """What an ordered search would cost before it starts: sequences (an upper bound
    with a budget), states (sequences × draws), seconds (at `SECONDS_PER_STATE`) and the
    memory exhaustive search holds (every prefix's states, and their concatenation)."""

    sequences: int
    draws: int
    seconds: float
    memory: float

    def describe(self) -> str:
        return (f"{self.sequences:,} sequences × {self.draws:,} draws (about {_duration(self.seconds)}, "
                f"{self.memory / 1024**3:.2g} GB)")

    def as_dict(self) -> dict[str, Any]:
        return {"sequences": self.sequences, "draws": self.draws, "seconds": self.seconds, "memory_bytes": self.memory}


def _duration(sec: float) -> str:
    if sec < 60:
        return f"{sec:.2g} s"
    if sec < 3600:
        return f"{sec / 60:.0f} min"
    return f"{sec / 3600:.1f} h"


def estimate_work(
    n_candidates: int,
    max_length: int,
    draws: int,
    goals: int,
    skills: int,
    allow_repeats: bool = False,
    costs: ArrayLike | None = None,
    budget: float | None = None,
    ordered_update: bool = True,
) -> Work:
    """The work of enumerating every sequence (`Work`), before starting."""
    n = count_sequences(n_candidates, max_length, allow_repeats, costs, budget)
    kept = count_sequences(n_candidates, max_length - 1, allow_repeats, costs, budget) if max_length >= 2 else 0
    per = SECONDS_PER_STATE[bool(ordered_update)] * (goals + skills) / 4
    return Work(sequences=n, draws=draws, seconds=n * draws * per, memory=2.0 * kept * draws * skills * 8)


class _Progress:
    """Progress lines for long searches: at most one every `every` seconds, and none in the
    first `every` seconds (a short search stays silent)."""

    def __init__(self, fn: Callable[[str], None] | None, every: float = PROGRESS_AFTER_SECONDS) -> None:
        self.fn, self.every = fn, every
        self.t0 = self.last = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def say(self, msg: str) -> None:
        if self.fn is not None:
            self.fn(msg)
            self.last = time.perf_counter()

    def __call__(self, msg: str) -> None:
        now = time.perf_counter()
        if self.fn is not None and now - self.t0 >= self.every and now - self.last >= self.every:
            self.say(f"recommend: {msg} ({now - self.t0:.0f} s)")


# --------------------------------------------------------------------------- #
# result
# --------------------------------------------------------------------------- #
@dataclass
class Recommendation:
    """Ranked sequences with posterior summaries. `p_draws[r]` holds the per-draw
    probability of passing all goals after ranked sequence r (rank r+1)."""

    table: pd.DataFrame
    current: dict[str, Any]
    goal_ids: tuple[str, ...]
    skills: int
    steps: list[list[dict[str, Any]]]
    p_draws: FloatArray
    search: str
    n_evaluated: int
    band: tuple[float, float]
    include_noise: bool
    student: str | None = None
    target: float | None = None
    confidence: float | None = None
    reachable: bool | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: candidate lessons left out because the student had already taken them
    excluded_taken: tuple[str, ...] = ()
    #: what p_best is a probability over, in words
    p_best_scope: str = ""
    #: the sequence (set) best in the most draws: lessons, p_best, p_mean, shown (in the table)
    most_often_best: dict[str, Any] = field(default_factory=dict)
    group_by_set: bool = False
    #: per lesson: ``students`` (who took it in the training data), ``cost`` (and ``cost_low``/``cost_high``)
    lessons: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost_source: str = ""
    #: the fit's overall diagnostic verdict (``status``, ``line``, ...), when known
    fit_verdict: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    #: what the search decided on its own (a length from the budget, beam instead of enumeration)
    notes: list[str] = field(default_factory=list)
    #: the work estimated before the search (`Work.as_dict`)
    work: dict[str, Any] = field(default_factory=dict)

    def explain(self, rank: int = 1) -> pd.DataFrame:
        """Per step of ranked sequence `rank` (1-based): the lesson, the expected
        skill vector after it (posterior mean) and the goal pass probability
        before and after."""
        if not 1 <= rank <= len(self.steps):
            raise ValueError(f"rank must be between 1 and {len(self.steps)}, got {rank}")
        rows = []
        for st in self.steps[rank - 1]:
            row = {"step": st["step"], "lesson": st["lesson"]}
            row.update({f"skill_{i}": v for i, v in enumerate(st["expected_state"])})
            row.update({k: st[k] for k in ("p_before", "p_after", "p_after_low", "p_after_high")})
            row.update({f"p:{g}": v for g, v in st["per_goal_after"].items()})
            rows.append(row)
        cols = ["step", "lesson", *[f"skill_{i}" for i in range(self.skills)], "p_before", "p_after",
                "p_after_low", "p_after_high", *[f"p:{g}" for g in self.goal_ids]]
        return pd.DataFrame(rows, columns=cols)

    def estimate_words(self) -> str:
        """What p_mean estimates, in one sentence a teacher can read."""
        who = f"student {self.student}" if self.student else "the student"
        g = list(self.goal_ids)
        goals = g[0] if len(g) == 1 else f"all of {', '.join(g[:-1])} and {g[-1]}"
        if self.search == "knapsack":
            how = "after the lessons of each row (a set: without prerequisites their order does not matter)"
        elif self.group_by_set:
            how = "after the lessons of each row, taken in the order shown (the best order of that set)"
        else:
            how = "after the lessons of each row, taken in the order shown"
        lo, hi = (round(100 * b) for b in self.band)
        text = (f"Estimated: the probability that {who} passes {goals} {how}; p_mean is its posterior mean over "
                f"{self.p_draws.shape[1]:,} draw{'s' if self.p_draws.shape[1] != 1 else ''}, the band its {lo}–{hi}% credible interval")
        if self.target is not None:
            text += f"; P(>target) the posterior probability that it exceeds {self.target:g}"
        return text + "."

    def lesson_table(self) -> pd.DataFrame:
        """The lessons in the rows shown, first appearance first: students of the training data
        who took each (the evidence behind its gain, when known) and its cost."""
        seen = list(dict.fromkeys(x for row in self.table["lessons"] for x in row))
        rows = []
        for k in seen:
            info = self.lessons.get(k, {})
            rows.append({"lesson": k, "students": info.get("students"), "cost": info.get("cost"),
                         "cost_low": info.get("cost_low"), "cost_high": info.get("cost_high")})
        return pd.DataFrame(rows, columns=["lesson", "students", "cost", "cost_low", "cost_high"])

    def fit_failed(self) -> bool:
        return bool(self.fit_verdict) and self.fit_verdict.get("status") == "fail"

    def to_dict(self) -> dict[str, Any]:
        seqs = []
        for i, row in enumerate(self.table.itertuples(index=False)):
            r = row._asdict()
            item = {
                "rank": int(r["rank"]),
                "lessons": list(r["lessons"]),
                "p_mean": float(r["p_mean"]),
                "p_low": float(r["p_low"]),
                "p_high": float(r["p_high"]),
                "p_best": float(r["p_best"]),
                "most_often_best": bool(r.get("most_often_best", False)),
                "per_goal": {g: float(self.table.iloc[i][f"p:{g}"]) for g in self.goal_ids},
                "steps": self.steps[i],
            }
            if "p_target" in self.table:
                item["p_target"] = float(r["p_target"])
            if "cost" in self.table:
                item["cost"] = float(r["cost"])
            for k in ("orders", "p_mean_worst_order"):
                if k in self.table:
                    item[k] = None if pd.isna(r[k]) else float(r[k])
            seqs.append(item)
        return {
            "student": self.student,
            "goals": list(self.goal_ids),
            "estimate": self.estimate_words(),
            "current": self.current,
            "sequences": seqs,
            "p_best_scope": self.p_best_scope,
            "most_often_best": self.most_often_best,
            "group_by_set": self.group_by_set,
            "lessons": {k: self.lessons.get(k, {}) for k in self.lesson_table()["lesson"]},
            "cost_source": self.cost_source,
            "fit_diagnostics": self.fit_verdict,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "work": self.work,
            "reachable": self.reachable,
            "target": self.target,
            "confidence": self.confidence,
            "band": list(self.band),
            "include_noise": self.include_noise,
            "search": self.search,
            "n_evaluated": self.n_evaluated,
            "message": self.message,
            "excluded_taken": list(self.excluded_taken),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_text(self) -> str:
        lo, hi = (round(100 * b) for b in self.band)
        cur = self.current
        head = f"Student {self.student} — goals" if self.student else "Goals"
        sep = " + " if self.search == "knapsack" else " → "  # knapsack ranks sets: order is irrelevant
        lines = []
        if self.fit_failed():
            line = " ".join(str(self.fit_verdict.get("line", "diagnostics: FAIL")).split())
            lines.append(f"WARNING: the fit behind this recommendation failed its own diagnostics ({line}); "
                         "the probabilities below may be wrong.")
        lines += [
            f"{head}: {', '.join(self.goal_ids)}",
            self.estimate_words(),
            f"current pass probability: {cur['p_mean']:.3f} ({lo}–{hi}%: {cur['p_low']:.3f}–{cur['p_high']:.3f})",
        ]
        if self.message:
            lines.append(self.message)
        lines += [f"warning: {w}" for w in self.warnings]
        lines += [f"note: {n}" for n in self.notes]
        if self.excluded_taken:
            lines.append(
                f"left out, already taken by the student: {', '.join(self.excluded_taken)} "
                "(allow_taken=True, CLI --allow-retake, to recommend them again)"
            )
        t = self.table
        w = max([7, *(len(sep.join(x)) for x in t["lessons"])])
        cols = f"{'rank':>4}  {'lessons':<{w}}  {'p_mean':>6}  {f'{lo}–{hi}% band':>15}  {'p_best':>7}"
        if "cost" in t:
            cols += f"  {'cost':>6}"
        if "p_target" in t:
            cols += f"  {'P(>target)':>10}"
        if "orders" in t:
            cols += f"  {'orders':>6}  {'worst order':>11}"
        lines += ["", cols]
        for r in t.itertuples(index=False):
            les = sep.join(r.lessons) if r.lessons else "(none)"
            rank = str(r.rank)
            star = "*" if getattr(r, "most_often_best", False) else " "
            pb = "   n/a " if pd.isna(r.p_best) else f"{r.p_best:6.3f}{star}"
            s = f"{rank:>4}  {les:<{w}}  {r.p_mean:6.3f}  {r.p_low:6.3f} – {r.p_high:6.3f}  {pb}"
            if "cost" in t:
                s += f"  {r.cost:6.3g}"
            if "p_target" in t:
                s += f"  {r.p_target:10.3f}"
            if "orders" in t:
                s += f"  {r.orders:6d}  " + ("        n/a" if pd.isna(r.p_mean_worst_order)
                                             else f"{r.p_mean_worst_order:11.3f}")
            lines.append(s)
        lines.append("")
        if self.p_best_scope:
            lines.append(self.p_best_scope + "; * = best in the most draws")
            mob = self.most_often_best
            if mob and not mob.get("shown", True):
                lines.append(f"best in the most draws, but below the rows shown by its mean: "
                             f"{sep.join(mob['lessons']) or '(none)'} (p_best {mob['p_best']:.3f}, "
                             f"p_mean {mob['p_mean']:.3f})")
        lt = self.lesson_table()
        if len(lt):
            lines.append(f"lessons (students: how many students of the training data took it — the evidence "
                         f"behind its effect; cost: {self.cost_source or 'as given'}):")
            for r in lt.itertuples(index=False):
                ev = "" if r.students is None or pd.isna(r.students) else f"{int(r.students):>4} students"
                c = "" if r.cost is None or pd.isna(r.cost) else f"  cost {r.cost:.3g}"
                if r.cost_low is not None and not pd.isna(r.cost_low):
                    c += f" ({r.cost_low:.3g}–{r.cost_high:.3g})"
                thin = ("  ← few students: its effect is mostly the prior's"
                        if r.students is not None and not pd.isna(r.students) and r.students < THIN_EVIDENCE else "")
                lines.append(f"  {r.lesson:<{w}}  {ev}{c}{thin}")
        lines.append(
            f"{self.search} search, {self.n_evaluated:,} "
            + ("lesson sets (order irrelevant without prerequisites)" if self.search == "knapsack" else "sequences")
            + " evaluated; "
            + ("learning noise by Monte Carlo" if self.include_noise else "expected learning update")
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


#: --group-by-set re-evaluates every order of a shown set up to this many (7 lessons: 5,040)
MAX_ORDERS = 5040


def _orders(path: NDArray[np.int64]) -> NDArray[np.int64] | None:
    """Every distinct order of a sequence's lessons (a lesson repeated counts once), or None
    when there are more than `MAX_ORDERS`."""
    if math.factorial(len(path)) > MAX_ORDERS:
        return None
    perms = sorted(set(itertools.permutations(path.tolist())))
    return np.array(perms, dtype=np.int64).reshape(len(perms), len(path))


def _evaluate(eng: _Engine, state: FloatArray, paths: NDArray[np.int64]) -> FloatArray:
    """(R, S) per-draw probability of passing every goal after each of R sequences of one length."""
    states = np.broadcast_to(state, (len(paths), *state.shape)).copy()
    for depth in range(1, paths.shape[1] + 1):
        states = eng.step(states, paths[:, depth - 1], depth)
    return eng.goal_probs(states).prod(axis=-1)


def _summaries(p: FloatArray, band: tuple[float, float]) -> tuple[FloatArray, FloatArray, FloatArray]:
    lo, hi = np.quantile(p, band, axis=-1)
    return p.mean(axis=-1), lo, hi


# --------------------------------------------------------------------------- #
# recommend
# --------------------------------------------------------------------------- #
def recommend_sequences(
    state: ArrayLike,
    modules: ModuleDraws,
    *,
    max_length: int | None = None,
    candidates: Sequence[str] | None = None,
    allow_repeats: bool = False,
    band: tuple[float, float] = (0.05, 0.95),
    include_noise: bool = False,
    seed: int | np.random.Generator | None = None,
    search: SearchKind = "auto",
    beam_width: int = 50,
    top: int | None = 10,
    costs: dict[str, float] | None = None,
    budget: float | None = None,
    target: float | None = None,
    confidence: float = 0.9,
    student: str | None = None,
    taken: Sequence[str] | None = None,
    allow_taken: bool = False,
    group_by_set: bool = False,
    evidence: Mapping[str, int] | None = None,
    cost_source: str | None = None,
    cost_bands: Mapping[str, tuple[float, float]] | None = None,
    fit_verdict: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    time_limit: float | None = None,
) -> Recommendation:
    """Rank lesson sequences by the posterior mean probability of passing every goal.

    state: (S, d) draws of the student's current state, aligned with `modules`.
    (a) Without `target`: the best sequences of at most `max_length` lessons (and
    total cost ≤ `budget`; costs default 1 per lesson). `max_length` None: as many
    lessons as fit in `budget`, or 3 without one; a `max_length` shorter than the
    budget allows is kept but stated in `warnings` (issue 17: it capped the budget
    silently). Budgets work for every model: with prerequisites or simulated noise,
    where order matters, the ordered searches keep only sequences within the budget
    (search='knapsack' is then replaced by them, with a note). (b) With `target`: the shortest sequences whose posterior
    probability that the pass probability exceeds `target` is ≥ `confidence`;
    the sufficient ones are ranked by that probability, then by mean; if there is
    none, `reachable` is False, `message` says so and the table ranks the
    sequences closest to it. `top` rows are kept (None: every one evaluated).
    `p_best` is the probability, over draws, that a row is the best of *every*
    sequence the search evaluated (exact ties share the draw), so it does not depend
    on `top` and sums to at most 1 over the table; the sequence best in the most
    draws is flagged (column ``most_often_best``), or named in `most_often_best`
    when its mean does not place it in the table. `group_by_set`: one row per lesson
    set, in its best order (top rows are often reorderings of the same lessons);
    p_best is then the probability that the best sequence is some order of the set,
    and ``orders`` / ``p_mean_worst_order`` say how much the order matters.

    What the output says to its reader (issue 17): `evidence` (students of the training
    data who took each lesson) and the costs (with `cost_bands`, e.g. predicted
    costs' intervals; `cost_source` says where they came from) per lesson shown, and
    `fit_verdict` (the fit's overall diagnostic verdict): a failed fit is stated
    first, because every number below it comes from that fit.
    `search`: "auto" = knapsack for a model without prerequisites and without
    noise (rows are then lesson sets, shown in candidate order), else exhaustive
    up to `EXHAUSTIVE_LIMIT` sequences, else beam. `student` only labels output.
    """
    st = np.asarray(state, dtype=float)
    S, d = modules.n_draws, modules.n_skills
    if st.shape != (S, d):
        raise ValueError(f"state has shape {st.shape}; expected (draws={S}, skills={d}) to match the module draws")
    if np.any(st < 0) or not np.all(np.isfinite(st)):
        raise ValueError("state draws must be finite and non-negative")
    if max_length is not None:
        if int(max_length) != max_length or max_length < 0:
            raise ValueError(f"max_length must be an integer >= 0, got {max_length!r}")
        max_length = int(max_length)
    band = (float(band[0]), float(band[1]))
    if not 0 <= band[0] < band[1] <= 1:
        raise ValueError(f"band must be two quantiles 0 ≤ low < high ≤ 1, got {band}")
    if target is not None and not 0 < target < 1:
        raise ValueError(f"target must be a probability in (0, 1), got {target!r}")
    if not 0 < confidence <= 1:
        raise ValueError(f"confidence must be in (0, 1], got {confidence!r}")
    if top is not None and (int(top) != top or top < 1):
        raise ValueError(f"top must be a positive integer or None, got {top!r}")
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width!r}")

    ids = list(modules.lesson_ids)
    if candidates is None:
        cand_ids = ids
    else:
        cand_ids = list(dict.fromkeys(str(c) for c in candidates))
        unknown = [c for c in cand_ids if c not in ids]
        if unknown:
            raise ValueError(f"unknown candidate lesson(s): {', '.join(unknown)}")
    excluded: tuple[str, ...] = ()
    if taken is not None and not allow_taken:
        done = {str(x) for x in taken}
        excluded = tuple(c for c in cand_ids if c in done)
        cand_ids = [c for c in cand_ids if c not in done]
        if not cand_ids:
            raise ValueError(
                f"every candidate lesson was already taken by the student ({', '.join(excluded)}); "
                "allow_taken=True (CLI --allow-retake) lets taken lessons be recommended again"
            )
    cand = np.array([ids.index(c) for c in cand_ids], dtype=np.int64)
    C = len(cand)

    cost_vec = np.ones(C)
    if costs is not None:
        unknown = [k for k in costs if str(k) not in ids]
        if unknown:
            raise ValueError(f"costs given for unknown lesson(s): {', '.join(map(str, unknown))}")
        cost_vec = np.array([float(costs.get(c, 1.0)) for c in cand_ids])
        if np.any(~(cost_vec > 0)) or not np.all(np.isfinite(cost_vec)):
            bad = [c for c, v in zip(cand_ids, cost_vec) if not (v > 0 and np.isfinite(v))]
            raise ValueError(f"lesson costs must be positive numbers; bad: {', '.join(bad)}")
    notes: list[str] = []
    warnings: list[str] = []
    if budget is None:
        budget = np.inf
    elif not budget >= 0:
        raise ValueError(f"budget must be >= 0, got {budget!r}")
    n_fit = _lessons_within(cost_vec, budget, allow_repeats)
    if max_length is None:
        max_length = DEFAULT_MAX_LENGTH if n_fit is None else n_fit
        if n_fit is not None:
            notes.append(f"up to {n_fit} lesson{'s' if n_fit != 1 else ''} fit in the budget {budget:g}: "
                         "the search goes that far")
    elif n_fit is not None and n_fit > max_length:  # issue 17: --budget was capped by --max-length silently
        warnings.append(
            f"the search stops at max_length={max_length} lesson{'s' if max_length != 1 else ''} although up to "
            f"{n_fit} fit in the budget {budget:g}: sequences are capped by the length, not by the budget "
            "(raise max_length, CLI --max-length, or leave it out to let the budget decide)"
        )

    no_prereq = modules.prerequisite is None
    if search == "knapsack" and (not no_prereq or include_noise):
        # issue 17: refused before; order matters here, so rank ordered sequences within the budget
        why = "the model has prerequisites (order matters)" if not no_prereq else "the learning noise is simulated"
        notes.append(f"knapsack search ranks lesson sets, which does not apply because {why}: "
                     "ordered sequences within the budget are searched instead")
        search = "auto"
    work = estimate_work(C, max_length, st.shape[0], modules.requirement.shape[1], st.shape[1], allow_repeats,
                         cost_vec if np.isfinite(budget) else None, budget, ordered_update=not no_prereq or include_noise)
    if search == "auto":
        if no_prereq and not include_noise:
            search = "knapsack"
        elif work.sequences <= EXHAUSTIVE_LIMIT and work.seconds <= AUTO_EXHAUSTIVE_SECONDS \
                and work.memory <= EXHAUSTIVE_MEMORY_LIMIT:
            search = "exhaustive"
        else:
            search = "beam"
            notes.append(f"{work.describe()} is too much to enumerate (auto enumerates up to "
                         f"{EXHAUSTIVE_LIMIT:,} sequences and about {AUTO_EXHAUSTIVE_SECONDS:g} s): beam search, "
                         f"width {int(beam_width)}, ranks them approximately")
    if search not in ("exhaustive", "beam", "knapsack"):
        raise ValueError(f"search must be 'auto', 'exhaustive', 'beam' or 'knapsack', got {search!r}")

    if search == "exhaustive" and (work.memory > EXHAUSTIVE_MEMORY_LIMIT or work.seconds > EXHAUSTIVE_MAX_SECONDS):
        raise ValueError(
            f"exhaustive search over {C} lessons up to length {max_length} is {work.describe()} "
            f"(limits {EXHAUSTIVE_MEMORY_LIMIT / 1024**3:.0f} GB, {EXHAUSTIVE_MAX_SECONDS / 60:.0f} min): "
            "use search='beam' (CLI --search beam), fewer candidates, or a shorter max length"
        )
    prog = _Progress(progress)
    if search != "knapsack" and work.seconds > PROGRESS_AFTER_SECONDS:
        prog.say(f"recommend: {search} search, {work.describe() if search == 'exhaustive' else 'beam width ' + str(int(beam_width))} ...")
    rng = _rng(seed)
    eng = _Engine(modules, cand, max_length, include_noise, rng)
    tracker = _Top(top, max(max_length, 1), by_target=target is not None, group=group_by_set or search == "knapsack")
    if search == "knapsack":
        limit = KNAPSACK_TIME_LIMIT if time_limit is None else float(time_limit)
        n_eval, finished = _knapsack_search(eng, st, C, max_length, cost_vec, budget, allow_repeats, tracker, target,
                                            confidence, prog, limit)
        if not finished:
            warnings.append(
                f"branch and bound stopped after {limit:g} s ({n_eval:,} lesson sets evaluated): the rows are the "
                "best sets found, not proven the best (raise time_limit, CLI --time-limit, or lower "
                "max_length / the candidates)"
            )
    else:
        width = None if search == "exhaustive" else int(beam_width)
        n_eval = _level_search(
            eng, st, C, max_length, cost_vec, budget, allow_repeats, width, tracker, target, confidence, prog
        )
    ranked = tracker.result()
    if search == "knapsack":  # sets: show their lessons in candidate order
        ranked = [np.sort(r) for r in ranked]

    reachable: bool | None = None
    message = ""
    if target is not None:
        conf_r = tracker.conf
        ok = conf_r >= confidence
        reachable = bool(ok.any())
        if reachable:
            ranked = [r for r, o in zip(ranked, ok) if o]
            n = len(ranked[0])
            message = (
                f"target reached with {n} lesson{'s' if n != 1 else ''}: P(pass probability > {target:g}) "
                f"≥ {confidence:g}"
            )
        else:
            message = (
                f"not reachable within {max_length} lesson{'s' if max_length != 1 else ''}: the best "
                f"posterior probability that the pass probability exceeds {target:g} is "
                f"{conf_r[0]:.3f} < {confidence:g}"
            )

    rec = _build(
        eng, st, ranked, cand_ids, cost_vec, band, target, search, n_eval, include_noise, student,
        confidence if target is not None else None, reachable, message, group_by_set and search != "knapsack",
    )
    # the sequence (set) best in the most draws: flagged in the table, or named below it
    # when its mean ranks it below the rows kept
    as_set = group_by_set or search == "knapsack"
    often, often_share = eng.wins.most_often(as_set)
    key = (lambda r: tuple(sorted(r.tolist()))) if as_set else (lambda r: tuple(r.tolist()))
    keys = [key(r) for r in ranked]
    shown = key(often) in keys
    rec.table["most_often_best"] = [k == key(often) for k in keys]
    if shown:
        row = rec.table.iloc[keys.index(key(often))]
        often_mean, often_pbest = float(row["p_mean"]), float(row["p_best"])
    else:
        p = _evaluate(eng, st, often[None])
        often_mean = float(p.mean())
        perms = _orders(often) if group_by_set and search != "knapsack" else often[None]
        often_pbest = float(eng.wins.p_best(_evaluate(eng, st, perms)).sum()) if perms is not None else np.nan
    unit = "lesson sets" if search == "knapsack" else "sequences"
    if search == "beam":
        scope = (f"the {n_eval:,} {unit} beam search evaluated (those it never reached are not counted, "
                 "so p_best is optimistic)")
    elif search == "knapsack":
        scope = f"the {n_eval:,} {unit} branch and bound evaluated"
        share = eng.wins.pruned_share()
        if share > 0:
            # exact p_best over every set would forbid cutting any set that might win one draw:
            # measured on 40 lessons, length 6, 300 draws that evaluates 393,478 sets in 49 s
            # instead of 434-988 sets in 0.4-0.5 s, so the cut is kept and its reach stated
            scope += (f" (it cuts sets whose mean cannot reach the table, so p_best can move with top; by its "
                      f"bounds a cut set could have been best in up to {share:.0%} of draws — search='exhaustive' "
                      "with group_by_set=True counts every set)")
    else:
        scope = f"all {n_eval:,} {unit} searched"
    if group_by_set and search != "knapsack":
        head = f"p_best: probability, across the {S:,} posterior draws, that the best of {scope} is an order of the set"
    else:
        what = "lesson set" if search == "knapsack" else "sequence"
        head = f"p_best: probability, across the {S:,} posterior draws, that the {what} is the best of {scope}"
    rec.p_best_scope = head + " — not only of the rows shown, so it does not change with top"
    rec.most_often_best = {"lessons": [cand_ids[k] for k in (np.sort(often) if search == "knapsack" else often)],
                           "p_best": often_pbest, "p_mean": often_mean, "shown": shown}
    rec.excluded_taken = excluded
    rec.group_by_set = group_by_set
    for i, k in enumerate(cand_ids):
        info: dict[str, Any] = {"cost": float(cost_vec[i])}
        if evidence is not None:
            info["students"] = int(evidence.get(k, 0))
        if cost_bands is not None and k in cost_bands:
            info["cost_low"], info["cost_high"] = (float(v) for v in cost_bands[k])
        rec.lessons[k] = info
    rec.cost_source = cost_source or ("as given" if costs is not None else "1 per lesson (no costs given)")
    rec.fit_verdict = dict(fit_verdict) if fit_verdict else None
    rec.notes, rec.warnings = notes, warnings
    rec.work = work.as_dict()
    return rec


def _build(
    eng: _Engine,
    state: FloatArray,
    ranked: list[NDArray[np.int64]],
    cand_ids: list[str],
    cost_vec: FloatArray,
    band: tuple[float, float],
    target: float | None,
    search: str,
    n_eval: int,
    include_noise: bool,
    student: str | None,
    confidence: float | None,
    reachable: bool | None,
    message: str,
    group_by_set: bool = False,
    evidence: Mapping[str, int] | None = None,
    cost_source: str | None = None,
    cost_bands: Mapping[str, tuple[float, float]] | None = None,
    fit_verdict: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    time_limit: float | None = None,
) -> Recommendation:
    """Re-evaluate the ranked sequences step by step (a few hundred states) for
    bands, per-goal summaries, p_best and the per-step explanation; with
    `group_by_set`, every order of each row's lesson set too (p_best of the set,
    the spread between its orders)."""
    R = len(ranked)
    goals = eng.goal_ids
    n_max = max((len(r) for r in ranked), default=0)
    states = np.broadcast_to(state, (R, *state.shape)).copy()
    pg = eng.goal_probs(states)  # (R, S, G)
    p_all = pg.prod(-1)
    cur_goal = eng.goal_probs(state[None])[0]  # (S, G)
    steps: list[list[dict[str, Any]]] = [[] for _ in range(R)]
    prev = p_all.mean(1)
    for depth in range(1, n_max + 1):
        live = np.array([i for i, r in enumerate(ranked) if len(r) >= depth], dtype=np.int64)
        lessons = np.array([ranked[i][depth - 1] for i in live], dtype=np.int64)
        states[live] = eng.step(states[live], lessons, depth)
        pg[live] = eng.goal_probs(states[live])
        p_all[live] = pg[live].prod(-1)
        mean, lo, hi = _summaries(p_all[live], band)
        gmean = pg[live].mean(1)
        smean = states[live].mean(1)
        for j, i in enumerate(live):
            steps[i].append(
                {
                    "step": depth,
                    "lesson": cand_ids[lessons[j]],
                    "expected_state": [float(v) for v in smean[j]],
                    "p_before": float(prev[i]),
                    "p_after": float(mean[j]),
                    "p_after_low": float(lo[j]),
                    "p_after_high": float(hi[j]),
                    "per_goal_after": {g: float(v) for g, v in zip(goals, gmean[j])},
                }
            )
            prev[i] = mean[j]
    mean, lo, hi = _summaries(p_all, band)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, R + 1),
            "lessons": [tuple(cand_ids[k] for k in r) for r in ranked],
            "length": [len(r) for r in ranked],
            "cost": [float(cost_vec[r].sum()) for r in ranked],
            "p_mean": mean,
            "p_low": lo,
            "p_high": hi,
            "p_best": eng.wins.p_best(p_all),
        }
    )
    if group_by_set:
        n_orders, worst, pbest = [], [], []
        for r in ranked:
            perms = _orders(r)
            if perms is None:  # too many orders to re-evaluate: the best order alone
                n_orders.append(math.factorial(len(r)))
                worst.append(np.nan)
                pbest.append(np.nan)
                continue
            p = _evaluate(eng, state, perms)
            n_orders.append(len(perms))
            worst.append(float(p.mean(axis=1).min()))
            pbest.append(float(eng.wins.p_best(p).sum()))
        table["orders"] = n_orders
        table["p_mean_worst_order"] = worst
        table["p_best"] = pbest
    if target is not None:
        table["p_target"] = (p_all > target).mean(1)
    for gi, g in enumerate(goals):
        table[f"p:{g}"] = pg[:, :, gi].mean(1)
    cur_all = cur_goal.prod(-1)
    cm, cl, ch = _summaries(cur_all, band)
    gm, gl, gh = _summaries(cur_goal.T, band)
    current = {
        "p_mean": float(cm),
        "p_low": float(cl),
        "p_high": float(ch),
        "per_goal": {
            g: {"p_mean": float(a), "p_low": float(b), "p_high": float(c)} for g, a, b, c in zip(goals, gm, gl, gh)
        },
        "expected_state": [float(v) for v in state.mean(0)],
    }
    if target is not None:
        current["p_target"] = float((cur_all > target).mean())
    return Recommendation(
        table=table,
        current=current,
        goal_ids=goals,
        skills=state.shape[1],
        steps=steps,
        p_draws=p_all,
        search=search,
        n_evaluated=n_eval,
        band=band,
        include_noise=include_noise,
        student=student,
        target=target,
        confidence=confidence,
        reachable=reachable,
        message=message,
    )

# --------------------------------------------------------------------------- #
# placing a new student
# --------------------------------------------------------------------------- #
@dataclass
class Placement:
    """Draws of a new student's current state (S, d) and bias (S,) (None in a model
    without biases), one per posterior draw of the modules. `ess` (S,) is the
    effective number of particles behind each draw's final resampling: small values
    mean the history is informative relative to `n_particles` (raise it)."""

    state: FloatArray
    student_bias: FloatArray | None
    ess: FloatArray
    timestep: int
    n_particles: int


_OUTCOME_WORDS = {"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0, "1.0": 1.0, "0.0": 0.0}


def _outcomes(values: pd.Series) -> FloatArray:
    """0/1, booleans or 'true'/'false'/'0'/'1' → float 0/1; NaN for anything else."""
    def conv(v: Any) -> float:
        if isinstance(v, (bool, np.bool_)):
            return float(v)
        if isinstance(v, str):
            return _OUTCOME_WORDS.get(v.strip().lower(), np.nan)
        try:
            f = float(v)
        except (TypeError, ValueError):
            return np.nan
        return f if f in (0.0, 1.0) else np.nan

    return np.array([conv(v) for v in values], dtype=float)


def _prepare_history(
    history: pd.DataFrame, assessment_ids: Sequence[str], lesson_ids: Sequence[str]
) -> tuple[int, list[tuple[NDArray[np.int64], FloatArray]], NDArray[np.int64]]:
    """Validate one student's rows (DESIGN §2) → current timestep T, the assessments
    answered at each t = 0..T (codes, outcomes) and the lesson taken at each
    t = 0..T-1 (-1: the step passes with no lesson)."""
    for col in ("module_id", "module_type"):
        if col not in history.columns:
            raise ValueError(f"history is missing column {col!r}")
    h = history.reset_index(drop=True)
    if "student_id" in h.columns and h["student_id"].nunique(dropna=False) > 1:
        raise ValueError("history must hold the rows of one student; got several student_id values")
    mtype = h["module_type"].astype(str).str.strip().str.lower()
    bad = sorted(set(mtype) - {"assessment", "lesson"})
    if bad:
        raise ValueError(f"module_type must be 'assessment' or 'lesson'; got {', '.join(bad)}")
    mid = h["module_id"].astype(str)
    is_a = (mtype == "assessment").to_numpy()
    a_ids = {a: i for i, a in enumerate(map(str, assessment_ids))}
    l_ids = {k: i for i, k in enumerate(map(str, lesson_ids))}
    unknown = sorted(set(mid[is_a]) - set(a_ids)) + sorted(set(mid[~is_a]) - set(l_ids))
    if unknown:
        raise ValueError(
            "history uses module id(s) the model does not know: "
            + ", ".join(unknown)
            + " (the module parameters come from the fit; place students only on known modules)"
        )
    if "timestep" in h.columns and h["timestep"].notna().all():
        ts = pd.to_numeric(h["timestep"], errors="coerce")
        if ts.isna().any() or (ts < 0).any() or (ts != np.floor(ts)).any():
            raise ValueError("timestep must hold integers >= 0")
        ts = ts.to_numpy(dtype=np.int64)
    else:  # DESIGN §2: from row order, +1 after each lesson
        ts = np.concatenate([[0], np.cumsum(~is_a)[:-1]]).astype(np.int64) if len(h) else np.zeros(0, np.int64)
    out = np.full(len(h), np.nan)
    if is_a.any():
        if "outcome" not in h.columns:
            raise ValueError("history is missing column 'outcome' (needed for assessment rows)")
        out[is_a] = _outcomes(h.loc[is_a, "outcome"])
        badrows = np.nonzero(is_a & np.isnan(out))[0]
        if len(badrows):
            raise ValueError(f"outcome must be 0/1 on assessment rows; bad row(s): {', '.join(map(str, badrows[:10]))}")
    les_t = ts[~is_a]
    if len(np.unique(les_t)) != len(les_t):
        raise ValueError("two lessons at the same timestep: a lesson moves the student from t to t+1")
    T = int(max([ts[is_a].max() if is_a.any() else 0, les_t.max() + 1 if len(les_t) else 0]))
    lesson_at = np.full(T, -1, dtype=np.int64)
    lesson_at[les_t] = [l_ids[m] for m in mid[~is_a]]
    a_code = np.array([a_ids[m] for m in mid[is_a]], dtype=np.int64)
    a_t, a_out = ts[is_a], out[is_a]
    answers = [(a_code[a_t == t], a_out[a_t == t]) for t in range(T + 1)]
    return T, answers, lesson_at


def _resample(logw: FloatArray, u: FloatArray, rows: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Systematic resampling of every row of (S, K) log-weights flagged in `rows`
    (identity elsewhere), vectorised over rows in O(S·K): particle j of a row is
    copied N_j − N_{j−1} times, N_j = #{k : (k + u)/K ≤ cdf_j}."""
    S, K = logw.shape
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    cdf = np.cumsum(w, axis=1)
    cdf /= cdf[:, -1:]
    n = np.clip(np.floor(K * cdf - u[:, None]) + 1, 0, K).astype(np.int64)
    n[:, -1] = K
    counts = np.diff(n, axis=1, prepend=0)
    idx = np.repeat(np.tile(np.arange(K), S), counts.ravel()).reshape(S, K)
    return np.where(rows[:, None], idx, np.arange(K)[None, :])


def _ess(logw: FloatArray) -> FloatArray:
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    return w.sum(1) ** 2 / (w * w).sum(1)


def place_student(
    history: pd.DataFrame,
    *,
    requirement: ArrayLike,
    assessment_ids: Sequence[str],
    gain: ArrayLike | None = None,
    lesson_ids: Sequence[str] = (),
    prerequisite: ArrayLike | None = None,
    assessment_bias: ArrayLike | None = None,
    state_scale: float | ArrayLike = 1.0,
    bias_scale: float | None = None,
    noise: float | ArrayLike = math.sqrt(0.5),
    n_particles: int = 500,
    seed: int | np.random.Generator | None = None,
    history_coefficients: Sequence[ArrayLike] | None = None,
) -> Placement:
    """Draws of a new student's current state, holding the modules at their
    posterior draws (no refit).

    `history_coefficients`: (γ_s, γ_f[, γ_r]) draws (S,) of a model with the assessment-history
    term — each answer's logit then has γ_s·log(1+S) + γ_f·log(1+F) + γ_r·R (+ practice) for the student's
    earlier successes/failures on the same assessment in this history (as in the fit), so
    a repeated answer weighs as a repeat, not as fresh evidence about the state.

    For every posterior draw of the modules (vectorised), a particle filter with
    `n_particles` particles: initial states from the half-normal prior
    (`state_scale`, per coordinate), student bias from N(0, `bias_scale`²)
    (None: no student bias), weighted by the likelihood of each answer in the
    state it was given in, moved by the truncated-normal learning update at each
    lesson (resampling first when the effective sample size falls below half).
    One particle per draw is then resampled, so the returned draws carry both the
    module uncertainty and the uncertainty left by a short history.
    """
    req = _as3d(requirement, "requirement")
    S, A, d = req.shape
    if gain is None:
        gain = np.zeros((S, 0, d))
    gain = np.asarray(gain, dtype=float)
    if gain.ndim != 3 or gain.shape[0] != S or gain.shape[2] != d:
        raise ValueError(f"gain has shape {gain.shape}; expected (S={S}, L, d={d})")
    if gain.shape[1]:
        gain = _as3d(gain, "gain")
    L = gain.shape[1]
    if len(assessment_ids) != A or len(lesson_ids) != L:
        raise ValueError(
            f"{len(assessment_ids)} assessment ids for {A} assessments, {len(lesson_ids)} lesson ids for {L} lessons"
        )
    if prerequisite is not None:
        prerequisite = np.asarray(prerequisite, dtype=float)
        if prerequisite.shape != gain.shape:
            raise ValueError(f"prerequisite has shape {prerequisite.shape}, gain {gain.shape}")
    ab = np.zeros((S, A)) if assessment_bias is None else np.asarray(assessment_bias, dtype=float)
    if ab.shape != (S, A):
        raise ValueError(f"assessment_bias has shape {ab.shape}, expected {(S, A)}")
    scale = np.broadcast_to(np.asarray(state_scale, dtype=float), (d,))
    if np.any(~(scale > 0)):
        raise ValueError("state_scale must be positive")
    if bias_scale is not None and not bias_scale > 0:
        raise ValueError("bias_scale must be positive (or None for a model without biases)")
    sig = _noise(noise, S)
    sigma = sig if np.ndim(sig) == 0 else np.asarray(sig)[:, None, None]
    K = int(n_particles)
    if K < 1:
        raise ValueError("n_particles must be >= 1")

    T, answers, lesson_at = _prepare_history(history, assessment_ids, lesson_ids)
    offsets: list[FloatArray] | None = None
    if history_coefficients is not None:  # the history term of every answer, (S, n) per timestep
        coefs = [np.broadcast_to(np.asarray(g, dtype=float), (S,))[:, None] for g in history_coefficients]
        codes_all = np.concatenate([c for c, _ in answers]) if answers else np.zeros(0, np.int64)
        outs_all = np.concatenate([o for _, o in answers]) if answers else np.zeros(0)
        times = np.concatenate([np.full(len(c), t) for t, (c, _) in enumerate(answers)]) if answers else np.zeros(0)
        counts = eq.assessment_history_counts(np.zeros(len(codes_all), np.int64), codes_all, outs_all, times)
        off_all = eq.history_logit(counts[None], coefs)
        cuts = np.cumsum([len(c) for c, _ in answers])[:-1]
        offsets = np.split(off_all, cuts, axis=1)
    rng = _rng(seed)
    x = np.abs(rng.normal(size=(S, K, d))) * scale
    b = rng.normal(scale=bias_scale, size=(S, K)) if bias_scale is not None else None
    bb = b[..., None] if b is not None else 0.0
    logw = np.zeros((S, K))
    rows = np.arange(S)[:, None]
    for t in range(T + 1):
        codes, out = answers[t]
        step = max(1, CHUNK_STATES * 8 // (S * K))  # answers per batch: bounds memory
        for lo in range(0, len(codes), step):
            cd, sign = codes[lo : lo + step], np.where(out[lo : lo + step] == 1.0, -1.0, 1.0)
            off = ab[:, None, cd] if offsets is None else (ab[:, cd] + offsets[t][:, lo : lo + step])[:, None, :]
            logit = eq.pass_logit(x[:, :, None, :], req[:, None, cd, :], bb, off)  # (S, K, n)
            # log σ(z) for a pass, log σ(−z) for a fail
            logw -= np.logaddexp(0.0, sign * logit).sum(axis=-1)
        if t == T:
            break
        low = _ess(logw) < K / 2
        if low.any():
            idx = _resample(logw, rng.random(S), low)
            x = x[rows, idx]
            if b is not None:
                b = b[rows, idx]
                bb = b[..., None]
            logw = np.where(low[:, None], 0.0, logw)
        k = lesson_at[t]
        if k >= 0:
            q = None if prerequisite is None else prerequisite[:, None, k]
            mu = eq.expected_update(x, gain[:, None, k], q)
        else:  # a step without a lesson: noise only
            mu = x
        x = eq.sample_truncated_normal(mu, sigma, rng, method="rejection")
    ess = _ess(logw)
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    cdf = np.cumsum(w, axis=1)
    pick = (cdf < rng.random(S)[:, None] * cdf[:, -1:]).sum(axis=1)
    pick = np.minimum(pick, K - 1)
    state = x[np.arange(S), pick]
    bias = b[np.arange(S), pick] if b is not None else None
    return Placement(state=state, student_bias=bias, ess=ess, timestep=T, n_particles=K)
