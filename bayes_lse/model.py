"""The Latent Skill Embedding as a PyMC model (DESIGN §1).

The latent trajectory is written without a scan: initial states are half-normal,
later states one positive free variable, and the truncated-normal transition
density — normalising term included — is added for every (t → t+1) pair at once
through index arrays.  The joint density is then exactly the one `simulate`
draws from.  States exist only for steps a student has (ragged, flattened).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.dist_math import normal_lcdf

from .config import DEFAULT_MODEL_CONFIG, merge, validate_model_config
from .equations import NORM_EPS

if TYPE_CHECKING:
    from .data import InteractionLog
    from .fitted import FittedLSE

METHODS = ("map", "advi", "nuts")


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

    @classmethod
    def from_log(cls, log: InteractionLog) -> IndexArrays:
        t = log.table
        is_a = (t["module_type"] == "assessment").to_numpy()
        student = t["student"].to_numpy()[is_a].astype(np.int64)
        offset = np.asarray(log.state_offset, dtype=np.int64)
        obs_state = offset[student] + t["timestep"].to_numpy()[is_a].astype(np.int64)
        tr = log.transitions()
        n_states = int(offset[-1])
        initial = offset[:-1]
        later_mask = np.ones(n_states, dtype=bool)
        later_mask[initial] = False
        return cls(
            obs_state=obs_state,
            obs_student=student,
            obs_assessment=t["assessment"].to_numpy()[is_a].astype(np.int64),
            outcome=t["outcome"].to_numpy()[is_a].astype(np.int8),
            transition_from=tr["from_state"].to_numpy().astype(np.int64),
            transition_to=tr["to_state"].to_numpy().astype(np.int64),
            transition_lesson=tr["lesson"].to_numpy().astype(np.int64),
            initial_state=initial.copy(),
            later_state=np.flatnonzero(later_mask),
            state_student=np.asarray(log.state_student, dtype=np.int64),
            state_step=np.asarray(log.state_step, dtype=np.int64),
        )

    @property
    def n_states(self) -> int:
        return len(self.state_student)


def _norm(v: pt.TensorVariable) -> pt.TensorVariable:
    return pt.sqrt(pt.sum(v * v, axis=-1) + NORM_EPS)


def _relevance(s: pt.TensorVariable, v: pt.TensorVariable) -> pt.TensorVariable:
    n = _norm(v)
    return pt.sum(s * v, axis=-1) / n - n


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
        logp = logp - normal_lcdf(0.0, 1.0, mu / sigma)
    return logp


class LatentSkillEmbedding:
    """Students, lessons and assessments in one non-negative latent skill space.

    Parameters mirror the JSON-able model config (see `config.DEFAULT_MODEL_CONFIG`);
    `priors` overrides individual prior scales.
    """

    def __init__(
        self,
        n_skills: int = 2,
        prerequisites: bool = True,
        biases: bool = True,
        lessons: bool = True,
        learning_noise: float | str = DEFAULT_MODEL_CONFIG["learning_noise"],
        priors: dict[str, float] | None = None,
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
                    "priors": priors or {},
                },
                "model",
            )
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LatentSkillEmbedding:
        cfg = merge(DEFAULT_MODEL_CONFIG, config, "model")
        return cls(**cfg)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"LatentSkillEmbedding(n_skills={c['n_skills']}, prerequisites={c['prerequisites']}, "
            f"biases={c['biases']}, lessons={c['lessons']}, learning_noise={c['learning_noise']!r})"
        )

    @property
    def n_skills(self) -> int:
        return int(self.config["n_skills"])

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
        }

    def build_model(
        self, log: InteractionLog, *, normalised: bool = True, constrained: bool = False
    ) -> tuple[pm.Model, IndexArrays]:
        """The PyMC model for `log` and the index arrays it was built from.

        `constrained=True` leaves the positive variables untransformed (for an optimiser
        with box constraints). `normalised=False` drops the truncation normaliser −log Φ(mu/σ) from the
        transition density (the original LSE objective); MAP uses it, see inference.fit_map.
        """
        cfg, pri = self.config, self.config["priors"]
        idx = IndexArrays.from_log(log)
        use_lessons = cfg["lessons"] and log.n_lessons > 0
        tr = {"default_transform": None} if constrained else {}
        with pm.Model(coords=self.coords(log, idx)) as model:
            s0 = pm.HalfNormal("initial_state", sigma=pri["initial_state_scale"], dims=("student", "skill"), **tr)
            req = pm.HalfNormal("requirement", sigma=pri["requirement_scale"], dims=("assessment", "skill"), **tr)
            if len(idx.later_state):
                later = pm.HalfFlat(
                    "later_state", dims=("later", "skill"), initval=np.ones((len(idx.later_state), self.n_skills)), **tr
                )
                # flat state order: position of every flat state in [s0; later]
                pos = np.empty(idx.n_states, dtype=np.int64)
                pos[idx.initial_state] = np.arange(len(idx.initial_state))
                pos[idx.later_state] = len(idx.initial_state) + np.arange(len(idx.later_state))
                states = pt.concatenate([s0, later], axis=0)[pos]
            else:
                states = s0  # every student has a single state: flat index = student code

            if len(idx.transition_from):
                if cfg["learning_noise"] == "learned":
                    noise = pm.HalfNormal("learning_noise", sigma=pri["learning_noise_scale"], **tr)
                else:
                    noise = cfg["learning_noise"]
                s_from = states[idx.transition_from]
                mu = s_from
                if use_lessons:
                    gain = pm.HalfNormal("gain", sigma=pri["gain_scale"], dims=("lesson", "skill"), **tr)
                    has = idx.transition_lesson >= 0
                    k = np.where(has, idx.transition_lesson, 0)
                    step_gain = gain[k]
                    if cfg["prerequisites"]:
                        prereq = pm.HalfNormal(
                            "prerequisite", sigma=pri["prerequisite_scale"], dims=("lesson", "skill"), **tr
                        )
                        step_gain = step_gain * pm.math.sigmoid(_relevance(s_from, prereq[k]))[:, None]
                    if not has.all():
                        step_gain = step_gain * has[:, None].astype("float64")
                    mu = s_from + step_gain
                pm.Potential(
                    "learning_update",
                    pt.sum(truncated_normal_logp(states[idx.transition_to], mu, noise, normalised)),
                )
            elif use_lessons:
                # lessons exist but no student has a step after one: gains are prior-only
                gain = pm.HalfNormal("gain", sigma=pri["gain_scale"], dims=("lesson", "skill"), **tr)
                if cfg["prerequisites"]:
                    pm.HalfNormal("prerequisite", sigma=pri["prerequisite_scale"], dims=("lesson", "skill"), **tr)

            logit = _relevance(states[idx.obs_state], req[idx.obs_assessment])
            if cfg["biases"]:
                g_u = pm.Normal("student_bias", 0.0, pri["student_bias_sd"], dims="student")
                g_j = pm.Normal("assessment_bias", 0.0, pri["assessment_bias_sd"], dims="assessment")
                logit = logit + g_u[idx.obs_student] + g_j[idx.obs_assessment]
            pm.Bernoulli("outcome", logit_p=logit, observed=idx.outcome, dims="obs")
        return model, idx

    # -------------------------------------------------------------------- fit
    def fit(self, log: InteractionLog | pd.DataFrame | str, method: str = "nuts", **kwargs: Any) -> FittedLSE:
        """Fit by `method` ("map", "advi" or "nuts"); keyword arguments override the
        method's defaults in `config.DEFAULT_FIT_CONFIG` (e.g. draws=, chains=,
        sampler=, starts=, kind=, seed=, progressbar=)."""
        from .data import InteractionLog, read_interactions
        from .inference import run_fit

        if not isinstance(log, InteractionLog):
            log = read_interactions(log)
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        return run_fit(self, log, method, **kwargs)
