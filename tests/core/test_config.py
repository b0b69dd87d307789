"""Fit and model config validation (bayes_lse/core/config.py; issue 19 items 6 and 12)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayes_lse.core.config import (
    DEFAULT_FIT_CONFIG,
    DEFAULT_MODEL_CONFIG,
    merge,
    validate_fit_config,
    validate_model_config,
)


@pytest.mark.parametrize("method", sorted(DEFAULT_FIT_CONFIG))
def test_every_default_fit_config_is_valid(method):
    cfg = merge(DEFAULT_FIT_CONFIG[method], {}, method)
    assert validate_fit_config(cfg, method) is cfg


def test_numpy_integers_are_integers():
    validate_fit_config(merge(DEFAULT_FIT_CONFIG["map"], {"seed": np.int64(3), "starts": np.int32(2)}, "map"), "map")


@pytest.mark.parametrize(
    "method, key, value, words",
    [
        ("map", "starts", 1.5, "an integer >= 1"),
        ("map", "starts", -5, "an integer >= 1"),
        ("map", "starts", None, "an integer >= 1"),
        ("map", "starts", True, "an integer >= 1"),
        ("map", "maxiter", 0, "an integer >= 1"),
        ("map", "maxiter", -3, "an integer >= 1"),
        ("map", "jitter", -1, "a finite number >= 0"),
        ("map", "ftol", float("inf"), "a finite number > 0"),
        ("map", "ftol", "abc", "a finite number > 0"),
        ("map", "maxcor", [1, 2], "'auto' or an integer >= 1"),
        ("map", "constrained", 1, "true or false"),
        ("map", "seed", -1, "null or an integer >= 0"),
        ("advi", "learning_rate", 0, "a finite number > 0"),
        ("advi", "batch_size", 0, "null or an integer >= 1"),
        ("nuts", "target_accept", 1.0, "strictly between 0 and 1"),
        ("nuts", "tune", -1, "an integer >= 0"),
        ("nuts", "draws", math.nan, "an integer >= 1"),
    ],
)
def test_bad_settings_name_key_value_and_range(method, key, value, words):
    cfg = merge(DEFAULT_FIT_CONFIG[method], {key: value}, method)
    with pytest.raises(ValueError) as info:
        validate_fit_config(cfg, method)
    msg = str(info.value)
    assert f"{method} fit setting {key!r}" in msg and words in msg and repr(value) in msg


@pytest.mark.parametrize("noise", [float("inf"), float("nan"), -1.0, 0.0])
def test_learning_noise_must_be_finite_and_positive(noise):
    with pytest.raises(ValueError, match="finite positive"):
        validate_model_config(merge(DEFAULT_MODEL_CONFIG, {"learning_noise": noise}, "model"))


def test_priors_must_be_finite_and_positive():
    with pytest.raises(ValueError, match="gain_scale"):
        validate_model_config(merge(DEFAULT_MODEL_CONFIG, {"priors": {"gain_scale": float("inf")}}, "model"))


def test_a_fit_refuses_a_bad_setting_before_any_work():
    import bayes_lse as bl

    c = bl.simulate(n_students=3, n_steps=2, n_assessments=4, n_lessons=1, seed=0)
    with pytest.raises(ValueError, match="'starts' must be 'auto' or an integer >= 1"):
        bl.LatentSkillEmbedding(n_skills=1).fit(c.table, method="map", starts=0)
