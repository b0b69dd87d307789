"""The benchmark runner: every case in a fresh process, timed and measured from outside.

    python -m benchmarks                      # every case, default (warm) compile cache
    python -m benchmarks --quick              # the small version of every case (< 1 min each)
    python -m benchmarks --cases recommend,cold_start --json out.json
    python -m benchmarks --cache cold         # each case with its own empty compile cache
    python -m benchmarks --list

A case is a module ``benchmarks/bench_<name>.py`` with ``main(argv)``; it prints
human-readable figures and, as its last stdout line, ``RESULT {json}`` with keys
``case, quality, figures, targets, notes`` (see :func:`emit_result`).  A case may
instead report ``{"case": ..., "skipped": "<reason>"}`` (e.g. its data is absent).

What the runner measures itself, per case:

- ``wall_seconds``: whole-process wall time, from spawn to exit (imports, compilation,
  data loading and the work: what a user waits for);
- ``peak_rss_mb``: the larger of (a) ``ru_maxrss`` from ``os.wait4`` — the exact peak
  resident set of the case process, or of its largest *waited-for* descendant (Linux
  reports the max over the process and its reaped children, not their sum) — and
  (b) the peak of the *summed* RSS of the whole process tree (case + every live
  descendant, e.g. PyMC's sampler processes or dask workers), sampled from ``/proc``
  every 0.05 s for the first 10 s, then every 0.25 s.  Both are kept (``maxrss_mb``, ``tree_rss_peak_mb``); (b) can miss a
  spike shorter than the sampling interval, (a) cannot, but (a) ignores memory held
  by children at the same time as the parent.  nutpie samples in threads, so it is
  inside (a);
- ``cpu_seconds``: user + system time of the case and its reaped descendants;
- the compile-cache state: ``cold`` = the case ran with a fresh empty PyTensor
  ``base_compiledir`` (which also holds PyTensor's numba cache) and an empty
  ``NUMBA_CACHE_DIR``; ``default`` = the machine's own caches, warm if the same
  graphs were compiled before (the size of the PyTensor cache before and after the
  case is recorded, so a case that compiled a lot shows it);
- exit status (a failed case is reported, the run goes on), load average before/after.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_JSON = RESULTS_DIR / "latest.json"
RESULT_PREFIX = "RESULT "
#: cheapest and most independent first; cases not named here follow alphabetically
PREFERRED_ORDER = ("recommend", "gradient_scaling", "cold_start", "map_assistments", "nuts", "advi_minibatch")
VERSION_PACKAGES = (
    "bayes-lse", "pymc", "pytensor", "numpy", "scipy", "pandas", "xarray", "arviz",
    "nutpie", "numba", "llvmlite", "jax", "jaxlib", "numpyro",
)  # fmt: skip


def data_dir() -> Path:
    """The shared real-data folder (``$BAYES_LSE_DATA``, else ``../shared/data`` next to the repo)."""
    env = os.environ.get("BAYES_LSE_DATA")
    return Path(env) if env else (REPO.parent / "shared" / "data")


# ------------------------------------------------------------------- the protocol
def _jsonable(x: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 0) == 0:
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def emit_result(
    case: str,
    quality: dict[str, Any] | None = None,
    figures: dict[str, Any] | None = None,
    targets: dict[str, str] | None = None,
    notes: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """Print the case's last stdout line, ``RESULT {json}``, and return the object."""
    obj = {
        "case": case,
        "quality": quality or {},
        "figures": figures or {},
        "targets": targets or {},
        "notes": " ".join(str(notes).split()),
        **extra,
    }
    obj = _jsonable(obj)
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(obj), flush=True)
    return obj


def parse_result(stdout: str) -> dict[str, Any]:
    """The RESULT object from a case's stdout: its last non-empty line must be ``RESULT {json}``.

    Raises ValueError naming what is wrong (no RESULT line, RESULT not last, bad JSON, not an object,
    no ``case`` key)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("the case printed nothing on stdout (expected a last line 'RESULT {json}')")
    last = lines[-1].strip()
    if not last.startswith(RESULT_PREFIX):
        earlier = any(ln.startswith(RESULT_PREFIX) for ln in lines)
        raise ValueError(
            "the last stdout line is not 'RESULT {json}'"
            + (" (a RESULT line was printed earlier, then more output)" if earlier else "")
            + f": {last[:120]!r}"
        )
    try:
        obj = json.loads(last[len(RESULT_PREFIX):])
    except json.JSONDecodeError as e:
        raise ValueError(f"the RESULT line is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError("the RESULT line must hold one JSON object")
    if "case" not in obj:
        raise ValueError("the RESULT object has no 'case' key")
    for key in ("quality", "figures", "targets"):
        if key in obj and not isinstance(obj[key], dict):
            raise ValueError(f"RESULT '{key}' must be an object, got {type(obj[key]).__name__}")
    return obj


# ------------------------------------------------------------------------ cases
def discover(bench_dir: Path = BENCH_DIR) -> dict[str, Path]:
    """Case name → module file, for every ``bench_<name>.py``, in run order."""
    found = {p.stem[len("bench_"):]: p for p in bench_dir.glob("bench_*.py")}
    order = [n for n in PREFERRED_ORDER if n in found] + sorted(n for n in found if n not in PREFERRED_ORDER)
    return {n: found[n] for n in order}


def case_doc(path: Path) -> str:
    """First line of the case module's docstring (parsed, not imported: importing pulls PyMC)."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except (SyntaxError, OSError):
        return ""
    return (doc or "").strip().splitlines()[0] if doc else ""


def needs_data(path: Path) -> bool:
    """Whether a case reads the shared real-data folder (it mentions ``shared/data``, ``BAYES_LSE_DATA``
    or sets ``REQUIRES_DATA = True``)."""
    try:
        src = path.read_text()
    except OSError:
        return False
    return bool(re.search(r"shared/data|shared\" */ *\"data|BAYES_LSE_DATA|REQUIRES_DATA\s*=\s*True", src))


def select_cases(available: dict[str, Path], wanted: str | None) -> dict[str, Path]:
    if not wanted:
        return dict(available)
    names = [n.strip().removeprefix("bench_") for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in available]
    if unknown:
        print(
            f"error: unknown benchmark case(s): {', '.join(unknown)}; "
            f"available: {', '.join(available) or '(none)'} (see --list)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return {n: available[n] for n in names}


# --------------------------------------------------------------- machine, versions
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "ram_gb": round(int(mem.group(1)) / 1024**2, 1) if mem else None,
        "platform": platform.platform(),
        "load_average_start": load_average(),
    }


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def versions() -> dict[str, Any]:
    v: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable}
    for pkg in VERSION_PACKAGES:
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            v[pkg] = None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=all")
    lines = [ln for ln in (status or "").splitlines() if ln.strip()]
    code_dirs = ("bayes_lse/", "benchmarks/")
    v["git_commit"] = commit
    #: tracked files modified anywhere, or new files in the package or the benchmarks
    v["git_dirty"] = (
        any(not ln.startswith("??") or ln[3:].startswith(code_dirs) for ln in lines) if status is not None else None
    )
    #: uncommitted changes in the package or the benchmarks, with git's status code ("M", "??", ...)
    v["git_dirty_files"] = [
        f"{ln[:2].strip()} {ln[3:]}" for ln in lines
        if ln[3:].startswith(code_dirs) and not ln[3:].startswith("benchmarks/results/")
    ]
    return v


_CACHE_PROBE = r"""
import json, os
import pytensor
from pytensor.configdefaults import config
out = {"pytensor_base_compiledir": str(config.base_compiledir), "pytensor_compiledir": str(config.compiledir),
       "pytensor_linker": str(config.linker), "pytensor_mode": str(config.mode),
       "pytensor_numba_cache": str(config.base_compiledir / "numba")}
try:
    import numba
    out["numba_cache_dir"] = numba.config.CACHE_DIR or "(numba default: __pycache__ next to each cached module's source, else a user-wide cache)"
except Exception as e:
    out["numba_cache_dir"] = f"(numba unavailable: {e})"
print(json.dumps(out))
"""


def cache_locations(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Where PyTensor and numba keep compiled code, as a fresh process under `env` sees it."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CACHE_PROBE], capture_output=True, text=True, timeout=300, env=env, cwd=REPO
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        return {"error": f"could not probe cache locations: {e}"}


def dir_size(path: str | Path) -> dict[str, Any]:
    """Total bytes and file count under `path` (0 when absent)."""
    total = files = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(root, n)).st_size
                files += 1
            except OSError:
                pass
    return {"mb": round(total / 1024**2, 1), "files": files}


# ----------------------------------------------------------------- running a case
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _rss_kb(pid: int) -> int:
    m = re.search(r"^VmRSS:\s*(\d+) kB", _read(f"/proc/{pid}/status"), re.M)
    return int(m.group(1)) if m else 0


def tree_rss_kb(root: int) -> tuple[int, int]:
    """Summed RSS (kB) of `root` and all its live descendants, and how many processes that is."""
    kids = _children_map()
    todo, total, n = [root], 0, 0
    while todo:
        pid = todo.pop()
        total += _rss_kb(pid)
        n += 1
        todo.extend(kids.get(pid, []))
    return total, n


class _TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process tree: every `interval` s for the first `fast_for` s,
    then every `slow_interval` s (a scan of /proc costs ~1 ms per 100 processes; a long case
    should not spend a noticeable share of a core on being measured)."""

    def __init__(self, pid: int, interval: float = 0.05, slow_interval: float = 0.25, fast_for: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.slow_interval, self.fast_for = slow_interval, fast_for
        self.peak_kb = 0
        self.max_procs = 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        if not Path("/proc").is_dir():
            return
        t0 = time.monotonic()
        while not self._stop_evt.is_set():
            kb, n = tree_rss_kb(self.pid)
            self.peak_kb = max(self.peak_kb, kb)
            self.max_procs = max(self.max_procs, n)
            fast = time.monotonic() - t0 < self.fast_for
            self._stop_evt.wait(self.interval if fast else self.slow_interval)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(timeout=5)


def _tail(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-n:]


def run_case(
    name: str,
    path: Path,
    *,
    quick: bool = False,
    cache: str = "default",
    timeout: float | None = None,
    extra_args: list[str] | None = None,
    module: str | None = None,
    echo: bool = True,
) -> dict[str, Any]:
    """Run one case in a fresh process and return its record (never raises for a failing case)."""
    rec: dict[str, Any] = {"case": name, "module": module or f"benchmarks.bench_{name}", "quick": quick}
    if needs_data(path) and not data_dir().is_dir():
        rec.update(status="skipped", reason=f"needs the shared data folder {data_dir()} (absent)")
        return rec
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    tmp = None
    if cache == "cold":
        tmp = Path(tempfile.mkdtemp(prefix=f"bench_{name}_cache_"))
        flags = env.get("PYTENSOR_FLAGS", "")
        env["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"base_compiledir={tmp / 'pytensor'}") if f)
        env["NUMBA_CACHE_DIR"] = str(tmp / "numba")
        rec["cache"] = {"state": "cold", "pytensor_base_compiledir": str(tmp / "pytensor"),
                        "numba_cache_dir": str(tmp / "numba")}
    else:
        rec["cache"] = {"state": "default"}
    base = None
    if cache != "cold":
        base = cache_locations(env).get("pytensor_base_compiledir")
        if base:
            rec["cache"]["pytensor_base_compiledir"] = base
            rec["cache"]["size_before"] = dir_size(base)
    cmd = [sys.executable, "-m", rec["module"], *(["--quick"] if quick else []), *(extra_args or [])]
    rec["command"] = " ".join(cmd[1:])
    rec["load_average_before"] = load_average()
    rec["started"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        text=True, errors="replace",
    )
    sampler = _TreeSampler(proc.pid)
    sampler.start()
    out_lines: list[str] = []
    err_lines: list[str] = []
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, out_lines, echo), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err_lines, False), daemon=True),
    ]
    for t in readers:
        t.start()
    timed_out = False
    status, ru = None, None
    deadline = None if timeout is None else t0 + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    sampler.stop()
    for t in readers:  # a descendant still holding the pipes open must not hang the run
        t.join(timeout=10)
    stdout, stderr = "".join(out_lines), "".join(err_lines)
    maxrss_mb = ru.ru_maxrss / 1024  # Linux: kB
    tree_mb = sampler.peak_kb / 1024
    rec.update(
        exit_code=proc.returncode,
        wall_seconds=round(wall, 2),
        cpu_seconds=round(ru.ru_utime + ru.ru_stime, 2),
        peak_rss_mb=round(max(maxrss_mb, tree_mb), 1),
        maxrss_mb=round(maxrss_mb, 1),
        tree_rss_peak_mb=round(tree_mb, 1),
        max_processes=sampler.max_procs,
        load_average_after=load_average(),
    )
    if tmp is not None:
        rec["cache"]["size_after"] = dir_size(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    elif base:
        rec["cache"]["size_after"] = dir_size(base)
        grew = rec["cache"]["size_after"]["files"] - rec["cache"]["size_before"]["files"]
        rec["cache"]["new_files"] = grew
    try:
        result = parse_result(stdout)
    except ValueError as e:
        result, parse_error = None, str(e)
    else:
        parse_error = None
    if timed_out:
        rec.update(status="timeout", reason=f"killed after {timeout:g} s")
    elif result is not None and result.get("skipped"):
        rec.update(status="skipped", reason=str(result["skipped"]))
    elif proc.returncode != 0:
        rec.update(status="failed", reason=f"exit status {proc.returncode}" + (f"; {parse_error}" if result is None else ""))
    elif result is None:
        rec.update(status="failed", reason=parse_error)
    else:
        rec["status"] = "ok"
    if result is not None:
        if result.get("case") != name:
            rec["case_name_mismatch"] = result.get("case")
        for key in ("quality", "figures", "targets", "notes"):
            rec[key] = result.get(key, {} if key != "notes" else "")
        rec["result"] = {k: v for k, v in result.items() if k not in ("quality", "figures", "targets", "notes")}
    rec["stdout_tail"] = _tail(stdout, 6000)
    if rec["status"] != "ok":
        rec["stderr_tail"] = _tail(stderr, 4000)
    if echo and rec["status"] not in ("ok", "skipped"):
        sys.stdout.write(_indent(_tail(stderr, 3000)))
        sys.stdout.flush()
    return rec


def _pump(stream: Any, sink: list[str], echo: bool) -> None:
    """Collect a pipe line by line, echoing it indented when asked (live progress)."""
    for line in stream:
        sink.append(line)
        if echo:
            sys.stdout.write("    | " + line if line.endswith("\n") else "    | " + line + "\n")
            sys.stdout.flush()
    stream.close()


def _indent(text: str) -> str:
    return "".join(f"    ! {ln}\n" for ln in text.splitlines())


# ------------------------------------------------------------------------ report
def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def table(records: list[dict[str, Any]]) -> str:
    """The results as a fixed-width text table, quality figures and targets after it."""
    head = f"{'case':18} {'status':8} {'wall s':>8} {'peak MB':>8} {'cpu s':>8} {'cache':8} quality"
    lines = [head, "-" * len(head)]
    for r in records:
        q = ", ".join(f"{k}={_fmt(v)}" for k, v in (r.get("quality") or {}).items())
        if r.get("status") != "ok":
            q = (q + "; " if q else "") + str(r.get("reason", ""))
        wall = f"{r['wall_seconds']:8.1f}" if "wall_seconds" in r else f"{'-':>8}"
        mem = f"{r['peak_rss_mb']:8.0f}" if "peak_rss_mb" in r else f"{'-':>8}"
        cpu = f"{r['cpu_seconds']:8.1f}" if "cpu_seconds" in r else f"{'-':>8}"
        cache = (r.get("cache") or {}).get("state", "-")
        lines.append(f"{r['case']:18} {r.get('status', '?'):8} {wall} {mem} {cpu} {cache:8} {q}")
    targets = [(r["case"], k, t) for r in records for k, t in (r.get("targets") or {}).items()]
    if targets:
        lines.append("")
        lines.append("targets (stated by each case; compare with the measured columns):")
        lines.extend(f"  {c}: {k}: {t}" for c, k, t in targets)
    return "\n".join(lines)


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(run: dict[str, Any]) -> str:
    """A results JSON (as written by :func:`main`) as Markdown: run, machine, versions, table, targets."""
    m, v = run.get("machine", {}), run.get("versions", {})
    out = [
        f"- started {run.get('started')}, `{run.get('command')}`, {run.get('total_seconds')} s in all;"
        f" compile cache: **{run.get('cache_mode')}**{' (quick versions)' if run.get('quick') else ''}",
        f"- machine: {m.get('cpu_model')}, {m.get('nproc')} usable cores ({m.get('cpu_count')} online), "
        f"{m.get('ram_gb')} GB RAM, {m.get('platform')}; load average (1, 5, 15 min) "
        f"{m.get('load_average_start')} at the start, {m.get('load_average_end')} at the end",
        "- versions: " + ", ".join(
            f"{k} {v[k]}" for k in ("python", *VERSION_PACKAGES) if v.get(k)
        ) + f"; git {str(v.get('git_commit'))[:10]}" + (" + uncommitted changes" if v.get("git_dirty") else ""),
    ]
    if v.get("git_dirty_files"):
        out.append("- uncommitted files in the package/benchmarks at run time: "
                   + ", ".join(f"`{f}`" for f in v["git_dirty_files"]))
    loc = run.get("default_cache_locations") or {}
    if loc.get("pytensor_base_compiledir"):
        out.append(f"- default compile caches: PyTensor `{loc.get('pytensor_base_compiledir')}` "
                   f"(its numba cache `{loc.get('pytensor_numba_cache')}`), linker {loc.get('pytensor_linker')}; "
                   f"numba: {loc.get('numba_cache_dir')}")
    out += ["", "| case | status | wall s | peak RSS MB | CPU s | cache | load before → after | quality |",
            "|---|---|---:|---:|---:|---|---|---|"]
    for r in run.get("cases", []):
        q = ", ".join(f"{k} = {_fmt(x)}" for k, x in (r.get("quality") or {}).items())
        if r.get("status") != "ok":
            q = (q + "; " if q else "") + str(r.get("reason", ""))
        cache = r.get("cache") or {}
        cstate = cache.get("state", "")
        if cstate == "default" and "new_files" in cache:
            cstate += f" (+{cache['new_files']} files)"
        la = (f"{(r.get('load_average_before') or ['?'])[0]} → {(r.get('load_average_after') or ['?'])[0]}"
              if "load_average_before" in r else "")
        cells = [
            r["case"], r.get("status", "?"),
            f"{r['wall_seconds']:.1f}" if "wall_seconds" in r else "–",
            f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "–",
            f"{r['cpu_seconds']:.1f}" if "cpu_seconds" in r else "–",
            cstate, la, q,
        ]
        out.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    targets = [(r["case"], k, t) for r in run.get("cases", []) for k, t in (r.get("targets") or {}).items()]
    if targets:
        out += ["", "Targets as each case states them:", ""]
        out += [f"- `{c}` {k}: {t}" for c, k, t in targets]
    notes = [(r["case"], r.get("notes")) for r in run.get("cases", []) if r.get("notes")]
    if notes:
        out += ["", "Notes printed by the cases:", ""]
        out += [f"- `{c}`: {n}" for c, n in notes]
    return "\n".join(out) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the benchmark cases, each in a fresh process; print a table and write JSON.",
    )
    ap.add_argument("--cases", help="comma-separated case names (default: all; see --list)")
    ap.add_argument("--quick", action="store_true", help="run each case's small version (--quick)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the results (default {DEFAULT_JSON.relative_to(REPO)})")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--cache", choices=["default", "cold"], default="default",
                    help="'cold': each case gets a fresh empty PyTensor/numba compile cache; "
                         "'default': the machine's caches (warm once the graphs were compiled before)")
    ap.add_argument("--timeout", type=float, default=10800.0, help="seconds before a case is killed (default 10800)")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the summary as Markdown here")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="run nothing: print (or with --markdown, write) the Markdown summary of a results JSON")
    ap.add_argument("--bench-dir", type=Path, default=BENCH_DIR, help=argparse.SUPPRESS)
    ap.add_argument("--module-prefix", default="benchmarks.bench_", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render is not None:
        text = markdown(json.loads(args.render.read_text()))
        if args.markdown:
            args.markdown.write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    available = discover(args.bench_dir)
    if args.list:
        for name, path in available.items():
            flag = "  [needs shared data]" if needs_data(path) else ""
            print(f"{name:18} {case_doc(path)}{flag}")
        return 0
    cases = select_cases(available, args.cases)
    if not cases:
        raise SystemExit(f"error: no benchmark cases found in {args.bench_dir}")
    started = _dt.datetime.now().astimezone()
    run: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "cache_mode": args.cache,
        "machine": machine_info(),
        "versions": versions(),
        "default_cache_locations": cache_locations(),
        "data_dir": str(data_dir()),
        "cases": [],
    }
    print(f"benchmarks: {len(cases)} case(s){' (quick)' if args.quick else ''}, cache {args.cache}, "
          f"{run['machine']['nproc']} cores, load {run['machine']['load_average_start']}", flush=True)
    t0 = time.perf_counter()
    for name, path in cases.items():
        print(f"\n== {name} ==", flush=True)
        rec = run_case(name, path, quick=args.quick, cache=args.cache, timeout=args.timeout,
                       module=f"{args.module_prefix}{name}")
        run["cases"].append(rec)
        extra = f" ({rec['reason']})" if rec.get("reason") else ""
        wall = f", {rec['wall_seconds']:.1f} s, {rec['peak_rss_mb']:.0f} MB" if "wall_seconds" in rec else ""
        print(f"== {name}: {rec['status']}{wall}{extra}", flush=True)
    run["total_seconds"] = round(time.perf_counter() - t0, 1)
    run["machine"]["load_average_end"] = load_average()
    print("\n" + table(run["cases"]))
    print(f"\nmachine: {run['machine']['cpu_model']}, {run['machine']['nproc']} cores, {run['machine']['ram_gb']} GB; "
          f"load {run['machine']['load_average_start']} -> {run['machine']['load_average_end']}")
    v = run["versions"]
    print(f"versions: python {v['python']}, bayes-lse {v['bayes-lse']} @ {str(v['git_commit'])[:10]}"
          f"{' (dirty)' if v['git_dirty'] else ''}, pymc {v['pymc']}, pytensor {v['pytensor']}, "
          f"nutpie {v['nutpie']}, numba {v['numba']}, jax {v['jax']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(args.json.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(run), indent=1) + "\n")
    tmp.replace(args.json)
    print(f"wrote {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(_jsonable(run)))
        print(f"wrote {args.markdown}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in run["cases"]) else 1
