"""Mean-field ADVI with minibatches of *students* (for cohorts of millions of interactions).

Why a scheme of its own
-----------------------
The model's states (initial state, later states or innovations) and the student
bias are *local*: each belongs to one student and enters only that student's terms.
The joint log density splits into a global part and one block per student,

    log p = log p(G) + Σ_u log p_u(L_u | G),
    log p_u = log p(s_u0) + log p(g_u) + Σ_t log p(s_u,t+1 | s_u,t, G) + Σ_obs log p(R | s, G),

and with a mean-field q the entropy splits the same way, H = H_G + Σ_u H_u. So the
ELBO is L = E_q log p(G) + H_G + Σ_u L_u with L_u = E_q log p_u + H_u, and for a batch
S of B students drawn uniformly without replacement,

    L̂ = E log p(G) + H_G + (N/B) Σ_{u∈S} L_u

has E[L̂] = L, and so does its gradient: the *whole* per-student block (prior of the
local variables, transitions, answers and local entropy) is scaled by N/B; the
global priors and entropy are not. A student outside the batch contributes nothing
and its variational parameters get no gradient that step; a student inside gets
(N/B)·∇L_u, whose expectation is ∇L_u, the exact full-ELBO gradient of its block.
Each student's trajectory is evaluated whole, so the non-centred recursion and the
centred transition potential stay coherent.

What this is not: `pm.Minibatch` + `total_size` on the observed rows. That scales the
likelihood only; PyMC's mean-field ADVI would still evaluate every local prior, the
whole entropy and (non-centred) the whole trajectory recursion at every step — the
cost of a step stays O(all states) — and a row minibatch breaks students' histories
apart. Here a step costs O(batch).

Optimiser: Adam. Global parameters take a step every iteration. A student's
parameters take a step when the student is in the batch ("lazy" Adam: its moment
estimates and bias-correction count advance only then), the usual treatment of
local variational parameters (stochastic variational inference); Adam is invariant
to the N/B factor on their gradient. The loss recorded is −L̂, an unbiased estimate
of the full −ELBO, on the same scale as a full-batch fit's loss. The stopping rule
(`inference.stopping.LossPlateau`) compares windows of whole epochs (the window is rounded
up to a multiple of the batches per epoch): the mean of −L̂ over one epoch counts
every student exactly once, which removes the batch-to-batch sampling noise.

Memory: the variational parameters are a few arrays of size (states × skills);
posterior draws are made one draw at a time from the fitted (μ, σ) and written into
the arrays `build_datatree` takes, so the largest array is draws × states × skills
(float64): choose `draws` accordingly (500k states × 2 skills × 100 draws = 0.8 GB).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytensor
import pytensor.tensor as pt
import xarray as xr

from bayes_lse.inference.stopping import LR_DECAY  # learning rates × this once, at the first plateau or 2/3 of the budget

from bayes_lse.model.terms import (
    learning_update_mean,
    prior_family,
    prior_scale,
    relevance_at,
    truncated_normal_from_innovation,
    truncated_normal_logp,
    unit_and_norm,
)

if TYPE_CHECKING:
    from bayes_lse.data.log import InteractionLog
    from bayes_lse.model.graph import IndexArrays, ModelSpec

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_HALF_LOG_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)
_ENTROPY_CONST = 0.5 * math.log(2.0 * math.pi * math.e)

BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


def _mode() -> Any:
    """The default mode without the ShapeOpt rewrites: on the batch graph (dynamic slices per
    step) they cost a third of the compile time and made a step ~2× slower, for the same values."""
    from pytensor.compile.mode import get_default_mode

    return get_default_mode().excluding("ShapeOpt")


def check_batch_size(batch_size: Any, n_students: int) -> int:
    """The number of students per batch, or a ValueError saying what is allowed."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(
            f"batch_size must be a whole number of students per batch (or None for full-batch ADVI), got {batch_size!r}"
        )
    if not 1 <= batch_size <= n_students:
        raise ValueError(
            f"batch_size must be between 1 and the number of students ({n_students}), got {batch_size}; "
            "use batch_size=None for full-batch ADVI"
        )
    return int(batch_size)


# ------------------------------------------------------------------- layout
@dataclass(frozen=True)
class StudentLayout:
    """Per-student ranges into the model's index arrays (CSR style), built once.

    Relies on the layout `IndexArrays` documents: student u's states are the flat
    indices offset[u] .. offset[u] + T_u, transitions are ordered by student then step,
    so transition (u, t → t+1) is row offset[u] − u + t, which is also the row of
    later state (u, t+1) in `later_state`.
    """

    n_students: int
    max_step: int
    last_step: np.ndarray  # T_u
    offset: np.ndarray  # flat index of state 0
    tr_start: np.ndarray  # row of transition (u, 0 → 1) = row of later state (u, 1)
    obs_order: np.ndarray  # observation rows sorted by student
    obs_start: np.ndarray  # (U + 1,) CSR pointer into obs_order
    obs_step: np.ndarray  # timestep of every observation
    obs_assessment: np.ndarray
    outcome: np.ndarray
    transition_lesson: np.ndarray

    @classmethod
    def from_index(cls, idx: IndexArrays) -> StudentLayout:
        offset = np.asarray(idx.initial_state, dtype=np.int64)
        U = len(offset)
        last = np.diff(np.append(offset, idx.n_states)) - 1
        tr_start = offset - np.arange(U, dtype=np.int64)
        n_tr = int(last.sum())
        if len(idx.transition_from) != n_tr:
            raise RuntimeError("transitions do not match the state layout (one per state after the first)")
        stu_of_tr = np.repeat(np.arange(U), last)
        step_of_tr = np.arange(n_tr) - np.repeat(tr_start, last)
        if not (
            np.array_equal(idx.transition_from, offset[stu_of_tr] + step_of_tr)
            and np.array_equal(idx.later_state, offset[stu_of_tr] + step_of_tr + 1)
        ):
            raise RuntimeError("transitions are not ordered by student then step as IndexArrays promises")
        order = np.argsort(idx.obs_student, kind="stable")
        start = np.zeros(U + 1, dtype=np.int64)
        np.cumsum(np.bincount(idx.obs_student, minlength=U), out=start[1:])
        return cls(
            n_students=U,
            max_step=int(last.max()) if U else 0,
            last_step=last.astype(np.int64),
            offset=offset,
            tr_start=tr_start,
            obs_order=order.astype(np.int64),
            obs_start=start,
            obs_step=(idx.obs_state - offset[idx.obs_student]).astype(np.int64),
            obs_assessment=np.asarray(idx.obs_assessment, dtype=np.int64),
            outcome=np.asarray(idx.outcome, dtype=np.float64),
            transition_lesson=np.asarray(idx.transition_lesson, dtype=np.int64),
        )

    def batch(self, students: np.ndarray) -> Batch:
        """The index arrays of the students in `students` (distinct codes), states step-major.

        Students are ordered by history length, longest first, so that the students
        with a state at step k are the first n_k of the batch; the batch's states are
        laid out step by step (all step-0 states, then all step-1 states, ...), and a
        state (rank r, step k) sits at position Σ_{j<k} n_j + r.
        """
        students = np.asarray(students, dtype=np.int64)
        T = self.last_step[students]
        order = np.argsort(-T, kind="stable")
        students, T = students[order], T[order]
        K = self.max_step
        counts = np.bincount(T, minlength=K + 1)[::-1].cumsum()[::-1]  # n_k = #(T ≥ k)
        state_off = np.zeros(K + 2, dtype=np.int64)
        np.cumsum(counts, out=state_off[1:])
        # transitions k → k+1, step-major: ranks 0..n_{k+1}−1 for each k
        n_next = counts[1:]
        tr_off = np.zeros(K + 1, dtype=np.int64)
        np.cumsum(n_next, out=tr_off[1:])
        tr_step = np.repeat(np.arange(K, dtype=np.int64), n_next)
        tr_rank = np.arange(len(tr_step), dtype=np.int64) - tr_off[tr_step]
        tr_rows = self.tr_start[students[tr_rank]] + tr_step
        # observations of the batch's students
        lo, hi = self.obs_start[students], self.obs_start[students + 1]
        n_obs = hi - lo
        obs_rank = np.repeat(np.arange(len(students), dtype=np.int64), n_obs)
        first = np.zeros(len(students), dtype=np.int64)
        np.cumsum(n_obs[:-1], out=first[1:])
        obs_rows = self.obs_order[np.repeat(lo - first, n_obs) + np.arange(int(n_obs.sum()), dtype=np.int64)]
        return Batch(
            students=students,
            counts=counts.astype(np.int64),
            tr_rows=tr_rows,
            tr_rank=tr_rank,
            tr_lesson=self.transition_lesson[tr_rows],
            tr_from=state_off[tr_step] + tr_rank,
            tr_to=state_off[tr_step + 1] + tr_rank,
            obs_pos=state_off[self.obs_step[obs_rows]] + obs_rank,
            obs_rank=obs_rank,
            obs_assessment=self.obs_assessment[obs_rows],
            outcome=self.outcome[obs_rows],
            scale=self.n_students / len(students),
        )

    def epochs(self, batch_size: int, rng: np.random.Generator):
        """Endless batches: a fresh random permutation of the students each epoch, cut
        into consecutive chunks (each chunk a uniform random subset of its size)."""
        while True:
            perm = rng.permutation(self.n_students)
            for i in range(0, self.n_students, batch_size):
                yield self.batch(perm[i : i + batch_size])


@dataclass(frozen=True)
class Batch:
    students: np.ndarray
    counts: np.ndarray
    tr_rows: np.ndarray
    tr_rank: np.ndarray
    tr_lesson: np.ndarray
    tr_from: np.ndarray
    tr_to: np.ndarray
    obs_pos: np.ndarray
    obs_rank: np.ndarray
    obs_assessment: np.ndarray
    outcome: np.ndarray
    scale: float

    def inputs(self, centered: bool) -> list[Any]:
        out = [self.counts, self.tr_lesson]
        if centered:
            out += [self.tr_from, self.tr_to]
        return [*out, self.obs_pos, self.obs_rank, self.obs_assessment, self.outcome, np.float64(self.scale)]


# ---------------------------------------------------------------- variables
@dataclass(frozen=True)
class _Var:
    name: str
    shape: tuple[int, ...]  # global: full shape; local: (rows, ...) with rows per student or transition
    positive: bool  # log-transformed (HalfNormal / HalfFlat)
    prior: str  # "halfnormal", "normal", "flat"
    scale: float = 1.0
    rows: str = ""  # local: "student" or "transition"


def _variables(spec: ModelSpec, log: InteractionLog, idx: IndexArrays, centered: bool):
    cfg, pri, d = spec.config, spec.config["priors"], spec.n_skills
    use_lessons = cfg["lessons"] and log.n_lessons > 0
    has_tr = len(idx.transition_from) > 0
    A, L, U, n_tr = log.n_assessments, log.n_lessons, log.n_students, len(idx.transition_from)

    def var(name: str, shape: tuple[int, ...], rows: str = "") -> _Var:
        """A parameter with its prior from `terms.PRIORS` (half-normals log-transformed)."""
        family = prior_family(name)
        return _Var(name, shape, family == "halfnormal", family, prior_scale(name, pri), rows)

    glob = [var("requirement", (A, d))]
    if use_lessons:
        glob.append(var("gain", (L, d)))
        if cfg["prerequisites"]:
            glob.append(var("prerequisite", (L, d)))
    if has_tr and cfg["learning_noise"] == "learned":
        glob.append(var("learning_noise", ()))
    if cfg["biases"]:
        glob.append(var("assessment_bias", (A,)))
    loc = [var("initial_state", (U, d), "student")]
    if cfg["biases"]:
        loc.append(var("student_bias", (U,), "student"))
    if has_tr:
        if centered:
            loc.append(_Var("later_state", (n_tr, d), True, "flat", 1.0, "transition"))
        else:
            loc.append(_Var("innovation", (n_tr, d), False, "normal", 1.0, "transition"))
    return glob, loc, use_lessons


def _prior_logp(v: _Var, y: Any) -> Any:
    """log prior density of the unconstrained value y, with the log-transform's Jacobian."""
    if v.positive:
        x = pt.exp(y)
        jac = pt.sum(y)
    else:
        x, jac = y, 0.0
    if v.prior == "halfnormal":
        lp = _HALF_LOG_2_OVER_PI - math.log(v.scale) - 0.5 * (x / v.scale) ** 2
    elif v.prior == "normal":
        lp = -_HALF_LOG_2PI - math.log(v.scale) - 0.5 * (x / v.scale) ** 2
    else:  # flat
        return jac
    return pt.sum(lp) + jac


class _BatchInputs:
    """Symbolic batch index arrays (see `Batch.inputs`)."""

    def __init__(self, centered: bool) -> None:
        self.counts = pt.lvector("counts")
        self.tr_lesson = pt.lvector("tr_lesson")
        self.tr_from = pt.lvector("tr_from") if centered else None
        self.tr_to = pt.lvector("tr_to") if centered else None
        self.obs_pos = pt.lvector("obs_pos")
        self.obs_rank = pt.lvector("obs_rank")
        self.obs_assessment = pt.lvector("obs_assessment")
        self.outcome = pt.dvector("outcome")
        self.scale = pt.dscalar("scale")

    def as_list(self) -> list[Any]:
        out = [self.counts, self.tr_lesson]
        if self.tr_from is not None:
            out += [self.tr_from, self.tr_to]
        return [*out, self.obs_pos, self.obs_rank, self.obs_assessment, self.outcome, self.scale]


# ------------------------------------------------------------------ the fit
class MinibatchADVI:
    """Mean-field Gaussian q over the unconstrained free variables of
    `spec.build_model(log, parametrization=...)`, fitted on minibatches of students."""

    def __init__(
        self,
        spec: ModelSpec,
        log: InteractionLog,
        idx: IndexArrays,
        *,
        parametrization: str = "auto",
        learning_rate: float = 0.02,
        mode: Any = None,
        local_beta2: float = BETA2,
    ) -> None:
        """`mode`: a PyTensor compile mode for the step, draw and check functions; the
        default (numba, without ShapeOpt) is the fast one, "FAST_COMPILE" suits tiny checks.
        `local_beta2`: Adam's β2 for the local parameters (0.99 instead of 0.999 changed the
        loss after 300 epochs by < 0.1% on 5,100 students)."""
        from bayes_lse.model.graph import NONCENTERED_MAX_STEPS

        self.layout = StudentLayout.from_index(idx)
        if parametrization == "auto":
            parametrization = "noncentered" if self.layout.max_step <= NONCENTERED_MAX_STEPS else "centered"
        if parametrization not in ("centered", "noncentered"):
            raise ValueError(f"parametrization must be 'auto', 'centered' or 'noncentered', got {parametrization!r}")
        self.parametrization = parametrization
        self.centered = parametrization == "centered"
        self.spec = spec
        self.n_skills = spec.n_skills
        noise = spec.config["learning_noise"]
        self.fixed_noise = None if noise == "learned" else float(noise)
        self.glob, self.loc, self.use_lessons = _variables(spec, log, idx, self.centered)
        self.learning_rate = pytensor.shared(np.float64(learning_rate), name="learning_rate")
        self.global_learning_rate = pytensor.shared(np.float64(learning_rate), name="global_learning_rate")
        f64 = np.float64

        def shared(name: str, shape: tuple[int, ...], dtype: Any = f64) -> Any:
            return pytensor.shared(np.zeros(shape, dtype=dtype), name=name)

        # μ and ρ (σ = softplus(ρ); ρ = 0 is PyMC's start) and Adam moments for each
        self.params = {
            v.name: {k: shared(f"{v.name}_{k}", v.shape) for k in ("mu", "rho", "m_mu", "v_mu", "m_rho", "v_rho")}
            for v in self.glob + self.loc
        }
        self.global_step = pytensor.shared(np.float64(0.0), name="global_step")
        self.student_steps = pytensor.shared(np.zeros(self.layout.n_students), name="student_steps")
        self.local_beta2 = float(local_beta2)
        self.mode = _mode() if mode is None else mode
        self._step_fn = None
        self._draw_fn = None
        self._logp_fn = None

    # ---------------------------------------------------------- the density
    def _density(self, g: dict[str, Any], loc: dict[str, Any], b: _BatchInputs) -> tuple[Any, Any, Any, dict]:
        """(log p(G), Σ_{u∈batch} log p_u, batch states step-major, constrained globals)
        at unconstrained values `g` (full global arrays) and `loc` (batch rows)."""
        logp_g = sum((_prior_logp(v, g[v.name]) for v in self.glob), pt.constant(0.0))
        logp_l = sum((_prior_logp(v, loc[v.name]) for v in self.loc), pt.constant(0.0))
        cons = {v.name: (pt.exp(g[v.name]) if v.positive else g[v.name]) for v in self.glob}
        noise = cons.get("learning_noise", self.fixed_noise)
        gain, prereq = cons.get("gain"), cons.get("prerequisite")
        prereq_unit = prereq_norm = None
        if prereq is not None:
            prereq_unit, prereq_norm = unit_and_norm(prereq)
        s0 = pt.exp(loc["initial_state"])

        def update_mean(s_from: Any, lesson: Any) -> Any:
            return learning_update_mean(s_from, lesson, gain, prereq_unit, prereq_norm)

        if "innovation" in loc:
            z = loc["innovation"]
            tr_off = pt.concatenate([pt.zeros((1,), dtype="int64"), pt.cumsum(b.counts[1:])])
            cur, blocks = s0, [s0]
            for k in range(self.layout.max_step):
                m, a = b.counts[k + 1], tr_off[k]
                mu = update_mean(cur[:m], b.tr_lesson[a : a + m])
                cur = truncated_normal_from_innovation(mu, noise, z[a : a + m])
                blocks.append(cur)
            states = pt.concatenate(blocks, axis=0)
        elif "later_state" in loc:
            states = pt.concatenate([s0, pt.exp(loc["later_state"])], axis=0)
            mu = update_mean(states[b.tr_from], b.tr_lesson)
            logp_l = logp_l + pt.sum(truncated_normal_logp(states[b.tr_to], mu, noise, True))
        else:
            states = s0
        req_unit, req_len = unit_and_norm(cons["requirement"])
        g_j = g["assessment_bias"] if "student_bias" in loc else None
        logit = relevance_at(states[b.obs_pos], req_unit, req_len, b.obs_assessment, g_j)
        if "student_bias" in loc:
            logit = logit + loc["student_bias"][b.obs_rank]
        # Bernoulli(σ(logit)) log-likelihood, y·logit − log(1 + e^logit)
        logp_l = logp_l + pt.sum(b.outcome * logit - pt.softplus(logit))
        return logp_g, logp_l, states, cons

    def _gather_rows(self, b: _BatchInputs, students: Any, tr_rows: Any) -> dict[str, Any]:
        return {v.name: (students if v.rows == "student" else tr_rows) for v in self.loc}

    # ------------------------------------------------------------ compiled
    def _compile_step(self) -> Any:
        b = _BatchInputs(self.centered)
        students, tr_rows, tr_rank = pt.lvector("students"), pt.lvector("tr_rows"), pt.lvector("tr_rank")
        rows = self._gather_rows(b, students, tr_rows)
        eps = {v.name: pt.tensor(f"eps_{v.name}", shape=(None,) * len(v.shape), dtype="float64") for v in self.glob + self.loc}
        P = self.params
        g_mu = {v.name: P[v.name]["mu"] for v in self.glob}
        g_rho = {v.name: P[v.name]["rho"] for v in self.glob}
        l_mu = {v.name: P[v.name]["mu"][rows[v.name]] for v in self.loc}
        l_rho = {v.name: P[v.name]["rho"][rows[v.name]] for v in self.loc}
        g_val = {n: g_mu[n] + pt.softplus(g_rho[n]) * eps[n] for n in g_mu}
        l_val = {n: l_mu[n] + pt.softplus(l_rho[n]) * eps[n] for n in l_mu}
        logp_g, logp_l, _, _ = self._density(g_val, l_val, b)
        ent_g = sum((pt.sum(pt.log(pt.softplus(r)) + _ENTROPY_CONST) for r in g_rho.values()), pt.constant(0.0))
        ent_l = sum((pt.sum(pt.log(pt.softplus(r)) + _ENTROPY_CONST) for r in l_rho.values()), pt.constant(0.0))
        loss = -(logp_g + ent_g + b.scale * (logp_l + ent_l))
        wrt_g = [x for n in g_mu for x in (g_mu[n], g_rho[n])]
        wrt_l = [x for n in l_mu for x in (l_mu[n], l_rho[n])]
        grads = pt.grad(loss, wrt_g + wrt_l)
        lr = self.learning_rate
        updates = []
        t = self.global_step + 1.0
        corr1, corr2 = 1.0 - BETA1**t, 1.0 - BETA2**t
        gi = iter(grads)
        lr_g = self.global_learning_rate
        for n in g_mu:
            for k in ("mu", "rho"):
                grad = next(gi)
                p, m, v = P[n][k], P[n][f"m_{k}"], P[n][f"v_{k}"]
                m_new = BETA1 * m + (1 - BETA1) * grad
                v_new = BETA2 * v + (1 - BETA2) * grad * grad
                updates += [(m, m_new), (v, v_new), (p, p - lr_g * (m_new / corr1) / (pt.sqrt(v_new / corr2) + ADAM_EPS))]
        updates.append((self.global_step, t))
        # lazy Adam for the batch's local rows: their own step count for the bias correction
        c_stu = self.student_steps[students] + 1.0
        for v in self.loc:
            c = c_stu if v.rows == "student" else c_stu[tr_rank]
            c = c.reshape((-1,) + (1,) * (len(v.shape) - 1))
            b2 = self.local_beta2
            c1, c2 = 1.0 - BETA1**c, 1.0 - b2**c
            r = rows[v.name]
            for k in ("mu", "rho"):
                grad = next(gi)
                p, m, vv = P[v.name][k], P[v.name][f"m_{k}"], P[v.name][f"v_{k}"]
                m_new = BETA1 * m[r] + (1 - BETA1) * grad
                v_new = b2 * vv[r] + (1 - b2) * grad * grad
                step = lr * (m_new / c1) / (pt.sqrt(v_new / c2) + ADAM_EPS)
                updates += [
                    (m, pt.set_subtensor(m[r], m_new)),
                    (vv, pt.set_subtensor(vv[r], v_new)),
                    (p, pt.set_subtensor(p[r], p[r] - step)),
                ]
        updates.append((self.student_steps, pt.set_subtensor(self.student_steps[students], c_stu)))
        inputs = [students, tr_rows, tr_rank, *b.as_list(), *[eps[v.name] for v in self.glob + self.loc]]
        return pytensor.function(inputs, loss, updates=updates, on_unused_input="ignore", mode=self.mode)

    def step(self, batch: Batch, rng: np.random.Generator) -> float:
        """One Adam step on batch `batch` with one Monte Carlo draw; returns −L̂ (before the step)."""
        if self._step_fn is None:
            self._step_fn = self._compile_step()
        eps = [rng.standard_normal(v.shape) for v in self.glob]
        for v in self.loc:
            n = len(batch.students) if v.rows == "student" else len(batch.tr_rows)
            eps.append(rng.standard_normal((n, *v.shape[1:])))
        return float(
            self._step_fn(batch.students, batch.tr_rows, batch.tr_rank, *batch.inputs(self.centered), *eps)
        )

    def logp_estimate(self, point: dict[str, np.ndarray], batch: Batch) -> tuple[float, dict[str, np.ndarray]]:
        """log p(G) + (N/B)·Σ_{u∈batch} log p_u at the unconstrained `point` (PyMC's value
        variables, names with `_log__` for log-transformed ones), and its gradient by variable
        (full arrays: zero rows for students outside the batch). For checking the estimator."""
        if self._logp_fn is None:
            b = _BatchInputs(self.centered)
            students, tr_rows = pt.lvector("students"), pt.lvector("tr_rows")
            rows = self._gather_rows(b, students, tr_rows)
            full = {v.name: pt.tensor(v.name, shape=(None,) * len(v.shape), dtype="float64") for v in self.glob + self.loc}
            logp_g, logp_l, _, _ = self._density(
                {v.name: full[v.name] for v in self.glob}, {v.name: full[v.name][rows[v.name]] for v in self.loc}, b
            )
            est = logp_g + b.scale * logp_l
            ins = [full[v.name] for v in self.glob + self.loc]
            self._logp_fn = pytensor.function(
                [students, tr_rows, *b.as_list(), *ins], [est, *pt.grad(est, ins)], on_unused_input="ignore", mode=self.mode
            )
        names = [v.name for v in self.glob + self.loc]
        vals = [np.asarray(point[f"{n}_log__" if v.positive else n], dtype=float) for n, v in zip(names, self.glob + self.loc, strict=True)]
        out = self._logp_fn(batch.students, batch.tr_rows, *batch.inputs(self.centered), *vals)
        return float(out[0]), dict(zip(names, (np.asarray(x) for x in out[1:]), strict=True))

    def set_point(self, point: dict[str, np.ndarray], sigma: float | None = None) -> None:
        """Set μ to an unconstrained point (PyMC value-variable names) and, optionally, every σ."""
        for v in self.glob + self.loc:
            key = f"{v.name}_log__" if v.positive else v.name
            self.params[v.name]["mu"].set_value(np.asarray(point[key], dtype=float).reshape(v.shape))
            if sigma is not None:
                self.params[v.name]["rho"].set_value(np.full(v.shape, math.log(math.expm1(sigma))))

    # --------------------------------------------------------------- draws
    def sample(self, draws: int, rng: np.random.Generator, idx: IndexArrays) -> xr.Dataset:
        """`draws` draws from q in the layout `build_datatree` takes: one chain;
        initial_state, later_state (flat later order) and the global variables."""
        L = self.layout
        everyone = L.batch(np.arange(L.n_students))
        if self._draw_fn is None:
            b = _BatchInputs(self.centered)
            vals = {v.name: pt.tensor(v.name, shape=(None,) * len(v.shape), dtype="float64") for v in self.glob + self.loc}
            _, _, states, cons = self._density({v.name: vals[v.name] for v in self.glob}, {v.name: vals[v.name] for v in self.loc}, b)
            outs = [states, *[cons[v.name] for v in self.glob]]
            self._draw_fn = pytensor.function(
                [*b.as_list(), *[vals[v.name] for v in self.glob + self.loc]], outs, on_unused_input="ignore", mode=self.mode
            )
        d = self.n_skills
        U, n_later = L.n_students, len(idx.later_state)
        out = {
            "initial_state": np.empty((1, draws, U, d)),
            **({"later_state": np.empty((1, draws, n_later, d))} if n_later else {}),
            **{v.name: np.empty((1, draws, *v.shape)) for v in self.glob},
        }
        if "student_bias" in self.params:
            out["student_bias"] = np.empty((1, draws, U))
        # positions in the step-major states of everyone's state 0 and of each later state
        rank_of = np.empty(U, dtype=np.int64)
        rank_of[everyone.students] = np.arange(U)
        later_pos = np.empty(n_later, dtype=np.int64)
        later_pos[everyone.tr_rows] = U + np.arange(len(everyone.tr_rows))
        mu = {v.name: self.params[v.name]["mu"].get_value() for v in self.glob + self.loc}
        sd = {v.name: np.logaddexp(0.0, self.params[v.name]["rho"].get_value()) for v in self.glob + self.loc}
        order = {v.name: (everyone.students if v.rows == "student" else everyone.tr_rows) for v in self.loc}
        for i in range(draws):
            g = [mu[v.name] + sd[v.name] * rng.standard_normal(v.shape) for v in self.glob]
            loc = [
                (mu[v.name] + sd[v.name] * rng.standard_normal(v.shape))[order[v.name]] for v in self.loc
            ]
            res = self._draw_fn(*everyone.inputs(self.centered), *g, *loc)
            states = res[0]
            out["initial_state"][0, i] = states[rank_of]
            if n_later:
                out["later_state"][0, i] = states[later_pos]
            for v, val in zip(self.glob, res[1:], strict=True):
                out[v.name][0, i] = val
            if "student_bias" in out:
                sb = loc[[v.name for v in self.loc].index("student_bias")]
                out["student_bias"][0, i, everyone.students] = sb
        dims = {
            "initial_state": ("student", "skill"),
            "later_state": ("later", "skill"),
            "requirement": ("assessment", "skill"),
            "gain": ("lesson", "skill"),
            "prerequisite": ("lesson", "skill"),
            "assessment_bias": ("assessment",),
            "student_bias": ("student",),
            "learning_noise": (),
        }
        return xr.Dataset({k: (("chain", "draw", *dims[k]), v) for k, v in out.items()})


# ------------------------------------------------------------------- entry
def fit_advi_minibatch(
    spec: ModelSpec, log: InteractionLog, idx: IndexArrays, cfg: dict[str, Any], progressbar: bool
) -> tuple[xr.Dataset, dict]:
    """Minibatch mean-field ADVI; returns (raw draws, {"optimization": loss history})
    like `inference.fit_advi`."""
    import warnings

    from bayes_lse.inference.stopping import TwoStagePlateau

    if cfg["kind"] != "meanfield":
        raise ValueError(f"minibatch ADVI (batch_size={cfg['batch_size']}) supports kind='meanfield' only, got {cfg['kind']!r}")
    if cfg.get("backend") is not None:
        raise ValueError(f"backend={cfg['backend']!r} is for full-batch ADVI; minibatch ADVI (batch_size=) runs on PyTensor's default linker")
    B = check_batch_size(cfg["batch_size"], log.n_students)
    advi = MinibatchADVI(spec, log, idx, parametrization=cfg["parametrization"], learning_rate=cfg["learning_rate"])
    n_batches = -(-advi.layout.n_students // B)
    window = n_batches * max(1, -(-int(cfg["window"]) // n_batches))  # whole epochs
    rng = np.random.default_rng(cfg["seed"])
    max_it = int(cfg["max_iterations"])
    max_seconds = None if cfg.get("max_seconds") is None else float(cfg["max_seconds"])
    hist = np.empty(max_it)
    batches = advi.layout.epochs(B, rng)
    hist[0] = advi.step(next(batches), rng)  # compiles
    # two stages: learning_rate until the loss levels off (or 2/3 of the budget), then
    # LR_DECAY × learning_rate until it levels off again (stopping.TwoStagePlateau)
    rule = TwoStagePlateau(window, cfg["tolerance"], max_it, max_seconds)
    n, stopped_by = 1, "max_iterations"
    report_every = max(n_batches, 500)
    t0 = time.perf_counter()
    for i in range(1, max_it):
        hist[i] = advi.step(next(batches), rng)
        n = i + 1
        if not np.isfinite(hist[i]):
            stopped_by = "non-finite loss"
            break
        action = rule.update(hist, n, i, time.perf_counter() - t0)
        if action == "decay":
            advi.learning_rate.set_value(LR_DECAY * float(cfg["learning_rate"]))
            advi.global_learning_rate.set_value(LR_DECAY * float(cfg["learning_rate"]))
        elif action == "converged":
            stopped_by = "stopping rule"
            break
        elif action == "max_seconds":
            stopped_by = "max_seconds"
            break
        if progressbar and n % report_every == 0:
            print(
                f"minibatch ADVI: iteration {n}, epoch {n / n_batches:.1f}, "
                f"mean loss over the last epoch {np.mean(hist[max(0, n - n_batches) : n]):.6g}",
                file=sys.stderr,
            )
    seconds = time.perf_counter() - t0
    raw = advi.sample(int(cfg["draws"]), rng, idx)
    hist = hist[:n]
    opt = xr.Dataset(
        {"loss": ("iteration", hist)},
        coords={"iteration": np.arange(1, n + 1)},
        attrs={
            "kind": cfg["kind"],
            "converged": int(rule.converged_at >= 0),
            "iterations": n,
            "converged_at": rule.converged_at,
            "rule": (
                f"relative change of the {window}-iteration ({window // n_batches}-epoch) mean loss < {cfg['tolerance']:g}, "
                f"after the learning rate was cut by {LR_DECAY:g}"
            ),
            "learning_rate_decay_at": rule.decay_at,
            "stopped_by": stopped_by,
            "batch_size": B,
            "batches_per_epoch": n_batches,
            "epochs": n / n_batches,
            "parametrization": advi.parametrization,
            "optimisation_seconds": seconds,
            "loss_estimate": "unbiased minibatch estimate of the full negative ELBO (local blocks scaled by N/B)",
        },
    )
    if rule.converged_at < 0:
        warnings.warn(
            f"minibatch ADVI did not meet its stopping rule (stopped by {stopped_by} after {n} iterations, "
            f"{n / n_batches:.1f} epochs); raise max_iterations/max_seconds or check the loss history",
            RuntimeWarning,
            stacklevel=3,
        )
    return raw, {"optimization": opt}


def run_minibatch_advi(
    spec: ModelSpec, log: InteractionLog, fit_cfg: dict[str, Any], progressbar: bool
) -> xr.DataTree:
    """`inference.run_fit` for method="advi" with a batch_size: no full PyMC model is built."""
    from bayes_lse.inference.assemble import build_datatree
    from bayes_lse.model.graph import IndexArrays

    check_batch_size(fit_cfg["batch_size"], log.n_students)
    idx = IndexArrays.from_log(log)
    t0 = time.perf_counter()
    raw, extra = fit_advi_minibatch(spec, log, idx, fit_cfg, progressbar)
    runtime = time.perf_counter() - t0
    return (build_datatree(spec.config, fit_cfg, "advi", log, idx, raw, extra, runtime))
