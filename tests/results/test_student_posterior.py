"""A fit that keeps its students' posterior as parameters (`STUDENT_POSTERIOR`, what an
amortised fit of a large log stores): draws made on demand are the stored draws' twin.

The trees are canned (tests/canned.py): an ADVI-shaped posterior whose student states and
biases are replaced by per-state (loc, scale) — no fit, so these run in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from canned import advi_idata, simulate_truth
from scipy import stats

from bayes_lse.model import terms as eq
from bayes_lse.results.posterior import (
    STUDENT_POSTERIOR,
    FitResult,
    bias_draws,
    counter_uniforms,
    has_student_bias,
    has_student_states,
    state_draws,
)


def as_parameters(tree: xr.DataTree, seed: int = 5) -> xr.DataTree:
    """`tree` with its state and bias draws replaced by per-state (loc, scale) parameters."""
    post = tree["posterior"].to_dataset()
    s = np.asarray(post["student_state"].values).reshape(-1, *post["student_state"].shape[2:])
    b = np.asarray(post["student_bias"].values).reshape(-1, post.sizes["student"])
    sp = xr.Dataset({"state_loc": (("state", "skill"), s.mean(0).astype(np.float32)),
                     "state_scale": (("state", "skill"), (s.std(0) + 0.3).astype(np.float32)),
                     "bias_loc": (("student",), b.mean(0).astype(np.float32)),
                     "bias_scale": (("student",), (b.std(0) + 0.05).astype(np.float32))}, attrs={"seed": seed})
    groups = {k: tree[k].to_dataset() for k in tree.children}
    groups["posterior"] = post.drop_vars(["student_state", "student_bias"])
    groups[STUDENT_POSTERIOR] = sp
    out = xr.DataTree.from_dict(groups)
    out.attrs = dict(tree.attrs)
    # what build_datatree records, so the folder's hash checks apply as to any fit
    import json

    from bayes_lse.core.config import config_hash
    from bayes_lse.inference.assemble import data_fingerprint

    fp = data_fingerprint(FitResult(out).interactions)
    out.attrs.update(data_fingerprint=fp, config_hash=config_hash(
        json.loads(out.attrs["model_config"]), json.loads(out.attrs["fit_config"]), out.attrs["method"], fp))
    return out


def materialised(tree: xr.DataTree) -> xr.DataTree:
    """The same tree with every state and bias drawn and stored as draws (the draws layout)."""
    groups = {k: tree[k].to_dataset() for k in tree.children if k != STUDENT_POSTERIOR}
    groups["posterior"] = groups["posterior"].assign(
        student_state=(("chain", "draw", "state", "skill"), state_draws(tree, stacked=False)),
        student_bias=(("chain", "draw", "student"), bias_draws(tree, stacked=False)))
    out = xr.DataTree.from_dict(groups)
    out.attrs = dict(tree.attrs)
    return out


@pytest.fixture(scope="module")
def truth():
    return simulate_truth()


@pytest.fixture(scope="module")
def param_tree(truth):
    return as_parameters(advi_idata(truth, draws=300))


def test_counter_uniforms_are_a_function_of_the_key():
    keys = np.arange(100_000, dtype=np.uint64)
    u = counter_uniforms(3, 0, keys)
    assert u.min() > 0 and u.max() < 1
    assert np.array_equal(u[[7, 99_999, 5]], counter_uniforms(3, 0, keys[[7, 99_999, 5]]))
    assert not np.allclose(u[:100], counter_uniforms(4, 0, keys[:100]))  # another seed
    assert not np.allclose(u[:100], counter_uniforms(3, 1, keys[:100]))  # another stream
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02  # neighbouring keys are not related


def test_a_subset_of_states_gets_the_same_draws_as_the_whole(param_tree):
    assert has_student_states(param_tree) and has_student_bias(param_tree)
    assert "student_state" not in param_tree["posterior"]
    full = state_draws(param_tree)
    pick = np.array([17, 3, 3, 40])
    assert np.array_equal(state_draws(param_tree, pick), full[:, pick])
    assert full.shape == (300, param_tree["posterior"].sizes["state"], 2) and full.min() >= 0
    assert np.array_equal(bias_draws(param_tree, np.array([2, 0])), bias_draws(param_tree)[:, [2, 0]])
    chained = state_draws(param_tree, pick, stacked=False)
    assert chained.shape == (1, 300, 4, 2) and np.array_equal(chained[0], full[:, pick])
    # thinned samples (the diagnostics' draws) are the same cells, and only those are made
    some = (np.zeros(3, dtype=int), np.array([299, 0, 10]))
    assert np.array_equal(state_draws(param_tree, pick, samples=some), full[[299, 0, 10]][:, pick])
    assert np.array_equal(bias_draws(param_tree, np.array([1]), samples=some), bias_draws(param_tree)[[299, 0, 10]][:, [1]])
    stored = materialised(param_tree)
    assert np.array_equal(state_draws(stored, pick, samples=some), full[[299, 0, 10]][:, pick])


def test_on_demand_draws_follow_the_stored_distribution(param_tree):
    """Draw means and spreads match the truncated normal's and the normal's (300 draws:
    5 standard errors over ~100 states, so a wrong transform — e.g. the untruncated mean,
    which differs by up to scale·φ/Φ — fails)."""
    sp = param_tree[STUDENT_POSTERIOR].to_dataset()
    loc, scale = sp["state_loc"].values.astype(float), sp["state_scale"].values.astype(float)
    d = state_draws(param_tree)
    z = (d.mean(0) - eq.truncated_normal_mean(loc, scale)) / (d.std(0) / np.sqrt(len(d)) + 1e-12)
    assert np.abs(z).max() < 5
    assert np.abs(eq.truncated_normal_mean(loc, scale) - loc).max() > 0.05  # the check can tell them apart
    b = bias_draws(param_tree)
    zb = (b.mean(0) - sp["bias_loc"].values) / (sp["bias_scale"].values / np.sqrt(len(b)))
    assert np.abs(zb).max() < 5
    assert np.allclose(b.std(0), sp["bias_scale"].values, rtol=0.25)


def test_predict_summary_and_storage_match_the_materialised_draws(param_tree, tmp_path):
    """Predictions from on-demand draws equal those from the same draws stored in the
    posterior; the folder keeps the parameters and loads to the same numbers."""
    import bayes_lse as bl

    f = FitResult(param_tree)
    g = FitResult(materialised(param_tree))
    table = f.interactions
    table = table[table["module_type"].astype(str) == "assessment"].head(40)
    table = table[["student_id", "module_id", "module_type", "outcome", "timestep"]].astype(
        {"student_id": str, "module_id": str, "module_type": str})
    pf, pg = f.predict(table), g.predict(table)
    # the same draws (to the last bits: array shapes change the order of a few sums)
    assert np.allclose(pf["p_mean"].to_numpy(), pg["p_mean"].to_numpy(), rtol=0, atol=1e-12)
    assert np.allclose(pf["p_low"].to_numpy(), pg["p_low"].to_numpy(), rtol=0, atol=1e-12)
    assert (pf["p_low"] < pf["p_high"]).all()
    assert np.allclose(bl.FittedLSE(param_tree).summary().students["skill_norm"],
                       bl.FittedLSE(g.idata).summary().students["skill_norm"])
    f.save(tmp_path / "m")
    back = bl.load(tmp_path / "m")
    assert STUDENT_POSTERIOR in back.idata.children and "student_state" not in back.idata["posterior"]
    assert np.array_equal(back.predict(table)["p_mean"].to_numpy(), pf["p_mean"].to_numpy())


def test_diagnostics_and_report_run_on_parameters(param_tree, tmp_path):
    import bayes_lse as bl

    f = bl.FittedLSE(param_tree)
    d = f.diagnostics()
    assert "Calibration" in set(d.verdicts["check"])
    assert d.identified is not None and "pass_probability" in d.identified
    out = f.report(tmp_path / "r.html")
    assert "skill" in out.read_text().lower()


def test_predict_in_row_chunks_is_the_same_as_at_once(param_tree, monkeypatch):
    """`FitResult.predict` scores rows PREDICT_CELLS // draws at a time (the 25M-row
    model's 46,519 rows × 1,000 draws peaked at 8.7 GB at once): chunks of 7 rows give the
    same numbers, on-demand draws included; `last_states` by code boundaries is the
    groupby over the per-state ids."""
    from bayes_lse.results import posterior

    f = FitResult(param_tree)
    table = f.interactions
    table = table[table["module_type"].astype(str) == "assessment"]
    table = table[["student_id", "module_id", "module_type", "outcome", "timestep"]].astype(
        {"student_id": str, "module_id": str, "module_type": str}).sample(frac=1.0, random_state=0)
    whole = f.predict(table)
    monkeypatch.setattr(posterior, "PREDICT_CELLS", 7 * f.n_samples)
    parts = f.predict(table)
    for col in ("p_mean", "p_low", "p_high"):
        assert np.allclose(whole[col].to_numpy(), parts[col].to_numpy(), rtol=0, atol=1e-12)
    assert len(table) > 7 * 3
    fast = f.last_states()
    slow = f.state_index().groupby("student_id", sort=False).last()
    assert fast.index.tolist() == slow.index.tolist()
    assert np.array_equal(fast["step"].to_numpy(), slow["step"].to_numpy())
    assert np.array_equal(fast["state"].to_numpy(), slow["state"].to_numpy())


def test_chunked_predict_keeps_history_beyond_and_new_assessments_aligned(monkeypatch):
    """A history-term fit predicting rows in the fit, rows beyond it (through a lesson) and
    an assessment it has not seen: one row per chunk gives the same numbers as one chunk."""
    import bayes_lse as bl
    import pandas as pd
    from bayes_lse.results import posterior

    c = bl.simulate(n_students=12, n_steps=3, n_assessments=4, n_lessons=2, seed=0)
    fit = bl.LatentSkillEmbedding(n_skills=1, history=True).fit(c.table, method="map", maxiter=20,
                                                                  progressbar=False)
    t = c.table
    a = t[t["module_type"] == "assessment"].groupby("student_id").head(2)
    last = t.groupby("student_id")["timestep"].max()
    s0, s1 = str(last.index[0]), str(last.index[1])
    extra = pd.DataFrame({"student_id": [s0, s0, s1, s1], "module_id": ["L0", a["module_id"].iloc[0], "A_new", "L1"],
                          "module_type": ["lesson", "assessment", "assessment", "lesson"],
                          "outcome": [np.nan, 1, 0, np.nan],
                          "timestep": [last[s0], last[s0] + 1, last[s1], last[s1] + 1]})
    rows = pd.concat([a[["student_id", "module_id", "module_type", "outcome", "timestep"]], extra],
                     ignore_index=True)
    rows = pd.concat([rows, rows.iloc[[2]].assign(timestep=last[str(rows["student_id"].iloc[2])] + 1)],
                     ignore_index=True)
    rows = pd.concat([rows, extra.iloc[[2]].assign(student_id=s0, timestep=last[s0])], ignore_index=True)
    whole = fit.predict(rows, new_assessments=True, seed=1)  # the unseen one's population draws: seeded
    monkeypatch.setattr(posterior, "PREDICT_CELLS", 1)
    one = fit.predict(rows, new_assessments=True, seed=1)
    assert (~whole["assessment_seen"]).sum() == 2 and (whole["timestep"] > last.reindex(whole["student_id"]).to_numpy()).any()
    for col in ("p_mean", "p_low", "p_high"):
        assert np.allclose(whole[col].to_numpy(), one[col].to_numpy(), rtol=0, atol=1e-12)
