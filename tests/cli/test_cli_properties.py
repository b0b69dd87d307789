"""Property-based tests of the command line's option parsing (issue 19): whatever the
options — valid, out of range, of the wrong type, or plain junk — a command either
does its work or ends with one line `bayes-lse: error: ...` and exit status 2, never a
traceback. In-process (click's CliRunner); `fit` and `simulate` stop where the work
would begin (a sentinel), `predict` and `recommend` run for real on a tiny model."""

from __future__ import annotations

import json

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the test extra: pip install -e '.[test]'")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from bayes_lse.cli import main  # noqa: E402

JUNK = st.one_of(st.text(max_size=6), st.sampled_from(["-1", "0", "1.5", "nan", "inf", "-inf", "1e400", "", "--",
                                                       "-o", "99999999999999999999", "0,1", ",,", "learned"]))


class Reached(Exception):
    """The options were accepted and the work would start here."""


def _stop(*args, **kwargs):
    raise Reached


def opt(name: str, valid) -> st.SearchStrategy[list[str]]:
    """The option left out (4 in 10), given a value from `valid` (5 in 10) or junk (1 in 10):
    with a dozen options, a fair share of the calls get through to the work."""
    return st.integers(0, 9).flatmap(lambda k: st.just([]) if k < 4 else
                                     valid.map(lambda v: [name, str(v)]) if k < 9 else JUNK.map(lambda v: [name, v]))


def flag(name: str) -> st.SearchStrategy[list[str]]:
    return st.sampled_from([[], [name]])


def args_of(*parts) -> st.SearchStrategy[list[str]]:
    return st.tuples(*parts).map(lambda ps: [a for p in ps for a in p])


def check(result, *, reached_ok: bool = False) -> None:
    hypothesis.event("reached the work" if isinstance(result.exception, Reached) else f"exit {result.exit_code}")
    if isinstance(result.exception, Reached):
        assert reached_ok
        return
    if result.exit_code == 0:
        return
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("bayes-lse: error: "), err
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def work(tiny_map, tiny_cohort, tmp_path_factory):
    """A folder with a tiny model, its data and a config file the tests rewrite."""
    d = tmp_path_factory.mktemp("cli")
    tiny_map.save(d / "m")
    tiny_cohort.table.to_csv(d / "data.csv", index=False)
    return d


CONFIG = st.dictionaries(st.sampled_from(["starts", "maxiter", "jitter", "seed", "draws", "tune", "chains",
                                          "sampler", "kind", "nonsense"]),
                         st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.floats(), st.text(max_size=4),
                                   st.lists(st.integers(), max_size=2)), max_size=3)

FIT = args_of(
    opt("--method", st.sampled_from(["map", "advi", "nuts"])), opt("--skills", st.integers(1, 4)),
    opt("--learning-noise", st.one_of(st.floats(), st.just("learned"))), flag("--no-prerequisites"),
    flag("--no-biases"), flag("--no-lessons"), flag("--history"),
    opt("--draws", st.integers(1, 50)), opt("--tune", st.integers(0, 50)), opt("--chains", st.integers(1, 4)),
    opt("--starts", st.integers(1, 4)), opt("--maxiter", st.integers(1, 100)),
    opt("--sampler", st.sampled_from(["nutpie", "pymc", "numpyro"])),
    opt("--advi-kind", st.sampled_from(["meanfield", "fullrank"])), opt("--seed", st.integers()),
)


@given(args=FIT, config=st.one_of(st.none(), CONFIG, st.text(max_size=8)))
def test_fit_options_are_accepted_or_refused_in_one_line(work, args, config):
    from bayes_lse.api import LatentSkillEmbedding

    extra = []
    if config is not None:
        (work / "c.json").write_text(config if isinstance(config, str) else json.dumps(config))
        extra = ["--config", str(work / "c.json")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LatentSkillEmbedding, "fit", _stop)
        r = CliRunner().invoke(main, ["fit", str(work / "data.csv"), "-o", str(work / "out"), *args, *extra])
    check(r, reached_ok=True)
    assert not (work / "out").exists()


SIMULATE = args_of(*(opt(f"--{n}", st.integers(0, 6)) for n in ("students", "steps", "assessments", "lessons",
                                                                   "skills", "answers-per-step")),
                   opt("--seed", st.integers()))


@given(args=SIMULATE)
def test_simulate_options_are_accepted_or_refused_in_one_line(work, args):
    import bayes_lse.model.simulate as sim

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sim, "simulate", _stop)
        r = CliRunner().invoke(main, ["simulate", "-o", str(work / "sim.csv"), *args])
    check(r, reached_ok=True)
    assert not (work / "sim.csv").exists()


PREDICT = args_of(opt("--format", st.sampled_from(["csv", "json"])), opt("--ci", st.floats()),
                  opt("--update", st.sampled_from(["expected", "mode", "sample"])), opt("--seed", st.integers()))


@given(args=PREDICT)
def test_predict_options_are_accepted_or_refused_in_one_line(work, args):
    r = CliRunner().invoke(main, ["predict", str(work / "m"), str(work / "data.csv"), *args])
    check(r)


RECOMMEND = args_of(
    st.sampled_from([["--student", "s00"], ["--student", "s01"], ["--student", "s01"], ["--student", "nobody"], []]),
    st.lists(st.sampled_from(["A0", "A1", "A2", "L0", "x"]), min_size=1, max_size=2).map(
        lambda goals: [a for g in goals for a in ("--goal", g)]),
    opt("--max-length", st.integers(1, 3)), opt("--candidates", st.sampled_from(["L0,L1", "L2", "L0,L9"])),
    opt("--target", st.floats(0.01, 0.99)), opt("--confidence", st.floats(0.01, 0.99)),
    opt("--search", st.sampled_from(["auto", "exhaustive", "beam"])), opt("--beam-width", st.integers(1, 5)),
    flag("--repeats"), flag("--noise"), opt("--band", st.sampled_from(["0.05,0.95", "0.1,0.9"])),
    opt("--top", st.integers(1, 5)), opt("--format", st.sampled_from(["table", "json"])),
    opt("--seed", st.integers(0, 2**32)),
)


@given(args=RECOMMEND)
def test_recommend_options_are_accepted_or_refused_in_one_line(work, args):
    r = CliRunner().invoke(main, ["recommend", str(work / "m"), *args])
    check(r)
