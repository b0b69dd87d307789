"""Many fits at once: run independent jobs in-process or on Dask (``dask.distributed``).

Cross-validation folds, model variants and simulation-based checks are many fits that
do not depend on each other.  :func:`executor` gives one interface over three engines:

``executor()``
    In-process: a plain loop in this process (Dask is not even imported).  The default.
``executor(workers=N)``
    A :class:`dask.distributed.LocalCluster` of N worker *processes* with one thread
    each, started for the duration of the ``with`` block and closed afterwards.
``executor(scheduler="tcp://host:8786")``
    A client of an existing Dask scheduler (``dask scheduler`` plus ``dask worker
    tcp://host:8786 --nthreads 1`` on each machine; every worker needs the same
    bayes-lse installed).  Unreachable → :class:`SchedulerUnreachable` after `timeout`.

Each gives ``.share(obj)`` (send a large object, e.g. a training table, to the cluster
once and get a handle to pass to jobs instead of the object itself) and
``.map(fn, *iterables, on_result=None, **common)`` (like the builtin ``map``; the
results come back in input order whatever order the jobs finish in).  Jobs must be
deterministic (seeded) for the engines to agree; `fn` must be a module-level function
so that worker processes can import it; a script that starts a local cluster needs
the usual ``if __name__ == "__main__":`` guard (worker processes are spawned).

Threads: every job runs with BLAS/OpenMP limited to one thread (threadpoolctl), on
every engine: a multi-threaded BLAS sums in another order, and results would differ
in the last bits between engines.  Dask's nannies also start worker processes with
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` set to 1 (its
``distributed.nanny.pre-spawn-environ`` default), so N one-thread workers do not
oversubscribe the cores — except for the numba MAP kernel's answer loop, which from
10k answers runs on numba's threads or on one, whichever its timing says is faster on
the machine as loaded (`inference.map_kernel_numba.AnswerLoop`: N workers on N cores
leave it on one thread), in every process alike: its blocked sums are the same on any
number of threads, so in-process and Dask fits keep the same bits on one machine.  PyTensor's compile cache (its ``compiledir``, where numba's
file cache lives) is on disk and shared by the worker processes of one machine.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["DaskExecutor", "InProcessExecutor", "SchedulerUnreachable", "check_engine", "executor", "map_jobs"]

#: seconds to wait for a scheduler to answer and to have at least one worker
DEFAULT_TIMEOUT = 5.0


class SchedulerUnreachable(ConnectionError):
    """The Dask scheduler given by address cannot be reached or has no usable workers."""


#: one job at a time per process (see `_one_blas_thread`); re-entrant for nested maps
_JOB_LOCK = threading.RLock()


def _one_blas_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)` with BLAS/OpenMP limited to one thread, one job per process.

    A multi-threaded BLAS sums in another order than a single-threaded one (results
    then differ by ~1e-12), so every engine runs jobs like this: the same bits
    in-process as on Dask workers, and no oversubscription when jobs run side by side.
    Jobs in two threads of one process (a Dask worker with ``--nthreads`` > 1) are
    serialised: PyMC/PyTensor model building and compilation are not thread-safe
    (measured: concurrent fits gave other last bits, and the BLAS limit itself is
    process-wide), so the parallelism is in processes.
    """
    from threadpoolctl import threadpool_limits

    with _JOB_LOCK, threadpool_limits(limits=1):
        return fn(*args, **kwargs)


class InProcessExecutor:
    """Runs every job in this process, one after the other, in input order."""

    description = "in-process"

    def share(self, obj: Any) -> Any:
        """Nothing to send: jobs get the object itself."""
        return obj

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            on_result: Callable[[int, Any], None] | None = None, **common: Any) -> list[Any]:
        out = []
        for i, args in enumerate(zip(*iterables, strict=True)):
            r = _one_blas_thread(fn, *args, **common)
            if on_result is not None:
                on_result(i, r)
            out.append(r)
        return out


class DaskExecutor:
    """Runs jobs on a ``dask.distributed`` cluster through `client` (one task per job)."""

    def __init__(self, client: Any, description: str) -> None:
        self.client = client
        self.description = description

    def share(self, obj: Any) -> Any:
        """Send `obj` to the cluster once; the returned future can be passed to `map`
        in place of the object (each worker fetches it at most once)."""
        # wrapped in a list so that containers are scattered as one object, not per item
        return self.client.scatter([obj], hash=False)[0]

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            on_result: Callable[[int, Any], None] | None = None, **common: Any) -> list[Any]:
        from distributed import as_completed

        columns = [list(it) for it in iterables]
        n = len(columns[0]) if columns else 0
        if any(len(c) != n for c in columns):
            raise ValueError("map: the iterables have different lengths")
        if n == 0:
            return []
        futures = self.client.map(_one_blas_thread, [fn] * n, *columns, pure=False, **common)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * n
        try:
            for fut in as_completed(futures, loop=self.client.loop):
                r = fut.result()  # re-raises the job's own exception here
                i = index[fut.key]
                out[i] = r
                if on_result is not None:
                    on_result(i, r)
        except BaseException:
            self.client.cancel(futures)
            raise
        return out


def check_engine(scheduler: str | None = None, workers: int | None = None) -> None:
    """Refuse bad engine settings before any work is done (the same checks as :func:`executor`)."""
    if scheduler is not None and workers is not None:
        raise ValueError("give either scheduler (an existing Dask cluster) or workers (a local one), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if scheduler is not None:
        _parse_address(scheduler)


def _parse_address(scheduler: Any) -> str:
    """The normalised scheduler address (``host:port`` → ``tcp://host:port``), or a clear ValueError."""
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ValueError(f"scheduler must be an address like tcp://host:8786, got {scheduler!r}")
    from distributed.comm.addressing import get_address_host_port, normalize_address

    try:  # checked before any Client exists: one that fails on its address hangs in __del__
        address = normalize_address(scheduler.strip())
        get_address_host_port(address)
    except ValueError as exc:
        raise ValueError(f"scheduler {scheduler!r} is not a Dask scheduler address like tcp://host:8786 ({exc})") from None
    return address


@contextlib.contextmanager
def executor(scheduler: str | None = None, workers: int | None = None, *,
             timeout: float | None = None) -> Iterator[InProcessExecutor | DaskExecutor]:
    """The engine to run many jobs on (see the module doc); a context manager that
    closes whatever it started.

    `scheduler`: address of a running Dask scheduler (``tcp://host:8786``);
    `workers`: start a local cluster of that many one-thread worker processes;
    neither: in-process.  Giving both is an error.  `timeout`: seconds to wait for
    the scheduler and its first worker (default :data:`DEFAULT_TIMEOUT`).
    """
    check_engine(scheduler, workers)
    if scheduler is None and workers is None:
        yield InProcessExecutor()
        return
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - a declared dependency
        raise ImportError("running on Dask needs dask.distributed: pip install 'dask[distributed]'") from None
    if workers is not None:
        n = int(workers)
        # Worker processes must be allowed children of their own (pm.sample with
        # sampler='pymc' starts one process per chain); Dask makes them daemons by default.
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   silence_logs=logging.ERROR)
        try:
            client = Client(cluster, set_as_default=False)
            try:
                yield DaskExecutor(client, f"a local Dask cluster of {n} worker process(es)")
            finally:
                client.close()
        finally:
            cluster.close()
        return
    client = _connect(scheduler, DEFAULT_TIMEOUT if timeout is None else float(timeout))
    try:
        n_remote = len(client.scheduler_info()["workers"])
        yield DaskExecutor(client, f"the Dask scheduler at {client.scheduler.address} ({n_remote} worker(s))")
    finally:
        client.close()


def _connect(scheduler: Any, timeout: float) -> Any:
    """A Client of the scheduler at `scheduler`, checked to have workers that can run bayes-lse."""
    from distributed import Client

    address = _parse_address(scheduler)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except OSError as exc:
        why = "" if "Timed out" in str(exc) else f" ({exc})"
        raise SchedulerUnreachable(
            f"cannot reach the Dask scheduler at {address} within {timeout:g} s{why}; "
            "is `dask scheduler` running there and the port open?") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise SchedulerUnreachable(f"the Dask scheduler at {address} has no workers after {timeout:g} s; "
                                       f"start some with `dask worker {address} --nthreads 1`") from None
        _check_remote_versions(client, address)
    except BaseException:
        client.close()
        raise
    return client


def _check_remote_versions(client: Any, address: str) -> None:
    """Every worker must have this bayes-lse version, or fits would differ (or fail to unpickle)."""
    from importlib.metadata import PackageNotFoundError, version

    from bayes_lse import __version__

    found = client.run(version, "bayes-lse", on_error="return")
    bad = {w: ("not installed" if isinstance(v, PackageNotFoundError) else
               f"error {v!r}" if isinstance(v, BaseException) else v)
           for w, v in found.items() if v != __version__}
    if bad:
        worker, what = next(iter(bad.items()))
        raise SchedulerUnreachable(
            f"{len(bad)} worker(s) of the Dask scheduler at {address} cannot run bayes-lse {__version__} "
            f"(e.g. {worker}: {what}); install the same version on every worker")


def map_jobs(fn: Callable[..., Any], *iterables: Iterable[Any], scheduler: str | None = None,
             workers: int | None = None, on_result: Callable[[int, Any], None] | None = None,
             timeout: float | None = None, **common: Any) -> list[Any]:
    """One-shot ``[fn(*args, **common) for args in zip(*iterables)]`` on the chosen engine
    (see :func:`executor`); results in input order."""
    with executor(scheduler, workers, timeout=timeout) as ex:
        return ex.map(fn, *iterables, on_result=on_result, **common)
