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


def _arr(x: Any, xp: Any) -> Any:
    """x as an array of namespace `xp`: float64 numpy, or e.g. jax.numpy's own dtype."""
    return np.asarray(x, dtype=float) if xp is np else xp.asarray(x)


def norm(v: ArrayLike, xp: Any = np) -> NDArray[np.float64]:
    """|v| over the last axis. `xp`: the array namespace (numpy; jax.numpy for the
    amortised encoder's training, `inference.amortised`) — the same formula either way."""
    v = _arr(v, xp)
    return xp.sqrt(xp.vecdot(v, v) + NORM_EPS)


def relevance(s: ArrayLike, v: ArrayLike, xp: Any = np) -> NDArray[np.float64]:
    """D(s, v) = s·v/|v| − |v|: relevant skill minus difficulty."""
    s = _arr(s, xp)
    v = _arr(v, xp)
    n = norm(v, xp)
    return xp.vecdot(s, v) / n - n


def sigmoid(x: ArrayLike, xp: Any = np) -> NDArray[np.float64]:
    x = _arr(x, xp)
    return 0.5 * (1.0 + xp.tanh(0.5 * x))  # overflow-free logistic


def pass_logit(
    state: ArrayLike,
    requirement: ArrayLike,
    student_bias: ArrayLike = 0.0,
    assessment_bias: ArrayLike = 0.0,
    xp: Any = np,
) -> NDArray[np.float64]:
    return relevance(state, requirement, xp) + xp.asarray(student_bias) + xp.asarray(assessment_bias)


def pass_probability(
    state: ArrayLike,
    requirement: ArrayLike,
    student_bias: ArrayLike = 0.0,
    assessment_bias: ArrayLike = 0.0,
) -> NDArray[np.float64]:
    """σ(D(s, a) + g_u + g_j): the probability that a student in `state` passes."""
    return sigmoid(pass_logit(state, requirement, student_bias, assessment_bias))


def gain_weight(state: ArrayLike, prerequisite: ArrayLike | None, xp: Any = np) -> NDArray[np.float64]:
    """σ(D(s, q)): how much of a lesson's gain a student realises (1 without prerequisites)."""
    if prerequisite is None:
        return xp.ones(xp.shape(state)[:-1]) if xp is not np else np.ones(np.shape(state)[:-1])
    return sigmoid(relevance(state, prerequisite, xp), xp)


def expected_update(
    state: ArrayLike, gain: ArrayLike, prerequisite: ArrayLike | None = None, xp: Any = np
) -> NDArray[np.float64]:
    """Mean of the learning update, s + l·σ(D(s, q)) (before truncation to R+^d)."""
    state = _arr(state, xp)
    w = gain_weight(state, prerequisite, xp)
    return state + _arr(gain, xp) * w[..., None]


def truncated_normal_logpdf(x: Any, mu: Any, sigma: Any, xp: Any = np, log_ndtr: Any = None) -> Any:
    """log N(x | mu, σ²) − log Φ(mu/σ) per coordinate: the normal restricted to x > 0 (the
    learning update's density; the PyTensor form is `truncated_normal_logp`). `xp`,
    `log_ndtr`: numpy + scipy (default) or jax.numpy + jax.scipy's."""
    if log_ndtr is None:
        from scipy.special import log_ndtr
    z = (x - mu) / sigma
    return -0.5 * z * z - xp.log(sigma) - 0.5 * math.log(2 * math.pi) - log_ndtr(mu / sigma)


def normal_logpdf(x: Any, loc: Any, scale: Any, xp: Any = np) -> Any:
    """log N(x | loc, scale²); a half-normal prior adds log 2 on x ≥ 0 (`prior_log_density`)."""
    z = (x - loc) / scale
    return -0.5 * z * z - xp.log(scale) - 0.5 * math.log(2 * math.pi)


def truncated_normal_mean(mu: ArrayLike, sigma: ArrayLike) -> NDArray[np.float64]:
    """E[x] for x ~ N(mu, σ²) restricted to x > 0, per coordinate.

    `sigma` is a scalar or an array broadcasting against `mu` (one σ_L per posterior
    draw: prediction, the lessons check and the recommender all need that); where
    σ ≤ 0 the update is deterministic and the mean is max(mu, 0).  The ratio φ(z)/Φ(z)
    is taken in log space, so it stays finite far into the lower tail (z = −40 gives
    a mean of σ·0.0250, where φ/Φ computed directly is 0/0).
    """
    from scipy.special import log_ndtr

    mu = np.asarray(mu, dtype=float)
    if np.ndim(sigma) == 0:
        sigma = float(sigma)
        if sigma <= 0:
            return np.maximum(mu, 0.0)
        z = mu / sigma
        return mu + sigma * np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_ndtr(z))
    sigma = np.asarray(sigma, dtype=float)
    pos = sigma > 0
    safe = np.where(pos, sigma, 1.0)
    z = mu / safe
    mean = mu + safe * np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_ndtr(z))
    return mean if pos.all() else np.where(pos, mean, np.maximum(mu, 0.0))


def truncated_normal_quantile(mu: ArrayLike, sigma: ArrayLike, u: ArrayLike) -> NDArray[np.float64]:
    """Inverse CDF of N(mu, σ²) restricted to (0, ∞) at uniforms u ∈ (0, 1].

    Computed as x = mu − σ·Φ⁻¹(u·Φ(mu/σ)) in log space (`ndtri_exp(log u + log Φ(mu/σ))`),
    so it is stable in either tail: at mu/σ = −30, where Φ(mu/σ) ~ 1e-198, a direct
    `ndtri(u·Φ)` loses every digit.  The recommender draws its common random numbers
    through it (the same uniforms for every candidate sequence).  `sigma` broadcasts
    like `truncated_normal_mean`'s; σ ≤ 0 gives max(mu, 0).
    """
    from scipy.special import log_ndtr, ndtri_exp

    mu = np.asarray(mu, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    safe = np.where(sigma > 0, sigma, 1.0)
    w = ndtri_exp(np.log(u) + log_ndtr(mu / safe))  # = −z, z the standardised excess
    x = np.maximum(mu - safe * w, 0.0)
    return np.where(sigma > 0, x, np.maximum(mu, 0.0))


#: Rejection rounds before `sample_truncated_normal(method="rejection")` hands the
#: remaining coordinates to the inverse CDF (with mu ≥ 0 at least half of all proposals
#: are accepted, so after 20 rounds fewer than 1e-6 of them are left)
REJECTION_ROUNDS = 20


def sample_truncated_normal(
    mu: ArrayLike, sigma: ArrayLike, rng: np.random.Generator, method: str = "inverse"
) -> NDArray[np.float64]:
    """Draws of N(mu, σ²) restricted to (0, ∞), per coordinate, from `rng`.

    method="inverse": one uniform per coordinate through the inverse CDF, exactly
    `scipy.stats.truncnorm.rvs(a=−mu/σ, b=∞, loc=mu, scale=σ, random_state=rng)` (the
    simulator's and prediction's random stream, which seeded tests pin); σ a scalar > 0
    or an array broadcasting against mu.
    method="rejection": normal proposals, redrawn where ≤ 0, for the recommender's
    particle filter: with mu ≥ 0 at least half are accepted, and it is several times
    faster than scipy's ppf; stragglers after REJECTION_ROUNDS rounds go through
    `truncated_normal_quantile`. σ may broadcast per draw; σ ≤ 0 gives max(mu, 0).
    """
    mu = np.asarray(mu, dtype=float)
    if method == "inverse":
        from scipy import stats

        # an explicit size: scipy otherwise drops a leading axis of length 1, so that
        # prediction by update="sample" from a MAP fit (one draw) failed on its shape;
        # the uniforms drawn, and so the values, are the same either way
        size = np.broadcast_shapes(mu.shape, np.shape(sigma))
        return stats.truncnorm.rvs(a=-mu / sigma, b=np.inf, loc=mu, scale=sigma, size=size, random_state=rng)
    if method != "rejection":
        raise ValueError(f"method must be 'inverse' or 'rejection', got {method!r}")
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), mu.shape).reshape(-1)
    mf = mu.reshape(-1)
    x = mf + sig * rng.standard_normal(mf.shape)
    bad = np.nonzero(x <= 0)[0]
    for _ in range(REJECTION_ROUNDS):
        if not len(bad):
            break
        x[bad] = mf[bad] + sig[bad] * rng.standard_normal(len(bad))
        bad = bad[x[bad] <= 0]
    if len(bad):
        x[bad] = truncated_normal_quantile(mf[bad], sig[bad], 1.0 - rng.random(len(bad)))
    return np.where(sig > 0, x, np.maximum(mf, 0.0)).reshape(mu.shape)


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


#: How a state moves through a step beyond the fitted history (`FittedLSE.predict`'s
#: `update=`): the truncated-normal mean, its mode max(mu, 0), or one draw.
UPDATES = ("expected", "mode", "sample")


def lesson_update_mean(
    state: ArrayLike, lesson: ArrayLike, gain: ArrayLike | None, prerequisite: ArrayLike | None = None
) -> NDArray[np.float64]:
    """The update mean s + l_k·σ(D(s, q_k)) for many students at once, each with its own
    lesson code k (−1: a step with no lesson, mean s, noise only).

    `state` (S, n, d): S posterior draws × n students; `gain`, `prerequisite` (S, L, d)
    draws, `gain=None` for a model without lessons.  Only the columns with a lesson are
    computed (the others are copied), so the no-lesson mean is s bit for bit.
    """
    mu = np.array(state, dtype=float, copy=True)
    lesson = np.asarray(lesson)
    has = lesson >= 0
    if gain is None or not has.any():
        return mu
    k = lesson[has]
    q = None if prerequisite is None else np.asarray(prerequisite)[:, k]
    mu[:, has] = expected_update(mu[:, has], np.asarray(gain)[:, k], q)
    return mu


def next_state(
    mu: ArrayLike, noise: ArrayLike, update: str = "expected", rng: np.random.Generator | None = None
) -> NDArray[np.float64]:
    """s_{t+1} from the update mean `mu` under σ_L = `noise` (scalar or per draw,
    broadcasting): `update` one of UPDATES ("sample" draws from `rng`, inverse CDF)."""
    if update == "mode":
        return np.maximum(np.asarray(mu, dtype=float), 0.0)
    if update == "expected":
        return truncated_normal_mean(mu, noise)
    if update == "sample":
        return sample_truncated_normal(mu, noise, rng if rng is not None else np.random.default_rng())
    raise ValueError(f"update must be one of {', '.join(map(repr, UPDATES))}, got {update!r}")


def step_states(
    state: ArrayLike,
    lesson: ArrayLike,
    gain: ArrayLike | None,
    prerequisite: ArrayLike | None,
    noise: ArrayLike,
    update: str = "expected",
    rng: np.random.Generator | None = None,
) -> NDArray[np.float64]:
    """One step of the push-through-lessons loop: states (S, n, d) after each student's
    lesson code (−1: none), for prediction beyond the fitted history and the lessons check."""
    return next_state(lesson_update_mean(state, lesson, gain, prerequisite), noise, update, rng)


#: The history term's coefficients, one per column of its features (`history_features`):
#: earlier successes and failures on the same assessment, how recently it was answered, and
#: the student's earlier successes and failures on any assessment (practice: what PFA's
#: overall counts measure; docs/results.md "Practice").
HISTORY_COEFFICIENTS: tuple[str, ...] = ("history_success", "history_failure", "history_recency",
                                         "history_practice_success", "history_practice_failure")
def practice_on(config: dict[str, Any], has_lessons: bool | None = None) -> bool:
    """Whether a model config's history term has the practice counts.  ``practice`` "auto"
    is decided by `has_lessons` when given — the counts stand in for learning where the
    model has no lessons to learn from (no lesson rows, or ``lessons=False``) — and is
    off otherwise."""
    practice = config.get("practice")
    if practice == "auto" and has_lessons is not None:
        return not (bool(config.get("lessons", True)) and has_lessons)
    return practice is True


def history_coefficients(config: dict[str, Any], has_lessons: bool | None = None) -> tuple[str, ...]:
    """The history term's coefficients in a model config: all of `HISTORY_COEFFICIENTS` with
    the practice counts (`practice_on`), else the first three (memory and recency)."""
    return HISTORY_COEFFICIENTS if practice_on(config, has_lessons) else HISTORY_COEFFICIENTS[:3]


#: the columns of the history counts (`assessment_history_counts`), one feature each
HISTORY_COUNTS = ("success", "failure", "lag", "practice_success", "practice_failure")

#: R = lag^(−RECENCY_EXPONENT), lag = the student's answers since its previous answer to the
#: same assessment (1: the answer just before).  Screened as a fifth PFA feature on MoFaCTS,
#: 5 folds, last 10 % (docs/results.md, "Forgetting"): exponent 0.3 / 0.5 / 1 gave +0.016 /
#: +0.016 / +0.011 AUC over PFA; on ASSISTments all three ±0.0000.
RECENCY_EXPONENT = 0.5


def history_features(counts: Any, xp: Any = np) -> list[Any]:
    """The history term's features from its counts (…, k) — S, F, lag, P_s, P_f
    (`HISTORY_COUNTS`): log(1+S), log(1+F), R with R = lag^(−1/2) for a repeated answer and 0
    for a first one (lag 0), log(1+P_s), log(1+P_f).  Fewer columns give fewer features
    (k = 2: models saved before the recency feature, k = 3: before the practice counts)."""
    out = [xp.log1p(counts[..., 0]), xp.log1p(counts[..., 1])]
    if counts.shape[-1] > 2:
        lag = counts[..., 2]
        out.append(xp.where(lag > 0, xp.maximum(lag, 1.0) ** -RECENCY_EXPONENT, 0.0))
    if counts.shape[-1] > 4:
        out += [xp.log1p(counts[..., 3]), xp.log1p(counts[..., 4])]
    return out


def history_logit(counts: Any, coefficients: Any, xp: Any = np) -> Any:
    """γ_s·log(1+S) + γ_f·log(1+F) + γ_r·R + γ_ps·log(1+P_s) + γ_pf·log(1+P_f) for counts
    (…, 5) and `coefficients` in `HISTORY_COEFFICIENTS` order (`xp`: numpy, or jax.numpy in
    the amortised fit).  A model saved before the recency or practice features has two or
    three coefficients: the term it was fitted with (the later features are ignored)."""
    feats = history_features(counts, xp)
    out = 0.0
    for c, f in zip(coefficients, feats, strict=False):
        out = out + c * f
    return out


def _runs(key: np.ndarray, time: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The stable order of rows by (key, time, row) and, in that order, where each key's run
    starts (lexsort and argsort(kind="stable") keep row order among ties: "then by row order")."""
    order = np.argsort(key, kind="stable") if time is None else np.lexsort((np.asarray(time), key))
    k = key[order]
    start = np.empty(len(k), dtype=bool)
    start[0] = True
    np.not_equal(k[1:], k[:-1], out=start[1:])
    return order, start


def assessment_history_counts(
    student: np.ndarray, assessment: np.ndarray, outcome: np.ndarray, time: np.ndarray | None = None,
    dtype: Any = float,
) -> np.ndarray:
    """Earlier successes and failures of the same student on the same assessment, how
    long ago it last answered it, and its earlier successes and failures on any assessment:
    (rows, 5) of `dtype`, columns S, F, lag, P_s, P_f (`HISTORY_COUNTS`) — the counts of the
    history term (`history_logit`).  lag is the number of the student's answers from its
    previous answer to this assessment to this one (1: answered just before; 0: no earlier
    answer).  (The performance-factors baseline's counts, overall and per module, are
    `evaluate.baselines.pfa_history_counts`.) "Earlier" is by `time` (e.g. the flat state
    index or the timestep), then by row order.

    One stable sort by (student, assessment) pair and time, then running sums within each
    pair's run: S = successes since the run began, F = position in the run − S; the lag is
    the difference of two answers' ranks in a second sort by (student, time).  On 17.3M
    random answers (3.65M students, 50 assessments) the S, F part's traced peak was 1.17 GB
    with the float64 output, 1.04 GB with float32, in 1.7 s; the version with a group index
    and both running sums in float64 took 2.12 GB and 7.5 s (docs/benchmarks.md)."""
    y = np.asarray(outcome, dtype=float)
    n = len(y)
    out = np.zeros((n, len(HISTORY_COUNTS)), dtype=dtype)
    if not n:
        return out
    assessment = np.asarray(assessment)
    student = np.asarray(student, dtype=np.int64)
    # each answer's rank among its student's answers, in the same (time, row) order, and the
    # student's successes before it (practice)
    by_student, s_start = _runs(student, time)
    s_first = np.flatnonzero(s_start)
    del s_start
    s_sizes = np.diff(np.append(s_first, n))
    rank = np.empty(n, dtype=np.int64)
    rank[by_student] = np.arange(n, dtype=np.int64) - np.repeat(s_first, s_sizes)
    ys = y[by_student]
    before = np.cumsum(ys) - ys
    before -= np.repeat(before[s_first], s_sizes)
    out[by_student, 3] = before
    out[by_student, 4] = rank[by_student] - before
    del by_student, s_first, s_sizes, ys, before
    order, start = _runs(student * (int(assessment.max()) + 1) + assessment, time)
    first = np.flatnonzero(start)
    sizes = np.diff(np.append(first, n))
    yy = y[order]
    del y
    succ = np.cumsum(yy)
    succ -= yy  # successes before this row, over the whole sorted array
    succ -= np.repeat(succ[first], sizes)  # ... since the pair's run began
    del yy
    pos = np.arange(n, dtype=np.int64)
    pos -= np.repeat(first, sizes)  # answers before this row in the pair's run
    out[order, 0] = succ
    out[order, 1] = pos - succ
    del succ, pos
    r = rank[order]
    lag = np.zeros(n, dtype=np.int64)
    lag[1:] = r[1:] - r[:-1]
    lag[start] = 0  # a pair's first answer has no earlier one
    out[order, 2] = lag
    return out


#: Every parameter's prior, once: (family, key of its scale in the model config's
#: "priors").  The PyMC graph, the simulator, the minibatch density and the MAP kernels
#: all read it, so that swapping two keys cannot happen in one of them only (the
#: states after the first have no prior of their own: the transition density is theirs).
PRIORS: dict[str, tuple[str, str]] = {
    "initial_state": ("halfnormal", "initial_state_scale"),
    "requirement": ("halfnormal", "requirement_scale"),
    "gain": ("halfnormal", "gain_scale"),
    "prerequisite": ("halfnormal", "prerequisite_scale"),
    "learning_noise": ("halfnormal", "learning_noise_scale"),
    "student_bias": ("normal", "student_bias_sd"),
    "assessment_bias": ("normal", "assessment_bias_sd"),
    "history_success": ("normal", "history_sd"),
    "history_failure": ("normal", "history_sd"),
    "history_recency": ("normal", "history_sd"),
    "history_practice_success": ("normal", "history_sd"),
    "history_practice_failure": ("normal", "history_sd"),
    # a tag's effect on the biases of the assessments it tags (model config "tags")
    "tag_bias": ("normal", "tag_bias_sd"),
    # the hierarchical model's hyperparameters (model config "hierarchical": true); the
    # config's scale of a parameter becomes the scale of its hyperprior
    "sigma_requirement": ("halfnormal", "requirement_scale"),
    "sigma_gain": ("halfnormal", "gain_scale"),
    "sigma_prerequisite": ("halfnormal", "prerequisite_scale"),
    "sigma_student_bias": ("halfnormal", "student_bias_sd"),
    "sigma_assessment_bias": ("halfnormal", "assessment_bias_sd"),
    "mu_assessment_bias": ("normal", "assessment_bias_sd"),
    # the tag effects' scale σ_τ (model config "tags"): learned by NUTS and ADVI, set by
    # empirical Bayes in MAP (inference.empirical_bayes.TagScaleObjective)
    "sigma_tag_bias": ("halfnormal", "tag_bias_sd"),
}

#: In the hierarchical model, which hyperparameter is each parameter's prior scale and
#: (assessment bias only) location: requirement ~ HalfNormal(σ_a)^d, gain ~
#: HalfNormal(σ_l)^d, prerequisite ~ HalfNormal(σ_q)^d, student bias ~ N(0, σ_u²),
#: assessment bias ~ N(μ_g, σ_g²), with σ and μ learned (NUTS, ADVI) or set by
#: empirical Bayes (MAP; inference.empirical_bayes).  A module answered three times
#: then shrinks towards the population that the data estimate, not towards a unit scale
#: fixed in advance; μ_g is the population's mean easiness (1PL's intercept), without
#: which a sparse item is pulled towards logit 0 instead of towards the typical item.
HYPER_OF: dict[str, dict[str, str]] = {
    "requirement": {"scale": "sigma_requirement"},
    "gain": {"scale": "sigma_gain"},
    "prerequisite": {"scale": "sigma_prerequisite"},
    "student_bias": {"scale": "sigma_student_bias"},
    "assessment_bias": {"scale": "sigma_assessment_bias", "location": "mu_assessment_bias"},
    "tag_bias": {"scale": "sigma_tag_bias"},
}
#: the hierarchical config's hyperparameters (`hyperparameters_used`), and with them the
#: tag effects' scale, which any model with tag effects has (model config "tags")
HYPERPARAMETERS = tuple(h for p, m in HYPER_OF.items() if p != "tag_bias" for h in m.values())
LEARNED_SCALES = (*HYPERPARAMETERS, "sigma_tag_bias")


def hyperparameters_used(config: dict[str, Any]) -> tuple[str, ...]:
    """The hyperparameters a hierarchical model config has (none if not hierarchical):
    the gain's and prerequisite's only with lessons (and prerequisites), the biases' only
    with biases."""
    if not config.get("hierarchical"):
        return ()
    out = ["sigma_requirement"]
    if config.get("lessons", True):
        out.append("sigma_gain")
        if config.get("prerequisites", True):
            out.append("sigma_prerequisite")
    if config.get("biases", True):
        out += ["sigma_student_bias", "sigma_assessment_bias", "mu_assessment_bias"]
    return tuple(out)


def prior_family(name: str) -> str:
    """"halfnormal" or "normal" (both centred at 0) for parameter `name`."""
    return PRIORS[name][0]


def prior_scale(name: str, priors: dict[str, Any], hyper: dict[str, Any] | None = None) -> Any:
    """The scale of parameter `name`'s prior: its hyperparameter's value in `hyper` (a
    hierarchical model's σ, a float or a tensor) if given there, else the config's
    "priors" entry."""
    h = HYPER_OF.get(name, {}).get("scale")
    if hyper and h in hyper:
        return hyper[h]
    return float(priors[PRIORS[name][1]])


def tag_mean(matrix: Any, effects: Any) -> Any:
    """Each assessment's tag mean, the centre of its bias prior when the model has tag
    effects (model config "tags"): its row of the row-normalised key matrix
    (`data.modules.ModuleTable.key_matrix`: 1/k for each of its k tags and group values)
    times the keys' effects.  `matrix`: scipy sparse or numpy with numpy `effects`
    (draws along a leading axis allowed: (..., n_keys) → (..., n_modules)), or a dense
    array with a PyTensor vector (the graph)."""
    if isinstance(effects, np.ndarray) or np.isscalar(effects):
        e = np.asarray(effects, dtype=float)
        return np.asarray((matrix @ e.reshape(-1, e.shape[-1]).T).T).reshape(*e.shape[:-1], matrix.shape[0])
    return pt.dot(matrix, effects)


def prior_location(name: str, hyper: dict[str, Any] | None = None) -> Any:
    """The location of `name`'s prior: μ_g for the hierarchical assessment bias, else 0."""
    h = HYPER_OF.get(name, {}).get("location")
    if hyper and h in hyper:
        return hyper[h]
    return 0.0


def prior_logpdf(
    name: str, x: ArrayLike, priors: dict[str, Any], hyper: dict[str, Any] | None = None
) -> NDArray[np.float64]:
    """log prior density of `name` at x, per element (scipy.stats, constants included);
    `hyper`: the hierarchical model's hyperparameter values (`HYPER_OF`)."""
    from scipy import stats

    dist = stats.halfnorm if prior_family(name) == "halfnormal" else stats.norm
    loc = prior_location(name, hyper)
    return dist.logpdf(np.asarray(x, dtype=float) - loc, scale=prior_scale(name, priors, hyper))


def prior_log_density(name: str, x: Any, priors: dict[str, Any], xp: Any = np) -> Any:
    """`prior_logpdf` (non-hierarchical scales) written with array namespace `xp`, for
    jax.numpy (the amortised encoder's ELBO): N(0, σ²), or its half-normal (+log 2,
    for x ≥ 0, which the caller guarantees)."""
    out = normal_logpdf(x, 0.0, prior_scale(name, priors), xp)
    return out + math.log(2.0) if prior_family(name) == "halfnormal" else out


def draw_prior(
    name: str, priors: dict[str, Any], rng: np.random.Generator, size: Any = None, hyper: dict[str, Any] | None = None
) -> Any:
    """Draws of `name` from its prior: |N(0, σ²)| for a half-normal (one normal draw
    per value, the simulator's random stream), N(μ, σ²) otherwise; σ and μ from
    `hyper` where the hierarchical model has them (`HYPER_OF`)."""
    x = rng.normal(0.0, prior_scale(name, priors, hyper), size=size)
    if prior_family(name) == "halfnormal":
        return np.abs(x)
    return x + prior_location(name, hyper)


# ---------------------------------------------------------------------------
# The same terms as PyTensor expressions, for the PyMC graph (model.graph) and the
# minibatch ADVI density (inference.minibatch).  PyTensor is imported on first use
# (core.lazy), so the numpy half of this module stays light for a kernel MAP fit.
# ---------------------------------------------------------------------------
pt: Any = LazyModule("pytensor.tensor")
pm: Any = LazyModule("pymc")
_dist_math: Any = LazyModule("pymc.distributions.dist_math")


def prior_variable(name: str, priors: dict[str, Any], hyper: dict[str, Any] | None = None, shift: Any = 0.0,
                   **kwargs: Any) -> Any:
    """The PyMC random variable of parameter `name` with its prior from PRIORS
    (`kwargs`: dims, default_transform, ...; inside a `pm.Model` context); `hyper`:
    hyperparameter values or tensors that replace the config's scale and location
    (the empirical-Bayes MAP passes shared variables here); `shift`: added to a normal
    prior's location (the assessment biases' tag means, `tag_mean`)."""
    sigma = prior_scale(name, priors, hyper)
    if prior_family(name) == "halfnormal":
        return pm.HalfNormal(name, sigma=sigma, **kwargs)
    return pm.Normal(name, prior_location(name, hyper) + shift, sigma, **kwargs)


def hierarchical_variable(name: str, hyper: dict[str, Any], shift: Any = 0.0, **kwargs: Any) -> Any:
    """Parameter `name` of the hierarchical model in non-centred form: σ·r with r ~
    HalfNormal(1) (vectors) or μ + σ·z with z ~ N(0, 1) (biases), the standardised
    variable named ``<name>_raw``.  The same distribution as `prior_variable` with
    these σ and μ, without the funnel between σ and the values that a centred form
    gives NUTS when σ is small."""
    sigma = prior_scale(name, {}, hyper)
    if prior_family(name) == "halfnormal":
        raw = pm.HalfNormal(f"{name}_raw", sigma=1.0, **kwargs)
        return pm.Deterministic(name, sigma * raw, dims=kwargs.get("dims"))
    raw = pm.Normal(f"{name}_raw", 0.0, 1.0, **kwargs)
    return pm.Deterministic(name, prior_location(name, hyper) + shift + sigma * raw, dims=kwargs.get("dims"))


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


def learning_update_mean(
    s_from: Any, lesson: Any, gain: Any, prereq_unit: Any = None, prereq_norm: Any = None
) -> Any:
    """s + l_k·σ(D(s, q_k)) per transition (zero gain where lesson k = −1), as a PyTensor
    expression: the mean of the learning update in the PyMC graph and the minibatch density.

    `gain` None: a model without lessons (the mean is s); `prereq_unit`, `prereq_norm`:
    `unit_and_norm(prerequisite)`, None without prerequisites.  `lesson` is either a
    numpy array (the PyMC graph: the mask is built in numpy and left out when every
    transition has a lesson) or a symbolic integer vector (a minibatch's transitions).
    """
    if gain is None:
        return s_from
    if isinstance(lesson, np.ndarray):
        has = lesson >= 0
        k = np.where(has, lesson, 0)
        mask = None if has.all() else has[:, None].astype("float64")
    else:
        has = pt.ge(lesson, 0)
        k = pt.switch(has, lesson, 0)
        mask = pt.cast(has, "float64")[:, None]
    step_gain = gain[k]
    if prereq_unit is not None:
        step_gain = step_gain * pt.sigmoid(relevance_at(s_from, prereq_unit, prereq_norm, k))[:, None]
    if mask is not None:
        step_gain = step_gain * mask
    return s_from + step_gain


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
