"""Every term of the model defined once: in numpy (simulator, prediction, diagnostics,
recommender, kernels' reference) and, below, as PyTensor expressions for the PyMC
graph and the minibatch density, side by side so that every part of the package
computes the same thing.  All functions broadcast over leading axes; the skill axis is last.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from bayes_lse.core.lazy import LazyModule

#: Added under the square root of |v| so that a vector at the origin has a finite
#: gradient; the PyMC model uses the same constant.
NORM_EPS = 1e-12


def norm(v: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(v, dtype=float)
    return np.sqrt(np.vecdot(v, v) + NORM_EPS)


def relevance(s: ArrayLike, v: ArrayLike) -> NDArray[np.float64]:
    """D(s, v) = s·v/|v| − |v|: relevant skill minus difficulty."""
    s = np.asarray(s, dtype=float)
    v = np.asarray(v, dtype=float)
    n = norm(v)
    return np.vecdot(s, v) / n - n


def sigmoid(x: ArrayLike) -> NDArray[np.float64]:
    x = np.asarray(x, dtype=float)
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def pass_logit(
    state: ArrayLike,
    requirement: ArrayLike,
    student_bias: ArrayLike = 0.0,
    assessment_bias: ArrayLike = 0.0,
) -> NDArray[np.float64]:
    return relevance(state, requirement) + np.asarray(student_bias) + np.asarray(assessment_bias)


def pass_probability(
    state: ArrayLike,
    requirement: ArrayLike,
    student_bias: ArrayLike = 0.0,
    assessment_bias: ArrayLike = 0.0,
) -> NDArray[np.float64]:
    """σ(D(s, a) + g_u + g_j): the probability that a student in `state` passes."""
    return sigmoid(pass_logit(state, requirement, student_bias, assessment_bias))


def gain_weight(state: ArrayLike, prerequisite: ArrayLike | None) -> NDArray[np.float64]:
    """σ(D(s, q)): how much of a lesson's gain a student realises (1 without prerequisites)."""
    if prerequisite is None:
        return np.ones(np.shape(state)[:-1])
    return sigmoid(relevance(state, prerequisite))


def expected_update(
    state: ArrayLike, gain: ArrayLike, prerequisite: ArrayLike | None = None
) -> NDArray[np.float64]:
    """Mean of the learning update, s + l·σ(D(s, q)) (before truncation to R+^d)."""
    state = np.asarray(state, dtype=float)
    w = gain_weight(state, prerequisite)
    return state + np.asarray(gain, dtype=float) * w[..., None]


def truncated_normal_mean(mu: ArrayLike, sigma: float) -> NDArray[np.float64]:
    """E[x] for x ~ N(mu, sigma²) restricted to x > 0, per coordinate."""
    from scipy.special import log_ndtr

    mu = np.asarray(mu, dtype=float)
    if sigma <= 0:
        return np.maximum(mu, 0.0)
    z = mu / sigma
    # φ(z)/Φ(z) computed in log space: stable far into the lower tail.
    ratio = np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_ndtr(z))
    return mu + sigma * ratio


def expected_next_state(
    state: ArrayLike,
    gain: ArrayLike,
    prerequisite: ArrayLike | None = None,
    noise: float = 0.0,
) -> NDArray[np.float64]:
    """E[s_{t+1} | s_t]: the truncated-normal mean of the learning update.

    With noise 0 this is the plain update s + l·σ(D(s, q)); with the model's σ_L the
    truncation at zero adds a small upward shift, which is what the simulator draws.
    """
    return truncated_normal_mean(expected_update(state, gain, prerequisite), noise)


def history_logit(counts: Any, success: Any, failure: Any) -> Any:
    """γ_s·log(1+S) + γ_f·log(1+F) for counts (…, 2)."""
    return success * np.log1p(counts[..., 0]) + failure * np.log1p(counts[..., 1])


# ---------------------------------------------------------------------------
# The same terms as PyTensor expressions, for the PyMC graph (model.graph) and the
# minibatch ADVI density (inference.minibatch).  PyTensor is imported on first use
# (core.lazy), so the numpy half of this module stays light for a kernel MAP fit.
# ---------------------------------------------------------------------------
pt: Any = LazyModule("pytensor.tensor")
_dist_math: Any = LazyModule("pymc.distributions.dist_math")


def tensor_norm(v: pt.TensorVariable) -> pt.TensorVariable:
    return pt.sqrt(pt.sum(v * v, axis=-1) + NORM_EPS)


def unit_and_norm(v: pt.TensorVariable) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """v/|v| and |v| per row, so that D(s, v[k]) = s·unit[k] − norm[k] gathers them
    instead of recomputing a norm for every answer or transition (same value)."""
    n = tensor_norm(v)
    return v / n[:, None], n


def relevance_at(s: Any, unit: Any, norm: Any, rows: Any, plus: Any = None) -> Any:
    """D(s, v[rows]) (+ plus[rows]) from `unit_and_norm(v)`: the per-row terms are
    combined first, so each is gathered once per answer or transition."""
    shift = -norm if plus is None else -norm + plus
    return pt.sum(s * unit[rows], axis=-1) + shift[rows]


def truncated_normal_logp(
    x: pt.TensorVariable, mu: pt.TensorVariable, sigma: Any, normalised: bool = True
) -> pt.TensorVariable:
    """log N(x | mu, σ²) − log Φ(mu/σ): the normal restricted to x > 0.

    Written out by hand: `pm.logp(pm.TruncatedNormal.dist(...))` gave NaN gradients
    in a prototype, while this form with a stable log-CDF does not.
    """
    z = (x - mu) / sigma
    logp = -0.5 * z * z - pt.log(sigma) - 0.5 * math.log(2 * math.pi)
    if normalised:
        logp = logp - _dist_math.normal_lcdf(0.0, 1.0, mu / sigma)
    return logp


#: |z| beyond which the innovation map is held constant: erfc(|z|/√2) underflows near
#: |z| = 37.5, and N(0, 1) puts mass 1e-300 out there (the prior's gradient still acts)
INNOVATION_CLIP = 37.0


def truncated_normal_from_innovation(mu: Any, sigma: Any, z: Any) -> Any:
    """mu + σ·Y with Y ~ N(0, 1) restricted to Y > −m (m = mu/σ), as a function of z ~ N(0, 1).

    Inverse-CDF map Y = −Φ⁻¹(Φ(m)·Φ(−z)), written with erfc/erfcinv on whichever tail
    keeps every term small and positive (no cancellation; error ~1e-15 against
    scipy's log-space `ndtri_exp(log_ndtr(m) + log_ndtr(−z))`):
    z ≥ 0:  Y = √2·erfcinv(Φ(m)·erfc(z/√2))
    z < 0:  Y = −√2·erfcinv(erfc(m/√2) + Φ(m)·erfc(−z/√2))   (from 1 − Φ(m)Φ(−z) = Φ(−m) + Φ(m)Φ(z))
    One erfc per argument and one erfcinv: about 3× cheaper, value and gradient, than
    the log-CDF form used before (it was the largest cost of a NUTS gradient).
    For mu ≫ σ it reduces to the plain non-centred mu + σ·z.
    """
    s2 = math.sqrt(2.0)
    z = pt.clip(z, -INNOVATION_CLIP, INNOVATION_CLIP)
    upper = pt.ge(z, 0.0)
    tail = pt.erfc(pt.switch(upper, z, -z) / s2)  # 2·Φ(−|z|)
    e_m = pt.erfc(mu / (sigma * s2))  # 2·Φ(−m)
    phi_m = 1.0 - 0.5 * e_m  # Φ(m)
    w = pt.switch(upper, phi_m * tail, e_m + phi_m * tail)
    y = pt.switch(upper, s2, -s2) * pt.erfcinv(w)
    return pt.maximum(mu + sigma * y, 0.0)
