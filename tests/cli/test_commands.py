"""The command line end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

EXE = str(Path(sys.executable).with_name("bayes-lse"))


def run(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("cmd", ["simulate", "fit", "predict", "convert", "demo", "report", "recommend", "evaluate",
                                 "calibrate"])
def test_help(cmd, tmp_path):
    out = run(cmd, "--help", cwd=tmp_path).stdout
    assert "Usage: bayes-lse " + cmd in out


def test_simulate_fit_predict(tmp_path):
    run("simulate", "-o", "data.csv", "--students", "10", "--steps", "3", "--assessments", "4", "--lessons", "2",
        "--seed", "3", "--truth", "truth.json", cwd=tmp_path)
    table = pd.read_csv(tmp_path / "data.csv")
    assert {"student_id", "module_id", "module_type", "outcome", "timestep", "p_true"} <= set(table.columns)
    assert table.student_id.nunique() == 10
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert set(truth["students"]) == set(table.student_id)
    assert set(truth["lessons"]) == set(table[table.module_type == "lesson"].module_id) | set(truth["lessons"])

    out = run("fit", "data.csv", "-o", "models/m", "--method", "map", "--starts", "1", "--skills", "1",
              "--seed", "0", cwd=tmp_path)
    assert "models/m" in out.stdout
    assert (tmp_path / "models/m/manifest.json").exists()
    assert "diagnostics: " in out.stdout  # the fit's own verdict, after every fit (issue 20)

    # a fit stopped at its iteration limit says so instead of a bare "model saved"
    out = run("fit", "data.csv", "-o", "models/short", "--method", "map", "--starts", "1", "--maxiter", "2",
              "--skills", "1", "--seed", "0", cwd=tmp_path).stdout
    assert "diagnostics: WARN" in out and "worst: MAP optimiser" in out and "Raise maxiter" in out

    # refuses to overwrite the saved model, and leaves it as it was
    before = (tmp_path / "models/m/fit.nc").read_bytes()
    proc = run("fit", "data.csv", "-o", "models/m", "--method", "map", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "models/m/fit.nc").read_bytes() == before

    out = run("predict", "models/m", "data.csv", cwd=tmp_path).stdout
    lines = out.strip().splitlines()
    assert lines[0] == "student_id,module_id,timestep,p_mean,p_low,p_high,assessment_from"
    assert len(lines) - 1 == int((table.module_type == "assessment").sum())
    run("predict", "models/m", "data.csv", "--format", "json", "-o", "pred.json", cwd=tmp_path)
    recs = json.loads((tmp_path / "pred.json").read_text())
    assert set(recs[0]) == {"student_id", "module_id", "timestep", "p_mean", "p_low", "p_high", "assessment_from"}


@pytest.mark.parametrize(
    "content, expected",
    [
        ("student_id,module_id,module_type,outcome\ns1,A1,assessment,1\ns1,A1,quiz,1\n",
         "bad.csv, line 3, column 'module_type'"),
        ("student_id,module_id,outcome\ns1,A1,1\n", "bad.csv"),
        ("", "bad.csv"),
        ("student_id,module_id,module_type,outcome,timestep\ns1,A1,assessment,1,-2\n",
         "bad.csv, line 2, column 'timestep'"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, content, expected):
    (tmp_path / "bad.csv").write_text(content)
    proc = run("fit", "bad.csv", "-o", "models/x", "--method", "map", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert expected in err
    assert "Traceback" not in err
    assert not (tmp_path / "models/x").exists()


def test_missing_model_is_clear(tmp_path):
    (tmp_path / "d.csv").write_text("student_id,module_id,module_type,outcome\ns1,A1,assessment,1\n")
    proc = run("predict", "nope", "d.csv", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bayes-lse: error: nope: no such model folder"


def test_convert_dkt(tmp_path):
    (tmp_path / "dkt.csv").write_text("3\n11,12,11,\n0,1,1,\n2\n12,13\n1,1\n")
    run("convert", "--from", "assistments-dkt", "dkt.csv", "-o", "out.csv", "--items-as-lessons", cwd=tmp_path)
    out = pd.read_csv(tmp_path / "out.csv")
    assert (out.module_type == "assessment").sum() == 5
    assert (out.module_type == "lesson").sum() == 5


def test_config_errors_name_file_key_and_range_before_fitting(tmp_path):
    run("simulate", "-o", "data.csv", "--students", "4", "--steps", "2", "--assessments", "3", "--lessons", "1",
        "--seed", "1", cwd=tmp_path)
    for text, words in (('{"starts": 1.5}', "'starts' must be 'auto' or an integer >= 1, got 1.5"),
                        ('{"maxiter": -3}', "'maxiter' must be 'auto' or an integer >= 1, got -3"),
                        ('{"jitter": -1}', "'jitter' must be a finite number >= 0")):
        (tmp_path / "c.json").write_text(text)
        proc = run("fit", "data.csv", "-o", "m", "--method", "map", "--config", "c.json", cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "c.json: map fit setting" in proc.stderr and words in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "m").exists()
    proc = run("fit", "data.csv", "-o", "m", "--method", "map", "--learning-noise", "inf", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "learning_noise must be a finite positive number" in proc.stderr
    for bad in ("two", "0"):  # --skills: an integer >= 1 or auto, for fit and evaluate alike
        for cmd in ("fit", "evaluate"):
            proc = run(cmd, "data.csv", *(["-o", "m"] if cmd == "fit" else []), "--skills", bad, cwd=tmp_path,
                       check=False)
            assert proc.returncode == 2 and "--skills must be an integer >= 1 or 'auto'" in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr and not (tmp_path / "m").exists()


def test_fit_amortised_flag_applies_to_advi_only(tmp_path):
    run("simulate", "-o", "data.csv", "--students", "4", "--steps", "2", "--assessments", "3", "--lessons", "1",
        "--seed", "1", cwd=tmp_path)
    proc = run("fit", "data.csv", "-o", "m", "--method", "map", "--amortised", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "amortised" in proc.stderr and "--method map" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "m").exists()


@pytest.mark.slow
def test_fit_amortised_saves_a_model_that_predicts(tmp_path):
    pytest.importorskip("jax")
    pytest.importorskip("numpyro")
    run("simulate", "-o", "data.csv", "--students", "30", "--steps", "3", "--assessments", "4", "--lessons", "2",
        "--seed", "2", cwd=tmp_path)
    (tmp_path / "c.json").write_text('{"max_iterations": 200, "window": 25, "draws": 10, "encoder_hidden": 8}')
    proc = run("fit", "data.csv", "-o", "m", "--method", "advi", "--amortised", "--no-history", "--config", "c.json",
               "--seed", "0", cwd=tmp_path)
    assert "batch_size 256" in proc.stderr
    run("predict", "m", "data.csv", "-o", "p.csv", cwd=tmp_path)
    p = pd.read_csv(tmp_path / "p.csv")
    assert p["p_mean"].between(0, 1).all() and len(p) == int((pd.read_csv(tmp_path / "data.csv").module_type == "assessment").sum())


def test_simulate_refuses_truth_on_the_data_file(tmp_path):
    proc = run("simulate", "-o", "x.csv", "--truth", "./x.csv", "--students", "3", "--steps", "2", cwd=tmp_path,
               check=False)
    assert proc.returncode == 2 and "same file" in proc.stderr
    assert not (tmp_path / "x.csv").exists()


def test_report_and_recommend_refuse_options_that_would_be_ignored(tmp_path):
    """Issue 19 item 16: each exits 2 with one line naming the option, and writes nothing."""
    run("simulate", "-o", "data.csv", "--students", "6", "--steps", "3", "--assessments", "4", "--lessons", "2",
        "--seed", "2", cwd=tmp_path)
    run("fit", "data.csv", "-o", "m", "--method", "map", "--starts", "1", "--skills", "2", "--seed", "0",
        cwd=tmp_path)
    for args, words in ((["--lesson", "nope"], "--lesson 'nope' is not a lesson"),
                        (["--skills", "0,5"], "two different skill indices in 0..1"),
                        (["--skills", "0,1,1"], "two different skill indices"),
                        (["--skills", "1,1"], "two different skill indices"),
                        (["--rhat-max", "-1"], "--rhat-max"),
                        (["--ess-min", "nan"], "--ess-min must be a finite number")):
        proc = run("report", "m", "-o", "r.html", *args, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and words in proc.stderr, (args, proc.stderr)
        assert not (tmp_path / "r.html").exists()
    proc = run("recommend", "m", "--student", "s0", "--goal", "A0", "--candidates", ",,,", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--candidates names no lesson" in proc.stderr


def test_unwritable_outputs_are_refused_before_any_work(tmp_path):
    """Issue 19 item 10: one line, exit 2, before the work (here the output's folder is a
    file; the permission case is the same check, but the tests run as root in CI)."""
    (tmp_path / "afile").write_text("x")
    run("simulate", "-o", "data.csv", "--students", "4", "--steps", "2", "--assessments", "3", "--lessons", "1",
        "--seed", "1", cwd=tmp_path)
    for args in (["simulate", "-o", "afile/d.csv", "--students", "3", "--steps", "2"],
                 ["fit", "data.csv", "-o", "afile/m", "--method", "map", "--starts", "1"],
                 ["convert", "--from", "assistments-dkt", "data.csv", "-o", "afile/sub/x.csv"],
                 ["evaluate", "data.csv", "-o", "afile/e.txt", "--folds", "1"]):
        proc = run(*args, cwd=tmp_path, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "is a file, not a folder" in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "fitting" not in proc.stderr and "evaluating" not in proc.stdout


def test_usage_errors_are_one_line(tmp_path):
    """Issue 19 item 15: click's usage + hint + error (four lines) became one line, exit 2."""
    for args, words in ((["fit"], "Missing argument 'DATA'"), (["fit", "x.csv", "--method", "xyz"], "--method"),
                        (["nosuch"], "No such command")):
        proc = run(*args, cwd=tmp_path, check=False)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bayes-lse: error: ") and words in lines[0], proc.stderr


def test_out_of_memory_is_one_line(tmp_path, monkeypatch):
    """Issue 19 item 9: a MemoryError (simulate --students 10000000 under a limit) was a traceback."""
    from click.testing import CliRunner

    import bayes_lse.model.simulate as sim
    from bayes_lse.cli import main

    def too_big(**kwargs):
        raise MemoryError

    monkeypatch.setattr(sim, "simulate", too_big)
    r = CliRunner().invoke(main, ["simulate", "-o", str(tmp_path / "d.csv"), "--students", "10000000"])
    assert r.exit_code == 2 and "out of memory" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "d.csv").exists()


@pytest.mark.parametrize(
    "text, words",
    [
        ("lesson_id,cost\nL0,abc\n", "line 2, column 'cost': 'abc' is not a number"),
        ("", "empty"),
        ("lesson,price\nL0,1\n", "line 1: needs columns lesson_id,cost"),
        ("lesson_id,cost\nL0,1\nL0,2\n", "line 3, column 'lesson_id': lesson 'L0' is listed twice"),
        ("lesson_id,cost\nL0,1,3\n", "line 2: 3 fields, the header has 2"),
    ],
)
def test_costs_errors_name_file_line_and_column(tmp_path, text, words):
    """Issue 19 item 14, read before the model is loaded (no model needed)."""
    (tmp_path / "costs.csv").write_text(text)
    (tmp_path / "m").mkdir()
    proc = run("recommend", "m", "--student", "s0", "--goal", "A0", "--costs", "costs.csv", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "costs.csv" in proc.stderr and words in proc.stderr, proc.stderr


def test_costs_in_utf16_is_one_line(tmp_path):
    (tmp_path / "costs.csv").write_text("lesson_id,cost\nL0,1\n", encoding="utf-16")
    (tmp_path / "m").mkdir()
    proc = run("recommend", "m", "--student", "s0", "--goal", "A0", "--costs", "costs.csv", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not UTF-8" in proc.stderr


# --------------------------------------------------------------------------- calibrate (issue 20 §1)
def _fake_sbc(calls: list, biased: bool):
    """A stand-in for run_sbc (no fitting): uniform ranks, or ranks of a biased fit."""
    import numpy as np
    import xarray as xr

    from bayes_lse.evaluate.calibration import SBCResult, describe_design, summarise

    def fake(model, design, *, n_simulations, progress=None, alpha=0.01, **kw):
        calls.append({"design": describe_design(design), "n_simulations": n_simulations, "model": model, **kw})
        rng = np.random.default_rng(0)
        pit = {"pass_probability": rng.random((n_simulations, 4)), "student_bias": rng.random((n_simulations, 3))}
        if biased:
            pit["student_bias"] = pit["student_bias"] ** 4
        ranks = {k: np.floor(v * 101).astype(int) for k, v in pit.items()}
        tree = xr.DataTree.from_dict({
            "prior_sbc": xr.Dataset({k: (("chain", "draw", f"{k}_el"), v[None]) for k, v in ranks.items()}),
            "prior_sbc_pit": xr.Dataset({k: (("chain", "draw", f"{k}_el"), v[None]) for k, v in pit.items()}),
        })
        fits = pd.DataFrame({"simulation": range(n_simulations), "seconds": 0.5, "divergences": 0,
                             "max_rhat": 1.01, "min_ess_bulk": 150.0})
        for i in range(n_simulations):
            if progress is not None:
                progress(i + 1, n_simulations, 0.5)
        return SBCResult(ranks=tree, summary=summarise(pit, alpha), fits=fits, n_rank_draws=100,
                         design={"compile_seconds": 1.0, "total_seconds": 2.0}, alpha=alpha)

    return fake


def test_calibrate_writes_ranks_table_and_figures(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import bayes_lse.evaluate.calibration as cal
    from bayes_lse.cli import main

    calls: list = []
    monkeypatch.setattr(cal, "run_sbc", _fake_sbc(calls, biased=False))
    out = tmp_path / "sbc"
    r = CliRunner().invoke(main, ["calibrate", "-o", str(out), "--simulations", "40", "--seed", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert calls[0]["design"]["students"] == 6 and calls[0]["design"]["assessments"] == 3  # the default design
    assert calls[0]["n_simulations"] == 40 and calls[0]["seed"] == 3 and calls[0]["model"].n_skills == 1
    assert calls[0]["model"].config["history"] is False  # the term only with --history
    assert "pass_probability" in r.output and "SBC OK" in r.output
    for name in ("sbc_ranks.nc", "sbc_summary.csv", "sbc_fits.csv", "sbc_ecdf_pit.png", "sbc_ecdf_bands.png"):
        assert (out / name).stat().st_size > 0, name
    summary = pd.read_csv(out / "sbc_summary.csv")
    assert list(summary["quantity"]) == ["pass_probability", "student_bias"]

    # an earlier run's files are not replaced without --overwrite, before any work
    r = CliRunner().invoke(main, ["calibrate", "-o", str(out), "-q"])
    assert r.exit_code == 2 and "already exists" in r.output and len(calls) == 1

    r = CliRunner().invoke(main, ["calibrate", "-o", str(tmp_path / "sbc_h"), "--simulations", "2", "--history", "-q"])
    assert r.exit_code == 0, r.output
    assert calls[-1]["model"].config["history"] is True


def test_calibrate_on_a_users_design_and_failing_ranks(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import bayes_lse.evaluate.calibration as cal
    from bayes_lse.cli import main
    from bayes_lse.model.simulate import simulate

    simulate(n_students=30, n_steps=12, n_assessments=25, n_lessons=12, seed=0).write(tmp_path / "data.csv")
    calls: list = []
    monkeypatch.setattr(cal, "run_sbc", _fake_sbc(calls, biased=True))
    r = CliRunner().invoke(main, ["calibrate", str(tmp_path / "data.csv"), "-o", str(tmp_path / "o"), "-q",
                                  "--students", "8", "--skills", "2", "--no-prerequisites"])
    assert r.exit_code == 1, r.output  # SBC FAIL is exit status 1
    assert "SBC FAIL" in r.output and "student_bias" in r.output
    design = calls[0]["design"]
    assert design["students"] == 8 and design["max_steps"] <= 10 and design["assessments"] <= 20
    assert design["lessons"] <= 10
    model = calls[0]["model"]
    assert model.n_skills == 2 and not model.config["prerequisites"]


@pytest.mark.parametrize("args, words", [
    (["--learning-noise", "lots"], "--learning-noise must be"),
    (["--assessments", "2", "--answers-per-step", "3"], "cannot exceed --assessments"),
    (["missing.csv"], "missing.csv"),
])
def test_calibrate_input_errors_are_one_line(tmp_path, args, words):
    proc = run("calibrate", "-o", "out", "-q", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayes-lse: error: ") and words in lines[0], proc.stderr


def test_a_second_fit_to_the_same_folder_fails_at_once(tmp_path, monkeypatch):
    """Issue 19 item 1: two `fit -o SAME` at once both exited 0 and one silently replaced
    the other. While one writer holds the folder, another `fit` exits 2 before fitting."""
    import textwrap

    (tmp_path / "d.csv").write_text("student_id,module_id,module_type,outcome\ns1,A1,assessment,1\n"
                                    "s2,A1,assessment,0\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys
            from bayes_lse.results.storage import folder_lock
            with folder_lock("models/m"):
                print("held", flush=True)
                sys.stdin.read()
        """)], cwd=tmp_path, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        from click.testing import CliRunner

        from bayes_lse.cli import main

        monkeypatch.chdir(tmp_path)
        for extra in ([], ["--overwrite"]):
            r = CliRunner().invoke(main, ["fit", "d.csv", "-o", "models/m", "--method", "map", *extra])
            assert r.exit_code == 2, r.output
            err = r.output.strip()
            assert len(err.splitlines()) == 1 and err.startswith("bayes-lse: error: models/m: another bayes-lse "
                                                                 f"process (PID {holder.pid} on "), err
            assert "fitting" not in err and not (tmp_path / "models/m").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not (tmp_path / "models").exists()  # nothing left: the holder made the folder and removed it


def test_predict_places_students_not_in_the_model(tiny_map, tmp_path):
    """Issue 16: rows of a new student with an outcome are its history, rows with an
    empty outcome are predicted; exact placement without an encoder, the encoder with one."""
    pytest.importorskip("jax")
    from click.testing import CliRunner

    from bayes_lse.cli.commands import main

    tiny_map.save(tmp_path / "m")
    a, l = [str(x) for x in tiny_map.assessments], [str(x) for x in tiny_map.lessons]
    known = str(tiny_map.ids_of("student")[0])
    (tmp_path / "rows.csv").write_text(
        "student_id,module_id,module_type,outcome,timestep\n"
        f"newA,{a[0]},assessment,1,0\nnewA,{a[1]},assessment,0,0\nnewA,{l[0]},lesson,,0\n"
        f"newA,{a[2]},assessment,,1\nnewA,{l[1]},lesson,,1\nnewA,{a[3]},assessment,,2\n"
        f"{known},{a[0]},assessment,,3\nnewB,{a[1]},assessment,,0\n")
    r = CliRunner().invoke(main, ["predict", str(tmp_path / "m"), str(tmp_path / "rows.csv"), "--seed", "1",
                                  "--particles", "50"])
    assert r.exit_code == 0, r.output
    assert "exact particle filter" in r.output
    lines = [x for x in r.output.splitlines() if x.startswith(("newA", "newB", known))]
    assert [x.split(",")[:3] for x in lines] == [["newA", a[2], "1"], ["newA", a[3], "2"], [known, a[0], "3"],
                                                 ["newB", a[1], "0"]]
    assert all(0 < float(x.split(",")[3]) < 1 for x in lines)
    r = CliRunner().invoke(main, ["predict", str(tmp_path / "m"), str(tmp_path / "rows.csv"), "--placement",
                                  "amortised"])
    assert r.exit_code == 2 and "no amortised encoder" in r.output
    r = CliRunner().invoke(main, ["train-encoder", str(tmp_path / "m"), "--steps", "10", "--hidden", "8",
                                  "--batch-size", "16", "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["predict", str(tmp_path / "m"), str(tmp_path / "rows.csv"), "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "amortised encoder" in r.output
    assert len([x for x in r.output.splitlines() if x.startswith(("newA", "newB", known))]) == 4


def test_modules_from_convert_to_fit_to_predict(tmp_path):
    """convert --modules-out writes the Riiid metadata as a modules table, fit --modules keeps
    it in the model, predict scores an assessment the fit never saw from its tags."""
    src = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "readers" / "riiid"
    run("convert", "--from", "riiid", str(src / "train.csv"), "-o", "log.csv", "--modules-out", "modules.csv",
        cwd=tmp_path)
    mods = pd.read_csv(tmp_path / "modules.csv", dtype=str, keep_default_na=False)
    assert {"module_id", "module_type", "tags", "part"} <= set(mods.columns)
    log = pd.read_csv(tmp_path / "log.csv")
    assert set(log["module_id"]) <= set(mods["module_id"])
    run("fit", "log.csv", "-o", "m", "--method", "map", "--maxiter", "30", "--starts", "1", "--modules", "modules.csv",
        cwd=tmp_path)
    assert (tmp_path / "m" / "modules.json").is_file()
    unseen = sorted(set(mods.loc[mods["module_type"] == "assessment", "module_id"]) - set(log["module_id"]))
    assert unseen, "the fixture's questions.csv lists questions nobody answered"
    pd.DataFrame({"student_id": log["student_id"].iloc[0], "module_id": unseen[:1], "module_type": "assessment",
                  "timestep": 0}).to_csv(tmp_path / "new.csv", index=False)
    proc = run("predict", "m", "new.csv", cwd=tmp_path)
    lines = proc.stdout.strip().splitlines()
    assert lines[0].endswith(",assessment_from") and lines[1].split(",")[-1] in ("tags", "population")
    assert "answer assessments the model has not seen" in proc.stderr
    # a modules file that is not there: one line, no traceback
    bad = run("fit", "log.csv", "-o", "m2", "--method", "map", "--modules", "nope.csv", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "nope.csv: no such modules file" in bad.stderr and "Traceback" not in bad.stderr
    dkt = run("convert", "--from", "assistments-dkt", str(src.parent / "dkt_small.csv"), "-o", "d.csv",
              "--modules-out", "dm.csv", cwd=tmp_path, check=False)
    assert dkt.returncode == 2 and "carry no module metadata" in dkt.stderr and not (tmp_path / "d.csv").exists()


def test_package_warnings_are_one_line_on_stderr(tmp_path):
    """A warning of the package (here: a log whose answers are also its lessons) is one line,
    "bayes-lse: warning: ...", not Python's file:line and echoed source."""
    rows = []
    for s in range(6):
        for t in range(3):
            item = f"q{(s + t) % 4}"
            rows += [(f"s{s}", item, "assessment", float((s + t) % 2), t), (f"s{s}", item, "lesson", "", t)]
    pd.DataFrame(rows, columns=["student_id", "module_id", "module_type", "outcome", "timestep"]).to_csv(
        tmp_path / "ial.csv", index=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([EXE, "fit", "ial.csv", "-o", "m", "--method", "map", "--maxiter", "5", "--starts", "1",
                           "--skills", "1", "--lessons"], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "bayes-lse: warning: 100% of this log's answers are also lessons" in proc.stderr
    assert "UserWarning" not in proc.stderr and "model.fit(" not in proc.stderr
