"""The centred LSE log-density and its gradient as one compiled pass over the data.

Why this exists: MAP on long histories (ASSISTments: 268k answers, each also a
lesson, up to 1,296 steps per student) uses the centred trajectory, where every
state is a free variable.  Through PyTensor the gradient of that graph is a
chain of scatter-adds (`AdvancedIncSubtensor`, numpy's `add.at`) over 268k rows:
26 ms per evaluation and ~700 MB.  The same density written as two loops — one
over answers, one over transitions — accumulates every gradient in place:
a few milliseconds, memory linear in the data, and no PyMC model to build.

It is the density of `LatentSkillEmbedding.build_model(parametrization="centered")`
term for term (priors with their constants, the Bernoulli likelihood, the
truncated-normal transition with or without its normaliser); `tests/test_map_kernel.py`
checks value and gradient against PyMC's compiled `model.logp()` for every variant.
Used by `inference.fit_map` for the centred form; NUTS and ADVI keep PyMC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .equations import NORM_EPS

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_SQRT1_2 = math.sqrt(0.5)


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


@numba.njit(cache=True)
def _likelihood_and_grad(
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
    added by the caller.
    """
    has_offset = offset.shape[0] > 0
    d = S.shape[1]
    total = 0.0
    # ---- answers: Bernoulli with logit D(s, a) + g_u + g_j
    a_norm = np.empty(A.shape[0])
    for j in range(A.shape[0]):
        acc = NORM_EPS
        for k in range(d):
            acc += A[j, k] * A[j, k]
        a_norm[j] = math.sqrt(acc)
    for r in range(obs_state.shape[0]):
        i = obs_state[r]
        j = obs_assessment[r]
        n = a_norm[j]
        dot = 0.0
        for k in range(d):
            dot += S[i, k] * A[j, k]
        logit = dot / n - n
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
        n3 = n * n * n
        for k in range(d):
            dS[i, k] += dl * A[j, k] / n
            dA[j, k] += dl * (S[i, k] / n - dot * A[j, k] / n3 - A[j, k] / n)
        if use_bias:
            dGU[obs_student[r]] += dl
            dGJ[j] += dl
    # ---- transitions: s' ~ N(mu, σ²) restricted to s' > 0, mu = s + l·σ(D(s, q))
    q_norm = np.empty(Q.shape[0])
    for m in range(Q.shape[0]):
        acc = NORM_EPS
        for k in range(d):
            acc += Q[m, k] * Q[m, k]
        q_norm[m] = math.sqrt(acc)
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


@dataclass(frozen=True)
class Block:
    name: str
    shape: tuple[int, ...]
    start: int
    positive: bool

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def stop(self) -> int:
        return self.start + self.size


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
    ) -> None:
        cfg, pri = model_config, model_config["priors"]
        d = int(cfg["n_skills"])
        self.d = d
        self.idx = idx
        self.pri = pri
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
            shapes += [("history_success", (), False), ("history_failure", (), False)]
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
        self.outcome = np.asarray(idx.outcome, dtype=np.float64)
        if self.use_history:
            self.log_counts = np.log1p(idx.history)
        self._none = np.zeros(0)
        self.is_initial = np.zeros(idx.n_states, dtype=bool)
        self.is_initial[idx.initial_state] = True
        self.n_students, self.n_assessments, self.n_lessons = n_students, n_assessments, n_lessons

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
        st[self.idx.initial_state] = c * pri["initial_state_scale"]
        fill = {
            "state": st,
            "requirement": c * pri["requirement_scale"],
            "gain": c * pri["gain_scale"],
            "prerequisite": c * pri["prerequisite_scale"],
            "learning_noise": c * pri["learning_noise_scale"],
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

    def logp_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """log p and ∇ log p in the optimiser's coordinates."""
        v = self.values(x)
        idx, pri, d = self.idx, self.pri, self.d
        S = v["state"]
        A = v["requirement"]
        L = v.get("gain", self._empty)
        Q = v.get("prerequisite", self._empty)
        GU = v.get("student_bias", self._empty1)
        GJ = v.get("assessment_bias", self._empty1)
        sigma = float(v["learning_noise"]) if self.learn_sigma else float(self.fixed_sigma)
        grad = {name: np.zeros(blk.shape) for name, blk in self.blocks.items()}
        dS, dA = grad["state"], grad["requirement"]
        dL = grad.get("gain", self._empty)
        dQ = grad.get("prerequisite", self._empty)
        dGU = grad.get("student_bias", self._empty1)
        dGJ = grad.get("assessment_bias", self._empty1)
        if self.use_history:
            g_s, g_f = float(v["history_success"]), float(v["history_failure"])
            offset = g_s * self.log_counts[:, 0] + g_f * self.log_counts[:, 1]
            dlogit = np.zeros(len(offset))
        else:
            offset = dlogit = self._none
        lp, d_sigma = _likelihood_and_grad(
            S, A, L, Q, GU, GJ, sigma,
            idx.obs_state, idx.obs_student, idx.obs_assessment, self.outcome,
            idx.transition_from, idx.transition_to, idx.transition_lesson,
            self.use_lessons, self.use_prereq, self.use_bias, self.normalised,
            dS, dA, dL, dQ, dGU, dGJ, offset, dlogit,
        )  # fmt: skip
        if self.use_history:
            sd = pri["history_sd"]
            for name, g_val, col in (("history_success", g_s, 0), ("history_failure", g_f, 1)):
                p, g = self._normal(np.atleast_1d(g_val), sd)
                lp += p
                grad[name] = np.asarray(float(g[0]) + float(dlogit @ self.log_counts[:, col]))
        # priors (with their constants, as PyMC's logp)
        s0 = S[self.is_initial]
        p, g = self._half_normal(s0, pri["initial_state_scale"])
        lp += p
        dS[self.is_initial] += g
        for name, key in (("requirement", "requirement_scale"), ("gain", "gain_scale"), ("prerequisite", "prerequisite_scale")):
            if name in v:
                p, g = self._half_normal(v[name], pri[key])
                lp += p
                grad[name] += g
        if self.use_bias:
            for name, key in (("student_bias", "student_bias_sd"), ("assessment_bias", "assessment_bias_sd")):
                p, g = self._normal(v[name], pri[key])
                lp += p
                grad[name] += g
        if self.learn_sigma:
            p, g = self._half_normal(np.atleast_1d(sigma), pri["learning_noise_scale"])
            lp += p
            grad["learning_noise"] = np.asarray(float(g[0]) + d_sigma)
        flat = np.empty(self.size)
        for name, blk in self.blocks.items():
            gv = np.asarray(grad[name]).ravel()
            if blk.positive and self.log_space:
                gv = gv * np.asarray(v[name]).ravel()  # chain rule through exp
                if self.jacobian:
                    gv = gv + 1.0
            flat[blk.start : blk.stop] = gv
        if self.jacobian:
            lp += float(x[self.positive].sum())
        return float(lp), flat

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(−log p, −∇log p): what a minimiser wants.

        A line-search probe far out in log space overflows exp(); the result is then
        non-finite, which the optimiser's wrapper (inference._multistart) turns into a
        rejected step, so the overflow is not worth a warning."""
        with np.errstate(over="ignore", invalid="ignore"):
            lp, g = self.logp_and_grad(x)
        return -lp, -g
