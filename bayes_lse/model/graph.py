"""The Latent Skill Embedding as a PyMC model (DESIGN §1).

The latent trajectory is written without a scan: initial states are half-normal,
later states one positive free variable, and the truncated-normal transition
density — normalising term included — is added for every (t → t+1) pair at once
through index arrays.  The joint density is then exactly the one `simulate`
draws from.  States exist only for steps a student has (ragged, flattened).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from bayes_lse.core.lazy import LazyModule
from bayes_lse.core.config import DEFAULT_MODEL_CONFIG, merge, skills_of, validate_model_config
from bayes_lse.model.terms import (
    HISTORY_COUNTS,
    assessment_history_counts,
    hierarchical_variable,
    history_coefficients,
    history_features,
    history_logit,
    practice_on,
    hyperparameters_used,
    learning_update_mean,
    prior_location,
    prior_scale,
    prior_variable,
    relevance_at,
    tag_mean,
    tensor_norm,
    truncated_normal_from_innovation,
    truncated_normal_logp,
    unit_and_norm,
)

# imported on first use: a MAP fit on the compiled kernel never builds a PyMC model
# (PyMC + PyTensor are ~45 MB of resident memory; issue 7's MAP memory budget)
pm: Any = LazyModule("pymc")
pt: Any = LazyModule("pytensor.tensor")

if TYPE_CHECKING:
    from bayes_lse.data.log import InteractionLog

METHODS = ("map", "advi", "nuts")

#: history="auto" turns the assessment-history term on when at least this share of the
#: answers repeat an earlier (student, assessment) pair (`choose_history`).
HISTORY_MIN_REPEATS = 0.05


def repeat_share(log: InteractionLog) -> float:
    """Share of answers to an assessment the same student had answered before."""
    t = log.table
    is_a = (t["module_type"] == "assessment").to_numpy()
    n = int(is_a.sum())
    if not n:
        return 0.0
    a = t["assessment"].to_numpy()[is_a]
    # distinct pairs by one int64 key (0.4 GB at 17M answers; DataFrame.duplicated on the two
    # columns peaked 1.1 GB above the table there): the same share as duplicated().mean()
    key = t["student"].to_numpy()[is_a].astype(np.int64) * (int(a.max()) + 1) + a
    key.sort()  # distinct = 1 + changes along the sorted keys (np.unique took 30 s at 17M, this 1.2 s)
    return (n - 1 - int(np.count_nonzero(key[1:] != key[:-1]))) / n


def history_feature_data(counts: np.ndarray, config: dict[str, Any]) -> dict[str, np.ndarray]:
    """The history term's features (`terms.history_features`) of `counts` that a model with
    `config` has (`terms.history_coefficients`), one array per feature under the name of its
    `pm.Data` container (``history_<kind>_data``, `terms.HISTORY_COUNTS`) in a model built
    with ``outcome_data=True``."""
    feats = history_features(np.asarray(counts, dtype=float))[:len(history_coefficients(config))]
    return {f"history_{kind}_data": np.asarray(f, dtype=float) for kind, f in zip(HISTORY_COUNTS, feats, strict=False)}


def choose_history(log: InteractionLog) -> tuple[bool, str]:
    """What history="auto" becomes for `log`, and why (one line for `fit`'s stderr).

    Why this rule (docs/results.md, issue 15): the term (PFA's per-item memory) gained
    +0.04 AUC on both real logs with repeated answers (MoFaCTS 0.821 → 0.862,
    ASSISTments 0.780 → 0.827); where no one answers anything twice it has nothing to
    count and only adds two coefficients."""
    share = repeat_share(log)
    on = share >= HISTORY_MIN_REPEATS
    return on, (f"history term {'on' if on else 'off'}: {share:.1%} of answers repeat an earlier "
                f"(student, assessment) pair ({'>=' if on else '<'} {HISTORY_MIN_REPEATS:.0%})")


#: longest history for which "auto" picks the non-centred trajectory (its graph grows with the steps)
NONCENTERED_MAX_STEPS = 64


@dataclass(frozen=True)
class IndexArrays:
    """The integer arrays that tie interactions to parameters; saved as constant_data."""

    obs_state: np.ndarray
    obs_student: np.ndarray
    obs_assessment: np.ndarray
    outcome: np.ndarray
    transition_from: np.ndarray
    transition_to: np.ndarray
    transition_lesson: np.ndarray  # −1: a step with no lesson (noise only)
    initial_state: np.ndarray  # flat index of each student's state 0
    later_state: np.ndarray  # flat indices of all other states
    state_student: np.ndarray
    state_step: np.ndarray
    #: int32 indices and float32 history counts (`from_log(lean=True)`)
    lean: bool = False
    #: the log's modules table as a row-normalised (assessment × key) scipy matrix, and the
    #: keys (tags, "group=value") that tag two assessments or more: `ModuleTable.key_matrix`;
    #: None without a table
    tag_matrix: Any = None
    tag_names: tuple[str, ...] = ()

    @classmethod
    def from_log(cls, log: InteractionLog, lean: bool = False) -> IndexArrays:
        """The log's index arrays: int64 (what the PyMC graphs and the numba MAP kernel are
        compiled for), or with ``lean=True`` int32 indices and float32 history counts —
        the amortised fit's, whose arrays are stored in the tree as they are: at 25M rows
        the int64 arrays and float64 counts were 1.1 GB, half of it saved (the states'
        student and step stay the log's own int64 arrays, shared, not copied)."""
        it = np.int32 if lean and log.n_states < 2**31 else np.int64
        t = log.table
        is_a = (t["module_type"] == "assessment").to_numpy()
        student = t["student"].to_numpy()[is_a].astype(it)
        offset = np.asarray(log.state_offset, dtype=np.int64)
        obs_state = (offset[student] + t["timestep"].to_numpy()[is_a]).astype(it)
        tr = log.transitions()
        n_states = int(offset[-1])
        initial = offset[:-1]
        later_mask = np.ones(n_states, dtype=bool)
        later_mask[initial] = False
        tag_matrix, tag_names = None, ()
        if getattr(log, "modules", None) is not None:
            m, names = log.modules.key_matrix(log.assessments, "assessment", min_modules=2)
            if m.nnz:
                tag_matrix, tag_names = m, tuple(names)
        return cls(
            obs_state=obs_state,
            obs_student=student,
            obs_assessment=t["assessment"].to_numpy()[is_a].astype(it),
            outcome=t["outcome"].to_numpy()[is_a].astype(np.int8),
            transition_from=tr["from_state"].to_numpy().astype(it),
            transition_to=tr["to_state"].to_numpy().astype(it),
            transition_lesson=tr["lesson"].to_numpy().astype(it),
            initial_state=initial.astype(it),
            later_state=np.flatnonzero(later_mask).astype(it, copy=False),
            state_student=np.asarray(log.state_student, dtype=np.int64),
            state_step=np.asarray(log.state_step, dtype=np.int64),
            lean=lean,
            tag_matrix=tag_matrix,
            tag_names=tag_names,
        )

    @property
    def n_states(self) -> int:
        return len(self.state_student)

    @cached_property
    def history(self) -> np.ndarray:
        """(answers, 3): earlier successes/failures of each answer's student on its
        assessment and the lag since it last answered it, in state order (the history term's
        counts, `assessment_history_counts`; computed once; float32 when lean — counts are
        exact in float32 up to 2**24)."""
        return assessment_history_counts(self.obs_student, self.obs_assessment, self.outcome, self.obs_state,
                                         dtype=np.float32 if self.lean else float)


def _max_step(idx: IndexArrays) -> int:
    return int(idx.state_step.max()) if len(idx.state_step) else 0


def _noncentered_states(s0: Any, z: Any, idx: IndexArrays, update_mean: Any, noise: Any) -> Any:
    """All flat states from the initial ones and the innovations, one vectorised block per step."""
    step_from = idx.state_step[idx.transition_from]
    blocks = [s0]
    flat_ids = [idx.initial_state]
    current_ids = idx.initial_state  # flat indices held by the latest block, ascending
    for k in range(_max_step(idx)):
        tk = np.flatnonzero(step_from == k)
        if not len(tk):
            break
        pos = np.searchsorted(current_ids, idx.transition_from[tk])
        mu = update_mean(blocks[-1][pos], idx.transition_lesson[tk])
        blocks.append(truncated_normal_from_innovation(mu, noise, z[tk]))
        current_ids = idx.transition_to[tk]
        flat_ids.append(current_ids)
    order = np.concatenate(flat_ids)
    perm = np.empty(idx.n_states, dtype=np.int64)
    perm[order] = np.arange(len(order))
    return pt.concatenate(blocks, axis=0)[perm]


def _polar_half_normal(name: str, scale: Any, d: int, dim: str) -> tuple[Any, Any]:
    """x ~ HalfNormal(σ)^d (one vector per `dim` entry) written as x = |x|·u, the norm
    and the direction independent.

    For iid half-normals the norm is σ·χ_d (so |x|² ~ Gamma(d/2, rate 1/(2σ²))) and the
    direction u = v/|v| is uniform on the orthant's sphere for any v ~ HalfNormal(1)^d,
    independent of the norm: the same distribution of x.  The likelihood sees a
    requirement's norm and direction very differently (|a| trades against the
    assessment bias); as separate coordinates NUTS's diagonal mass matrix can scale
    each, where in log-coordinates the norm is a diagonal it cannot follow.
    """
    if isinstance(scale, (int, float)):
        norm_sq = pm.Gamma(f"{name}_norm_sq", alpha=d / 2.0, beta=1.0 / (2.0 * scale**2), dims=dim)
        norm = pt.sqrt(norm_sq)
    else:  # a learned scale (hierarchical model): the norm non-centred, σ·χ_d
        norm_sq = pm.Gamma(f"{name}_norm_sq", alpha=d / 2.0, beta=0.5, dims=dim)
        norm = scale * pt.sqrt(norm_sq)
    v = pm.HalfNormal(f"{name}_direction", sigma=1.0, dims=(dim, "skill"))
    x = pm.Deterministic(name, v / tensor_norm(v)[:, None] * norm[:, None], dims=(dim, "skill"))
    return x, norm


def _offset_assessment_bias(req_norm: Any, sd: Any, loc: Any = 0.0) -> Any:
    """g_j ~ N(0, sd²) sampled as c_j = g_j − |a_j|, the combination the pass logit uses.

    (a, g) → (a, c) has unit Jacobian, so adding log N(c + |a|; 0, sd²) as a potential
    keeps the joint density; without it, |a_j| and g_j form a diagonal ridge (only
    their difference is seen by the data) that a diagonal mass matrix cannot follow.
    """
    c = pm.Flat("assessment_offset", dims="assessment")
    g_j = pm.Deterministic("assessment_bias", c + req_norm, dims="assessment")
    pm.Potential("assessment_bias_prior", pm.logp(pm.Normal.dist(loc, sd), g_j).sum())
    return g_j


def tags_on(config: dict[str, Any], idx: IndexArrays) -> bool:
    """Whether a model with `config` has tag effects on the log of `idx`: config "tags",
    bias terms (the effects centre the assessment biases), and a modules table tagging
    some of the log's assessments (`IndexArrays.tag_matrix`)."""
    return bool(config.get("tags", True)) and bool(config["biases"]) and idx.tag_matrix is not None


#: assessment × key cells up to which the graph holds the tag matrix dense
DENSE_TAG_CELLS = 50_000_000


class ModelSpec:
    """Students, lessons and assessments in one non-negative latent skill space.

    Parameters mirror the JSON-able model config (see `config.DEFAULT_MODEL_CONFIG`);
    `priors` overrides individual prior scales.
    """

    def __init__(
        self,
        n_skills: int | str = "auto",
        prerequisites: bool = True,
        biases: bool = True,
        lessons: bool | str = "auto",
        learning_noise: float | str = DEFAULT_MODEL_CONFIG["learning_noise"],
        priors: dict[str, float] | None = None,
        history: bool | str = "auto",
        hierarchical: bool = False,
        practice: bool | str = "auto",
        tags: bool = True,
    ) -> None:
        self.config = validate_model_config(
            merge(
                DEFAULT_MODEL_CONFIG,
                {
                    "n_skills": n_skills,
                    "prerequisites": prerequisites,
                    "biases": biases,
                    "lessons": lessons,
                    "learning_noise": learning_noise,
                    "history": history,
                    "practice": practice,
                    "hierarchical": hierarchical,
                    "tags": tags,
                    "priors": priors or {},
                },
                "model",
            )
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelSpec:
        cfg = merge(DEFAULT_MODEL_CONFIG, config, "model")
        return cls(**cfg)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{type(self).__name__}(n_skills={c['n_skills']}, prerequisites={c['prerequisites']}, "
            f"biases={c['biases']}, lessons={c['lessons']!r}, learning_noise={c['learning_noise']!r}"
            + (f", history={c['history']!r}" if c["history"] else "")
            + (", hierarchical=True" if c["hierarchical"] else "")
            + (", tags=False)" if not c.get("tags", True) else ")")
        )

    @property
    def history_unresolved(self) -> bool:
        """Whether the history term or its practice counts are still "auto"."""
        return "auto" in (self.config["history"], self.config["practice"])

    def resolve_history(self, log: InteractionLog) -> tuple[ModelSpec, str | None]:
        """This spec with history="auto" decided for `log` (`choose_history`) and
        practice="auto" decided (on for a history model with no lessons to learn from: no
        lesson rows or lessons=False), and the reason (None when the config already said)."""
        cfg = self.config
        if not self.history_unresolved:
            return self, None
        on, why = choose_history(log) if cfg["history"] == "auto" else (bool(cfg["history"]), None)
        practice = cfg["practice"]
        if practice == "auto":
            practice = on and practice_on(cfg, has_lessons=log.n_lessons > 0)
            if on:
                said = (f"practice counts {'on' if practice else 'off'} "
                        + ("(no lessons to learn from: the student's successes/failures on any assessment stand in)"
                           if practice else "(the lessons model the learning)"))
                why = f"{why}; {said}" if why else f"history term: {said}"
        return type(self).from_config({**cfg, "history": on, "practice": practice}), why

    def with_skills(self, d: int) -> ModelSpec:
        """This spec with ``n_skills`` set to `d` (an "auto" decided by a fit)."""
        return type(self).from_config({**self.config, "n_skills": int(d)})

    def with_lessons(self, on: bool) -> ModelSpec:
        """This spec with ``lessons`` set to `on` (an "auto" decided by a fit)."""
        return type(self).from_config({**self.config, "lessons": bool(on)})

    @property
    def n_skills(self) -> int:
        """d: the config's ``n_skills``, or `core.config.DEFAULT_SKILLS` while it is "auto"."""
        return skills_of(self.config)

    # ------------------------------------------------------------------ model
    def coords(self, log: InteractionLog, idx: IndexArrays) -> dict[str, Any]:
        return {
            "student": list(log.students),
            "assessment": list(log.assessments),
            "lesson": list(log.lessons),
            "skill": list(range(self.n_skills)),
            "later": np.arange(len(idx.later_state)),
            "obs": np.arange(len(idx.outcome)),
            "transition": np.arange(len(idx.transition_from)),
            **({"tag": list(idx.tag_names)} if tags_on(self.config, idx) else {}),
        }

    def build_model(
        self,
        log: InteractionLog,
        *,
        parametrization: str = "auto",
        normalised: bool = True,
        constrained: bool = False,
        requirement: str = "cartesian",
        hyper: dict[str, Any] | None = None,
        outcome_data: bool = False,
        tag_scale: float | None = None,
    ) -> tuple[pm.Model, IndexArrays]:
        """The PyMC model for `log` and the index arrays it was built from.

        `parametrization`: "centered" makes every later state a free positive variable
        with the transition density as a potential (vectorised, any history length);
        "noncentered" draws a standard-normal innovation per transition and maps it
        through the truncated-normal inverse CDF, building states step by step — the
        same joint distribution with far better NUTS geometry, for histories up to
        NONCENTERED_MAX_STEPS steps ("auto" picks it there).
        `constrained=True` leaves the positive variables untransformed (for an optimiser
        with box constraints). `normalised=False` drops the truncation normaliser −log Φ(mu/σ) from the
        transition density (the original LSE objective); MAP uses it, see inference.fit_map.
        `requirement="polar"` writes the same joint distribution in sampler-friendly
        coordinates (requirement vectors as norm × direction, the assessment bias as an
        offset from |a|; see `_polar_half_normal`); for NUTS — a mode in these
        coordinates is not the mode of the model.  (The same form for gains and
        prerequisites did not raise their ESS on the benchmark cohort, so it is not used.)

        A hierarchical config (``hierarchical=True``) learns the prior scales and the
        assessment biases' mean (`terms.HYPER_OF`): as random variables with the
        parameters in non-centred form when `hyper` is None (ADVI, NUTS), or held at the
        values (floats or PyTensor shared variables) in `hyper`, parameters centred —
        the empirical-Bayes MAP (`inference.empirical_bayes`) optimises the biases' around them.
        `outcome_data=True` holds the outcomes in a `pm.Data` container named
        ``"outcome_data"`` (and the history term's features, which follow the outcomes, in
        `history_feature_data`'s containers), so one compiled model can be refit on other
        outcomes of the same design (`inference.refit`, simulation-based calibration).
        With tag effects (`tags_on`: a modules table with the log) the tags' scale σ_τ is
        a random variable with the effects non-centred when `tag_scale` is None (ADVI,
        NUTS), or held at `tag_scale` with the effects centred (MAP, whose σ_τ comes from
        `inference.empirical_bayes.TagScaleObjective`).
        """
        if self.history_unresolved:  # the same choice `fit` makes for this log
            spec, _ = self.resolve_history(log)
            return spec.build_model(log, parametrization=parametrization, normalised=normalised,
                                    constrained=constrained, requirement=requirement, hyper=hyper,
                                    outcome_data=outcome_data, tag_scale=tag_scale)
        cfg, pri = self.config, self.config["priors"]
        idx = IndexArrays.from_log(log)
        use_lessons = cfg["lessons"] and log.n_lessons > 0
        if parametrization == "auto":
            parametrization = "noncentered" if _max_step(idx) <= NONCENTERED_MAX_STEPS else "centered"
        if parametrization not in ("centered", "noncentered"):
            raise ValueError(f"parametrization must be 'auto', 'centered' or 'noncentered', got {parametrization!r}")
        tr = {"default_transform": None} if constrained else {}
        used = hyperparameters_used({**cfg, "lessons": use_lessons})
        learned = bool(used) and hyper is None
        if hyper is not None and not used:
            raise ValueError("hyperparameter values were given for a model that is not hierarchical")
        if hyper is not None and set(used) - set(hyper):
            raise ValueError(f"missing hyperparameter values: {', '.join(sorted(set(used) - set(hyper)))}")
        with pm.Model(coords=self.coords(log, idx)) as model:
            if learned:
                hyper = {h: prior_variable(h, pri, **tr) for h in used}

            def param(name: str, dims: Any) -> Any:
                if learned:
                    return hierarchical_variable(name, hyper, dims=dims)
                return prior_variable(name, pri, hyper, dims=dims, **(tr if name not in ("student_bias", "assessment_bias") else {}))

            s0 = prior_variable("initial_state", pri, dims=("student", "skill"), **tr)
            if requirement not in ("cartesian", "polar"):
                raise ValueError(f"requirement must be 'cartesian' or 'polar', got {requirement!r}")
            polar = requirement == "polar"
            if polar:
                if constrained:
                    raise ValueError("requirement='polar' is a sampling parametrisation; it has no constrained form")
                req, req_norm = _polar_half_normal("requirement", prior_scale("requirement", pri, hyper), self.n_skills, "assessment")
            else:
                req = param("requirement", ("assessment", "skill"))
            gain = prereq = None
            if use_lessons:
                gain = param("gain", ("lesson", "skill"))
                if cfg["prerequisites"]:
                    prereq = param("prerequisite", ("lesson", "skill"))
            noise: Any = cfg["learning_noise"]
            if len(idx.transition_from) and noise == "learned":
                noise = prior_variable("learning_noise", pri, **tr)

            prereq_unit = prereq_norm = None
            if prereq is not None:
                prereq_unit, prereq_norm = unit_and_norm(prereq)

            def update_mean(s_from: Any, lesson: np.ndarray) -> Any:
                return learning_update_mean(s_from, lesson, gain, prereq_unit, prereq_norm)

            if not len(idx.later_state):
                states = s0  # every student has a single state: flat index = student code
            elif parametrization == "centered":
                later = pm.HalfFlat(
                    "later_state", dims=("later", "skill"), initval=np.ones((len(idx.later_state), self.n_skills)), **tr
                )
                # flat state order: position of every flat state in [s0; later]
                pos = np.empty(idx.n_states, dtype=np.int64)
                pos[idx.initial_state] = np.arange(len(idx.initial_state))
                pos[idx.later_state] = len(idx.initial_state) + np.arange(len(idx.later_state))
                states = pt.concatenate([s0, later], axis=0)[pos]
                mu = update_mean(states[idx.transition_from], idx.transition_lesson)
                pm.Potential(
                    "learning_update",
                    pt.sum(truncated_normal_logp(states[idx.transition_to], mu, noise, normalised)),
                )
            else:
                z = pm.Normal("innovation", 0.0, 1.0, dims=("transition", "skill"))
                states = _noncentered_states(s0, z, idx, update_mean, noise)
                pm.Deterministic("later_state", states[idx.later_state], dims=("later", "skill"))
            # D(s, a_j) + g_j = s·â_j + (g_j − |a_j|): per-assessment terms first, then one
            # gather each per answer (the per-answer gathers' gradients are scatter-adds)
            req_unit, req_len = unit_and_norm(req)
            g_j = None
            if cfg["biases"]:
                g_u = param("student_bias", "student")
                shift: Any = 0.0  # the tags' mean effect per assessment (model config "tags")
                if tags_on(cfg, idx):
                    if idx.tag_matrix.shape[0] * idx.tag_matrix.shape[1] > DENSE_TAG_CELLS:
                        raise ValueError(f"{idx.tag_matrix.shape[0]} assessments × {idx.tag_matrix.shape[1]} tags is "
                                         "too large for the PyMC graph's tag effects; fit by MAP, or tags=False")
                    if tag_scale is None:
                        s_tau = prior_variable("sigma_tag_bias", pri, **tr)
                        tau = hierarchical_variable("tag_bias", {"sigma_tag_bias": s_tau}, dims="tag")
                    else:
                        tau = prior_variable("tag_bias", pri, {"sigma_tag_bias": tag_scale}, dims="tag")
                    shift = tag_mean(idx.tag_matrix.toarray(), tau)
                if polar and not learned:
                    g_j = _offset_assessment_bias(req_norm, prior_scale("assessment_bias", pri, hyper),
                                                  prior_location("assessment_bias", hyper) + shift)
                elif learned and tags_on(cfg, idx):
                    # centred with tag effects: non-centred, g_j = μ + τ̄_j + σ_g z_j left a ridge between
                    # each tag's τ and its items' z (the data fix g_j) — MoFaCTS subset, NUTS: σ_τ bulk
                    # ESS 70, R-hat 1.05; centred 437, 1.016, 0 divergences (benchmarks/bench_hierarchical_nuts.py --tags)
                    g_j = prior_variable("assessment_bias", pri, hyper, dims="assessment", shift=shift)
                elif learned:
                    g_j = hierarchical_variable("assessment_bias", hyper, dims="assessment", shift=shift)
                else:
                    g_j = prior_variable("assessment_bias", pri, hyper, dims="assessment", shift=shift)
            logit = relevance_at(states[idx.obs_state], req_unit, req_len, idx.obs_assessment, g_j)
            if cfg["biases"]:
                logit = logit + g_u[idx.obs_student]
            if cfg["history"]:
                coefs = [prior_variable(name, pri) for name in history_coefficients(cfg)]
                if outcome_data:
                    # the counts follow the outcomes: a refit on other outcomes swaps these too
                    data = history_feature_data(idx.history, cfg)
                    logit = logit + sum(c * pm.Data(name, f, dims="obs")
                                        for c, (name, f) in zip(coefs, data.items(), strict=True))
                else:
                    logit = logit + history_logit(idx.history, coefs)
            observed = pm.Data("outcome_data", idx.outcome, dims="obs") if outcome_data else idx.outcome
            pm.Bernoulli("outcome", logit_p=logit, observed=observed, dims="obs")
        return model, idx
