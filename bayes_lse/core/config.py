"""JSON-able model and fit configuration, merged over defaults, with a stable hash.

Every fit records both dicts so a saved model says exactly which priors, noise
and sampler settings produced it, and so that loading can refuse a mismatch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import numbers
from typing import Any

#: σ_L default: the original LSE code's learning-update variance of 0.5.
DEFAULT_LEARNING_NOISE = math.sqrt(0.5)

DEFAULT_PRIORS: dict[str, float] = {
    # half-normal scales (what keeps every embedding non-negative)
    "initial_state_scale": 1.0,
    "requirement_scale": 1.0,
    "gain_scale": 1.0,
    "prerequisite_scale": 1.0,
    # normal standard deviations of the bias terms
    "student_bias_sd": 1.0,
    "assessment_bias_sd": 1.0,
    # half-normal scale of σ_L when it is learned
    "learning_noise_scale": 1.0,
    # normal sd of the two coefficients of the assessment-history term (history=True)
    "history_sd": 1.0,
    # normal sd of a tag's effect on the biases of the assessments it tags (model config "tags")
    "tag_bias_sd": 1.0,
}

#: the skill dimension d where "auto" is not decided by a held-out check (simulation, NUTS,
#: ADVI, MAP with fewer than 1,000 held-out answers; `results.selection.choose_structure`)
DEFAULT_SKILLS = 2

DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    # an integer >= 1, or "auto": MAP fits with ≥ 1,000 held-out answers compare d = 1 and d = 2
    # on the held-out last 10 % of 150 students' answers and keep the better (d = 1 won on both
    # real logs, docs/results.md); everywhere else DEFAULT_SKILLS (`results.selection`)
    "n_skills": "auto",
    "prerequisites": True,
    "biases": True,
    # True, False (a model of assessments only: states drift by noise), or "auto": a MAP fit
    # with enough held-out answers fits the chosen d once more without lessons and drops
    # them only when that predicts clearly better (items as lessons; results.selection);
    # everywhere else True
    "lessons": "auto",
    # a positive float (fixed σ_L) or the string "learned"
    "learning_noise": DEFAULT_LEARNING_NOISE,
    # True: the pass logit also has γ_s·log(1+S) + γ_f·log(1+F) + γ_r·R, S/F the student's
    # earlier successes/failures on the *same* assessment (the per-item memory of a
    # performance-factors model; see docs/results.md on ASSISTments repeats) and
    # R = lag^(−1/2), lag its answers since the last one to it (forgetting; docs/results.md
    # "Forgetting: the recency feature" on MoFaCTS, model.terms.history_features), plus
    # γ_ps·log(1+P_s) + γ_pf·log(1+P_f) for its earlier successes/failures on *any* assessment
    # (practice, PFA's overall counts; docs/results.md "Practice"); "auto": on
    # when ≥ 5 % of the answers repeat a (student, assessment) pair (inference.defaults)
    "history": "auto",
    # the history term's practice counts (the student's earlier successes/failures on any
    # assessment): "auto" = on where the model has no lessons to learn from (a log without
    # lesson rows, or lessons=False) — ASSISTments +0.001 AUC over PFA with them; with lessons
    # they compete with the learning the lessons model (simulated cohorts: held-out AUC 0.92
    # instead of 0.98) and changed nothing on MoFaCTS (docs/results.md "Practice")
    "practice": "auto",
    # True: the prior scales of requirements, gains, prerequisites and both biases, and
    # the assessment biases' mean, are learned (hyperpriors with the "priors" scales;
    # model.terms.HYPER_OF); MAP sets them by empirical Bayes (inference.empirical_bayes)
    "hierarchical": False,
    # True: when the log comes with a modules table (fit(..., modules=), --modules), an
    # assessment's bias is centred on the mean of its tags' effects (its tags and group
    # values, `ModuleTable.key_matrix`; each effect ~ N(0, tag_bias_sd²)), so sparse items
    # borrow strength from their tags and a new item is predicted from them
    # (model.terms.tag_mean; docs/results.md "Tags"). Nothing changes without a table.
    "tags": True,
    "priors": DEFAULT_PRIORS,
}

DEFAULT_FIT_CONFIG: dict[str, dict[str, Any]] = {
    "map": {
        # "auto": by the number of answers (inference.defaults): 2 starts up to 20k answers,
        # 1 beyond, of 1,000 iterations; the fit records the numbers it used
        "starts": "auto",
        "maxiter": "auto",
        "ftol": 1e-12,
        "gtol": 1e-5,
        "jitter": 1.0,
        # where the mode is taken; see inference.fit_map for what each choice measured
        # "auto": centred on the compiled kernel above 20k answers, else non-centred when
        # histories are short (inference.defaults)
        "parametrization": "auto",
        "constrained": False,  # True: box constraints on raw positive values instead of log space
        "jacobian": False,
        "normalised": False,  # centred form only: keep the truncation normaliser (collapses)
        "trajectory": "joint",  # "median": hold innovations at 0 (non-centred only)
        # "auto": centred MAP on the compiled kernel (map_kernel.py), else PyTensor; or force one
        "engine": "auto",
        # kernel only: "numpy" (no numba import, ~105 MB less resident memory) or "numba"
        # (about 2x faster per evaluation); "auto": numba up to 200k answers (inference.defaults)
        "kernel_backend": "auto",
        # L-BFGS memory: corrections kept, each 2 vectors of the parameter size;
        # "auto": 20 up to 200k parameters, 5 beyond (memory; on ASSISTments 5 also converged faster)
        "maxcor": "auto",
        "seed": None,
    },
    "advi": {
        "kind": "meanfield",  # or "fullrank"
        "parametrization": "auto",
        "max_iterations": 30000,
        "learning_rate": 0.02,
        "tolerance": 1e-4,  # relative change of the windowed mean loss
        "window": 500,
        "draws": 1000,
        "seed": None,
        # minibatch ADVI (bayes_lse/minibatch.py): students per batch; None = full batch (PyMC's pm.fit)
        "batch_size": None,
        "max_seconds": None,  # stop optimising after this many seconds (None: no time limit)
        "backend": None,  # full-batch only: None (PyTensor default) or "jax" (pm.fit(backend="jax"); GPU-capable)
        # True: the students' variational factors come from an encoder trained jointly with the
        # global guide (inference.amortised_fit; needs the jax extra): memory no longer grows
        # with the number of students during training; implies minibatches (batch_size 256 if unset)
        "amortised": False,
        "encoder_hidden": 32,  # amortised only: the encoder's hidden width
        # amortised only: how the students' posterior is kept in the tree: "draws" (every state
        # in every draw, as other fits), "parameters" (each state's truncated-normal and each
        # bias's normal from the encoder, drawn on demand: results.posterior.STUDENT_POSTERIOR),
        # or "auto": parameters when the draws would exceed inference.defaults.MAX_STATE_BYTES
        "student_posterior": "auto",
        # amortised only: the students' guide, "markov" (each state from the one before through the
        # model's learning update, shifted by the encoder) or "independent" (a truncated normal per
        # timestep from the encoder alone; inference.amortised_fit.GUIDES)
        "amortised_guide": "markov",
    },
    "nuts": {
        "sampler": "nutpie",
        "parametrization": "auto",  # "centered" | "noncentered" (see model.build_model)
        # "polar": requirement vectors as norm × direction, the assessment bias as an
        # offset from |a| (the same model, better NUTS geometry; model._polar_half_normal)
        "requirement": "polar",
        "chains": 4,
        "draws": 1000,
        "tune": 1000,
        "target_accept": 0.9,
        "seed": None,
        "cores": None,  # None: one per chain, up to the CPUs this process may use
        # numpyro only: "auto" | "parallel" | "sequential" | "vectorized" (inference.jax_chain_method)
        "chain_method": "auto",
        # nutpie only: mass-matrix adaptation, None (nutpie's "diag") | "diag" | "draw_diag" | "low_rank"
        "adaptation": None,
    },
}


def merge(defaults: dict[str, Any], overrides: dict[str, Any] | None, where: str) -> dict[str, Any]:
    """Deep-merge `overrides` over `defaults`, refusing keys the defaults do not know."""
    out = copy.deepcopy(defaults)
    for key, value in (overrides or {}).items():
        if key not in out:
            known = ", ".join(sorted(out))
            raise ValueError(f"unknown {where} setting {key!r}; known settings: {known}")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


#: type and range of every numeric and boolean fit setting (enumerated ones are checked
#: where they are used); "int>=1" etc. read as the message says. Issue 19 item 12: a
#: config with starts 1.5, maxiter 0 or -3, jitter -1, 1e400 or null reached the
#: optimiser and failed there with messages naming neither the file nor the key.
FIT_SETTING_RULES: dict[str, str] = {
    "starts": "auto|int>=1", "maxiter": "auto|int>=1", "ftol": "float>0", "gtol": "float>0", "jitter": "float>=0",
    "constrained": "bool", "jacobian": "bool", "normalised": "bool", "maxcor": "auto|int>=1",
    "max_iterations": "int>=1", "learning_rate": "float>0", "tolerance": "float>=0", "window": "int>=1",
    "draws": "int>=1", "batch_size": "none|int>=1", "amortised": "bool", "encoder_hidden": "int>=1", "max_seconds": "none|float>0",
    "chains": "int>=1", "tune": "int>=0", "target_accept": "float in (0, 1)", "cores": "none|int>=1",
    "seed": "none|int>=0",
}


def _rule_ok(value: Any, rule: str) -> bool:
    for alt in rule.split("|"):
        if alt == "none" and value is None:
            return True
        if alt == "auto" and value == "auto":
            return True
        if alt == "bool" and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue
        if alt.startswith("int") and isinstance(value, numbers.Integral):
            low = int(alt.split(">=")[1])
            if value >= low:
                return True
        if alt.startswith("float") and isinstance(value, numbers.Real) and math.isfinite(value):
            if alt == "float>0" and value > 0:
                return True
            if alt == "float>=0" and value >= 0:
                return True
            if alt == "float in (0, 1)" and 0 < value < 1:
                return True
    return False


def validate_fit_config(cfg: dict[str, Any], method: str) -> dict[str, Any]:
    """Check every numeric and boolean setting of a merged fit config.

    Parameters
    ----------
    cfg : dict
        The method's defaults merged with the user's overrides (`merge`).
    method : str
        "map", "advi" or "nuts" (named in messages).

    Returns
    -------
    dict
        `cfg`, unchanged.

    Raises
    ------
    ValueError
        Naming the setting, the value and the allowed type and range, e.g.
        ``map fit setting 'starts' must be an integer >= 1, got 1.5``.
    """
    words = {"int>=1": "an integer >= 1", "int>=0": "an integer >= 0", "float>0": "a finite number > 0",
             "float>=0": "a finite number >= 0", "bool": "true or false", "auto": "'auto'", "none": "null",
             "float in (0, 1)": "a number strictly between 0 and 1"}
    if cfg.get("amortised_guide", "markov") not in ("markov", "independent"):
        raise ValueError(f"{method} fit setting 'amortised_guide' must be 'markov' or 'independent', "
                         f"got {cfg['amortised_guide']!r}")
    if cfg.get("student_posterior", "auto") not in ("auto", "draws", "parameters"):
        raise ValueError(f"{method} fit setting 'student_posterior' must be 'auto', 'draws' or 'parameters', "
                         f"got {cfg['student_posterior']!r}")
    for key, rule in FIT_SETTING_RULES.items():
        if key in cfg and not _rule_ok(cfg[key], rule):
            allowed = " or ".join(words[a] for a in rule.split("|"))
            raise ValueError(f"{method} fit setting {key!r} must be {allowed}, got {cfg[key]!r}")
    return cfg


def validate_model_config(cfg: dict[str, Any]) -> dict[str, Any]:
    d = cfg["n_skills"]
    if d != "auto" and (not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 1):
        raise ValueError(f"n_skills must be an integer >= 1 or 'auto', got {d!r}")
    if d != "auto":
        cfg["n_skills"] = int(d)
    noise = cfg["learning_noise"]
    if noise != "learned":
        if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not (noise > 0 and math.isfinite(noise)):
            raise ValueError(f"learning_noise must be a finite positive number or 'learned', got {noise!r}")
        cfg["learning_noise"] = float(noise)
    for key in ("prerequisites", "biases", "lessons", "history", "practice", "hierarchical", "tags"):
        if key in ("lessons", "history", "practice") and cfg[key] == "auto":  # chosen from the data at fit time
            continue
        if not isinstance(cfg[key], bool):
            allowed = "true, false or 'auto'" if key in ("lessons", "history", "practice") else "true or false"
            raise ValueError(f"{key} must be {allowed}, got {cfg[key]!r}")
    for key, value in cfg["priors"].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"prior {key} must be a finite positive number, got {value!r}")
        cfg["priors"][key] = float(value)
    return cfg


def skills_of(cfg: dict[str, Any]) -> int:
    """The skill dimension d of a model config: its ``n_skills``, or `DEFAULT_SKILLS` while
    it is still "auto" (not yet decided by a fit)."""
    d = cfg["n_skills"]
    return DEFAULT_SKILLS if d == "auto" else int(d)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-able: {type(obj).__name__}")


def config_hash(*objs: Any) -> str:
    h = hashlib.sha256()
    for obj in objs:
        h.update(canonical_json(obj).encode())
    return h.hexdigest()[:16]
