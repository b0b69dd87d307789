"""What `method="map"` means for the hierarchical model: empirical Bayes.

The joint mode of a hierarchical model is degenerate: in the centred form the density
grows without bound as a prior scale σ → 0 with its values at the population mean
(every scale collapses), and in the non-centred form (θ = σ·z) the mode over (σ, z)
turns the Gaussian prior of a group of J values into the penalty |θ|/τ on the group's
norm, whose effective variance τ·|θ| grows like √J — on ASSISTments' 17k items no
shrinkage at all.  Neither is an estimate of the population.

So MAP of a hierarchical config maximises, jointly over the parameters θ and the
hyperparameters (σ_u, σ_g, μ_g), the log posterior plus the Laplace correction of the
marginal likelihood of the hyperparameters::

    log p(y | θ) + log p(θ | σ, μ) + log p(σ, μ) − ½ Σ_j log(F_j + 1/σ²)

where F_j = Σ p(1−p) over value j's answers is the likelihood's curvature (Gauss–Newton,
exact for a bias, which enters the logit with coefficient 1), held fixed during one
optimisation and recomputed at its optimum for the next (`ROUNDS` optimisations in
all, the second warm-started).  At the optimum the scale satisfies
σ² = mean((θ̂ − μ)² + 1/(F_j + 1/σ²)) — the fixed point of the Laplace-EM (PQL)
estimate of a random-effects variance — reached in one optimisation instead of the
10–30 EM rounds that alternating would take (measured: after 10 rounds on a simulated
cohort the scales still moved 5 % per round).  The correction term is what stops the
collapse: a value the data do not inform keeps its share 1/(F_j + 1/σ²) ≈ σ².

What MAP learns this way: the two biases' scales and the assessment biases' mean.
What it leaves at the hyperprior's scale (the config's ``requirement_scale``,
``gain_scale``, ``prerequisite_scale``; ADVI and NUTS learn them):
- the requirement scale, which the data do not identify: the pass logit depends on a_j
  only through its direction â_j and g_j − |a_j| (D(s, a) = s·â − |a|), so an EB step
  trades |a_j| against the bias without limit — measured on a simulated cohort (d = 2,
  true σ_a 2.04): σ_a 1.0 → 0.0004 in 10 EM rounds while σ_g and |μ_g| grew;
- the gains' and prerequisites', whose curvature passes through every later state of a
  trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bayes_lse.model.graph import IndexArrays
from bayes_lse.model.terms import (
    HISTORY_COEFFICIENTS,
    HYPER_OF,
    history_logit,
    hyperparameters_used,
    prior_location,
    prior_scale,
    relevance,
    sigmoid,
)

#: the hyperparameters MAP learns (module doc); the rest stay at their hyperprior's scale
LEARNED = ("sigma_student_bias", "sigma_assessment_bias", "mu_assessment_bias")
#: joint optimisations: the first with the curvature at the starting point, the last
#: with the curvature at the previous optimum
ROUNDS = 2


def initial_hyperparameters(config: dict[str, Any], used: tuple[str, ...] | None = None) -> dict[str, float]:
    """Every scale at its hyperprior's scale and μ_g at 0 — the non-hierarchical
    model's priors, where the optimisation starts."""
    pri = config["priors"]
    used = hyperparameters_used(config) if used is None else used
    out = {}
    for param, hyp in HYPER_OF.items():
        for kind, name in hyp.items():
            if name in used:
                out[name] = prior_scale(param, pri) if kind == "scale" else prior_location(param)
    return out


def answer_logits(point: dict[str, np.ndarray], idx: IndexArrays, config: dict[str, Any]) -> np.ndarray:
    """The pass logit of every training answer at a point (its flat states, requirements,
    biases and history coefficients, under the PyMC model's variable names)."""
    s0 = np.asarray(point["initial_state"], dtype=float)
    states = np.empty((idx.n_states, s0.shape[-1]))
    states[idx.initial_state] = s0
    if len(idx.later_state):
        states[idx.later_state] = np.asarray(point["later_state"], dtype=float)
    j = idx.obs_assessment
    logit = relevance(states[idx.obs_state], np.asarray(point["requirement"], dtype=float)[j])
    if "student_bias" in point:
        logit = logit + np.asarray(point["student_bias"], dtype=float)[idx.obs_student]
        logit = logit + np.asarray(point["assessment_bias"], dtype=float)[j]
    if config.get("history") and "history_success" in point:
        logit = logit + history_logit(idx.history, [float(point[k]) for k in HISTORY_COEFFICIENTS if k in point])
    return logit


def bias_curvature(
    point: dict[str, np.ndarray], idx: IndexArrays, config: dict[str, Any], n_students: int, n_assessments: int
) -> tuple[np.ndarray, np.ndarray]:
    """F_u and F_j: Σ p(1−p) over each student's and each assessment's answers — the
    likelihood's exact curvature in that bias."""
    p = sigmoid(answer_logits(point, idx, config))
    w = p * (1.0 - p)
    return (
        np.bincount(idx.obs_student, weights=w, minlength=n_students),
        np.bincount(idx.obs_assessment, weights=w, minlength=n_assessments),
    )


@dataclass
class HyperObjective:
    """Wraps a MAP objective x ↦ (−log p, −∇ log p) whose bias priors are N(0, σ0²) into
    one over [x, log σ_u, log σ_g, μ_g] with the hierarchical bias priors, their
    hyperpriors and the Laplace correction (module doc).

    `student` / `assessment`: the slices of x holding the biases; `base_sd`: the σ0 of
    each in the wrapped objective; `hyper_sd`: the hyperpriors' scales; `fisher_u`,
    `fisher_j`: the curvatures, fixed for one optimisation.
    """

    inner: Callable[[np.ndarray], tuple[float, np.ndarray]]
    student: slice
    assessment: slice
    base_sd: tuple[float, float]
    hyper_sd: tuple[float, float, float]
    fisher_u: np.ndarray
    fisher_j: np.ndarray

    @property
    def n_inner(self) -> int:
        return self.assessment.stop if self.assessment.stop > self.student.stop else self.student.stop

    def __call__(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        x, (ls_u, ls_g, mu) = z[:-3], z[-3:]
        f, g_inner = self.inner(x)
        if not np.isfinite(f) or abs(ls_u) > 30 or abs(ls_g) > 30:
            return 1e300, np.zeros_like(z)
        grad = np.zeros_like(z)
        grad[:-3] = g_inner
        lp = 0.0
        d_hyper = np.zeros(3)
        for k, (sl, ls, loc, fisher, sd0) in enumerate(
            ((self.student, ls_u, 0.0, self.fisher_u, self.base_sd[0]),
             (self.assessment, ls_g, mu, self.fisher_j, self.base_sd[1]))
        ):
            v = x[sl]
            sigma = math.exp(ls)
            r = v - loc
            n = v.size
            # the hierarchical prior replaces the inner objective's N(0, σ0²)
            lp += -n * ls - 0.5 * float(r @ r) / sigma**2 + n * math.log(sd0) + 0.5 * float(v @ v) / sd0**2
            grad[sl] -= -r / sigma**2 + v / sd0**2  # minimiser's sign
            d_ls = -n + float(r @ r) / sigma**2
            # Laplace correction −½ Σ log(F + 1/σ²)
            prec = 1.0 / sigma**2
            lp += -0.5 * float(np.sum(np.log(fisher + prec)))
            d_ls += float(np.sum(prec / (fisher + prec)))
            # hyperprior σ ~ HalfNormal(s)
            s_h = self.hyper_sd[k]
            lp += -0.5 * sigma**2 / s_h**2
            d_ls += -(sigma**2) / s_h**2
            d_hyper[k] = d_ls
            if k == 1:
                d_hyper[2] = float(np.sum(r)) / sigma**2
        lp += -0.5 * mu**2 / self.hyper_sd[2] ** 2
        d_hyper[2] += -mu / self.hyper_sd[2] ** 2
        grad[-3:] = -d_hyper
        return f - lp, grad

    @staticmethod
    def hyper_of(z: np.ndarray) -> dict[str, float]:
        return {
            "sigma_student_bias": math.exp(z[-3]),
            "sigma_assessment_bias": math.exp(z[-2]),
            "mu_assessment_bias": float(z[-1]),
        }


@dataclass
class TagScaleObjective:
    """The tag effects' scale σ_τ by empirical Bayes (model config "tags", MAP): wraps a
    MAP objective x ↦ (−log p, −∇ log p) whose tag effects τ have the prior N(0, σ0²)
    into one over [x, log σ_τ] with the prior N(0, σ_τ²), σ_τ's hyperprior
    HalfNormal(σ0) and the Laplace correction −½ Σ_t log(F_t + 1/σ_τ²) of the marginal
    likelihood — the same construction as `HyperObjective` for the biases' scales, one
    optimisation.  Without the correction the joint mode collapses σ_τ to 0 with τ; with
    it σ_τ settles where σ_τ² = mean(τ̂² + 1/(F_t + 1/σ_τ²)), and goes to 0 only where the
    tags say nothing about the assessments' biases.

    F_t, the curvature of the likelihood in τ_t through the biases of the assessments it
    tags, is Σ_j w_jt² / (σ_g² + 1/F_j) (w: the row-normalised tag matrix, σ_g the
    assessment biases' prior sd, F_j = n_j/4 the curvature of assessment j's n_j answers
    at p = ½ — the largest a Bernoulli answer has), fixed.  Why it is needed: with σ_τ
    fixed at 1 (the prior's scale), the tag effects of MoFaCTS — whose four cloze items
    of a fact are no more alike than any four (intra-fact correlation of first-answer
    difficulty −0.01) — centred new items on noise: −0.008 AUC against drawing them from
    the whole population (`benchmarks/real_logs_new_items.py`).
    """

    inner: Callable[[np.ndarray], tuple[float, np.ndarray]]
    tags: slice
    base_sd: float
    fisher_t: np.ndarray

    @staticmethod
    def curvature(matrix: Any, answers_per_assessment: np.ndarray, bias_sd: float) -> np.ndarray:
        """F_t of the class doc from the row-normalised tag matrix (assessment × tag)."""
        f_j = 0.25 * np.asarray(answers_per_assessment, dtype=float)
        with np.errstate(divide="ignore"):
            eff = np.where(f_j > 0, 1.0 / (bias_sd**2 + 1.0 / f_j), 0.0)
        return np.asarray(matrix.multiply(matrix).T @ eff).ravel()

    def __call__(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        x, ls = z[:-1], float(z[-1])
        f, g_inner = self.inner(x)
        if not np.isfinite(f) or abs(ls) > 30:
            return 1e300, np.zeros_like(z)
        grad = np.zeros_like(z)
        grad[:-1] = g_inner
        v = x[self.tags]
        sigma, sd0, n = math.exp(ls), self.base_sd, v.size
        vv = float(v @ v)
        # N(0, σ_τ²) replaces the inner objective's N(0, σ0²)
        lp = -n * ls - 0.5 * vv / sigma**2 + n * math.log(sd0) + 0.5 * vv / sd0**2
        grad[self.tags] -= -v / sigma**2 + v / sd0**2  # minimiser's sign
        d_ls = -n + vv / sigma**2
        prec = 1.0 / sigma**2
        lp += -0.5 * float(np.sum(np.log(self.fisher_t + prec)))
        d_ls += float(np.sum(prec / (self.fisher_t + prec)))
        lp += -0.5 * sigma**2 / sd0**2  # hyperprior σ_τ ~ HalfNormal(σ0)
        d_ls += -(sigma**2) / sd0**2
        grad[-1] = -d_ls
        return f - lp, grad


def fit(
    inner: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    named: Callable[[np.ndarray], dict[str, np.ndarray]],
    solve: Callable[[Callable, np.ndarray, dict[str, Any]], tuple[np.ndarray, Any]],
    slices: tuple[slice, slice],
    idx: IndexArrays,
    config: dict[str, Any],
    cfg: dict[str, Any],
    n_students: int,
    n_assessments: int,
    *,
    rounds: int = ROUNDS,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, np.ndarray], Any, dict[str, float], list[dict[str, Any]]]:
    """The empirical-Bayes MAP (module doc).

    `inner`: the MAP objective with the config's bias priors; `x0`: its starting point;
    `named`: x ↦ the point under the model's variable names; `solve(fun, start, cfg)`:
    the multi-start L-BFGS-B, returning (best z, optimiser record).  The first
    optimisation uses the fit's starts (jitter on x only), later ones one start from the
    previous optimum.  Returns the mode, the last optimiser record, the hyperparameters
    (every one the config has: the learned ones and, fixed, the rest) and one record
    per round.
    """
    pri = config["priors"]
    hyper = initial_hyperparameters(config)
    base = (prior_scale("student_bias", pri), prior_scale("assessment_bias", pri))
    hyper_sd = (base[0], base[1], base[1])  # hyperprior scales: the config's bias sds
    z = np.concatenate([np.asarray(x0, dtype=float), [math.log(base[0]), math.log(base[1]), 0.0]])
    point = named(z[:-3])
    records: list[dict[str, Any]] = []
    opt = None
    for r in range(rounds):
        fu, fj = bias_curvature(point, idx, config, n_students, n_assessments)
        obj = HyperObjective(inner, slices[0], slices[1], base, hyper_sd, fu, fj)
        c = cfg if r == 0 else {**cfg, "starts": 1, "jitter": 0.0}
        z, opt = solve(obj, z, c)
        point = named(z[:-3])
        learned = HyperObjective.hyper_of(z)
        moved = max(abs(math.log(learned[k] / hyper[k])) if k.startswith("sigma") else abs(learned[k] - hyper[k])
                    for k in LEARNED)
        hyper.update(learned)
        records.append({"round": r, **learned, "move": moved,
                        "iterations": int(np.asarray(opt["n_iterations"]).sum())})
        if progress is not None:
            shown = ", ".join(f"{k} {v:.3g}" for k, v in learned.items())
            progress(f"empirical Bayes {r + 1}/{rounds}: {shown}")
    return point, opt, hyper, records
