"""The centred LSE log-density and its gradient as one compiled pass over the data.

Why this exists: MAP on long histories (ASSISTments: 268k answers, each also a
lesson, up to 1,296 steps per student) uses the centred trajectory, where every
state is a free variable.  Through PyTensor the gradient of that graph is a
chain of scatter-adds (`AdvancedIncSubtensor`, numpy's `add.at`) over 268k rows:
26 ms per evaluation and ~700 MB.  The same density written as two loops — one
over answers, one over transitions — accumulates every gradient in place:
a few milliseconds, memory linear in the data, and no PyMC model to build.

Two backends compute the same terms: `"numpy"` (default; gathers and `bincount`
scatter-adds) and `"numba"` (the loops compiled, `map_kernel_numba.py`; ~1.5-2x
faster per evaluation on ASSISTments, but numba's import and first call take
~105 MB of resident memory, which MAP on ASSISTments cannot afford within issue 7's
400 MB).  They agree to rounding (`tests/inference/test_map_kernel.py`).

It is the density of `LatentSkillEmbedding.build_model(parametrization="centered")`
term for term (priors with their constants, the Bernoulli likelihood, the
truncated-normal transition with or without its normaliser); `tests/inference/test_map_kernel.py`
checks value and gradient against PyMC's compiled `model.logp()` for every variant.
Used by `inference.fit_map` for the centred form; NUTS and ADVI keep PyMC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, log_ndtr

from bayes_lse.core.config import skills_of
from bayes_lse.model.graph import history_feature_data, tags_on
from bayes_lse.model.terms import (
    NORM_EPS,
    history_coefficients,
    prior_family,
    prior_location,
    prior_scale,
    tag_mean,
)

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def _add_rows(out: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> None:
    """out[rows[i]] += weights[i] by bincount over the rows' range only: a block of
    answers or transitions touches a narrow band of states (rows are grouped by student)."""
    if rows.shape[0] == 0:
        return
    lo, hi = int(rows.min()), int(rows.max()) + 1
    out[lo:hi] += np.bincount(rows - lo, weights=weights, minlength=hi - lo)


def _likelihood_and_grad_numpy(
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
    added by the caller.  Vectorised numpy: gathers per row, scatter-adds by bincount;
    the same terms as the numba loop of `map_kernel_numba`, summed in another order.
    """
    total = 0.0
    a_norm = np.sqrt(np.einsum("jk,jk->j", A, A) + NORM_EPS)
    q_norm = np.sqrt(np.einsum("jk,jk->j", Q, Q) + NORM_EPS)
    has_offset = offset.shape[0] > 0
    # in blocks of rows: the per-row temporaries (~15 arrays) stay a few MB (issue 7)
    for lo in range(0, obs_state.shape[0], _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        total += _answers(
            S, A, GU, GJ, a_norm, obs_state[sl], obs_student[sl], obs_assessment[sl], outcome[sl], use_bias,
            offset[sl] if has_offset else offset, dlogit[sl] if has_offset else dlogit, dS, dA, dGU, dGJ,
        )  # fmt: skip
    d_sigma = 0.0
    for lo in range(0, tr_from.shape[0], _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        t, ds = _transitions(
            S, L, Q, sigma, q_norm, tr_from[sl], tr_to[sl], tr_lesson[sl], use_lessons, use_prereq, normalised, dS, dL, dQ
        )
        total += t
        d_sigma += ds
    return total, d_sigma


#: rows per block in the numpy backend
_CHUNK = 32768


def _answers(
    S: np.ndarray,
    A: np.ndarray,
    GU: np.ndarray,
    GJ: np.ndarray,
    a_norm: np.ndarray,
    obs_state: np.ndarray,
    obs_student: np.ndarray,
    obs_assessment: np.ndarray,
    outcome: np.ndarray,
    use_bias: bool,
    offset: np.ndarray,
    dlogit: np.ndarray,
    dS: np.ndarray,
    dA: np.ndarray,
    dGU: np.ndarray,
    dGJ: np.ndarray,
) -> float:
    """Bernoulli terms of a block of answers; gradients added into dS, dA, dGU, dGJ."""
    d = S.shape[1]
    total = 0.0
    # ---- answers
    n = a_norm[obs_assessment]
    Sg = S[obs_state]
    Ag = A[obs_assessment]
    dot = np.einsum("rk,rk->r", Sg, Ag)
    logit = dot / n
    logit -= n
    if use_bias:
        logit += GU[obs_student]
        logit += GJ[obs_assessment]
    if offset.shape[0]:
        logit += offset
    total += float(np.dot(outcome, logit)) - float(np.logaddexp(0.0, logit).sum())
    dl = expit(logit)
    np.subtract(outcome, dl, out=dl)
    del logit
    if offset.shape[0]:
        dlogit[:] = dl
    dl_n = dl / n
    c = dot / n
    c /= n
    c += 1.0
    c *= dl_n  # dl·(dot/n³ + 1/n)
    for k in range(d):
        _add_rows(dS[:, k], obs_state, dl_n * Ag[:, k])
        _add_rows(dA[:, k], obs_assessment, dl_n * Sg[:, k] - c * Ag[:, k])
    del Sg, Ag, dot, n, dl_n, c
    if use_bias:
        _add_rows(dGU, obs_student, dl)
        _add_rows(dGJ, obs_assessment, dl)
    return total


def _transitions(
    S: np.ndarray,
    L: np.ndarray,
    Q: np.ndarray,
    sigma: float,
    q_norm: np.ndarray,
    tr_from: np.ndarray,
    tr_to: np.ndarray,
    tr_lesson: np.ndarray,
    use_lessons: bool,
    use_prereq: bool,
    normalised: bool,
    dS: np.ndarray,
    dL: np.ndarray,
    dQ: np.ndarray,
) -> tuple[float, float]:
    """Truncated-normal transition terms of a block of transitions: (log-density, d/dσ)."""
    d = S.shape[1]
    total = 0.0
    # ---- transitions
    T = tr_from.shape[0]
    if T == 0:
        return total, 0.0
    Sa = S[tr_from]
    has = (tr_lesson >= 0) if use_lessons else np.zeros(T, dtype=bool)
    any_lesson = bool(has.any())
    if any_lesson:
        m = np.where(has, tr_lesson, 0)
        Lm = L[m]
        if use_prereq:
            Qm = Q[m]
            qn = q_norm[m]
            qdot = np.einsum("rk,rk->r", Sa, Qm)
            w = expit(qdot / qn - qn)
        else:
            w = np.ones(T)
        w *= has
        mu = Lm * w[:, None]
        mu += Sa
    else:
        mu = Sa.copy()
    z = S[tr_to]
    z -= mu
    z /= sigma
    zz = float(np.vdot(z, z))
    total += -0.5 * zz + T * d * (-math.log(sigma) - 0.5 * _LOG_2PI)
    d_sigma = (zz - T * d) / sigma
    g = z / sigma
    if normalised:
        rr = mu / sigma
        lc = log_ndtr(rr)
        total -= float(lc.sum())
        with np.errstate(over="ignore"):
            ratio = np.exp(-0.5 * rr * rr - 0.5 * _LOG_2PI - lc)
        tail = rr <= -37.0
        if tail.any():
            u = 1.0 / (rr[tail] * rr[tail])
            ratio[tail] = -rr[tail] / (1.0 - u * (1.0 - u * (3.0 - u * (15.0 - 105.0 * u))))
        g -= ratio / sigma
        d_sigma += float(np.vdot(ratio, rr)) / sigma
        del rr, lc, ratio
    del mu
    for k in range(d):
        _add_rows(dS[:, k], tr_to, -(z[:, k] / sigma))
        _add_rows(dS[:, k], tr_from, g[:, k])
    del z
    if any_lesson:
        gdot = np.einsum("rk,rk->r", g, Lm)
        for k in range(d):
            _add_rows(dL[:, k], m, g[:, k] * w)
        if use_prereq:
            cc = gdot * w
            cc *= 1.0 - w
            cc /= qn  # c/qn
            for k in range(d):
                _add_rows(dS[:, k], tr_from, cc * Qm[:, k])
                _add_rows(dQ[:, k], m, cc * (Sa[:, k] - qdot * Qm[:, k] / (qn * qn) - Qm[:, k]))
    return total, d_sigma


@dataclass(frozen=True)
class Block:
    """One named block of the flat parameter vector: x[start:stop] reshaped to `shape`."""

    name: str
    shape: tuple[int, ...]
    start: int
    positive: bool
    #: made once (`size` and `stop` were read ~13 times per evaluation: 0.1 s of a 3 s MoFaCTS fit as np.prod)
    size: int = field(init=False)
    stop: int = field(init=False)

    def __post_init__(self) -> None:
        size = int(np.prod(self.shape, dtype=np.int64))
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "stop", self.start + size)


class CentredObjective:
    """−log p and −∇log p of the centred LSE over one flat parameter vector.

    The vector holds, in order: every state in flat state order (so states need no
    gather), requirements, gains, prerequisites, student and assessment biases, and
    σ_L when it is learned.  `log_space=True` optimises log-values of the positive
    blocks (no Jacobian unless `jacobian=True`, as PyMC's `logp(jacobian=...)`);
    `log_space=False` leaves them raw, for L-BFGS-B box constraints at zero.
    """

    def __init__(
        self,
        idx: Any,
        model_config: dict[str, Any],
        *,
        n_students: int,
        n_assessments: int,
        n_lessons: int,
        normalised: bool = False,
        log_space: bool = True,
        jacobian: bool = False,
        backend: str = "numpy",
    ) -> None:
        if backend == "numpy":
            self._kernel = _likelihood_and_grad_numpy
        elif backend == "numba":
            from bayes_lse.inference.map_kernel_numba import likelihood_and_grad

            self._kernel = likelihood_and_grad
        else:
            raise ValueError(f"backend must be 'numpy' or 'numba', got {backend!r}")
        self.backend = backend
        cfg, pri = model_config, model_config["priors"]
        d = skills_of(cfg)
        self.d = d
        self.idx = idx
        self.pri = pri
        #: hyperparameter values of a hierarchical model (scales, μ_g) that replace the
        #: config's prior scales; set between rounds by inference.empirical_bayes
        self.hyper: dict[str, float] = {}
        self.use_lessons = bool(cfg["lessons"]) and n_lessons > 0
        self.use_prereq = self.use_lessons and bool(cfg["prerequisites"])
        self.use_bias = bool(cfg["biases"])
        self.use_history = bool(cfg.get("history", False))
        self.learn_sigma = cfg["learning_noise"] == "learned" and len(idx.transition_from) > 0
        self.fixed_sigma = None if self.learn_sigma else float(cfg["learning_noise"]) if cfg["learning_noise"] != "learned" else 1.0
        self.normalised = normalised
        self.log_space = log_space
        self.jacobian = jacobian and log_space
        shapes = [("state", (idx.n_states, d), True), ("requirement", (n_assessments, d), True)]
        if self.use_lessons:
            shapes.append(("gain", (n_lessons, d), True))
            if self.use_prereq:
                shapes.append(("prerequisite", (n_lessons, d), True))
        if self.use_bias:
            shapes += [("student_bias", (n_students,), False), ("assessment_bias", (n_assessments,), False)]
        if self.learn_sigma:
            shapes.append(("learning_noise", (), True))
        if self.use_history:
            self.history_names = history_coefficients(cfg)
            shapes += [(name, (), False) for name in self.history_names]
        #: the tag effects' (assessment × key) matrix when the model has them (`graph.tags_on`)
        self.tags = idx.tag_matrix.tocsr() if tags_on(cfg, idx) else None
        if self.tags is not None:
            shapes.append(("tag_bias", (self.tags.shape[1],), False))
        self.blocks: dict[str, Block] = {}
        start = 0
        for name, shape, pos in shapes:
            blk = Block(name, shape, start, pos)
            self.blocks[name] = blk
            start = blk.stop
        self.size = start
        self.positive = np.zeros(self.size, dtype=bool)
        for blk in self.blocks.values():
            if blk.positive:
                self.positive[blk.start : blk.stop] = True
        self._empty = np.zeros((0, d))
        self._empty1 = np.zeros(0)
        # numba's loop wants floats; numpy takes the int8 0/1 as they are (2 MB less on ASSISTments)
        self.outcome = np.asarray(idx.outcome, dtype=np.float64) if backend == "numba" else np.asarray(idx.outcome)
        if self.use_history:
            # the features this model's coefficients multiply, in their order (`history_feature_data`)
            self.history_features = np.column_stack(list(history_feature_data(idx.history, cfg).values()))
        self._none = np.zeros(0)
        #: the students' first states (a gather of ~500 rows, not a mask over every state)
        self.initial_state = np.asarray(idx.initial_state, dtype=np.int64)
        self.n_students, self.n_assessments, self.n_lessons = n_students, n_assessments, n_lessons
        self._work: np.ndarray | None = None  # see _values_buffer (not thread-safe)

    # ------------------------------------------------------------------ layout
    def values(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The model's own values (positive blocks exponentiated in log space)."""
        out = {}
        for name, blk in self.blocks.items():
            v = x[blk.start : blk.stop]
            if blk.positive and self.log_space:
                v = np.exp(v)
            out[name] = v.reshape(blk.shape)
        return out

    def named_point(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Values under the PyMC model's variable names (initial_state, later_state, ...)."""
        v = self.values(x)
        s = v.pop("state")
        v["initial_state"] = s[self.idx.initial_state]
        if len(self.idx.later_state):
            v["later_state"] = s[self.idx.later_state]
        return v

    def initial_point(self) -> np.ndarray:
        """Prior-centred starting values (half-normal means, later states 1, biases 0)."""
        pri = self.pri
        c = math.sqrt(2.0 / math.pi)
        x = np.zeros(self.size)
        st = np.ones((self.idx.n_states, self.d))
        st[self.idx.initial_state] = c * prior_scale("initial_state", pri)
        fill = {
            "state": st,
            **{name: c * prior_scale(name, pri) for name in ("requirement", "gain", "prerequisite", "learning_noise")},
        }
        for name, blk in self.blocks.items():
            if name in fill:
                v = np.broadcast_to(np.asarray(fill[name], dtype=float), blk.shape).ravel()
                x[blk.start : blk.stop] = np.log(v) if self.log_space else v
        return x

    # --------------------------------------------------------------- density
    @staticmethod
    def _half_normal(v: np.ndarray, scale: float) -> tuple[float, np.ndarray]:
        lp = v.size * (_LOG_2 - 0.5 * _LOG_2PI - math.log(scale)) - 0.5 * float(np.vdot(v, v)) / scale**2
        return lp, -v / scale**2

    @staticmethod
    def _normal(v: np.ndarray, sd: float) -> tuple[float, np.ndarray]:
        lp = v.size * (-0.5 * _LOG_2PI - math.log(sd)) - 0.5 * float(np.vdot(v, v)) / sd**2
        return lp, -v / sd**2

    @classmethod
    def _prior(cls, name: str, v: np.ndarray, pri: dict[str, Any]) -> tuple[float, np.ndarray]:
        """`name`'s prior (family and scale from `terms.PRIORS`): log-density and gradient."""
        kernel = cls._half_normal if prior_family(name) == "halfnormal" else cls._normal
        return kernel(v, prior_scale(name, pri))

    def _values_buffer(self) -> np.ndarray:
        """The model's values (positive blocks exponentiated), made once and reused.

        A fresh exp() of the positive blocks, a zeroed gradient per block and their
        products on every call were ~4 vectors of garbage per evaluation (5 MB each at
        ASSISTments' 667k parameters), part of the optimiser's memory peak (issue 7);
        now the gradient is accumulated in the one array returned."""
        if self._work is None:
            self._work = np.empty(self.size)
        return self._work

    def logp_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """log p and ∇ log p in the optimiser's coordinates (the gradient is a new array)."""
        val_buf = self._values_buffer()
        grad_buf = np.zeros(self.size)
        v: dict[str, np.ndarray] = {}
        grad: dict[str, np.ndarray] = {}
        for name, blk in self.blocks.items():
            sl = slice(blk.start, blk.stop)
            if blk.positive and self.log_space:
                np.exp(x[sl], out=val_buf[sl])
                v[name] = val_buf[sl].reshape(blk.shape)
            else:
                v[name] = x[sl].reshape(blk.shape)
            grad[name] = grad_buf[sl].reshape(blk.shape)
        idx, pri = self.idx, self.pri
        S = v["state"]
        A = v["requirement"]
        L = v.get("gain", self._empty)
        Q = v.get("prerequisite", self._empty)
        GU = v.get("student_bias", self._empty1)
        GJ = v.get("assessment_bias", self._empty1)
        sigma = float(v["learning_noise"]) if self.learn_sigma else float(self.fixed_sigma)
        if not sigma > 0:
            # a learned σ_L at its bound 0 (or exp() underflowing): the transition density is
            # degenerate there.  −inf is a rejected step for the optimiser's wrapper; before,
            # MoFaCTS folds fitted with learning_noise="learned" died with ZeroDivisionError
            return -math.inf, grad_buf
        dS, dA = grad["state"], grad["requirement"]
        dL = grad.get("gain", self._empty)
        dQ = grad.get("prerequisite", self._empty)
        dGU = grad.get("student_bias", self._empty1)
        dGJ = grad.get("assessment_bias", self._empty1)
        if self.use_history:
            coefs = [float(v[name]) for name in self.history_names]
            offset = self.history_features @ np.asarray(coefs)
            dlogit = np.zeros(len(offset))
        else:
            offset = dlogit = self._none
        lp, d_sigma = self._kernel(
            S, A, L, Q, GU, GJ, sigma,
            idx.obs_state, idx.obs_student, idx.obs_assessment, self.outcome,
            idx.transition_from, idx.transition_to, idx.transition_lesson,
            self.use_lessons, self.use_prereq, self.use_bias, self.normalised,
            dS, dA, dL, dQ, dGU, dGJ, offset, dlogit,
        )  # fmt: skip
        if self.use_history:
            d_coefs = self.history_features.T @ dlogit  # one pass over the answers for every coefficient
            for name, g_val, d_coef in zip(self.history_names, coefs, d_coefs, strict=True):
                p, g = self._prior(name, np.atleast_1d(g_val), pri)
                lp += p
                grad[name][...] = float(g[0]) + float(d_coef)
        # priors (with their constants, as PyMC's logp)
        s0 = S[self.initial_state]
        p, g = self._prior("initial_state", s0, pri)
        lp += p
        dS[self.initial_state] += g
        for name in ("requirement", "gain", "prerequisite"):
            if name in v:
                lp += self._prior_into(name, v[name], pri, grad[name], self.hyper)
        if self.use_bias:
            lp += self._prior_into("student_bias", v["student_bias"], pri, grad["student_bias"], self.hyper)
            if self.tags is None:
                lp += self._prior_into("assessment_bias", v["assessment_bias"], pri, grad["assessment_bias"], self.hyper)
            else:  # g_j ~ N(μ + tag mean_j, σ_g²), each tag effect ~ N(0, σ_τ²) (`terms.tag_mean`)
                tau = v["tag_bias"]
                sd = float(prior_scale("assessment_bias", pri, self.hyper))
                r = v["assessment_bias"] - float(prior_location("assessment_bias", self.hyper)) - tag_mean(self.tags, tau)
                lp += self._normal_into(r, sd, grad["assessment_bias"])  # N(r | 0, σ_g²): ∂/∂g_j = −r_j/σ_g²
                grad["tag_bias"] += self.tags.T @ r / sd**2  # and ∂/∂τ through the tag mean
                lp += self._prior_into("tag_bias", tau, pri, grad["tag_bias"], self.hyper)
        if self.learn_sigma:
            p, g = self._prior("learning_noise", np.atleast_1d(sigma), pri)
            lp += p
            grad["learning_noise"][...] = float(g[0]) + d_sigma
        flat = grad_buf
        if self.log_space:
            for blk in self.blocks.values():
                if blk.positive:
                    sl = slice(blk.start, blk.stop)
                    flat[sl] *= val_buf[sl]  # chain rule through exp
                    if self.jacobian:
                        flat[sl] += 1.0
        if self.jacobian:
            lp += float(x[self.positive].sum())
        return float(lp), flat

    @staticmethod
    def _half_normal_into(v: np.ndarray, scale: float, grad: np.ndarray) -> float:
        """Half-normal log-density of `v`; its gradient is added into `grad` in place."""
        lp = v.size * (_LOG_2 - 0.5 * _LOG_2PI - math.log(scale)) - 0.5 * float(np.vdot(v, v)) / scale**2
        grad -= v / scale**2
        return lp

    @staticmethod
    def _normal_into(v: np.ndarray, sd: float, grad: np.ndarray, loc: float = 0.0) -> float:
        """Normal(loc, sd) log-density of `v`; its gradient is added into `grad` in place."""
        if loc:
            v = v - loc
        lp = v.size * (-0.5 * _LOG_2PI - math.log(sd)) - 0.5 * float(np.vdot(v, v)) / sd**2
        grad -= v / sd**2
        return lp

    @classmethod
    def _prior_into(
        cls, name: str, v: np.ndarray, pri: dict[str, Any], grad: np.ndarray, hyper: dict[str, float] | None = None
    ) -> float:
        """`name`'s prior log-density (from `terms.PRIORS`; scale and location from
        `hyper` where a hierarchical model's empirical-Bayes round sets them); its
        gradient added into `grad`."""
        scale = float(prior_scale(name, pri, hyper))
        if prior_family(name) == "halfnormal":
            return cls._half_normal_into(v, scale, grad)
        return cls._normal_into(v, scale, grad, float(prior_location(name, hyper)))

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(−log p, −∇log p): what a minimiser wants.

        A line-search probe far out in log space overflows exp(); the result is then
        non-finite, which the optimiser's wrapper (inference._multistart) turns into a
        rejected step, so the overflow is not worth a warning."""
        with np.errstate(over="ignore", invalid="ignore"):
            lp, g = self.logp_and_grad(x)
        np.negative(g, out=g)  # in place: g is this call's own array
        return -lp, g
