"""Canned posteriors for fast diagnostics/report tests: no sampling.

A small cohort is simulated from known parameters with numpy (the model's own
equations), then "posterior draws" are the truth plus independent noise, shaped
like the posterior DataTree of ARCHITECTURE.md.  Pathologies are injected on
purpose (a shifted chain, a chain with permuted skills, divergences, tree-depth
saturation, a low-E-BFMI chain) so that the diagnostics have known answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from bayes_lse.model import terms as eq

HOSTILE_STUDENT = "<script>alert(1)</script>"
HOSTILE_ASSESSMENT = '"><img src=x onerror=alert(2)>'


#: Model variants that the MAP kernel and the PyMC graph must agree on (tests/inference/
#: test_map_kernel.py, tests/model/test_terms.py).  Shared here: a test module importing
#: another test module only works when pytest happened to collect that one first.
MODEL_VARIANTS = [
    {},
    {"prerequisites": False},
    {"biases": False},
    {"lessons": False},
    {"learning_noise": "learned"},
    {"n_skills": 3},
    {"history": True},
]

#: Prior scales all different from the defaults and from each other, so a density test
#: catches a term reading the wrong scale (tests/model/test_terms.py, test_hierarchical.py).
DISTINCT_PRIORS = {
    "initial_state_scale": 0.7,
    "requirement_scale": 1.3,
    "gain_scale": 0.4,
    "prerequisite_scale": 0.9,
    "student_bias_sd": 0.6,
    "assessment_bias_sd": 1.7,
    "learning_noise_scale": 0.45,
    "history_sd": 2.2,
}


@dataclass
class Truth:
    """Known parameters and the interaction log simulated from them."""

    n_skills: int
    student_ids: list[str]
    assessment_ids: list[str]
    lesson_ids: list[str]
    state: np.ndarray  # (S, d)
    state_student: np.ndarray  # (S,) student codes
    state_step: np.ndarray  # (S,)
    requirement: np.ndarray  # (A, d)
    gain: np.ndarray  # (L, d)
    prerequisite: np.ndarray | None  # (L, d)
    student_bias: np.ndarray | None
    assessment_bias: np.ndarray | None
    learning_noise: float
    obs_state: np.ndarray
    obs_student: np.ndarray
    obs_assessment: np.ndarray
    outcome: np.ndarray
    transition_from: np.ndarray
    transition_to: np.ndarray
    transition_lesson: np.ndarray
    table: pd.DataFrame
    prerequisites: bool
    biases: bool


def simulate_truth(
    n_students: int = 24,
    n_assessments: int = 6,
    n_lessons: int = 3,
    n_skills: int = 2,
    max_lessons: int = 3,
    answers_per_state: int = 2,
    prerequisites: bool = True,
    biases: bool = True,
    learning_noise: float = 0.3,
    hostile_ids: bool = False,
    seed: int = 0,
) -> Truth:
    """Draw parameters and a ragged interaction history (DESIGN §1, §2)."""
    rng = np.random.default_rng(seed)
    d = n_skills
    student_ids = [f"s{u:03d}" for u in range(n_students)]
    assessment_ids = [f"A{j}" for j in range(n_assessments)]
    lesson_ids = [f"L{k}" for k in range(n_lessons)]
    # well separated skill columns, so a permutation of skills is unambiguous
    requirement = np.abs(rng.normal(0.0, 1.0, (n_assessments, d))) + 0.2
    requirement[:, 0] *= 1.8
    if hostile_ids:
        student_ids[0] = HOSTILE_STUDENT
        assessment_ids[0] = HOSTILE_ASSESSMENT
        requirement[0] = 2.5  # the hardest: it must show in the top-N tables
    gain = np.abs(rng.normal(0.0, 0.6, (n_lessons, d))) + 0.05
    prerequisite = np.abs(rng.normal(0.0, 0.5, (n_lessons, d))) if prerequisites else None
    student_bias = rng.normal(0.0, 0.5, n_students) if biases else None
    assessment_bias = rng.normal(0.0, 0.5, n_assessments) if biases else None

    states, st_student, st_step = [], [], []
    obs_state, obs_assessment, outcome = [], [], []
    t_from, t_to, t_lesson = [], [], []
    rows = []
    for u in range(n_students):
        n_les = int(rng.integers(1, max_lessons + 1)) if n_lessons else 0
        s = np.abs(rng.normal(0.0, 1.0, d))
        for t in range(n_les + 1):
            flat = len(states)
            states.append(s)
            st_student.append(u)
            st_step.append(t)
            for _ in range(answers_per_state):
                j = int(rng.integers(n_assessments))
                p = eq.pass_probability(
                    s,
                    requirement[j],
                    0.0 if student_bias is None else student_bias[u],
                    0.0 if assessment_bias is None else assessment_bias[j],
                )
                y = float(rng.random() < p)
                obs_state.append(flat)
                obs_assessment.append(j)
                outcome.append(y)
                rows.append((student_ids[u], assessment_ids[j], "assessment", y, t, u, j, -1))
            if t < n_les:
                k = int(rng.integers(n_lessons))
                rows.append((student_ids[u], lesson_ids[k], "lesson", np.nan, t, u, -1, k))
                mean = eq.expected_update(s, gain[k], None if prerequisite is None else prerequisite[k])
                s = np.abs(mean + rng.normal(0.0, learning_noise, d))
                t_from.append(flat)
                t_to.append(flat + 1)
                t_lesson.append(k)
    table = pd.DataFrame(
        rows,
        columns=["student_id", "module_id", "module_type", "outcome", "timestep", "student", "assessment", "lesson"],
    )
    table["source_row"] = np.arange(2, len(table) + 2)
    state_student = np.array(st_student)
    return Truth(
        n_skills=d,
        student_ids=student_ids,
        assessment_ids=assessment_ids,
        lesson_ids=lesson_ids,
        state=np.array(states),
        state_student=state_student,
        state_step=np.array(st_step),
        requirement=requirement,
        gain=gain,
        prerequisite=prerequisite,
        student_bias=student_bias,
        assessment_bias=assessment_bias,
        learning_noise=learning_noise,
        obs_state=np.array(obs_state),
        obs_student=state_student[np.array(obs_state)],
        obs_assessment=np.array(obs_assessment),
        outcome=np.array(outcome),
        transition_from=np.array(t_from, dtype=int),
        transition_to=np.array(t_to, dtype=int),
        transition_lesson=np.array(t_lesson, dtype=int),
        table=table,
        prerequisites=prerequisites,
        biases=biases,
    )


def _draws(value, chains: int, draws: int, sd: float, rng, positive: bool) -> np.ndarray:
    value = np.asarray(value, dtype=float)
    x = value + sd * rng.standard_normal((chains, draws) + value.shape)
    return np.abs(x) if positive else x


def _posterior(truth: Truth, chains: int, draws: int, sd: float, rng, learn_noise: bool) -> dict[str, np.ndarray]:
    p = {
        "student_state": _draws(truth.state, chains, draws, sd, rng, True),
        "requirement": _draws(truth.requirement, chains, draws, sd, rng, True),
    }
    if len(truth.lesson_ids):  # an assessments-only model has no lesson variables at all
        p["gain"] = _draws(truth.gain, chains, draws, sd, rng, True)
    if truth.prerequisite is not None and len(truth.lesson_ids):
        p["prerequisite"] = _draws(truth.prerequisite, chains, draws, sd, rng, True)
    if truth.biases:
        p["student_bias"] = _draws(truth.student_bias, chains, draws, sd, rng, False)
        p["assessment_bias"] = _draws(truth.assessment_bias, chains, draws, sd, rng, False)
    if learn_noise:
        p["learning_noise"] = _draws(truth.learning_noise, chains, draws, 0.05, rng, True)
    return p


def _to_datatree(
    truth: Truth,
    post: dict[str, np.ndarray],
    method: str,
    *,
    learn_noise: bool,
    extra_groups: dict[str, xr.Dataset],
    fit_config: dict,
    runtime: float,
) -> xr.DataTree:
    dims = {
        "student_state": ("state", "skill"),
        "requirement": ("assessment", "skill"),
        "gain": ("lesson", "skill"),
        "prerequisite": ("lesson", "skill"),
        "student_bias": ("student",),
        "assessment_bias": ("assessment",),
        "learning_noise": (),
    }
    chains, draws = next(iter(post.values())).shape[:2]
    posterior = xr.Dataset(
        {k: (("chain", "draw") + dims[k], v) for k, v in post.items()},
        coords={
            "chain": np.arange(chains),
            "draw": np.arange(draws),
            "skill": np.arange(truth.n_skills),
            "assessment": truth.assessment_ids,
            "lesson": truth.lesson_ids,
            "student": truth.student_ids,
            "state_student": ("state", np.asarray(truth.student_ids)[truth.state_student]),
            "state_step": ("state", truth.state_step),
        },
    )
    if not truth.biases:
        posterior = posterior.drop_vars("student")
    groups = {
        "posterior": posterior,
        "observed_data": xr.Dataset({"outcome": ("obs", truth.outcome)}),
        "constant_data": xr.Dataset(
            {
                "obs_state": ("obs", truth.obs_state),
                "obs_student": ("obs", truth.obs_student),
                "obs_assessment": ("obs", truth.obs_assessment),
                "transition_from": ("transition", truth.transition_from),
                "transition_to": ("transition", truth.transition_to),
                "transition_lesson": ("transition", truth.transition_lesson),
            }
        ),
        "interactions": xr.Dataset(
            {c: ("row", truth.table[c].to_numpy()) for c in truth.table.columns}
        ),
    }
    groups.update(extra_groups)
    dt = xr.DataTree.from_dict(groups)
    model_config = {
        "n_skills": truth.n_skills,
        "prerequisites": truth.prerequisites,
        "biases": truth.biases,
        "lessons": bool(len(truth.lesson_ids)),
        "learning_noise": None if learn_noise else truth.learning_noise,
        "learn_noise": learn_noise,
        "state_scale": 1.0,
        "requirement_scale": 1.0,
        "gain_scale": 1.0,
        "prerequisite_scale": 1.0,
        "bias_scale": 1.0,
    }
    dt.attrs = {
        "format_version": "1",
        "method": method,
        "model_config": json.dumps(model_config),
        "fit_config": json.dumps(fit_config),
        "config_hash": "cannedhash",
        "bayes_lse_version": "0.1.0",
        "created": "2026-01-01T00:00:00",
        "runtime_seconds": runtime,
    }
    return dt


def nuts_idata(
    truth: Truth | None = None,
    *,
    chains: int = 4,
    draws: int = 400,
    sd: float = 0.1,
    stuck_chain: int | None = None,
    shift: float = 0.6,
    permuted_chain: int | None = None,
    n_divergent: int = 0,
    divergent_chain: int = 1,
    implicated_student: int = 1,
    saturated_fraction: float = 0.0,
    low_bfmi_chain: int | None = None,
    learn_noise: bool = True,
    max_treedepth: int = 10,
    seed: int = 1,
) -> xr.DataTree:
    """A NUTS-shaped posterior with optional pathologies (known answers for tests)."""
    truth = truth or simulate_truth()
    rng = np.random.default_rng(seed)
    post = _posterior(truth, chains, draws, sd, rng, learn_noise)
    if stuck_chain is not None:
        # a chain stuck in another mode: shifted, and barely moving
        for k, v in post.items():
            centre = v[stuck_chain].mean(axis=0)
            moved = centre * (1 + shift) if k not in ("student_bias", "assessment_bias") else centre + shift
            v[stuck_chain] = moved + 0.2 * (v[stuck_chain] - centre)
    if permuted_chain is not None:
        for k in ("student_state", "requirement", "gain", "prerequisite"):
            if k in post:
                post[k][permuted_chain] = post[k][permuted_chain][..., ::-1]
    diverging = np.zeros((chains, draws), dtype=bool)
    if n_divergent:
        idx = rng.choice(draws, size=n_divergent, replace=False)
        diverging[divergent_chain, idx] = True
        # the divergent draws sit in an odd corner for one student (a funnel, say)
        st = post["student_state"]
        mine = truth.state_student == implicated_student
        sub = st[divergent_chain][idx]
        sub[:, mine, :] = sub[:, mine, :] * 3.0 + 1.0
        st[divergent_chain, idx] = sub
        if "learning_noise" in post:
            post["learning_noise"][divergent_chain, idx] *= 0.2
    depth = rng.integers(3, 6, (chains, draws))
    saturated = rng.random((chains, draws)) < saturated_fraction
    depth[saturated] = max_treedepth
    energy = rng.standard_normal((chains, draws)) * 10 + 100
    if low_bfmi_chain is not None:
        energy[low_bfmi_chain] = 100 + np.cumsum(rng.standard_normal(draws))
    sample_stats = xr.Dataset(
        {
            "diverging": (("chain", "draw"), diverging),
            "energy": (("chain", "draw"), energy),
            "tree_depth": (("chain", "draw"), depth),
            "reached_max_treedepth": (("chain", "draw"), saturated),
            "step_size": (("chain", "draw"), np.full((chains, draws), 0.3)),
            "n_steps": (("chain", "draw"), 2.0**depth - 1),
            "acceptance_rate": (("chain", "draw"), rng.uniform(0.7, 1.0, (chains, draws))),
        },
        coords={"chain": np.arange(chains), "draw": np.arange(draws)},
    )
    fit_config = {"method": "nuts", "draws": draws, "chains": chains, "tune": 500, "seed": seed,
                  "max_treedepth": max_treedepth, "backend": "pymc"}
    return _to_datatree(truth, post, "nuts", learn_noise=learn_noise,
                        extra_groups={"sample_stats": sample_stats}, fit_config=fit_config, runtime=12.5)


def advi_idata(
    truth: Truth | None = None,
    *,
    draws: int = 300,
    n_iterations: int = 2000,
    converged: bool = True,
    sd: float = 0.08,
    seed: int = 2,
) -> xr.DataTree:
    """An ADVI-shaped posterior: one chain of iid draws plus a loss history."""
    truth = truth or simulate_truth()
    rng = np.random.default_rng(seed)
    post = _posterior(truth, 1, draws, sd, rng, learn_noise=False)
    it = np.arange(n_iterations)
    # a converged run flattens out; a truncated one is still falling steeply
    scale = n_iterations / 8 if converged else n_iterations * 2
    loss = 500 + 2000 * np.exp(-it / scale) + rng.normal(0, 3, n_iterations)
    optimization = xr.Dataset(
        {"loss": ("iteration", loss)},
        coords={"iteration": it},
        attrs={"converged": int(converged), "n_iterations": n_iterations, "tolerance": 0.01,
               "approximation": "meanfield"},
    )
    fit_config = {"method": "advi", "n_iterations": n_iterations, "draws": draws, "seed": seed}
    return _to_datatree(truth, post, "advi", learn_noise=False,
                        extra_groups={"optimization": optimization}, fit_config=fit_config, runtime=3.2)


def map_idata(
    truth: Truth | None = None,
    *,
    n_starts: int = 3,
    success: bool = True,
    grad_norm: float = 1e-4,
    seed: int = 3,
) -> xr.DataTree:
    """A MAP-shaped posterior: one chain, one draw, and one optimiser row per start."""
    truth = truth or simulate_truth()
    rng = np.random.default_rng(seed)
    post = _posterior(truth, 1, 1, 0.02, rng, learn_noise=False)
    objective = np.array([1234.5, 1234.9, 1301.2, 1250.0, 1400.0][:n_starts])
    optimization = xr.Dataset(
        {
            "objective": ("start", objective),
            "n_iterations": ("start", np.array([212, 198, 340, 150, 99][:n_starts])),
            "grad_norm": ("start", np.array([grad_norm, 2e-4, 3e-3, 1e-3, 1e-2][:n_starts])),
            "success": ("start", np.array([success, True, True, False, True][:n_starts])),
            "message": ("start", np.array(["CONVERGENCE: REL_REDUCTION_OF_F_<=_FACTR*EPSMCH"] * n_starts,
                                          dtype=object)),
        },
        coords={"start": np.arange(n_starts)},
        attrs={"best_start": 0},
    )
    fit_config = {"method": "map", "n_starts": n_starts, "seed": seed}
    return _to_datatree(truth, post, "map", learn_noise=False,
                        extra_groups={"optimization": optimization}, fit_config=fit_config, runtime=0.8)
