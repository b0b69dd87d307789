"""Diagnostics on canned posteriors with known answers (no sampling)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from canned import advi_idata, map_idata, nuts_idata, simulate_truth

from bayes_lse.diagnostics import (
    DEFAULT_THRESHOLDS,
    Diagnostics,
    align_chains,
    convergence_stats,
    diagnose,
    identified_quantities,
)
from bayes_lse.diagnostics.estimators import _average_ranks
from bayes_lse.model import terms as eq


@pytest.fixture(scope="module")
def truth():
    return simulate_truth(hostile_ids=True)


@pytest.fixture(scope="module")
def good(truth):
    dt = nuts_idata(truth)
    return dt, diagnose(dt)


@pytest.fixture(scope="module")
def stuck(truth):
    dt = nuts_idata(truth, stuck_chain=2)
    return dt, diagnose(dt)


@pytest.fixture(scope="module")
def permuted(truth):
    dt = nuts_idata(truth, permuted_chain=1)
    return dt, diagnose(dt)


@pytest.fixture(scope="module")
def pathological(truth):
    dt = nuts_idata(truth, n_divergent=7, divergent_chain=1, implicated_student=1, saturated_fraction=0.1,
                    low_bfmi_chain=3)
    return dt, diagnose(dt)


# --------------------------------------------------------------------------- NUTS
def test_healthy_fit_passes_every_check(good):
    _, d = good
    assert isinstance(d, Diagnostics)
    assert d.status == "ok", d.verdicts
    assert d.ok
    for check in ("R-hat (identified)", "Bulk ESS (identified)", "Tail ESS (identified)", "Divergences",
                  "E-BFMI", "Tree depth saturation", "R-hat (raw, aligned)", "Calibration", "PSIS-LOO Pareto k"):
        assert d.check(check)["status"] == "ok", d.check(check)["message"]
    assert list(d.verdicts.columns) == ["check", "status", "value", "threshold", "message"]
    assert set(d.verdicts["status"]) <= {"ok", "warn", "fail"}


def test_verdict_line_names_status_counts_and_the_worst_check(good, stuck):
    """The one line `bayes-lse fit` prints after every fit (issue 20)."""
    assert good[1].verdict_line().startswith("diagnostics: OK (0 fail, 0 warn of ")
    _, d = stuck
    line = d.verdict_line()
    n_fail = int((d.verdicts["status"] == "fail").sum())
    assert line.startswith(f"diagnostics: FAIL ({n_fail} fail, ")
    worst = d.verdicts[d.verdicts["status"] == "fail"].iloc[0]
    assert f"worst: {worst['check']}" in line and "chain 2" in line and "\n" not in line


def test_bad_chain_is_flagged_and_named(stuck):
    _, d = stuck
    row = d.check("R-hat (identified)")
    assert row["status"] == "fail"
    assert row["value"] > 1.05
    assert "chain 2" in row["message"]
    assert not d.ok
    chains = d.tables["chains"]
    assert int(np.argmax(chains["identified_deviation"])) == 2


def test_permuted_chain_is_realigned_and_passes(truth, permuted):
    dt, d = permuted
    table = d.tables["alignment"]
    assert table["permuted"].tolist() == [False, True, False, False]
    assert table.loc[1, "permutation"] == "[1, 0]"
    assert table.loc[1, "mismatch_after"] < table.loc[1, "mismatch_before"] / 5
    # identified quantities never saw the permutation; raw coordinates pass after alignment
    assert d.check("R-hat (identified)")["status"] == "ok"
    assert d.check("R-hat (raw, aligned)")["status"] == "ok"
    raw = d.tables["raw_summary"].set_index("variable")
    assert raw.loc["requirement", "max_rhat_unaligned"] > 1.2
    assert raw.loc["requirement", "max_rhat"] <= DEFAULT_THRESHOLDS["rhat_max"]
    assert "1" in d.check("Skill alignment")["message"]
    # the aligned draws of chain 1 are the original ones with skills swapped back
    post = dt["posterior"].to_dataset()
    np.testing.assert_array_equal(d.aligned["requirement"].isel(chain=1).values,
                                  post["requirement"].isel(chain=1).values[..., ::-1])
    np.testing.assert_array_equal(d.aligned["gain"].isel(chain=0).values, post["gain"].isel(chain=0).values)


def test_alignment_keeps_the_majority_labelling(truth):
    dt = nuts_idata(truth, permuted_chain=0)
    aligned, table = align_chains(dt)
    assert table["permuted"].tolist() == [True, False, False, False]
    a = aligned["requirement"].mean("draw").values
    assert np.allclose(a[0], a[1], atol=0.05)


def test_align_chains_single_chain_and_single_skill(truth):
    _, t = align_chains(map_idata(truth))
    assert t["permuted"].tolist() == [False]
    dt1 = nuts_idata(simulate_truth(n_skills=1, n_students=6))
    aligned, t = align_chains(dt1)
    assert not t["permuted"].any()
    assert aligned is not None


def test_divergences_counted_located_and_implicated(pathological):
    _, d = pathological
    row = d.check("Divergences")
    assert row["status"] == "fail"
    assert row["value"] == 7
    assert d.tables["chains"]["divergent"].tolist() == [0, 7, 0, 0]
    draws = d.tables["divergent_draws"]
    assert len(draws) == 7 and set(draws["chain"]) == {1}
    implicated = d.tables["divergence_implicated"]
    assert "s001" in set(implicated["student"].head(5))
    assert "s001" in row["message"]


def test_treedepth_saturation_and_low_ebfmi(pathological):
    _, d = pathological
    assert d.check("Tree depth saturation")["status"] == "warn"
    assert 0.05 < d.check("Tree depth saturation")["value"] < 0.15
    eb = d.check("E-BFMI")
    assert eb["status"] == "fail" and "3" in eb["message"]
    assert d.tables["chains"]["e_bfmi"].iloc[3] < 0.3
    assert (d.tables["chains"]["e_bfmi"].drop(index=3) > 1).all()


def test_thresholds_are_configurable(stuck):
    dt, _ = stuck
    lenient = diagnose(dt, rhat_max=2.0, rhat_fail=3.0, ess_min=1, ess_fail=1, mcse_p_max=1, loo=False)
    assert lenient.check("R-hat (identified)")["status"] == "ok"
    assert lenient.thresholds["rhat_max"] == 2.0
    assert "≤ 2.0" in lenient.check("R-hat (identified)")["threshold"]
    warn = diagnose(dt, rhat_max=1.01, rhat_fail=2.0, loo=False)
    assert warn.check("R-hat (identified)")["status"] == "warn"
    with pytest.raises(TypeError, match="unknown threshold"):
        diagnose(dt, rhat_maximum=1.1)


def test_diagnose_prints_nothing(good, capsys):
    dt, _ = good
    diagnose(dt, loo=False)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_tables_are_labelled(good):
    _, d = good
    ident = d.tables["identified"]
    assert {"variable", "label", "mean", "sd", "rhat", "ess_bulk", "ess_tail", "mcse_mean"} <= set(ident.columns)
    assert set(ident["variable"]) >= {"pass_probability", "assessment_logit", "assessment_offset", "gain_norm",
                                      "prerequisite_norm", "student_bias", "learning_noise"}
    # with assessment biases, |a| and g_j are identified only as g_j - |a_j| (quantities.py)
    assert not set(ident["variable"]) & {"relevance", "requirement_norm", "assessment_bias"}
    assert ident["label"].str.len().gt(0).all()
    summary = d.tables["identified_summary"]
    assert {"variable", "n", "max_rhat", "min_ess_bulk", "min_ess_tail", "max_mcse_mean", "worst"} <= set(summary.columns)


# --------------------------------------------------------------------------- identified quantities
def test_identified_quantities_are_invariant_to_skill_permutation(truth):
    dt = nuts_idata(truth, chains=2, draws=50)
    perm = dt.copy()
    post = dt["posterior"].to_dataset()
    swapped = post.assign({v: post[v].isel(skill=[1, 0]).assign_coords(skill=post.skill)
                           for v in ("student_state", "requirement", "gain", "prerequisite")})
    perm["posterior"] = xr.DataTree(swapped)
    a, b = identified_quantities(dt), identified_quantities(perm)
    for v in a.data_vars:
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=1e-12, atol=1e-12)


def test_identified_pass_probability_uses_the_equations(truth):
    dt = nuts_idata(truth, chains=1, draws=5)
    q = identified_quantities(dt, max_obs=10)
    assert q.sizes["obs"] == 10
    post = dt["posterior"].to_dataset()
    cd = dt["constant_data"].to_dataset()
    row = int(q["obs"].values[3])
    st, aj, su = (int(cd[k].values[row]) for k in ("obs_state", "obs_assessment", "obs_student"))
    expect = eq.pass_probability(post["student_state"].values[0, 2, st], post["requirement"].values[0, 2, aj],
                                 post["student_bias"].values[0, 2, su], post["assessment_bias"].values[0, 2, aj])
    assert q["pass_probability"].values[0, 2, 3] == pytest.approx(expect)
    assert q["assessment_logit"].values[0, 2, 3] == pytest.approx(
        eq.relevance(post["student_state"].values[0, 2, st], post["requirement"].values[0, 2, aj])
        + post["assessment_bias"].values[0, 2, aj])
    j = list(q["assessment"].values).index(str(post["assessment"].values[aj]))
    assert q["assessment_offset"].values[0, 2, j] == pytest.approx(
        post["assessment_bias"].values[0, 2, aj] - eq.norm(post["requirement"].values[0, 2, aj]))
    assert str(q["obs_student"].values[3]) == truth.student_ids[su]


# --------------------------------------------------------------------------- vectorised ArviZ estimators
def test_convergence_stats_match_arviz():
    import arviz_stats as azs

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 121, 30))
    x[:, :, 1] = np.cumsum(x[:, :, 1], axis=1)  # random walk
    x[1, :, 2] += 2.0  # a shifted chain
    x[:, :, 3] = np.round(x[:, :, 3])  # ties
    for k in range(4, 14):  # AR(1) with growing correlation, and one anticorrelated
        r = (k - 4) / 10 if k < 13 else -0.7
        for t in range(1, x.shape[1]):
            x[:, t, k] = r * x[:, t - 1, k] + x[:, t, k]
    mine = convergence_stats(x)
    ref = {
        "rhat": azs.rhat(x, chain_axis=0, draw_axis=1),
        "ess_bulk": azs.ess(x, chain_axis=0, draw_axis=1, method="bulk"),
        "ess_tail": azs.ess(x, chain_axis=0, draw_axis=1, method="tail", prob=(0.05, 0.95)),
        "mcse_mean": azs.mcse(x, chain_axis=0, draw_axis=1, method="mean"),
    }
    for name, values in ref.items():
        np.testing.assert_allclose(mine[name], np.asarray(values), rtol=1e-9, err_msg=name)


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata

    a = np.round(np.random.default_rng(1).normal(size=(300, 12)), 1)
    a[:, 4] = 2.0
    np.testing.assert_array_equal(_average_ranks(a), rankdata(a, axis=0))


# --------------------------------------------------------------------------- ADVI / MAP
def test_advi_convergence_verdicts(truth):
    ok = diagnose(advi_idata(truth))
    assert ok.method == "advi"
    assert ok.check("ADVI convergence")["status"] == "ok"
    assert "advi" in ok.tables and "loo" in ok.tables
    assert len(ok.tables["loss_history"]) == 2000
    bad = diagnose(advi_idata(truth, converged=False), loo=False)
    row = bad.check("ADVI convergence")
    assert row["status"] == "warn" and "still moving" in row["message"]


def test_advi_nan_loss_fails(truth):
    dt = advi_idata(truth)
    opt = dt["optimization"].to_dataset()
    loss = opt["loss"].values.copy()
    loss[-5:] = np.nan
    dt["optimization"] = xr.DataTree(opt.assign(loss=("iteration", loss)))
    assert diagnose(dt, loo=False).check("ADVI convergence")["status"] == "fail"


def test_map_optimiser_table_and_verdicts(truth):
    d = diagnose(map_idata(truth))
    assert d.method == "map"
    t = d.tables["map"]
    assert {"start", "objective", "n_iterations", "grad_norm", "success", "message", "best"} <= set(t.columns)
    assert t["best"].tolist() == [True, False, False]
    assert d.check("MAP optimiser")["status"] == "ok"
    assert d.check("MAP gradient norm")["status"] == "ok"
    assert "loo" not in d.tables  # no LOO for a point estimate
    assert "R-hat (identified)" not in set(d.verdicts["check"])
    assert any("MAP" in n for n in d.notes)
    bad = diagnose(map_idata(truth, success=False, grad_norm=5.0))
    assert bad.check("MAP optimiser")["status"] == "fail"
    assert bad.check("MAP gradient norm")["status"] == "warn"
    # stopping at the iteration budget (early stopping on large logs) is a warning, not a failure
    limited = map_idata(truth, success=False, grad_norm=5.0)
    limited["optimization"]["message"] = limited["optimization"]["message"].copy(
        data=np.array(["STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"] * limited["optimization"].sizes["start"])
    )
    check = diagnose(limited).check("MAP optimiser")
    assert check["status"] == "warn" and "iteration limit" in check["message"]


# --------------------------------------------------------------------------- predictive checks and LOO
def test_predictive_tables(good):
    _, d = good
    cal = d.tables["calibration"]
    assert {"bin", "answers", "predicted", "observed", "lo90", "hi90", "outside"} <= set(cal.columns)
    # held-out (PSIS-LOO) predictions are calibrated: in-sample ones were fit to these answers
    assert cal.attrs["source"] == "leave-one-out"
    assert cal["answers"].sum() == len(d.predictive.outcome)
    assert d.check("Calibration")["message"].startswith("Leave-one-out")
    pava = d.tables["pava"]
    assert np.all(np.diff(pava["cep"]) >= -1e-12)  # isotonic
    assert np.all(np.diff(pava["predicted"]) >= 0)
    students = d.tables["students"]
    assert {"student", "answers", "observed", "predicted", "lo90", "hi90", "outside"} <= set(students.columns)
    assert (students["lo90"] <= students["hi90"]).all()
    assert d.check("Pass rates per student")["status"] == "ok"


def test_map_predictive_intervals_are_not_degenerate(truth):
    d = diagnose(map_idata(truth))
    st = d.tables["students"]
    assert (st["hi90"] > st["lo90"]).mean() > 0.9
    assert d.tables["calibration"].attrs["source"] == "in-sample"
    assert "In-sample" in d.check("Calibration")["message"]


def test_loo_summary(good):
    _, d = good
    loo = d.tables["loo"].set_index("item")["value"]
    assert np.isfinite(loo["elpd_loo"]) and loo["elpd_loo"] < 0
    assert loo["rows used"] == loo["rows"]
    assert d.tables["pareto_k"]["rows"].sum() == loo["rows"]
    assert {"row", "student", "assessment", "pareto_k"} <= set(d.tables["pareto_k_worst"].columns)


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_skills=1), dict(n_skills=3), dict(prerequisites=False), dict(biases=False), dict(n_lessons=0)],
    ids=["d1", "d3", "no-prereq", "no-bias", "no-lessons"],
)
def test_model_variants_diagnose(kwargs):
    tr = simulate_truth(n_students=10, seed=7, **kwargs)
    d = diagnose(nuts_idata(tr, draws=100))
    assert d.check("R-hat (identified)")["status"] in {"ok", "warn"}
    assert "calibration" in d.tables


# --------------------------------------------------------------------------- warn / fail paths of every check
def _sticky(dt, k):
    """The same posterior with every draw repeated k times (a chain that barely moves): ESS ≈ draws / k."""
    dt = dt.copy()
    post = dt["posterior"].to_dataset()
    n = post.sizes["draw"]
    dt["posterior"] = xr.DataTree(post.isel(draw=np.arange(n) // k).assign_coords(draw=np.arange(n)))
    return dt


def _flipped(dt):
    """The same posterior with every observed outcome flipped: the predictions misfit the answers."""
    dt = dt.copy()
    obs = dt["observed_data"].to_dataset()
    dt["observed_data"] = xr.DataTree(obs.assign(outcome=("obs", 1.0 - obs["outcome"].values)))
    return dt


def test_short_chains_warn_on_ess(truth):
    dt = nuts_idata(truth, draws=60)  # 4 × 60 independent draws: ESS ≈ 240, between the fail and ok bounds
    d = diagnose(dt, loo=False, predictive=False)
    ident = d.tables["identified"]
    for kind in ("bulk", "tail"):
        row = d.check(f"{kind.capitalize()} ESS (identified)")
        assert row["status"] == "warn", row["message"]
        assert row["value"] == pytest.approx(ident[f"ess_{kind}"].min())
        assert DEFAULT_THRESHOLDS["ess_fail"] <= row["value"] < DEFAULT_THRESHOLDS["ess_min"]
        assert f"quantities are below {DEFAULT_THRESHOLDS['ess_min']:g}" in row["message"]
    lenient = diagnose(dt, loo=False, predictive=False, ess_min=100, ess_fail=50)
    assert lenient.check("Bulk ESS (identified)")["status"] == "ok"
    assert lenient.check("Tail ESS (identified)")["status"] == "ok"


def test_sticky_chains_fail_on_ess_and_warn_on_mcse(truth):
    dt = _sticky(nuts_idata(truth), 40)  # each value held for 40 draws: ESS ≈ 1600 / 40 < ess_fail
    d = diagnose(dt, loo=False, predictive=False)
    for check in ("Bulk ESS (identified)", "Tail ESS (identified)"):
        row = d.check(check)
        assert row["status"] == "fail", row["message"]
        assert row["value"] < DEFAULT_THRESHOLDS["ess_fail"]
    mcse = d.check("MCSE (pass probabilities)")
    assert mcse["status"] == "warn" and "simulation noise" in mcse["message"]
    ident = d.tables["identified"]
    assert mcse["value"] == pytest.approx(ident.loc[ident["variable"] == "pass_probability", "mcse_mean"].max())
    assert mcse["value"] > DEFAULT_THRESHOLDS["mcse_p_max"]
    lenient = diagnose(dt, loo=False, predictive=False, ess_min=1, ess_fail=1, mcse_p_max=0.05)
    for check in ("Bulk ESS (identified)", "Tail ESS (identified)", "MCSE (pass probabilities)"):
        assert lenient.check(check)["status"] == "ok", check


def test_mcse_threshold_is_used(good):
    dt, d = good
    assert d.check("MCSE (pass probabilities)")["status"] == "ok"
    strict = diagnose(dt, loo=False, predictive=False, mcse_p_max=1e-4)
    row = strict.check("MCSE (pass probabilities)")
    assert row["status"] == "warn" and row["value"] == d.check("MCSE (pass probabilities)")["value"]


def test_raw_coordinates_warn_when_a_chain_is_stuck(stuck):
    dt, d = stuck
    row = d.check("R-hat (raw, aligned)")
    assert row["status"] == "warn" and row["value"] > DEFAULT_THRESHOLDS["rhat_max"]
    assert "rely on identified quantities" in row["message"]
    assert row["value"] == pytest.approx(d.tables["raw"]["rhat"].max())
    lenient = diagnose(dt, loo=False, predictive=False, rhat_max=2.0, rhat_fail=3.0)
    assert lenient.check("R-hat (raw, aligned)")["status"] == "ok"


@pytest.fixture(scope="module")
def misfit(truth):
    dt = _flipped(nuts_idata(truth))
    return dt, diagnose(dt, loo=False)


def test_miscalibrated_predictions_warn(misfit):
    dt, d = misfit
    row = d.check("Calibration")
    assert row["status"] == "warn" and "miscalibrated" in row["message"]
    cal = d.tables["calibration"]
    judged = cal[cal["answers"] >= DEFAULT_THRESHOLDS["ppc_min_answers"]]
    # in-sample: a bin counts when outside its interval and off by more than the tolerance
    far = (judged["observed"] - judged["predicted"]).abs() > DEFAULT_THRESHOLDS["calibration_in_sample_tolerance"]
    assert row["value"] == pytest.approx((judged["outside"] & far).mean())
    assert row["value"] > DEFAULT_THRESHOLDS["calibration_outside_max"]
    lenient = diagnose(dt, loo=False, calibration_outside_max=1.0)
    assert lenient.check("Calibration")["status"] == "ok"
    tolerant = diagnose(dt, loo=False, calibration_in_sample_tolerance=1.0)  # no bin is off by more than 1
    assert tolerant.check("Calibration")["status"] == "ok" and tolerant.check("Calibration")["value"] == 0.0


def test_in_sample_calibration_tolerates_the_in_sample_bias():
    """In-sample bins outside their (narrow, large-log) intervals by less than the tolerance
    do not count; leave-one-out bins count however little they miss by."""
    import pandas as pd

    from bayes_lse.diagnostics.calibration import check_calibration

    cal = pd.DataFrame({"bin": ["a", "b", "c"], "answers": [5000, 5000, 5000], "predicted": [0.15, 0.55, 0.85],
                        "observed": [0.118, 0.58, 0.95], "lo90": [0.14, 0.54, 0.84], "hi90": [0.16, 0.56, 0.86],
                        "outside": [True, True, True]})
    cal.attrs["source"] = "in-sample"
    row = check_calibration(cal, DEFAULT_THRESHOLDS).verdicts[0]
    assert row["value"] == pytest.approx(1 / 3) and row["status"] == "warn"  # only the 0.10 miss counts
    assert "1 of 3 bins outside their 90% interval by more than 0.05 (2 outside by less)" in row["message"]
    cal.loc[2, "observed"] = 0.88
    row = check_calibration(cal, DEFAULT_THRESHOLDS).verdicts[0]
    assert row["value"] == 0.0 and row["status"] == "ok" and "(3 outside by less)" in row["message"]
    cal.attrs["source"] = "leave-one-out"
    row = check_calibration(cal, DEFAULT_THRESHOLDS).verdicts[0]
    assert row["value"] == 1.0 and row["status"] == "warn"


@pytest.mark.parametrize("what", ["students", "assessments"])
def test_misfit_pass_rates_warn_per_student_and_assessment(misfit, what):
    dt, d = misfit
    check = f"Pass rates per {what[:-1]}"
    row = d.check(check)
    assert row["status"] == "warn" and f"misfits these {what}" in row["message"]
    table = d.tables[what]
    judged = table[table["judged"]]
    assert row["value"] == pytest.approx(judged["outside"].mean())
    assert row["value"] > DEFAULT_THRESHOLDS["ppc_outside_max"]
    assert str(judged[judged["outside"]].iloc[0, 0]) in row["message"]  # names the most surprising one
    assert diagnose(dt, loo=False, ppc_outside_max=1.0).check(check)["status"] == "ok"
    # entities with fewer answers than ppc_min_answers are not judged: no verdict at all
    assert check not in set(diagnose(dt, loo=False, ppc_min_answers=10_000).verdicts["check"])


def test_map_starts_that_disagree_warn(truth):
    dt = map_idata(truth)
    assert diagnose(dt, loo=False).check("MAP starts agree")["status"] == "ok"  # 1234.5 and 1234.9
    opt = dt["optimization"].to_dataset()
    dt["optimization"] = xr.DataTree(opt.assign(objective=("start", np.array([1234.5, 1290.0, 1301.2]))))
    row = diagnose(dt, loo=False).check("MAP starts agree")
    assert row["status"] == "warn" and row["value"] == 1 and "may not be global" in row["message"]
    loose = diagnose(dt, loo=False, map_objective_tol=100.0).check("MAP starts agree")
    assert loose["status"] == "ok" and loose["value"] == 3
    strict = diagnose(map_idata(truth), loo=False, map_objective_tol=0.1).check("MAP starts agree")
    assert strict["status"] == "warn" and strict["value"] == 1


def test_predictive_checks_include_the_history_term(tiny_cohort):
    """The predictive checks and PSIS-LOO score the model that was fitted: with the history
    term on, their logits are the fitted object's pass probabilities, history included.
    (They left it out: 100 MoFaCTS students fitted by NUTS had 100 % of students and 85 %
    of items flagged by the pass-rate checks; 0 % with the term.)"""
    import bayes_lse as bl
    from bayes_lse.diagnostics.predictive import row_logits

    fit = bl.LatentSkillEmbedding(n_skills=1, history=True).fit(tiny_cohort.table, method="map", starts=1, seed=1)
    cd = fit.idata["constant_data"].to_dataset()
    assert np.asarray(cd["obs_history"].values).sum() > 0, "the check needs repeated answers"
    post = fit.idata["posterior"].to_dataset()
    # a strong history effect, so that leaving the term out could not pass unnoticed
    post["history_success"] = post["history_success"] * 0 + 1.5
    post["history_failure"] = post["history_failure"] * 0 - 1.0
    rows = np.arange(cd.sizes["obs"])
    got = eq.sigmoid(row_logits(post, cd, np.zeros(1, int), np.zeros(1, int), rows))[0]
    fit.idata["posterior"] = xr.DataTree(post)
    want = fit.pass_probability_draws()[0]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_identified_quantities_do_not_move_along_the_length_bias_ridge(truth):
    """|a| and g_j enter the logit only as g_j − |a|: lengthening every requirement and
    raising every assessment bias by the same amount changes no pass probability, and
    none of the quantities judged as identified (the old |a| and g_j would have moved)."""
    dt = nuts_idata(truth, chains=2, draws=20)
    moved = dt.copy()
    post = dt["posterior"].to_dataset()
    norm = np.linalg.norm(post["requirement"].values, axis=-1, keepdims=True)
    shift = 0.7
    moved["posterior"] = xr.DataTree(post.assign(
        requirement=post["requirement"] * ((norm + shift) / norm),
        assessment_bias=post["assessment_bias"] + shift,
    ))
    a, b = identified_quantities(dt), identified_quantities(moved)
    for v in a.data_vars:
        np.testing.assert_allclose(a[v].values, b[v].values, rtol=1e-9, atol=1e-9, err_msg=v)
