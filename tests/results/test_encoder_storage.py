"""The amortised encoder in the model folder: round trip, refusals (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("jax")
pytest.importorskip("numpyro")

import bayes_lse as bl  # noqa: E402
from bayes_lse.api import FittedLSE  # noqa: E402
from bayes_lse.core.files import sha256_file  # noqa: E402
from bayes_lse.results.storage import ModelFolderError  # noqa: E402


@pytest.fixture(scope="module")
def with_encoder(tiny_map):
    fitted = FittedLSE(tiny_map.idata)  # its own object: the shared fixture keeps no encoder
    fitted.train_encoder(hidden=8, steps=20, batch_size=16, seed=0)
    return fitted


def _history(fitted) -> pd.DataFrame:
    a, l = [str(x) for x in fitted.assessments], [str(x) for x in fitted.lessons]
    return pd.DataFrame({"student_id": "new", "module_id": [a[0], a[1], l[0], a[2]],
                         "module_type": ["assessment", "assessment", "lesson", "assessment"],
                         "outcome": [1, 0, None, 1], "timestep": [0, 0, 0, 1]})


def _rehash(folder, name):
    m = json.loads((folder / "manifest.json").read_text())
    m["files"][name] = sha256_file(folder / name)
    (folder / "manifest.json").write_text(json.dumps(m))


def test_round_trip_keeps_the_encoder(with_encoder, tmp_path):
    with_encoder.save(tmp_path / "m")
    assert {"encoder.json", "encoder.npz"} <= {p.name for p in (tmp_path / "m").iterdir()}
    back = bl.load(tmp_path / "m")
    assert back.encoder is not None
    for k, v in with_encoder.encoder.params.items():
        np.testing.assert_array_equal(back.encoder.params[k], v)
    a = with_encoder.place(_history(with_encoder), placement="amortised", seed=3)
    b = back.place(_history(back), seed=3)  # auto: the encoder
    np.testing.assert_array_equal(a.state, b.state)
    assert b.timestep == 1 and b.n_particles == 0
    exact = back.place(_history(back), placement="exact", seed=3, n_particles=50)
    assert exact.n_particles == 50


def test_model_without_encoder_places_exactly(tiny_map, tmp_path):
    tiny_map.save(tmp_path / "m")
    back = bl.load(tmp_path / "m")
    assert back.encoder is None
    assert back.place(_history(back), seed=0, n_particles=20).n_particles == 20
    with pytest.raises(ValueError, match="no amortised encoder"):
        back.place(_history(back), placement="amortised")


def test_tampered_weights_are_refused(with_encoder, tmp_path):
    with_encoder.save(tmp_path / "m")
    f = tmp_path / "m" / "encoder.npz"
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["W0"] = arrays["W0"] + 0.01
    np.savez(f, **arrays)
    with pytest.raises(ModelFolderError, match="encoder.npz does not match its recorded hash"):
        bl.load(tmp_path / "m")
    _rehash(tmp_path / "m", "encoder.npz")  # the manifest re-hashed: the weights' own hash still differs
    with pytest.raises(ModelFolderError, match="weights do not match"):
        bl.load(tmp_path / "m")


def test_encoder_of_another_fit_is_refused(with_encoder, tmp_path):
    with_encoder.save(tmp_path / "m")
    f = tmp_path / "m" / "encoder.json"
    spec = json.loads(f.read_text())
    spec["fit"]["config_hash"] = "0" * 16
    f.write_text(json.dumps(spec))
    _rehash(tmp_path / "m", "encoder.json")
    with pytest.raises(ModelFolderError, match="trained for another fit"):
        bl.load(tmp_path / "m")
    spec["fit"]["config_hash"] = with_encoder.config_hash
    spec["module_fingerprint"] = "f" * 64
    f.write_text(json.dumps(spec))
    _rehash(tmp_path / "m", "encoder.json")
    with pytest.raises(ModelFolderError, match="other module parameters"):
        bl.load(tmp_path / "m")


def test_unlisted_encoder_files_are_refused(tiny_map, with_encoder, tmp_path):
    tiny_map.save(tmp_path / "plain")
    with_encoder.save(tmp_path / "enc")
    (tmp_path / "plain" / "encoder.npz").write_bytes((tmp_path / "enc" / "encoder.npz").read_bytes())
    with pytest.raises(ModelFolderError, match="does not list"):
        bl.load(tmp_path / "plain")


def test_auto_placement_of_a_history_model_is_exact(tiny_cohort):
    """The encoder is trained on students simulated without the assessment-history term:
    for a model with the term, "auto" places exactly (the filter counts repeats as the fit
    does) and says why; an explicit "amortised" still runs, with a warning."""
    fitted = bl.LatentSkillEmbedding(n_skills=2, history=True).fit(tiny_cohort.table, method="map", starts=1,
                                                                  maxiter=200, seed=0)
    assert fitted.placement_method("auto") == ("exact", "exact particle filter: the model has no amortised encoder")
    fitted.train_encoder(hidden=8, steps=5, batch_size=16, seed=0)
    how, why = fitted.placement_method("auto")
    assert how == "exact" and "history term" in why
    with pytest.warns(UserWarning, match="ignores this model's assessment-history term"):
        assert fitted.placement_method("amortised")[0] == "amortised"
    with pytest.raises(ValueError, match="placement must be"):
        fitted.placement_method("fast")
    a = fitted.place(_history(fitted), seed=1)  # auto: exact, with the term
    assert a.n_particles > 0 and np.isnan(a.ess).sum() == 0


def test_auto_placement_without_history_term_uses_the_encoder(with_encoder):
    assert with_encoder.placement_method("auto") == ("amortised", "amortised encoder")


def test_empty_history_places_at_the_prior(with_encoder):
    """A new student with no rows yet is placed at the prior, with or without an encoder
    (recommend(None, goals, history=<no rows>) worked before issue 16 and still must)."""
    empty = _history(with_encoder).head(0)
    for how in ("auto", "exact", "amortised"):
        pl = with_encoder.place(empty, placement=how, seed=0, n_particles=20)
        assert pl.timestep == 0 and pl.state.shape[0] == with_encoder.draws("requirement").shape[0]
    goals = [str(with_encoder.assessments[0])]
    rec = with_encoder.recommend(None, goals, max_length=1, history=empty, seed=0)
    assert 0.0 <= rec.current["p_mean"] <= 1.0
