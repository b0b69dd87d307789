"""The benchmark runner (benchmarks/runner.py): protocol parsing and a run of fake tiny cases.

No timing assertions: benchmarks are not tests.  Only the runner's bookkeeping is checked.
"""

from __future__ import annotations

import json
import math
import textwrap

import pytest

from benchmarks import runner  # the repository root is on sys.path through pytest's `pythonpath` (pyproject.toml)

# ------------------------------------------------------------------ RESULT lines


def test_parse_result_takes_the_last_line():
    out = 'figures...\nmore\nRESULT {"case": "x", "quality": {"auc": 0.8}, "figures": {}, "targets": {}, "notes": "n"}\n\n'
    assert runner.parse_result(out) == {"case": "x", "quality": {"auc": 0.8}, "figures": {}, "targets": {}, "notes": "n"}


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("", "printed nothing"),
        ("hello\n", "last stdout line is not"),
        ('RESULT {"case": "x"}\ntrailing\n', "printed earlier"),
        ("RESULT {not json\n", "not valid JSON"),
        ("RESULT [1, 2]\n", "one JSON object"),
        ('RESULT {"quality": {}}\n', "no 'case' key"),
        ('RESULT {"case": "x", "quality": [1]}\n', "'quality' must be an object"),
    ],
)
def test_parse_result_errors_say_what_is_wrong(stdout, message):
    with pytest.raises(ValueError, match=message):
        runner.parse_result(stdout)


def test_emit_result_round_trips_and_makes_plain_json(capsys):
    np = pytest.importorskip("numpy")
    obj = runner.emit_result("c", quality={"auc": np.float64(0.9), "bad": math.nan}, figures={"n": np.int64(3)},
                             targets={"t": "< 1 s"}, notes="two\n lines", extra=[1, 2])
    out = capsys.readouterr().out
    parsed = runner.parse_result("noise\n" + out)
    assert parsed == obj
    assert parsed["quality"] == {"auc": 0.9, "bad": None}
    assert parsed["figures"] == {"n": 3}
    assert parsed["notes"] == "two lines"
    assert parsed["extra"] == [1, 2]


# ------------------------------------------------------------------ fake cases

CASES = {
    "tiny": """
        \"\"\"A tiny case that allocates ~60 MB.\"\"\"
        import sys
        from benchmarks.runner import emit_result

        def main(argv=None):
            argv = sys.argv[1:] if argv is None else argv
            block = b"\\x01" * (60 << 20)
            print("figures: fine")
            emit_result("tiny", quality={"quick": "--quick" in argv, "n": len(block) >> 20},
                        figures={"x": 1.5}, targets={"speed": "< 1 s"}, notes="ok")

        if __name__ == "__main__":
            main()
        """,
    "broken": """
        \"\"\"Fails.\"\"\"
        import sys
        print("about to fail")
        sys.stderr.write("boom: something went wrong\\n")
        sys.exit(3)
        """,
    "silent": """
        \"\"\"Exits 0 without a RESULT line.\"\"\"
        print("no result here")
        """,
    "selfskip": """
        \"\"\"Skips itself.\"\"\"
        from benchmarks.runner import emit_result
        emit_result("selfskip", skipped="no GPU here")
        """,
    "needsdata": """
        \"\"\"Reads ../shared/data (absent in the test).\"\"\"
        PATH = "../shared/data/assistments2009"
        raise SystemExit("must not run")
        """,
    "flags": """
        \"\"\"Reports the cache environment it was given.\"\"\"
        import os
        from benchmarks.runner import emit_result
        emit_result("flags", quality={"pytensor_flags": os.environ.get("PYTENSOR_FLAGS", ""),
                                      "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR", "")})
        """,
    "tree": """
        \"\"\"Parent and child hold memory at the same time.\"\"\"
        import subprocess, sys
        from benchmarks.runner import emit_result
        parent = b"\\x01" * (80 << 20)
        subprocess.run([sys.executable, "-c", "import time; b = b'\\\\x01' * (120 << 20); time.sleep(1.0)"], check=True)
        emit_result("tree", quality={"held": len(parent) >> 20})
        """,
    "sleepy": """
        \"\"\"Never finishes in time.\"\"\"
        import time
        time.sleep(60)
        """,
}


@pytest.fixture
def fake_bench(tmp_path, monkeypatch):
    pkg = tmp_path / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, src in CASES.items():
        (pkg / f"bench_{name}.py").write_text(textwrap.dedent(src))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("BAYES_LSE_DATA", str(tmp_path / "no-such-data"))
    # the PyTensor cache probe starts PyTensor in a subprocess; not needed for the bookkeeping
    monkeypatch.setattr(runner, "cache_locations", lambda env=None: {"pytensor_base_compiledir": str(tmp_path / "pt")})
    return pkg


def _run(fake_bench, tmp_path, *args):
    out = tmp_path / "out" / "results.json"
    code = runner.main(["--bench-dir", str(fake_bench), "--module-prefix", "fakebench.bench_", "--json", str(out), *args])
    return code, json.loads(out.read_text())


def test_runner_writes_json_with_every_field(fake_bench, tmp_path, capsys):
    code, res = _run(fake_bench, tmp_path, "--cases", "tiny,broken,silent,selfskip,needsdata", "--quick")
    assert code == 1  # a case failed: reported, the run went on
    for key in ("started", "command", "machine", "versions", "cases", "total_seconds", "default_cache_locations"):
        assert key in res
    m = res["machine"]
    assert m["nproc"] >= 1 and m["ram_gb"] and m["cpu_model"] and len(m["load_average_start"]) == 3
    assert len(m["load_average_end"]) == 3
    v = res["versions"]
    for key in ("python", "pymc", "pytensor", "numpy", "scipy", "nutpie", "numba", "jax", "git_commit", "git_dirty"):
        assert key in v
    by = {c["case"]: c for c in res["cases"]}
    assert [c["case"] for c in res["cases"]] == ["tiny", "broken", "silent", "selfskip", "needsdata"]

    tiny = by["tiny"]
    assert tiny["status"] == "ok" and tiny["exit_code"] == 0
    assert tiny["quality"] == {"quick": True, "n": 60}
    assert tiny["figures"] == {"x": 1.5} and tiny["targets"] == {"speed": "< 1 s"} and tiny["notes"] == "ok"
    assert tiny["wall_seconds"] > 0 and tiny["cpu_seconds"] >= 0
    assert tiny["peak_rss_mb"] >= 60 and tiny["maxrss_mb"] >= 60
    assert tiny["cache"]["state"] == "default"
    assert "--quick" in tiny["command"]
    assert len(tiny["load_average_before"]) == 3 and len(tiny["load_average_after"]) == 3

    assert by["broken"]["status"] == "failed" and by["broken"]["exit_code"] == 3
    assert "exit status 3" in by["broken"]["reason"]
    assert "boom" in by["broken"]["stderr_tail"]
    assert by["silent"]["status"] == "failed" and "RESULT" in by["silent"]["reason"]
    assert by["selfskip"]["status"] == "skipped" and by["selfskip"]["reason"] == "no GPU here"
    assert by["needsdata"]["status"] == "skipped" and "shared data" in by["needsdata"]["reason"]
    assert "wall_seconds" not in by["needsdata"]  # never started

    printed = capsys.readouterr().out
    assert "figures: fine" in printed  # the case's own output is shown live
    assert "tiny" in printed and "failed" in printed and "skipped" in printed


def test_cold_cache_gives_each_case_fresh_folders(fake_bench, tmp_path):
    code, res = _run(fake_bench, tmp_path, "--cases", "flags", "--cache", "cold")
    assert code == 0
    case = res["cases"][0]
    assert res["cache_mode"] == "cold" and case["cache"]["state"] == "cold"
    base = case["cache"]["pytensor_base_compiledir"]
    assert f"base_compiledir={base}" in case["quality"]["pytensor_flags"]
    assert case["quality"]["numba_cache_dir"] == case["cache"]["numba_cache_dir"]
    assert "size_after" in case["cache"]


def test_peak_memory_covers_the_process_tree(fake_bench, tmp_path):
    _, res = _run(fake_bench, tmp_path, "--cases", "tree")
    case = res["cases"][0]
    assert case["status"] == "ok"
    assert case["maxrss_mb"] >= 110  # wait4: the larger of parent and reaped child
    assert case["tree_rss_peak_mb"] >= 180  # sampled sum while both held memory
    assert case["peak_rss_mb"] == max(case["maxrss_mb"], case["tree_rss_peak_mb"])
    assert case["max_processes"] >= 2


def test_timeout_kills_the_case(fake_bench, tmp_path):
    _, res = _run(fake_bench, tmp_path, "--cases", "sleepy", "--timeout", "1")
    assert res["cases"][0]["status"] == "timeout"


def test_unknown_case_is_an_error(fake_bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _run(fake_bench, tmp_path, "--cases", "tiny,nope")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown benchmark case(s): nope" in err and "tiny" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_list_names_cases_without_running_them(fake_bench, tmp_path, capsys):
    assert runner.main(["--bench-dir", str(fake_bench), "--list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "A tiny case that allocates" in out
    assert "needsdata" in out and "[needs shared data]" in out


def test_the_real_cases_follow_the_protocol():
    """Every benchmarks/bench_*.py has main(argv) and a docstring; discovery puts the known ones first."""
    import ast

    cases = runner.discover()
    assert "recommend" in cases and "gradient_scaling" in cases and "cold_start" in cases
    for name, path in cases.items():
        tree = ast.parse(path.read_text())
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        assert mains, f"bench_{name}.py has no main()"
        assert mains[0].args.args and mains[0].args.args[0].arg == "argv", f"bench_{name}.main takes argv"
        assert runner.case_doc(path), f"bench_{name}.py has no docstring"
    assert list(cases)[:3] == ["recommend", "gradient_scaling", "cold_start"]


def test_markdown_summary_of_a_run(fake_bench, tmp_path, capsys):
    md = tmp_path / "out" / "summary.md"
    _run(fake_bench, tmp_path, "--cases", "tiny,needsdata", "--markdown", str(md))
    text = md.read_text()
    assert "| case | status | wall s | peak RSS MB |" in text
    assert "| tiny | ok |" in text and "| needsdata | skipped |" in text
    assert "`tiny` speed: < 1 s" in text and "load average" in text
    capsys.readouterr()
    assert runner.main(["--render", str(tmp_path / "out" / "results.json")]) == 0
    assert capsys.readouterr().out == text


# --------------------------------------------------------------------------- #
# benchmarks.real_logs_kc_memory: the counts behind the study/KC screening
# --------------------------------------------------------------------------- #
def _kc_toy():
    pd = pytest.importorskip("pandas")
    # student a: lesson x1, answers x1 (pass), lesson x2, x1 (fail), x2 (pass), x3 (fail); b: x1 (pass)
    return pd.DataFrame({
        "student_id": ["a"] * 6 + ["b"],
        "module_id": ["x1", "x1", "x2", "x1", "x2", "x3", "x1"],
        "module_type": ["lesson", "assessment", "lesson", "assessment", "assessment", "assessment", "assessment"],
        "outcome": [float("nan"), 1.0, float("nan"), 0.0, 1.0, 0.0, 1.0],
        "timestep": [0, 1, 1, 2, 2, 2, 0],
    })


def test_kc_memory_counts_count_only_earlier_rows_of_the_student():
    from benchmarks.real_logs_kc_memory import memory_counts

    got = memory_counts(_kc_toy(), {"x1": ("K",), "x2": ("K",), "x3": ("L",)})
    # columns study_item, study_sib, s_kc, f_kc, s_sib, f_sib
    expected = [[0, 0, 0, 0, 0, 0],
                [1, 0, 0, 0, 0, 0],
                [0, 1, 1, 0, 1, 0],  # the x2 lesson: after the x1 lesson and the x1 pass
                [1, 1, 1, 0, 0, 0],
                [1, 1, 1, 1, 1, 1],  # x2: its own lesson, the sibling's lesson, pass and fail
                [0, 0, 0, 0, 0, 0],  # x3 is alone in KC L
                [0, 0, 0, 0, 0, 0]]  # student b has no history
    assert got.to_numpy().tolist() == expected
    # a shuffled table gives the same counts per row (order comes from timestep and table order within a step)
    t = _kc_toy()
    perm = [6, 0, 1, 2, 3, 4, 5]
    assert memory_counts(t.iloc[perm].reset_index(drop=True), {"x1": ("K",), "x2": ("K",), "x3": ("L",)}) \
        .to_numpy().tolist() == [expected[i] for i in perm]
    # without KCs only the study counts of the item are filled in
    assert memory_counts(t, None)["study_item"].tolist() == [0, 1, 0, 1, 1, 0, 0]


def test_kc_of_a_module_is_its_tags_other_than_its_own_id():
    pd = pytest.importorskip("pandas")
    from benchmarks.real_logs_kc_memory import module_kcs

    m = pd.DataFrame({"module_id": ["1-1 q", "1-1 q", "2-1 r", "z"],
                      "module_type": ["assessment", "lesson", "assessment", "assessment"],
                      "tags": ["1 fact;1-1 q", "1 fact;1-1 q", "2 fact;2-1 r;extra", ""]})
    assert module_kcs(m) == {"1-1 q": ("1 fact",), "2-1 r": ("2 fact", "extra"), "z": ("z",)}


def test_kc_features_of_a_heldout_answer_count_training_answers_only():
    """At prediction, the KC success/failure counts come from the fitted (training)
    answers; for the first held-out answer they equal the full-log counts, for a later
    one they leave out the earlier held-out answers."""
    np = pytest.importorskip("numpy")
    from types import SimpleNamespace

    from benchmarks.real_logs_kc_memory import make_models, memory_counts

    t = _kc_toy()
    kcs = {"x1": ("K",), "x2": ("K",), "x3": ("L",)}
    full = memory_counts(t, kcs)
    train = t.iloc[[0, 1, 2, 6]]  # a's history up to the cut, b's answer
    hist = train[train["module_type"] == "assessment"][["student_id", "module_id", "outcome"]]
    held = t.iloc[[3, 4]].assign(row=[3, 4])  # a answers x1 then x2 after the cut
    models = make_models(full, kcs, ["pfa+kc", "pfa-kc", "pfa+study"])
    for name, cols in (("pfa+kc", ["s_sib", "f_sib"]), ("pfa-kc", ["s_kc", "f_kc"]),
                       ("pfa+study", ["study_item", "study_sib"])):
        m = models[name]
        x = m._predict_features(SimpleNamespace(history=hist, baseline=m), held)
        extra = np.expm1(x[:, -2:])
        if name == "pfa+study":  # lessons reveal no outcome: every earlier lesson counts
            assert extra.tolist() == full.loc[[3, 4], cols].to_numpy().tolist()
        else:
            assert extra[0].tolist() == full.loc[3, cols].tolist()
            # the x2 answer: the held-out x1 failure is not counted (training answers only)
            assert extra[1].tolist() != full.loc[4, cols].tolist()
            assert extra[1].tolist() == [1.0, 0.0]  # the x1 pass before the cut
        assert x.shape[1] == (4 if name == "pfa-kc" else 6)


# --------------------------------------------------------------------------- #
# benchmarks.real_logs_recency: the lag of the pfa-lag baseline's rows to predict
# --------------------------------------------------------------------------- #
def test_item_lag_counts_every_row_but_remembers_only_known_answers():
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    from benchmarks.real_logs_recency import _item_lag
    from bayes_lse.model.terms import assessment_history_counts

    s = np.array(["u", "u", "u", "u", "u", "v", "v"])
    m = np.array(["A", "B", "A", "B", "A", "A", "A"])
    known = np.array([True, True, False, False, False, True, True])
    # u: A at 0, B at 1 known; the rows to predict (2, 3, 4) count as answers but are not remembered
    np.testing.assert_array_equal(_item_lag(s, m, known), [0, 0, 2, 2, 4, 0, 1])
    # with every row known it is the history term's lag
    all_known = _item_lag(s, m, np.ones(7, bool))
    codes = pd.factorize(m)[0]
    np.testing.assert_array_equal(all_known, assessment_history_counts(pd.factorize(s)[0], codes, np.ones(7))[:, 2])
