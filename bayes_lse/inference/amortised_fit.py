"""Amortised minibatch fitting of the whole model (issue 16 item 3), in JAX.

The joint is split as in `inference.minibatch`: log p = log p(G) + Σ_u log p_u(L_u | G).
Here the students' variational factors are not free parameters but the encoder's
output, q_φ(s_u0..s_uT, g_u | y_u, G) (`inference.encoder`, the trajectory head used
by `amortised.elbo_loss`), so the only parameters are φ (fixed size) and a mean-field
normal guide over the global parameters G in unconstrained coordinates (log of the
half-normal ones: requirement, gain, prerequisite; identity for the assessment bias).
For a minibatch S of B students out of N, drawn without replacement,

    L̂ = E_q[log p(G) + log|J|] + H[q(G)] + (N/B) Σ_{u∈S} ELBO_u(φ, G)

is unbiased for the full ELBO; ELBO_u is `amortised.elbo_loss` (the model's terms under
jax.numpy, one reparameterised sample) evaluated at a reparameterised draw of G — the
student density is written once, there. The global priors and entropy are not scaled.

The encoder's input features are the module tables (`encoder.module_tables`) of the
*current* guide means, recomputed in numpy before each step and treated as constants
(no gradient flows through the features, only through the density).

Memory: the optimiser state is the guide (O(modules × d)) and φ; a step holds one
batch, cut out of the cohort by per-student row offsets. Besides the rows themselves
(14 bytes a row with `LEAN` dtypes) the cohort keeps 24 bytes a student (row count,
offset, last timestep) and training a permutation of the students (8 bytes a
student); nothing else per student. The per-student output (states at the end, one
encoder pass in batches) would be O(students × d) and is not computed here.

Not supported (refused): learning_noise="learned", hierarchical=True. The history term
(history=True) is three global coefficients; its per-answer counts ride along with the cohort.
The same code runs under JAX on a GPU (`jax[cuda12]`); it has not been run on one here.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from bayes_lse.core.config import skills_of
from bayes_lse.core.memory import release_free_memory
from bayes_lse.inference.amortised import (
    ModuleSource,
    batch_arrays,
    elbo_loss,
    histories_of,
    import_jax,
    init_params,
    markov_states,
)
from bayes_lse.inference.stopping import LR_DECAY, TwoStagePlateau
from bayes_lse.inference.encoder import (
    Encoder,
    ModuleTables,
    bias_distribution,
    layer_shapes,
    module_tables,
    network,
    row_features,
    state_distribution,
    state_head,
    student_features,
)
from bayes_lse.model import terms as eq
from bayes_lse.model.simulate import SimulatedStudents

if TYPE_CHECKING:
    import xarray as xr

    from bayes_lse.data.log import InteractionLog
    from bayes_lse.model.graph import IndexArrays, ModelSpec

POSITIVE = ("requirement", "gain", "prerequisite")
#: the smallest sd a feature is standardised by in the joint fit (see `fit_amortised`)
FEATURE_SD_FLOOR = 0.25
#: the students' guide in the joint fit: "markov" (default) — each state given the one before
#: through the model's own learning update, shifted by the encoder (`amortised.markov_states`);
#: "independent" — a truncated normal per timestep from the encoder alone (the guide before
#: 2026-12-04; its gains collapsed on short histories, docs/benchmarks.md)
GUIDES = ("markov", "independent")
#: trajectories per batch whose moments give each state's marginal under the Markov guide
MARKOV_SAMPLES = 32
#: where the guide's medians of the positive lesson parameters start
INIT = {"gain": 0.3, "prerequisite": 0.5}
#: Adam's step counter is moved past this at the second stage of the plateau schedule
STAGE_OFFSET = 2**30


@dataclass
class Cohort:
    """Flat rows of a cohort, sorted by student then step (answers before the step's
    lesson): ``student``, ``kind`` (0 answer, 1 lesson), ``code``, ``outcome``, ``step``.

    Any integer dtypes are read (``outcome`` may be float with NaN for lessons); at scale
    use `LEAN` (int32 student/code/step, int8 kind/outcome: 14 bytes a row, 350 MB for 25M
    rows, against 40 bytes in int64/float64). Per student only row counts, offsets and the
    last timestep are kept (int64, 24 bytes a student); a batch is cut out by offsets,
    nothing of length ``n_students`` is built per step."""

    student: np.ndarray
    kind: np.ndarray
    code: np.ndarray
    outcome: np.ndarray
    step: np.ndarray
    n_students: int
    #: (rows, 5) the history term's counts (`terms.HISTORY_COUNTS`) of each answer row (0 on lessons), or None
    history: np.ndarray | None = None

    def last(self) -> np.ndarray:
        """(n_students,) each student's current timestep: the last answer's step, one past
        a final lesson (0 for a student without rows)."""
        out = np.zeros(self.n_students, dtype=np.int64)
        lo, hi = self._offsets[:-1], self._offsets[1:]
        has = np.flatnonzero(hi > lo)
        if len(has):
            # rows are sorted by student then step, so the maximum of step + kind is taken
            # per contiguous segment (reduceat), in chunks to keep the int64 temporary small
            for a in range(0, len(has), 1 << 20):
                h = has[a:a + (1 << 20)]
                r0, r1 = int(lo[h[0]]), int(hi[h[-1]])
                v = self.step[r0:r1].astype(np.int64) + self.kind[r0:r1]
                out[h] = np.maximum.reduceat(v, lo[h] - r0)
        return out

    def subset(self, idx: np.ndarray, d: int) -> SimulatedStudents:
        """Students `idx` renumbered 0..len(idx)-1, as the `SimulatedStudents` that
        `amortised.batch_arrays` reads (no truth: states and bias zero, draw 0)."""
        idx = np.asarray(idx, dtype=np.int64)
        B = len(idx)
        rows, counts = self._rows(idx)
        n = len(rows)
        last = self._last[idx]
        outcome = self.outcome[rows]
        if outcome.dtype.kind in "iub":
            outcome = outcome.astype(float)  # lean cohorts keep 0 for lessons (ignored there)
        return SimulatedStudents(np.repeat(np.arange(B, dtype=np.int64), counts), self.kind[rows].astype(np.int64),
                                 self.code[rows].astype(np.int64), outcome, self.step[rows].astype(np.int64),
                                 np.full(n, np.nan), np.zeros(B, dtype=np.int64),
                                 np.zeros((B, int(last.max(initial=0)) + 1, d)), np.zeros(B), last)

    def _rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of students `idx` (each student's contiguous block, in `idx` order) and
        their counts."""
        starts = self._offsets[idx]
        counts = self._offsets[idx + 1] - starts
        first = np.cumsum(counts) - counts
        return np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(starts - first, counts), counts

    def answer_history(self, idx: np.ndarray) -> np.ndarray:
        """(answers of students `idx`, 5) the history counts, in the order `subset` gives
        their answer rows (what `amortised.batch_arrays` calls an_*)."""
        rows, _ = self._rows(np.asarray(idx, dtype=np.int64))
        rows = rows[self.kind[rows] == 0]
        return np.asarray(self.history[rows], dtype=float)

    def __post_init__(self) -> None:
        counts = np.bincount(self.student, minlength=self.n_students)
        if len(counts) > self.n_students:
            raise ValueError("student codes must be < n_students")
        self._counts = counts
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._last = self.last()


LEAN = {"student": np.int32, "kind": np.int8, "code": np.int32, "outcome": np.int8, "step": np.int32}


def _sizes(c: Cohort, B: int) -> dict[str, int]:
    """Padded sizes holding any B students (the B largest of each count)."""
    def top(counts: np.ndarray) -> int:
        return int(np.sort(counts)[::-1][:B].sum()) + 1

    rows = c._counts
    ans = rows - np.bincount(c.student[c.kind == 1], minlength=c.n_students)  # lessons are the fewer rows
    st = c._last + 1
    return {"rows": top(rows), "answers": top(ans), "states": top(st), "transitions": top(np.maximum(st - 1, 0))}


def _constrain(name: str, u: Any, xp: Any) -> tuple[Any, Any]:
    """(value, log|Jacobian|) of the unconstrained `u`."""
    if name in POSITIVE:
        return xp.exp(u), xp.sum(u)
    return u, 0.0


def global_terms(g: dict[str, Any], key: Any, priors: dict[str, Any], jax: Any, jnp: Any,
                 priors_needed: bool = True) -> tuple[dict, Any]:
    """One reparameterised draw of the globals from the mean-field guide ``g`` ({name:
    (loc, log_scale)}) and E_q[log p(G) + log|J|] + H[q] estimated by it (unscaled;
    0 with ``priors_needed=False``: the draw only)."""
    out = {}
    total = 0.0
    for i, name in enumerate(sorted(g)):
        loc, log_scale = g[name]
        eps = jax.random.normal(jax.random.fold_in(key, i), loc.shape)
        u = loc + jnp.exp(log_scale) * eps
        x, logj = _constrain(name, u, jnp)
        if priors_needed:
            total = total + jnp.sum(eq.prior_log_density(name, x, priors, jnp)) + logj + jnp.sum(log_scale)
        out[name] = x
    return out, total


def student_term(enc_params: dict[str, Any], stats: dict[str, Any], b: dict[str, Any], theta: dict[str, Any],
                 key: Any, d: int, bias: bool, has_prereq: bool, priors: dict[str, Any], noise: float,
                 jax: Any, jnp: Any, segsum: Callable[..., Any], max_step: int | None = None) -> Any:
    """Σ_{u in batch} ELBO_u at globals ``theta`` (`amortised.elbo_loss` × B, with the
    batch's module values taken from ``theta`` by code)."""
    bb = dict(b)
    bb["an_req"] = theta["requirement"][b["an_code"]]
    bb["an_ab"] = theta["assessment_bias"][b["an_code"]] if "assessment_bias" in theta else jnp.zeros_like(b["an_ab"])
    if "history_success" in theta:  # the history term, folded into the answer's offset
        bb["an_ab"] = bb["an_ab"] + eq.history_logit(b["an_hist"], [theta[k] for k in eq.HISTORY_COEFFICIENTS
                                                                    if k in theta], xp=jnp)
    if "gain" in theta:
        has = b["tr_has"][:, None]
        bb["tr_gain"] = has * theta["gain"][b["tr_lesson"]]
        if has_prereq:
            bb["tr_pre"] = has * theta["prerequisite"][b["tr_lesson"]] + (1 - has)
    bb["tr_noise"] = jnp.full_like(b["tr_noise"], noise)
    B = b["g"].shape[0]
    return -elbo_loss(enc_params, stats, bb, key, d, bias, has_prereq, priors, jax, jnp, segsum, max_step) * B


def lesson_arrays(theta: dict[str, Any], b: dict[str, Any], has_prereq: bool, jnp: Any) -> dict[str, Any]:
    """The batch's transition gains and prerequisites at globals ``theta`` (what
    `student_term` puts into the batch, for `markov_states` after the fit)."""
    out = dict(b)
    if "gain" in theta:
        has = b["tr_has"][:, None]
        out["tr_gain"] = has * theta["gain"][b["tr_lesson"]]
        if has_prereq:
            out["tr_pre"] = has * theta["prerequisite"][b["tr_lesson"]] + (1 - has)
    else:
        out["tr_gain"] = jnp.zeros_like(b["tr_gain"])
    return out


def tables_of(guide: dict[str, Any]) -> ModuleTables:
    """The encoder's module tables at the guide's medians (exp of the log-scale locations):
    what the encoder's features are computed from, in training and after it."""
    m = {k: np.asarray(v[0], dtype=float) for k, v in guide.items()}
    return module_tables(np.exp(m["requirement"]), m.get("assessment_bias"),
                         np.exp(m["gain"]) if "gain" in m else None,
                         np.exp(m["prerequisite"]) if "prerequisite" in m else None)


def _feature_source(tables: ModuleTables, biases: bool) -> ModuleSource:
    """What `amortised.batch_arrays` reads for a batch of a *fitted* cohort: the encoder's
    module tables; its module draws are placeholders (the joint fit puts the guide's draw of
    each module into the batch in `student_term`, the output pass needs features only)."""
    return ModuleSource(requirement=np.ones((1, tables.assessment.shape[0], tables.n_skills)), assessment_bias=None,
                        gain=None, prerequisite=None, noise=1.0, priors={}, biases=biases, tables=tables)


@dataclass
class AmortisedFitResult:
    guide: dict[str, tuple[np.ndarray, np.ndarray]]  # name: (loc, scale) unconstrained
    encoder: Encoder
    losses: np.ndarray
    seconds: float
    stopping: dict[str, Any] | None = None  # how the loop ended (schedule, iterations, stopped_by, ...)

    def mean(self, name: str) -> np.ndarray:
        loc, scale = self.guide[name]
        return np.exp(loc + 0.5 * scale**2) if name in POSITIVE else loc


def fit_amortised(
    cohort: Cohort, *, n_assessments: int, n_lessons: int, n_skills: int, priors: dict[str, Any],
    biases: bool = True, lessons: bool = True, prerequisites: bool = True, learning_noise: float = 1.0,
    batch_size: int = 256, steps: int = 2000, hidden: int = 32, learning_rate: float = 1e-2, seed: int = 0,
    progress: Callable[[str], None] | None = None, schedule: str = "cosine", window: int = 500,
    tolerance: float = 1e-4, max_seconds: float | None = None, history: bool = False,
    student_guide: str = "markov", history_names: tuple[str, ...] = eq.HISTORY_COEFFICIENTS[:3],
) -> AmortisedFitResult:
    """Joint SVI of the global guide and the encoder on `cohort` (see the module docstring).

    `history`: the assessment-history term (γ_s·log(1+S) + γ_f·log(1+F) + γ_r·R + practice, `terms.history_logit`, in each answer's
    logit, `terms.history_logit`; the counts are `cohort.history`), global coefficients
    `history_names` (`terms.history_coefficients` of the model config) with normal guides.

    `schedule`: "cosine" — exactly `steps` steps, the learning rate decayed by cosine to
    5 % (the benchmarks: a fixed cost); "plateau" — at most `steps`: `learning_rate`
    until the loss levels off (`stopping.LossPlateau(window, tolerance, noise_aware=True)`)
    or 2/3 of the budget (steps or `max_seconds`) is used, then LR_DECAY × `learning_rate`
    until it levels off again (the two-stage rule of minibatch ADVI, `fit(method="advi",
    batch_size=..., amortised=True)`)."""
    if schedule not in ("cosine", "plateau"):
        raise ValueError(f"schedule must be 'cosine' or 'plateau', got {schedule!r}")
    if student_guide not in GUIDES:
        raise ValueError(f"student_guide must be one of {', '.join(map(repr, GUIDES))}, got {student_guide!r}")
    max_step = int(cohort._last.max(initial=0)) if student_guide == "markov" else None
    if not isinstance(learning_noise, (int, float)) or isinstance(learning_noise, bool) or learning_noise <= 0:
        raise ValueError("amortised fitting needs a fixed positive learning_noise ('learned' is not supported yet)")
    jax, jnp, optim = import_jax()
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    N = cohort.n_students
    B = int(min(batch_size, N))
    d = n_skills
    has_gain = lessons and n_lessons > 0
    has_prereq = has_gain and prerequisites
    guide: dict[str, Any] = {"requirement": (jnp.log(jnp.full((n_assessments, d), 1.0)) + 0.1 *
                                             jax.random.normal(jax.random.PRNGKey(seed + 1), (n_assessments, d)),
                                             jnp.full((n_assessments, d), -2.0))}
    if biases:
        guide["assessment_bias"] = (jnp.zeros(n_assessments), jnp.full(n_assessments, -2.0))
    if has_gain:
        guide["gain"] = (jnp.full((n_lessons, d), math.log(INIT["gain"])), jnp.full((n_lessons, d), -2.0))
        if has_prereq:
            guide["prerequisite"] = (jnp.full((n_lessons, d), math.log(INIT["prerequisite"])),
                                     jnp.full((n_lessons, d), -2.0))
    if history:
        if cohort.history is None:
            raise ValueError("history=True needs the cohort's history counts (cohort_of(..., history=True))")
        for name in history_names:
            guide[name] = (jnp.zeros(()), jnp.full((), -2.0))
    # strongly typed float32 from the start: arrays filled from Python floats are "weak",
    # Adam's update makes them strong, and each change of type recompiled the step (3
    # compilations of ~9 s each instead of one)
    guide = {k: tuple(jnp.asarray(a, dtype=jnp.float32) for a in v) for k, v in guide.items()}
    sizes = _sizes(cohort, B)

    source = _feature_source(tables_of(guide), biases)
    # feature standardisation from a first batch at the initial guide
    first = cohort.subset(np.sort(rng.choice(N, size=min(N, 4 * B), replace=False)), d)
    h0 = histories_of(first)
    x0, g0 = row_features(h0, source.tables), student_features(h0, source.tables)
    # floored at FEATURE_SD_FLOOR: features of the module tables are nearly constant at the
    # initial guide (every requirement ≈ 1: sd 0.004) and spread out as it is learned; with the
    # plain sd they were later scaled by ~1e5, every tanh saturated and the encoder gave every
    # student the same output (measured: in-sample AUC 0.80 against the truth's 0.90)
    stats = {"x_mean": x0.mean(0), "x_std": np.maximum(x0.std(0), FEATURE_SD_FLOOR), "g_mean": g0.mean(0),
             "g_std": np.maximum(g0.std(0), FEATURE_SD_FLOOR),
             "t_mean": np.zeros(d + int(biases)), "t_std": np.ones(d + int(biases))}
    jstats = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in stats.items()}
    shapes = layer_shapes(x0.shape[1], g0.shape[1], hidden, d, biases)
    enc, key = init_params(shapes, jax.random.PRNGKey(seed), jax, jnp)

    def segsum(a: Any, sg: Any, n: int) -> Any:
        return jax.ops.segment_sum(a, sg, num_segments=n + 1)[:n]

    def neg_elbo_hat(params: dict[str, Any], b: dict[str, Any], k: Any) -> Any:
        k1, k2 = jax.random.split(k)
        theta, glob = global_terms(params["guide"], k1, priors, jax, jnp)
        stu = student_term(params["enc"], jstats, b, theta, k2, d, biases, has_prereq, priors,
                           float(learning_noise), jax, jnp, segsum, max_step)
        return -(glob + (N / b["g"].shape[0]) * stu) / N  # per student, for a stable step size

    if schedule == "cosine":
        rate: Any = lambda i: learning_rate * (0.05 + 0.95 * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(i / steps, 1.0))))  # noqa: E731
    else:
        # the second stage is marked by moving Adam's step counter past STAGE_OFFSET: one
        # compiled step for both stages (a second optimiser meant a second compilation of
        # the whole ELBO, ~30 s on a busy 2-core machine); at a counter that large Adam's
        # bias corrections are 1, as they are after the first few hundred steps anyway
        rate = lambda i: learning_rate * jnp.where(i >= STAGE_OFFSET, LR_DECAY, 1.0)  # noqa: E731
    opt = optim.Adam(rate)

    @jax.jit
    def step(st: Any, b: dict[str, Any], k: Any) -> tuple[Any, Any]:
        value, grads = jax.value_and_grad(neg_elbo_hat)(opt.get_params(st), b, k)
        return opt.update(grads, st), value

    if max_step is not None:  # how much of the model's transition the guide follows, learned (logit; 0.5 at start)
        enc["markov_mix"] = jnp.zeros(d, dtype=jnp.float32)
    state = opt.init({"guide": guide, "enc": enc})
    rule = TwoStagePlateau(window, tolerance, steps, max_seconds, noise_aware=True)
    stopped_by = "max_iterations"
    perm = rng.permutation(N)
    pos = 0
    hist = np.empty(steps)
    n = 0
    t_loop = time.perf_counter()
    for i in range(steps):
        if pos + B > N:
            perm, pos = rng.permutation(N), 0
        idx = np.sort(perm[pos:pos + B])
        pos += B
        source.tables = tables_of(opt.get_params(state)["guide"])
        b = batch_arrays(cohort.subset(idx, d), source, biases, sizes, True)
        b = {k: v for k, v in b.items() if k != "target"}
        if history:
            h = cohort.answer_history(idx)
            b["an_hist"] = np.vstack([h, np.zeros((sizes["answers"] - len(h), h.shape[1]))])
        key, sub = jax.random.split(key)
        state, value = step(state, b, sub)
        hist[i] = float(value)
        n = i + 1
        if not np.isfinite(hist[i]):
            stopped_by = "non-finite loss"
            break
        if progress is not None and n % max(1, steps // 10 if schedule == "cosine" else 1000) == 0:
            progress(f"step {n}/{steps}: -ELBO/student {np.mean(hist[max(0, n - 50):n]):.3f}")
        if schedule == "plateau":
            action = rule.update(hist, n, n, time.perf_counter() - t_loop)
            if action == "decay":
                state = (state[0] + STAGE_OFFSET, state[1])
            elif action == "converged":
                stopped_by = "stopping rule"
                break
            elif action == "max_seconds":
                stopped_by = "max_seconds"
                break
    else:
        if schedule == "cosine":
            stopped_by = "steps"
    losses = hist[:n]
    final = opt.get_params(state)
    g_out = {k: (np.asarray(v[0], dtype=float), np.exp(np.asarray(v[1], dtype=float))) for k, v in final["guide"].items()}
    tables = tables_of(final["guide"])
    params = {k: np.asarray(v, dtype=float) for k, v in final["enc"].items()}
    params.update({k: np.asarray(v, dtype=float) for k, v in stats.items()})
    from bayes_lse.inference.encoder import ENCODER_FORMAT

    spec = {
        "format": ENCODER_FORMAT,
        "kind": "deep-sets encoder, truncated-normal states and normal bias at the current timestep",
        "objective": "elbo", "objective_text": "amortised ELBO, trained jointly with the global parameters (SVI)",
        "n_skills": d, "bias": bool(biases), "hidden": int(hidden), "n_row_features": int(x0.shape[1]),
        "n_student_features": int(g0.shape[1]), "activation": "tanh", "module_fingerprint": tables.fingerprint(),
        "guide": student_guide, "prerequisites": bool(has_prereq),
        "training": {"steps": len(losses), "batch_size": B, "learning_rate": float(learning_rate), "seed": seed,
                     "final_loss": float(np.mean(losses[-100:])), "seconds": round(time.perf_counter() - t0, 2),
                     "library": f"jax {jax.__version__}, numpyro.optim.Adam"},
    }
    return AmortisedFitResult(guide=g_out, encoder=Encoder(spec=spec, params=params), losses=np.asarray(losses),
                              seconds=time.perf_counter() - t0,
                              stopping={"schedule": schedule, "iterations": len(losses), "stopped_by": stopped_by,
                                        "converged_at": rule.converged_at, "learning_rate_decay_at": rule.decay_at,
                                        "reasons": rule.reasons, "batch_size": B})


# ------------------------------------------------------------------ fit(method="advi", amortised=True)
def cohort_of(log: InteractionLog, idx: IndexArrays, history: bool = False) -> Cohort:
    """The log's answers and lessons as a `Cohort` in the model's own layout: answers at
    their state's timestep, one lesson per transition that has one (`IndexArrays`), sorted
    by student, step, answers before the step's lesson."""
    has = idx.transition_lesson >= 0
    l_from = idx.transition_from[has]
    n_a, n_l = len(idx.obs_student), len(l_from)
    # LEAN dtypes from the start (14 bytes a row): at 25M rows the int64 columns and their
    # sorted copies were ~2 GB beside the log
    student = np.empty(n_a + n_l, LEAN["student"])
    student[:n_a], student[n_a:] = idx.obs_student, idx.state_student[l_from]
    step = np.empty(n_a + n_l, LEAN["step"])
    step[:n_a], step[n_a:] = idx.state_step[idx.obs_state], idx.state_step[l_from]
    kind = np.zeros(n_a + n_l, LEAN["kind"])
    kind[n_a:] = 1
    order = np.lexsort((kind, step, student))
    student, step, kind = student[order], step[order], kind[order]
    code = np.empty(n_a + n_l, LEAN["code"])
    code[:n_a], code[n_a:] = idx.obs_assessment, idx.transition_lesson[has]
    code = code[order]
    outcome = np.zeros(n_a + n_l, LEAN["outcome"])
    outcome[:n_a] = idx.outcome
    outcome = outcome[order]
    counts = None
    if history:
        counts = np.zeros((n_a + n_l, idx.history.shape[1]), np.float32)  # exact in float32 up to 2**24
        counts[:n_a] = idx.history
        counts = counts[order]
    del order
    c = Cohort(student, kind, code, outcome, step, n_students=log.n_students, history=counts)
    if not np.array_equal(c._last, log.last_step):  # the log's T_u: last answer, or one past the last lesson
        raise AssertionError("amortised ADVI: the cohort's timesteps do not match the log's states")
    return c


def trajectory_posterior(res: AmortisedFitResult, cohort: Cohort, *, biases: bool, n_skills: int,
                         batch_size: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The fitted encoder's q over every student's whole trajectory, in flat state order
    (student, then timestep — the log's): state ``loc``, ``scale`` (n_states, d) of the
    truncated normals and the bias ``loc``, ``scale`` (n_students,) — the ELBO's own
    state head at every timestep (`amortised.elbo_loss`), one jitted pass per batch."""
    jax, jnp, _ = import_jax()
    d = n_skills
    p = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in res.encoder.params.items()}
    tables = tables_of(res.guide)
    source = _feature_source(tables, biases)
    N = cohort.n_students
    B = int(min(batch_size, N))
    sizes = _sizes(cohort, B)

    def segsum(a: Any, sg: Any, n: int) -> Any:
        return jax.ops.segment_sum(a, sg, num_segments=n + 1)[:n]

    markov = res.encoder.spec.get("guide") == "markov"
    max_step = int(cohort._last.max(initial=0))
    has_prereq = bool(res.encoder.spec.get("prerequisites", "prerequisite" in res.guide))
    guide = {k: (jnp.asarray(v[0], jnp.float32), jnp.asarray(np.log(v[1]), jnp.float32)) for k, v in res.guide.items()}

    @jax.jit
    def forward(b: dict[str, Any], key: Any) -> tuple[Any, ...]:
        xs = (b["x"] - p["x_mean"]) / p["x_std"]
        gs = (b["g"] - p["g_mean"]) / p["g_std"]
        z = network(p, xs, b["seg"], b["g"].shape[0], gs, xp=jnp, segment_sum=segsum)
        loc, scale = state_distribution(state_head(p, z[b["st_student"]], b["st_sf"], jnp), p, d, jnp)
        bl, bs = bias_distribution(p, z, p, d, jnp) if biases else (jnp.zeros(z.shape[0]), jnp.ones(z.shape[0]))
        if markov:  # each state's marginal under the Markov guide: moments of MARKOV_SAMPLES trajectories
            def one(k: Any) -> Any:
                k1, k2 = jax.random.split(k)
                theta, _ = global_terms(guide, k1, {}, jax, jnp, priors_needed=False)
                u = jax.random.uniform(k2, loc.shape, minval=1e-6, maxval=1.0)
                mix = jax.nn.sigmoid(p["markov_mix"]) if "markov_mix" in p else 1.0
                s, _ = markov_states(loc, scale, u, lesson_arrays(theta, b, has_prereq, jnp), max_step, has_prereq,
                                     jax, jnp, mix, n_students=b["g"].shape[0])
                return s
            s = jax.lax.map(one, jax.random.split(key, MARKOV_SAMPLES))
            loc, scale = s.mean(0), jnp.maximum(s.std(0), 1e-6)
        return loc, scale, bl, bs

    n_states = int((cohort._last + 1).sum())
    loc = np.empty((n_states, d), dtype=np.float32)  # the encoder computes in float32
    scale = np.empty((n_states, d), dtype=np.float32)
    b_loc = np.empty(N, dtype=np.float32) if biases else None
    b_scale = np.empty(N, dtype=np.float32) if biases else None
    at = 0
    for lo in range(0, N, B):
        idx = np.arange(lo, min(lo + B, N))
        sub = cohort.subset(idx, d)
        keys = ("x", "seg", "g", "st_student", "st_sf", "st_t", "tr_to", "tr_mask", "tr_has", "tr_lesson", "tr_gain",
                "tr_pre")
        b = batch_arrays(sub, source, biases, sizes, True)
        ints = ("seg", "st_student", "st_t", "tr_to", "tr_lesson")
        b = {k: jnp.asarray(b[k], dtype=jnp.int32 if k in ints else jnp.float32) for k in keys}
        if len(idx) < B:  # pad the last batch with empty students to keep one compiled shape
            b["g"] = jnp.concatenate([b["g"], jnp.zeros((B - len(idx), b["g"].shape[1]), jnp.float32)])
        out = [np.asarray(o) for o in forward(b, jax.random.PRNGKey(lo))]
        ns = int((cohort._last[idx] + 1).sum())
        loc[at:at + ns], scale[at:at + ns] = out[0][:ns], out[1][:ns]
        if biases:
            b_loc[idx], b_scale[idx] = out[2][:len(idx)], out[3][:len(idx)]
        at += ns
    return loc, scale, b_loc, b_scale


def unsupported(model_config: Mapping[str, Any], fit_options: Mapping[str, Any]) -> str | None:
    """What in a model config or ADVI fit settings the amortised fit cannot do (None:
    nothing): `run_amortised_advi` raises it, `inference.defaults` does not choose this fit
    for it."""
    if model_config.get("learning_noise") == "learned":
        return "amortised ADVI needs a fixed learning_noise (a positive number); 'learned' is not supported yet"
    if model_config.get("hierarchical"):
        return "amortised ADVI does not support hierarchical=True yet; use hierarchical=False"
    if fit_options.get("kind", "meanfield") != "meanfield" or fit_options.get("backend") is not None:
        return ("amortised ADVI is mean-field over the global parameters and runs on JAX: kind must be "
                "'meanfield' (not full-rank) and backend unset")
    return None


def run_amortised_advi(spec: ModelSpec, log: InteractionLog, fit_cfg: dict[str, Any], progressbar: bool) -> xr.DataTree:
    """`inference.run_fit` for method="advi" with ``amortised=True``: `fit_amortised` with
    the two-stage plateau rule (at most ``max_iterations`` steps of ``batch_size``
    students, ``max_seconds``), then ``draws`` draws of the globals from their guide and of
    every student's trajectory and bias from the encoder, in the posterior DataTree of
    every other fit (ARCHITECTURE.md).  The tree is O(draws × states × skills) like
    minibatch ADVI's: choose ``draws`` by the number of states; training itself keeps
    nothing per student."""
    import xarray as xr

    from bayes_lse.inference.assemble import build_datatree
    from bayes_lse.model.graph import IndexArrays

    cfg = spec.config
    noise = cfg["learning_noise"]
    why = unsupported(cfg, fit_cfg)
    if why is not None:
        raise ValueError(why)
    t0 = time.perf_counter()
    idx = IndexArrays.from_log(log, lean=True)  # int32: stored in the tree as they are
    with_history = bool(cfg["history"])
    cohort = cohort_of(log, idx, history=with_history)
    d = skills_of(cfg)
    seed = 0 if fit_cfg["seed"] is None else int(fit_cfg["seed"])
    lessons = bool(cfg["lessons"]) and log.n_lessons > 0

    def say(msg: str) -> None:
        print(f"amortised ADVI: {msg}", file=sys.stderr)

    res = fit_amortised(cohort, n_assessments=log.n_assessments, n_lessons=log.n_lessons, n_skills=d,
                        priors=cfg["priors"], biases=bool(cfg["biases"]), lessons=lessons,
                        prerequisites=bool(cfg["prerequisites"]), learning_noise=float(noise),
                        batch_size=int(fit_cfg["batch_size"]), steps=int(fit_cfg["max_iterations"]),
                        hidden=int(fit_cfg["encoder_hidden"]), learning_rate=float(fit_cfg["learning_rate"]),
                        seed=seed, progress=say if progressbar else None, schedule="plateau",
                        window=int(fit_cfg["window"]), tolerance=float(fit_cfg["tolerance"]),
                        max_seconds=fit_cfg.get("max_seconds"), history=with_history,
                        history_names=eq.history_coefficients(cfg),
                        student_guide=str(fit_cfg.get("amortised_guide", "markov")))
    info = res.stopping or {}
    if progressbar:
        say(f"stopped after {len(res.losses)} steps ({info.get('stopped_by', '?')}, {res.seconds:.0f} s); every "
            f"student's posterior from the encoder ({cohort.n_students:,} students) ...")
    loc, scale, b_loc, b_scale = trajectory_posterior(res, cohort, biases=bool(cfg["biases"]), n_skills=d)
    N = cohort.n_students
    # the cohort (its sorted rows and counts: 0.6 GB at 25M rows) and the compiled steps are
    # not needed for the tree: freed before it is assembled, where the fit's memory peaks
    del cohort
    import_jax()[0].clear_caches()
    release_free_memory()  # the training loop's freed batches, kept by malloc (heap pages)
    draws = int(fit_cfg["draws"])
    rng = np.random.default_rng(seed + 7)
    raw: dict[str, Any] = {}
    extra: dict[str, xr.Dataset] = {}
    if fit_cfg.get("student_posterior", "draws") == "parameters":
        # kept as the encoder's parameters, drawn on demand (results.posterior.STUDENT_POSTERIOR)
        sp = {"state_loc": (("state", "skill"), loc), "state_scale": (("state", "skill"), scale)}
        if b_loc is not None:
            sp.update(bias_loc=(("student",), b_loc), bias_scale=(("student",), b_scale))
        extra["student_posterior"] = xr.Dataset(sp, attrs={
            "seed": int(seed + 7),
            "family": "per state and skill a normal truncated at 0 (loc, scale); per student a normal bias; "
                      "independent across states, students and of the global parameters (mean-field)",
            "draws": "on demand: draw k of state i, skill j from a counter-based uniform of (seed, k, i, j)"})
    else:
        states = np.empty((1, draws, len(loc), d))
        for i in range(draws):  # one draw at a time: no (draws, states, d) temporary beside the output
            states[0, i] = eq.truncated_normal_quantile(loc, scale, 1.0 - rng.random(loc.shape))
        raw["student_state"] = (("chain", "draw", "state", "skill"), states)  # the flat layout: no copy
        if b_loc is not None:
            raw["student_bias"] = (("chain", "draw", "student"),
                                   b_loc + b_scale * rng.standard_normal((1, draws, len(b_loc))))
    del loc, scale
    dims = {"requirement": ("assessment", "skill"), "gain": ("lesson", "skill"), "prerequisite": ("lesson", "skill"),
            "assessment_bias": ("assessment",), **{k: () for k in eq.HISTORY_COEFFICIENTS}}
    for name, (g_loc, g_scale) in res.guide.items():
        u = g_loc + g_scale * rng.standard_normal((1, draws, *g_loc.shape))
        raw[name] = (("chain", "draw", *dims[name]), np.exp(u) if name in POSITIVE else u)
    B = int(info.get("batch_size", fit_cfg["batch_size"]))
    n = len(res.losses)
    opt = xr.Dataset(
        {"loss": ("iteration", res.losses * N)},
        coords={"iteration": np.arange(1, n + 1)},
        attrs={
            "kind": "meanfield", "amortised": 1, "converged": int(info.get("converged_at", -1) >= 0),
            "iterations": n, "converged_at": int(info.get("converged_at", -1)),
            "rule": (f"the {fit_cfg['window']}-iteration mean loss changed by < {fit_cfg['tolerance']:g} (relative) or "
                     f"by less than 2 standard errors, after the learning rate was cut to {LR_DECAY:g}x"),
            "stopping_reasons": "; ".join(info.get("reasons", [])),
            "learning_rate_decay_at": int(info.get("learning_rate_decay_at", -1)),
            "stopped_by": str(info.get("stopped_by", "")), "batch_size": B, "batches_per_epoch": -(-N // B),
            "epochs": n * B / N, "encoder_hidden": int(fit_cfg["encoder_hidden"]),
            "optimisation_seconds": float(res.seconds),
            "loss_estimate": "unbiased minibatch estimate of the full negative ELBO (students through the encoder, "
                             "their block scaled by N/B)",
            "approximation": "mean-field normal over the global parameters (log scale for the positive ones); "
                             "per student q(trajectory, bias | answers) from the jointly trained encoder",
        },
    )
    if info.get("converged_at", -1) < 0:
        import warnings

        warnings.warn(f"amortised ADVI did not meet its stopping rule (stopped by {info.get('stopped_by')} after {n} "
                      "iterations); raise max_iterations/max_seconds or check the loss history", RuntimeWarning,
                      stacklevel=3)
    return build_datatree(cfg, fit_cfg, "advi", log, idx, xr.Dataset(raw), {"optimization": opt, **extra},
                          time.perf_counter() - t0)
