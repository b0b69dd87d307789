"""Settings chosen from the data (`inference.defaults`) and recorded with the fit."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

import bayes_lse as bl
from bayes_lse.inference import defaults


def _log(rows: list[tuple[str, str]]) -> bl.InteractionLog:
    return bl.read_interactions(pd.DataFrame({"student_id": [r[0] for r in rows], "module_id": [r[1] for r in rows],
                                              "module_type": "assessment", "outcome": 1, "timestep": 0}))


def test_repeat_share_counts_answers_to_an_assessment_answered_before():
    log = _log([("s1", "a"), ("s1", "a"), ("s1", "b"), ("s2", "a")])
    assert defaults.repeat_share(log) == pytest.approx(0.25)
    on, why = defaults.choose_history(log)
    assert on and "25.0%" in why
    off, why = defaults.choose_history(_log([("s1", "a"), ("s1", "b"), ("s2", "a")]))
    assert not off and "0.0%" in why


def test_method_and_map_settings_follow_the_number_of_answers(monkeypatch):
    small = _log([("s1", "a"), ("s2", "b")])
    assert defaults.choose_method(small)[:2] == ("nuts", {})
    cfg, why = defaults.resolve_map_settings({"starts": "auto", "maxiter": "auto", "ftol": 1e-9}, small)
    assert (cfg["starts"], cfg["maxiter"], cfg["ftol"]) == (defaults.SMALL_STARTS, defaults.MAXITER, 1e-9)
    assert len(why) == 2
    cfg, why = defaults.resolve_map_settings({"starts": 3, "maxiter": 7}, small)
    assert (cfg["starts"], cfg["maxiter"], why) == (3, 7, [])  # a user's numbers are kept
    monkeypatch.setattr(defaults, "NUTS_MAX_ANSWERS", 1)
    monkeypatch.setattr(defaults, "SMALL_ANSWERS", 1)
    method, implied, why = defaults.choose_method(small)
    assert method == "map" and implied == {} and "2 answers" in why
    assert defaults.resolve_map_settings({"starts": "auto"}, small)[0]["starts"] == 1


def test_large_logs_get_amortised_advi_where_it_can_run(monkeypatch):
    """Issue 16: from AMORTISED_MIN_ANSWERS answers "auto" is amortised ADVI (faster than
    MAP and better held out at 1.7M answers); MAP when it cannot run, saying why."""
    pytest.importorskip("jax")
    pytest.importorskip("numpyro")
    log = _log([("s1", "a"), ("s2", "b"), ("s3", "a")])
    monkeypatch.setattr(defaults, "NUTS_MAX_ANSWERS", 1)
    assert defaults.choose_method(log)[0] == "map"  # 3 answers: below the threshold
    monkeypatch.setattr(defaults, "AMORTISED_MIN_ANSWERS", 3)
    method, implied, why = defaults.choose_method(log, bl.LatentSkillEmbedding().config)
    assert (method, implied) == ("advi", {"amortised": True}) and "amortised ADVI: 3 answers" in why
    long = _log([("s1", f"a{i}") for i in range(25)])  # 25 answers a student: MAP is faster there
    method, _, why = defaults.choose_method(long)
    assert method == "map" and "25.0 a student" not in why and "25 answers" in why
    for config, options, reason in [({"hierarchical": True}, {}, "hierarchical"),
                                    ({"learning_noise": "learned"}, {}, "learning_noise"),
                                    ({}, {"starts": 2}, "starts is not an ADVI option"),
                                    ({}, {"kind": "fullrank"}, "full-rank")]:
        method, implied, why = defaults.choose_method(log, config, options)
        assert (method, implied) == ("map", {}) and reason in why, why
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else object())
    method, _, why = defaults.choose_method(log)
    assert method == "map" and "jax not installed" in why and "bayes-lse[jax]" in why
    # amortised=True asks for it at any size
    monkeypatch.setattr(defaults, "AMORTISED_MIN_ANSWERS", 10**9)
    assert defaults.choose_method(log, None, {"amortised": True})[:2] == ("advi", {})


def test_fit_records_what_it_chose():
    c = bl.simulate(n_students=12, n_steps=3, n_assessments=4, n_lessons=2, seed=0)
    fit = bl.LatentSkillEmbedding(n_skills=1, history="auto").fit(c.table, method="map", maxiter=20, progressbar=False)
    assert fit.model_config["history"] is True  # the simulated design repeats assessments
    assert any(ch.startswith("history term on") for ch in fit.choices)
    assert fit.fit_config["starts"] == defaults.SMALL_STARTS and fit.fit_config["maxiter"] == 20
    assert any(ch.startswith("MAP starts") for ch in fit.choices)
    with pytest.raises(ValueError, match="method must be one of auto"):
        bl.LatentSkillEmbedding().fit(c.table, method="laplace")


def test_a_fit_with_lessons_warns_when_the_answers_are_also_its_lessons():
    """Items as lessons (every answered item also a lesson, the original LSE treatment of
    ASSISTments) overshoots forecasts; a fit with lessons says so, one without does not."""
    import warnings

    c = bl.simulate(n_students=8, n_steps=3, n_assessments=4, n_lessons=2, answers_per_step=1, seed=0)
    answers = c.table[c.table["module_type"] == "assessment"].drop(columns=["p_true"])
    mirrored = pd.concat([answers, answers.assign(module_type="lesson", outcome=float("nan"))])
    mirrored = mirrored.sort_values(["student_id", "timestep", "module_type"], kind="stable")
    log = bl.read_interactions(mirrored)
    assert log.mirrored_answer_share() == 1.0
    assert bl.read_interactions(c.table).mirrored_answer_share() < 0.9  # lessons and items differ
    with pytest.warns(UserWarning, match=r"100% of this log's answers are also lessons .*--no-lessons"):
        bl.LatentSkillEmbedding(n_skills=1, lessons=True).fit(log, method="map", maxiter=5, starts=1,
                                                                parametrization="centered", progressbar=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*also lessons", category=UserWarning)
        bl.LatentSkillEmbedding(n_skills=1, lessons=False).fit(log, method="map", maxiter=5, starts=1,
                                                                 parametrization="centered",
                                                                 progressbar=False)
        # the default drops such lessons, by any method, and says why among its choices
        for method in ("map", "advi"):
            opts = ({"maxiter": 5, "starts": 1, "parametrization": "centered"} if method == "map"
                    else {"max_iterations": 50, "draws": 5})
            fit = bl.LatentSkillEmbedding(n_skills=1).fit(log, method=method, progressbar=False, **opts)
            assert fit.model_config["lessons"] is False
            assert any(ch.startswith("lessons off: 100% of the answers are also lessons") for ch in fit.choices)


def test_large_logs_get_the_centred_kernel_and_numba_up_to_its_memory_limit(monkeypatch):
    """Issue 15: above SMALL_ANSWERS answers MAP runs the centred kernel (MoFaCTS default
    fit 22.7 s -> 8.3 s, AUC 0.854 -> 0.859), numba up to NUMBA_MAX_ANSWERS, numpy beyond
    (issue 7's memory budget); a user's explicit form, engine or backend is kept."""
    log = _log([("s1", "a"), ("s2", "b"), ("s3", "a")])
    auto = {"parametrization": "auto", "engine": "auto", "kernel_backend": "auto"}
    cfg, _ = defaults.resolve_map_settings(auto, log)
    assert cfg["parametrization"] == "auto" and cfg["kernel_backend"] == "numba"  # small: graph decides
    monkeypatch.setattr(defaults, "SMALL_ANSWERS", 2)
    cfg, why = defaults.resolve_map_settings(auto, log)
    assert (cfg["parametrization"], cfg["kernel_backend"]) == ("centered", "numba")
    assert any("centred trajectory" in w for w in why) and any("kernel backend numba" in w for w in why)
    monkeypatch.setattr(defaults, "NUMBA_MAX_ANSWERS", 2)
    assert defaults.resolve_map_settings(auto, log)[0]["kernel_backend"] == "numpy"
    kept = defaults.resolve_map_settings({**auto, "engine": "pytensor"}, log)[0]
    assert kept["parametrization"] == "auto"
    kept = defaults.resolve_map_settings({**auto, "parametrization": "noncentered", "kernel_backend": "numba"}, log)[0]
    assert (kept["parametrization"], kept["kernel_backend"]) == ("noncentered", "numba")


def test_a_large_default_fit_runs_the_kernel(monkeypatch):
    monkeypatch.setattr(defaults, "SMALL_ANSWERS", 10)
    c = bl.simulate(n_students=12, n_steps=3, n_assessments=4, n_lessons=2, seed=0)
    fit = bl.LatentSkillEmbedding(n_skills=1).fit(c.table, method="map", maxiter=20, progressbar=False)
    assert fit.fit_config["parametrization"] == "centered" and fit.fit_config["kernel_backend"] == "numba"
    assert fit.idata["optimization"].attrs["engine"] == "kernel"


def test_minibatch_draws_capped_by_the_state_array_unless_set():
    from bayes_lse.core.config import DEFAULT_FIT_CONFIG
    from bayes_lse.data.log import read_interactions
    from bayes_lse.inference import defaults
    from bayes_lse.model.simulate import simulate

    log = read_interactions(simulate(n_students=20, n_steps=5, n_assessments=4, n_lessons=2, seed=0).table)
    cfg = {**DEFAULT_FIT_CONFIG["advi"], "batch_size": 8}
    per_draw = 8 * log.n_states * 2
    old = defaults.MAX_STATE_BYTES
    try:
        defaults.MAX_STATE_BYTES = 50 * per_draw
        out, why = defaults.cap_minibatch_draws(cfg, log, 2, user_set=False)
        assert out["draws"] == 50 and "50" in why[0] and "draws=" in why[0]
        assert defaults.cap_minibatch_draws(cfg, log, 2, user_set=True) == (cfg, [])
        assert defaults.cap_minibatch_draws({**cfg, "batch_size": None}, log, 2, user_set=False)[0]["draws"] == 1000
        defaults.MAX_STATE_BYTES = 1
        assert defaults.cap_minibatch_draws(cfg, log, 2, user_set=False)[0]["draws"] == defaults.MIN_DRAWS
    finally:
        defaults.MAX_STATE_BYTES = old


def test_amortised_fits_keep_students_as_parameters_when_draws_would_not_fit(monkeypatch):
    """student_posterior "auto": draws while every state in every draw fits the budget,
    parameters beyond (said in the choices); a setting the user gave is kept; other fits
    are not touched, and a wrong value is refused."""
    from bayes_lse.core.config import DEFAULT_FIT_CONFIG, validate_fit_config
    from bayes_lse.data.log import read_interactions
    from bayes_lse.model.simulate import simulate

    log = read_interactions(simulate(n_students=20, n_steps=5, n_assessments=4, n_lessons=2, seed=0).table)
    cfg = {**DEFAULT_FIT_CONFIG["advi"], "amortised": True, "draws": 100}
    per_draw = 8 * log.n_states * 2
    monkeypatch.setattr(defaults, "MAX_STATE_BYTES", 100 * per_draw)
    out, why = defaults.choose_student_posterior(cfg, log, 2)
    assert out["student_posterior"] == "draws" and why == []
    out, why = defaults.choose_student_posterior({**cfg, "draws": 101}, log, 2)
    assert out["student_posterior"] == "parameters" and "on demand" in why[0] and "101 draws" in why[0]
    assert defaults.choose_student_posterior({**cfg, "draws": 101, "student_posterior": "draws"}, log, 2)[0][
        "student_posterior"] == "draws"
    assert defaults.choose_student_posterior({**cfg, "amortised": False, "draws": 10**6}, log, 2) == (
        {**cfg, "amortised": False, "draws": 10**6}, [])
    with pytest.raises(ValueError, match="student_posterior"):
        validate_fit_config({**cfg, "student_posterior": "some"}, "advi")
