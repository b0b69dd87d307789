"""Issue 20 §3, the frictions a new user hit on the command line: the fit's verdict kept
with the model and shown by report / predict / recommend, predicting without timesteps
or outcomes, hints in CLI words, -q.  In-process (CliRunner) on the tiny MAP fixture."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from bayes_lse.api import FittedLSE, load
from bayes_lse.cli import main
from bayes_lse.results.posterior import VERDICT_ATTR

FAILED = {"status": "fail", "line": "diagnostics: FAIL (1 fail, 0 warn of 5 checks); worst: R-hat — chains disagree",
          "fail": 1, "warn": 0, "checks": 5, "worst": "R-hat"}


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def saved_copy(fitted: FittedLSE, path, verdict: dict | None) -> FittedLSE:
    """A copy of a fit (the session fixture stays untouched), saved with or without a verdict."""
    copy = FittedLSE(fitted.idata.copy(deep=True))
    copy.idata.attrs.pop(VERDICT_ATTR, None)
    if verdict is not None:
        copy.idata.attrs[VERDICT_ATTR] = json.dumps(verdict)
    copy.save(path)
    return copy


@pytest.fixture(scope="module")
def tiny_map(tiny_cohort):
    """A MAP fit by the numpy kernel (no PyTensor compilation), not the shared fixture."""
    from bayes_lse import LatentSkillEmbedding

    return LatentSkillEmbedding(n_skills=2).fit(tiny_cohort.table, method="map", starts=1, seed=1, maxiter=200,
                                                engine="kernel", parametrization="centered")


@pytest.fixture
def data_csv(tiny_cohort, tmp_path):
    path = tmp_path / "data.csv"
    tiny_cohort.table.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------ 1. verdicts
def test_fit_saves_its_verdict_and_report_prints_the_status(data_csv, tmp_path):
    model = tmp_path / "m"
    fast = tmp_path / "fast.json"  # the numpy kernel: no PyTensor compilation
    fast.write_text('{"engine": "kernel", "parametrization": "centered"}')
    r = cli("fit", str(data_csv), "-o", str(model), "--method", "map", "--starts", "1", "--maxiter", "2",
            "--skills", "1", "--seed", "0", "--config", str(fast))
    assert r.exit_code == 0, r.output
    assert "diagnostics: WARN" in r.stdout
    saved = load(model).saved_verdict()  # recorded before saving, so the folder keeps it
    assert saved is not None and saved["status"] == "warn" and saved["worst"] == "MAP optimiser"
    assert saved["line"] in r.stdout

    r = cli("report", str(model), "-o", str(tmp_path / "r.html"))
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().endswith("r.html")
    assert "diagnostics: WARN" in r.stderr and "worst: MAP optimiser" in r.stderr


def test_predict_and_recommend_warn_when_the_saved_verdict_failed(tiny_map, data_csv, tmp_path):
    saved_copy(tiny_map, tmp_path / "bad", FAILED)
    r = cli("predict", str(tmp_path / "bad"), str(data_csv))
    assert r.exit_code == 0, r.output
    assert "warning: this model failed its own checks" in r.stderr and "diagnostics: FAIL" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.stdout.startswith("student_id,module_id,timestep,p_mean")  # the predictions are still given
    r = cli("recommend", str(tmp_path / "bad"), "--student", "s00", "--goal", "A0", "--max-length", "1")
    assert r.exit_code == 0, r.output
    assert "warning: this model failed its own checks" in r.stderr

    saved_copy(tiny_map, tmp_path / "good", {**FAILED, "status": "ok", "line": "diagnostics: OK"})
    r = cli("predict", str(tmp_path / "good"), str(data_csv))
    assert r.exit_code == 0 and "warning" not in r.stderr


def test_a_folder_without_a_saved_verdict_is_diagnosed_on_load(tiny_map, data_csv, tmp_path, monkeypatch):
    saved_copy(tiny_map, tmp_path / "old", None)
    fitted = load(tmp_path / "old")
    assert fitted.saved_verdict() is None
    rec = fitted.verdict()
    assert rec["saved"] is False and rec["status"] in ("ok", "warn", "fail") and rec["line"].startswith("diagnostics:")

    import bayes_lse.diagnostics as diagnostics_pkg
    from bayes_lse.diagnostics import Diagnostics

    calls = []

    def failing(idata, **kw):
        calls.append(kw)
        verdicts = pd.DataFrame([{"check": "R-hat", "status": "fail", "value": 1.2, "threshold": 1.01,
                                  "message": "chains disagree"}])
        return Diagnostics(method="map", verdicts=verdicts, tables={}, thresholds={})

    monkeypatch.setattr(diagnostics_pkg, "diagnose", failing)
    r = cli("predict", str(tmp_path / "old"), str(data_csv))
    assert r.exit_code == 0, r.output
    assert calls == [{"loo": False}]  # cheap: no PSIS-LOO
    assert "failed its own checks" in r.stderr and "worst: R-hat" in r.stderr


# ------------------------------------------------- 2. predicting without timesteps
def test_rows_without_timestep_or_outcome_continue_from_the_current_state(tiny_map, tmp_path):
    saved_copy(tiny_map, tmp_path / "m", {**FAILED, "status": "ok", "line": "diagnostics: OK"})
    last = tiny_map.last_states()["step"]
    (tmp_path / "next.csv").write_text(  # no timestep column, outcomes left empty or absent
        "student_id,module_id,module_type,outcome\ns00,A0,assessment,\ns00,L0,lesson,\ns00,A0,assessment,\n"
        "s01,A3,assessment,\n")
    r = cli("predict", str(tmp_path / "m"), str(tmp_path / "next.csv"))
    assert r.exit_code == 0, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and "no timestep column" in r.stderr, r.stderr
    assert "current (last fitted) state" in r.stderr
    got = pd.read_csv(pd.io.common.StringIO(r.stdout))
    assert got["timestep"].tolist() == [last["s00"], last["s00"] + 1, last["s01"]]

    # the same rows at the current step, written out: the same probabilities
    explicit = pd.DataFrame({"student_id": ["s00", "s01"], "module_id": ["A0", "A3"],
                             "module_type": "assessment", "timestep": [last["s00"], last["s01"]]})
    want = tiny_map.predict(explicit)
    assert got["p_mean"].iloc[[0, 2]].to_numpy() == pytest.approx(want["p_mean"].to_numpy())
    # ... which is not what step 0 gives (the old behaviour)
    at0 = tiny_map.predict(explicit.assign(timestep=0))
    assert abs(at0["p_mean"].to_numpy() - want["p_mean"].to_numpy()).max() > 1e-3

    # Python: the same default, said once as a warning; from_last_state=False keeps step 0
    rows = pd.DataFrame({"student_id": ["s00"], "module_id": ["A0"], "module_type": ["assessment"]})
    with pytest.warns(UserWarning, match="no timestep column"):
        py = tiny_map.predict(rows)
    assert py["timestep"].tolist() == [last["s00"]] and "outcome" not in py
    assert tiny_map.predict(rows, from_last_state=False)["timestep"].tolist() == [0]


def test_a_given_outcome_must_still_be_valid(tiny_map, tmp_path):
    saved_copy(tiny_map, tmp_path / "m", {**FAILED, "status": "ok", "line": "diagnostics: OK"})
    (tmp_path / "bad.csv").write_text("student_id,module_id,module_type,outcome\ns00,A0,assessment,maybe\n")
    r = cli("predict", str(tmp_path / "m"), str(tmp_path / "bad.csv"))
    assert r.exit_code == 2 and "line 2, column 'outcome'" in r.stderr


# ------------------------------------------------------------------ 3. error hints
def test_recommend_for_an_unknown_student_names_the_cli_option(tiny_map, tmp_path):
    saved_copy(tiny_map, tmp_path / "m", {**FAILED, "status": "ok", "line": "diagnostics: OK"})
    r = cli("recommend", str(tmp_path / "m"), "--student", "nobody", "--goal", "A0")
    assert r.exit_code == 2
    assert "--history FILE" in r.stderr and "history=" not in r.stderr, r.stderr


FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "fixtures" / "readers"


@pytest.mark.parametrize("raw, fmt", [("dkt_small.csv", "assistments-dkt"), ("ednet/u1.csv", "ednet-kt4"),
                                      ("ednet", "ednet-kt4"), ("riiid/train.csv", "riiid")])
def test_a_raw_public_file_given_to_fit_suggests_convert(raw, fmt, tmp_path):
    r = cli("fit", str(FIXTURES / raw), "-o", str(tmp_path / "m"), "--method", "map")
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("bayes-lse: error: "), err
    assert f"bayes-lse convert --from {fmt} " in err, err
    assert not (tmp_path / "m").exists()
    r = cli("evaluate", str(FIXTURES / raw), "-o", str(tmp_path / "e.txt"))
    assert r.exit_code == 2 and f"add --from {fmt}" in r.stderr, r.stderr


def test_a_plain_bad_table_gets_no_convert_hint(tmp_path):
    (tmp_path / "bad.csv").write_text("learner,item,correct\ns1,A1,1\n")
    r = cli("fit", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "m"), "--method", "map")
    assert r.exit_code == 2 and "convert" not in r.stderr and "none of the required columns" in r.stderr


# ------------------------------------------------------------------ 6. progress and -q
def test_map_fit_prints_periodic_progress_off_a_terminal_and_q_silences_it(data_csv, tmp_path, monkeypatch):
    import bayes_lse.inference.engine as engine

    monkeypatch.setattr(engine, "MAP_PROGRESS_EVERY", {"terminal": 0.0, "other": 0.0})  # a line per iteration
    fast = tmp_path / "fast.json"
    fast.write_text('{"engine": "kernel", "parametrization": "centered"}')
    args = [str(data_csv), "--method", "map", "--starts", "1", "--maxiter", "5", "--skills", "1", "--seed", "0",
            "--config", str(fast)]
    r = cli("fit", *args, "-o", str(tmp_path / "m1"))  # CliRunner's stderr is not a terminal
    assert r.exit_code == 0, r.output
    assert "MAP start 1/1: iteration 1/5, -log p = " in r.stderr, r.stderr
    assert "fitting LatentSkillEmbedding" in r.stderr

    r = cli("fit", *args, "-o", str(tmp_path / "m2"), "-q")
    assert r.exit_code == 0, r.output
    assert r.stderr == "", r.stderr
    assert "diagnostics: WARN" in r.stdout  # the result and its verdict still print

    r = cli("report", str(tmp_path / "m2"), "-o", str(tmp_path / "r.html"), "-q")
    assert r.exit_code == 0 and r.stderr == "", r.stderr
    (tmp_path / "next.csv").write_text("student_id,module_id,module_type\ns00,A0,assessment\n")
    r = cli("predict", str(tmp_path / "m2"), str(tmp_path / "next.csv"), "-q", "-o", str(tmp_path / "p.csv"))
    assert r.exit_code == 0 and r.stderr == "", r.stderr


def test_help_does_not_import_the_modelling_stack():
    """Issue 20: `bayes-lse --help` took 3.4 s, 2.2 s of it importing PyMC and SciPy for
    the names `evaluate --help` lists; now 0.15 s. Every command's help stays light."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from bayes_lse.cli import main\n"
        "for args in (['--help'], ['fit', '--help'], ['evaluate', '--help'], ['calibrate', '--help'], ['evaluate-paths', '--help'],"
        " ['recommend', '--help']):\n"
        "    r = CliRunner().invoke(main, args)\n"
        "    assert r.exit_code == 0, (args, r.output)\n"
        "print(sorted(m for m in ('pymc', 'pytensor', 'scipy', 'arviz_base', 'xarray') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_recommend_and_plan_say_why_a_model_has_no_lessons(tiny_cohort, tmp_path):
    """--no-lessons, or the fit's held-out check dropping them ("lessons off" among its
    choices): each refusal says which, in command-line words."""
    from bayes_lse import LatentSkillEmbedding

    fitted = LatentSkillEmbedding(n_skills=1, lessons=False, history=False).fit(
        tiny_cohort.table, method="map", starts=1, seed=1, maxiter=50, engine="kernel", parametrization="centered")
    saved_copy(fitted, tmp_path / "forced", None)
    dropped = saved_copy(fitted, tmp_path / "dropped_src", None)
    dropped.idata.attrs["choices"] = json.dumps([*fitted.choices, "lessons off: held-out log-loss 0.6 with ..."])
    dropped.save(tmp_path / "dropped")
    for command, extra in (("recommend", ["--goal", "A0"]), ("plan", ["--goal", "A0"])):
        sid = str(tiny_cohort.table["student_id"].iloc[0])
        r = cli(command, str(tmp_path / "forced"), "--student", sid, *extra)
        assert r.exit_code == 2 and "was fitted with --no-lessons; fit without it" in r.stderr, r.stderr
        r = cli(command, str(tmp_path / "dropped"), "--student", sid, *extra)
        assert r.exit_code == 2 and "as chosen from its data" in r.stderr and "lessons off" in r.stderr
        assert "fit with --lessons to keep them" in r.stderr, r.stderr
