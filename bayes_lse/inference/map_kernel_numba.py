"""The numba backend of `map_kernel.CentredObjective` (`backend="numba"`).

In its own module so that `map_kernel` does not import numba: numba's import plus
its first call (typing registries, LLVM) cost ~105 MB of resident memory, a quarter
of issue 7's 400 MB budget for MAP on ASSISTments.  Faster per evaluation (~1.5-2x)
than the numpy backend; the same density and gradient to rounding.

The loop over answers — nearly all of the work on a real log — runs on every core
numba is allowed (`NUMBA_NUM_THREADS`) once a log has `PARALLEL_MIN_ANSWERS` answers:
the answers are cut into `ANSWER_BLOCKS` contiguous blocks, whatever the number of
threads, each summed into its own gradient buffers, and the blocks are added in
order — so a fit gives the same bits on one thread as on eight.  Where numba has one
thread only (`NUMBA_NUM_THREADS=1`) the plain loop runs instead: the blocked one costs
12 % more there (2.3 against 2.1 ms an evaluation on a synthetic 55k-answer log), and
its sums differ from the blocked ones in the last bits only.  Measured on the MoFaCTS
log (55k answers, 2 cores, `benchmarks/bench_default_fit.py`): 2.5 ms an evaluation on
one thread, 1.5 ms on two; below ~10k answers the threads' start-up costs more than it
saves.

Threads pay only on idle cores.  numba's OpenMP threads spin between the ~1 ms
parallel sections, and a thread that waits at the end of a section for a sibling the
OS has descheduled waits a whole time slice: three default MoFaCTS fits side by side
on 2 cores took 41–43 s each on two threads against 8 s each on one (one fit alone:
3.7 s on two threads, 4.8 s on one; `python -m benchmarks.bench_concurrent_fits`).
Evaluation jobs on Dask workers, a test suite under pytest-xdist and a user's two
notebooks all run fits side by side.  So `AnswerLoop` times the blocked loop on all
threads and on one, keeps the faster, and races them again later (the machine's load
changes); because the blocks are the same either way, the choice changes no bit of the
result.  With it, the same benchmark: 3.5 s alone, 7.6–8.5 s side by side.
"""

from __future__ import annotations

import math
import time

import numba
import numpy as np
from numba import prange

from bayes_lse.model.terms import NORM_EPS

_LOG_2PI = math.log(2.0 * math.pi)
_SQRT1_2 = math.sqrt(0.5)

#: answers from which the answer loop runs in blocks on several threads
PARALLEL_MIN_ANSWERS = 10_000
#: blocks of answers (fixed, so that the sums do not depend on the thread count)
ANSWER_BLOCKS = 8
#: a race's first all-threads evaluation this many times slower than one thread ends it
BUSY_FACTOR = 3.0


@numba.njit(cache=True, inline="always")
def _log_phi_cdf_and_ratio(r: float) -> tuple[float, float]:
    """log Φ(r) and the inverse Mills ratio φ(r)/Φ(r), stable on both tails."""
    if r > -37.0:
        cdf = 0.5 * math.erfc(-r * _SQRT1_2)
        log_cdf = math.log(cdf)
        ratio = math.exp(-0.5 * r * r - 0.5 * _LOG_2PI - log_cdf)
        return log_cdf, ratio
    # asymptotic tail: Φ(r) ≈ φ(r)/(−r)·(1 − 1/r² + 3/r⁴)
    r2 = r * r
    u = 1.0 / r2
    series = 1.0 - u * (1.0 - u * (3.0 - u * (15.0 - 105.0 * u)))
    log_cdf = -0.5 * r2 - 0.5 * _LOG_2PI - math.log(-r) + math.log(series)
    return log_cdf, -r / series


@numba.njit(cache=True, inline="always")
def _row_norms(X: np.ndarray) -> np.ndarray:
    """sqrt(|x|² + NORM_EPS) of every row, as `equations.norm` computes it."""
    out = np.empty(X.shape[0])
    for j in range(X.shape[0]):
        acc = NORM_EPS
        for k in range(X.shape[1]):
            acc += X[j, k] * X[j, k]
        out[j] = math.sqrt(acc)
    return out


@numba.njit(cache=True, inline="always")
def _unit_rows(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's unit vector a/|a|, its norm |a| (with `NORM_EPS`, as `equations.norm`)
    and 1/|a|."""
    norms = _row_norms(A)
    inverse = 1.0 / norms
    unit = np.empty_like(A)
    for j in range(A.shape[0]):
        for k in range(A.shape[1]):
            unit[j, k] = A[j, k] * inverse[j]
    return unit, norms, inverse


@numba.njit(cache=True, inline="always")
def _answer_block(
    S, unit, norms, inverse, GU, GJ, obs_state, obs_student, obs_assessment, outcome, use_bias, offset, dlogit,
    dS, dA, dGU, dGJ, lo, hi,
):
    """Answers lo..hi−1: Bernoulli with logit D(s, a) + g_u + g_j (+ offset); their
    log-likelihood, gradients added into the d* arrays, ∂/∂logit into `dlogit`.

    With u = a/|a|: D = s·u − |a|, ∂D/∂s = u, ∂D/∂a = (s − (s·u) u)/|a| − u — the
    unit vectors, norms and inverse norms made once per evaluation, no division per
    answer (2.31 against 2.60 ms on MoFaCTS's 55k answers, best of 15 on one thread, when
    the loop divided by |a| per answer)."""
    has_offset = offset.shape[0] > 0
    d = S.shape[1]
    total = 0.0
    for r in range(lo, hi):
        i = obs_state[r]
        j = obs_assessment[r]
        su = 0.0
        for k in range(d):
            su += S[i, k] * unit[j, k]
        logit = su - norms[j]
        if use_bias:
            logit += GU[obs_student[r]] + GJ[j]
        if has_offset:
            logit += offset[r]
        if logit > 0.0:
            e = math.exp(-logit)
            softplus = logit + math.log1p(e)
            p = 1.0 / (1.0 + e)
        else:
            e = math.exp(logit)
            softplus = math.log1p(e)
            p = e / (1.0 + e)
        y = outcome[r]
        total += y * logit - softplus
        dl = y - p
        if has_offset:
            dlogit[r] = dl
        w = dl * inverse[j]
        for k in range(d):
            u = unit[j, k]
            dS[i, k] += dl * u
            dA[j, k] += w * (S[i, k] - su * u) - dl * u
        if use_bias:
            dGU[obs_student[r]] += dl
            dGJ[j] += dl
    return total


@numba.njit(cache=True)
def _answers_serial(S, A, GU, GJ, obs_state, obs_student, obs_assessment, outcome, use_bias, offset, dlogit,
                    dS, dA, dGU, dGJ):
    unit, norms, inverse = _unit_rows(A)
    return _answer_block(S, unit, norms, inverse, GU, GJ, obs_state, obs_student, obs_assessment, outcome, use_bias,
                         offset, dlogit, dS, dA, dGU, dGJ, 0, obs_state.shape[0])


@numba.njit(cache=True, parallel=True)
def _answers_parallel(S, A, GU, GJ, obs_state, obs_student, obs_assessment, outcome, use_bias, offset, dlogit,
                      dS, dA, dGU, dGJ, n_blocks):
    """`_answers_serial` over `n_blocks` contiguous blocks of answers, shared out among
    the threads, each into its own gradient buffers (answers of one state or assessment
    fall in several blocks), summed in block order afterwards."""
    unit, norms, inverse = _unit_rows(A)
    n_rows = obs_state.shape[0]
    totals = np.zeros(n_blocks)
    pS = np.zeros((n_blocks,) + dS.shape)
    pA = np.zeros((n_blocks,) + dA.shape)
    pU = np.zeros((n_blocks,) + dGU.shape)
    pJ = np.zeros((n_blocks,) + dGJ.shape)
    for b in prange(n_blocks):
        totals[b] = _answer_block(S, unit, norms, inverse, GU, GJ, obs_state, obs_student, obs_assessment, outcome, use_bias,
                                  offset, dlogit, pS[b], pA[b], pU[b], pJ[b],
                                  b * n_rows // n_blocks, (b + 1) * n_rows // n_blocks)
    total = 0.0
    for b in range(n_blocks):
        total += totals[b]
        dS += pS[b]
        dA += pA[b]
        dGU += pU[b]
        dGJ += pJ[b]
    return total


def likelihood_and_grad(
    S: np.ndarray,
    A: np.ndarray,
    L: np.ndarray,
    Q: np.ndarray,
    GU: np.ndarray,
    GJ: np.ndarray,
    sigma: float,
    obs_state: np.ndarray,
    obs_student: np.ndarray,
    obs_assessment: np.ndarray,
    outcome: np.ndarray,
    tr_from: np.ndarray,
    tr_to: np.ndarray,
    tr_lesson: np.ndarray,
    use_lessons: bool,
    use_prereq: bool,
    use_bias: bool,
    normalised: bool,
    dS: np.ndarray,
    dA: np.ndarray,
    dL: np.ndarray,
    dQ: np.ndarray,
    dGU: np.ndarray,
    dGJ: np.ndarray,
    offset: np.ndarray,
    dlogit: np.ndarray,
) -> tuple[float, float]:
    """Σ log p(outcome) + Σ log p(transition); gradients added into the d* arrays.

    `offset` (one per answer, or empty) is added to each logit (the history term) and
    `dlogit` (same length, or empty) receives ∂/∂logit of each answer, from which the
    caller forms the offset's own gradients. Returns (log-density, d/dσ).  Priors are
    added by the caller.  The answers run in blocks from `PARALLEL_MIN_ANSWERS` answers,
    on as many threads as the process's `shared_answer_loop` chooses (module docstring).
    """
    args = (S, A, GU, GJ, obs_state, obs_student, obs_assessment, outcome, use_bias, offset, dlogit, dS, dA, dGU, dGJ)
    if obs_state.shape[0] >= PARALLEL_MIN_ANSWERS and numba.get_num_threads() > 1:
        total = shared_answer_loop()(args)
    else:
        total = _answers_serial(*args)
    t_total, d_sigma = _transitions(S, L, Q, sigma, tr_from, tr_to, tr_lesson, use_lessons, use_prereq, normalised,
                                    dS, dL, dQ)
    return total + t_total, d_sigma


class AnswerLoop:
    """The blocked answer loop on all of numba's threads or on one, whichever is faster now.

    A race: `race` evaluations on one thread, then up to `race` on all threads — cut
    short when the first is `BUSY_FACTOR` times slower than the one-thread median or
    two are slower (on a busy machine one all-threads evaluation cost up to 400
    one-thread ones: 300 against 0.7 ms) — and the faster median wins for
    the next `hold` evaluations.  The hold doubles (up to `max_hold`) while the same
    count keeps winning and starts again from `hold` when the other one wins.  The load
    is the machine's, so one chooser serves every fit of a process (`SHARED`): the held-
    out check of d, the fit and its refits do not race afresh.  On an idle 2-core machine
    the races cost ~2 % (8 one-thread evaluations, each ~1.6× slower, per 200 or more).
    """

    def __init__(self, race: int = 8, hold: int = 200, max_hold: int = 12_800) -> None:
        self.race, self.hold, self.max_hold = race, hold, max_hold
        self.threads = numba.get_num_threads()
        self.choice = self.threads
        self._hold = hold
        self._times: dict[int, list[float]] = {1: [], self.threads: []}
        self._left = 0  # evaluations left on `choice` before the next race
        self.races = 0

    def _racing(self) -> int | None:
        """The thread count of the next race evaluation, or None (run the choice)."""
        if self._left > 0:
            return None
        return 1 if len(self._times[1]) < self.race else self.threads

    def _settled(self) -> bool:
        one, many = float(np.median(self._times[1])), self._times[self.threads]
        # a busy machine shows at once (~400x slower on 3 fits' threads over 2 cores), an
        # idle one within the race; two slower ones settle it between the two
        return (len(many) >= self.race or many[0] > BUSY_FACTOR * one
                or (len(many) >= 2 and sorted(many)[1] > one))

    def _decide(self) -> None:
        one, many = float(np.median(self._times[1])), float(np.median(self._times[self.threads]))
        best = self.threads if many < one else 1
        self._hold = min(2 * self._hold, self.max_hold) if best == self.choice and self.races else self.hold
        self.choice, self._left = best, self._hold
        self._times = {1: [], self.threads: []}
        self.races += 1

    @staticmethod
    def _timed(threads: int, args: tuple) -> tuple[float, float]:
        """The blocked loop on `threads` threads: (log-likelihood, seconds it took)."""
        before = numba.get_num_threads()
        t0 = time.perf_counter()
        try:
            numba.set_num_threads(threads)
            total = _answers_parallel(*args, ANSWER_BLOCKS)
        finally:
            numba.set_num_threads(before)
        return total, time.perf_counter() - t0

    def __call__(self, args: tuple) -> float:
        if self.threads == 1:
            return self._timed(1, args)[0]
        racing = self._racing()
        total, seconds = self._timed(self.choice if racing is None else racing, args)
        if racing is None:
            self._left -= 1
        else:
            self._times[racing].append(seconds)
            if racing != 1 and self._settled():
                self._decide()
        return total


#: the chooser every objective of this process shares (the load it measures is the machine's)
SHARED: AnswerLoop | None = None


def shared_answer_loop() -> AnswerLoop:
    """`SHARED`, made on first use (numba's thread count is read then)."""
    global SHARED
    if SHARED is None or SHARED.threads != numba.get_num_threads():
        SHARED = AnswerLoop()
    return SHARED


@numba.njit(cache=True)
def _transitions(S, L, Q, sigma, tr_from, tr_to, tr_lesson, use_lessons, use_prereq, normalised, dS, dL, dQ):
    """Σ log p(transition) and d/dσ; gradients added into dS, dL, dQ."""
    d = S.shape[1]
    total = 0.0
    # ---- transitions: s' ~ N(mu, σ²) restricted to s' > 0, mu = s + l·σ(D(s, q))
    q_norm = _row_norms(Q)
    d_sigma = 0.0
    log_sigma = math.log(sigma)
    const = -log_sigma - 0.5 * _LOG_2PI
    mu = np.empty(d)
    dmu = np.empty(d)
    for t in range(tr_from.shape[0]):
        a = tr_from[t]
        b = tr_to[t]
        m = tr_lesson[t]
        has = use_lessons and m >= 0
        w = 1.0
        qdot = 0.0
        if has and use_prereq:
            qn = q_norm[m]
            for k in range(d):
                qdot += S[a, k] * Q[m, k]
            dq = qdot / qn - qn
            w = 1.0 / (1.0 + math.exp(-dq)) if dq >= 0.0 else math.exp(dq) / (1.0 + math.exp(dq))
        for k in range(d):
            mu[k] = S[a, k] + (L[m, k] * w if has else 0.0)
        for k in range(d):
            z = (S[b, k] - mu[k]) / sigma
            total += -0.5 * z * z + const
            g = z / sigma  # d/dmu
            d_sigma += (z * z - 1.0) / sigma
            if normalised:
                rr = mu[k] / sigma
                lc, ratio = _log_phi_cdf_and_ratio(rr)
                total -= lc
                g -= ratio / sigma
                d_sigma += ratio * rr / sigma
            dmu[k] = g
            dS[b, k] -= z / sigma
            dS[a, k] += g
        if has:
            gdot = 0.0
            for k in range(d):
                dL[m, k] += dmu[k] * w
                gdot += dmu[k] * L[m, k]
            if use_prereq:
                qn = q_norm[m]
                c = gdot * w * (1.0 - w)
                qn3 = qn * qn * qn
                for k in range(d):
                    dS[a, k] += c * Q[m, k] / qn
                    dQ[m, k] += c * (S[a, k] / qn - qdot * Q[m, k] / qn3 - Q[m, k] / qn)
    return total, d_sigma
