"""The model's two equations in plain numpy, shared by the simulator, prediction,
diagnostics and the recommender so that every part of the package computes the
same thing.  All functions broadcast over leading axes; the skill axis is last.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

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
