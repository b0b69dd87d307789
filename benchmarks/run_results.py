"""The real-data results of docs/results.md: run the evaluations, render the tables.

    python benchmarks/run_results.py list                    # experiments and their exact commands
    python benchmarks/run_results.py prepare                 # files some experiments need (outside the repo)
    python benchmarks/run_results.py run NAME [NAME ...]     # run, write docs/results/NAME.json (+ .run.json, .log)
    python benchmarks/run_results.py render [NAME ...]       # Markdown tables of finished runs
    python benchmarks/run_results.py render --update docs/results.md   # refresh the generated blocks

Run from the repository root; the data are read from ``../shared/data`` (override
with ``$BAYES_LSE_DATA``) and never copied into the repository.  Every experiment is
one ``bayes-lse evaluate`` command; ``run`` starts it as a fresh process under
``nice -n 10`` (``python -m bayes_lse.cli``, with this checkout first on
``PYTHONPATH``) and records wall time, CPU time (user + system of the process and
its children), peak RSS, the load average before and after, machine and versions in
``docs/results/NAME.run.json``.  Fit times inside the JSON are wall-clock per fit:
on a shared machine read them next to the load average.

``prepare`` writes to ``$BAYES_LSE_WORK`` (default ``/tmp/bayes-lse-results``): the
ASSISTments 2009 train and test files as one interaction table and a split whose
test set is the test file's students (their last 10% of answers held out, or
their last answer), the train file's students always in training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "results"
DATA = "../shared/data"
WORK = os.environ.get("BAYES_LSE_WORK", "/tmp/bayes-lse-results")
A09 = f"{DATA}/assistments2009/ckyeungac_problem_id_train.csv"
A09_TEST = f"{DATA}/assistments2009/ckyeungac_problem_id_test.csv"
EDNET = f"{DATA}/ednet_kt4_sample"
A09_BASE = "student-rate,assessment-rate,irt1pl,irt2pl,pfa,pfa-online"
ED_BASE = "student-rate,assessment-rate,irt1pl,irt2pl,mirt,pfa,pfa-online"
A09_LSE_FIT = ["--starts", "1", "--maxiter", "200"]

#: name -> (what it is, arguments after `bayes-lse evaluate`)
EXPERIMENTS: dict[str, tuple[str, list[str]]] = {
    # ------------------------------------------------------------- EdNet sample
    "ednet_lf_map": (
        "EdNet sample, last 10% of answers, 4-fold CV + 20% test students (seed 4: every run has held-out "
        "answers); LSE by MAP, d = 1, 2, 3, all variants; all baselines",
        [EDNET, "--from", "ednet-kt4", "--folds", "4", "--seed", "4", "--protocol", "last-fraction", "--skills", "1,2,3",
         "--variants", "full,no-prerequisites,no-biases,no-lessons", "--baselines", ED_BASE],
    ),
    "ednet_lb_map": (
        "EdNet sample, last batch (answers at the last timestep), 4-fold CV + 20% test; as ednet_lf_map",
        [EDNET, "--from", "ednet-kt4", "--folds", "4", "--seed", "4", "--protocol", "last-batch", "--skills", "1,2,3",
         "--variants", "full,no-prerequisites,no-biases,no-lessons", "--baselines", ED_BASE],
    ),
    "ednet_lf_nuts": (
        "EdNet sample, last 10%; LSE by NUTS (nutpie, 2 chains x 500 draws, 500 tuning), d = 1, 2, 3 and d = 2 "
        "variants; PSIS-LOO on the test run's fits",
        [EDNET, "--from", "ednet-kt4", "--folds", "4", "--seed", "4", "--protocol", "last-fraction", "--method", "nuts", "--skills", "1,2,3",
         "--variants", "full,no-prerequisites,no-biases,no-lessons", "--chains", "2", "--draws", "500",
         "--tune", "500", "--loo", "--baselines", "irt1pl,pfa"],
    ),
    "ednet_loo_nuts": (
        "EdNet sample, last 10%, test set only (no CV: PSIS-LOO needs one set of fits); LSE by NUTS (nutpie, "
        "4 chains x 500 draws, 500 tuning), d = 1, 2, 3 and every variant; PSIS-LOO / ELPD of each fit on its "
        "training rows, compared with arviz",
        [EDNET, "--from", "ednet-kt4", "--folds", "1", "--seed", "4", "--protocol", "last-fraction", "--method", "nuts",
         "--skills", "1,2,3", "--variants", "full,no-prerequisites,no-biases,no-lessons", "--chains", "4",
         "--draws", "500", "--tune", "500", "--loo", "--baselines", "irt1pl,pfa"],
    ),
    "ednet_lf_advi": (
        "EdNet sample, last 10%; LSE by mean-field ADVI, d = 1, 2, 3 and variants; PSIS-LOO",
        [EDNET, "--from", "ednet-kt4", "--folds", "4", "--seed", "4", "--protocol", "last-fraction", "--method", "advi", "--skills", "1,2,3",
         "--variants", "full,no-prerequisites,no-biases,no-lessons", "--loo", "--baselines", "irt1pl,pfa"],
    ),
    # ------------------------------------------------------ ASSISTments 2009
    # One run per command: 20% of the students (666) are the test set, nobody else is held out
    # (--folds 1).  LSE MAP: one start, at most 200 L-BFGS iterations (--starts 1 --maxiter 200; the
    # iteration budget acts as regularisation, see the *_it1000 runs and docs/benchmarks.md).
    "a09_lf_baselines": (
        "ASSISTments 2009 problem level (train file), last 10% of answers of 20% test students; every baseline",
        [A09, "--from", "assistments-dkt", "--protocol", "last-fraction", "--folds", "1", "--variants", "none",
         "--baselines", A09_BASE + ",mirt"],
    ),
    "a09_lf_static": (
        "as a09_lf_baselines; items are assessments only (no lessons, every answer at timestep 0: the LSE is a "
        "static non-negative multidimensional IRT with biases); LSE MAP d = 1, 2, 3",
        [A09, "--from", "assistments-dkt", "--protocol", "last-fraction", "--folds", "1", "--skills", "1,2,3",
         "--variants", "no-lessons", *A09_LSE_FIT, "--baselines", "irt1pl,irt2pl,pfa"],
    ),
    "a09_lf_ial": (
        "as a09_lf_baselines; every answered item is also a lesson (the original LSE treatment); LSE MAP "
        "d = 1, 2, 3, σ_L = √0.5 (default)",
        [A09, "--from", "assistments-dkt", "--items-as-lessons", "--protocol", "last-fraction", "--folds", "1",
         "--skills", "1,2,3", "--variants", "full", *A09_LSE_FIT, "--baselines", "irt1pl,irt2pl,pfa"],
    ),
    "a09_lf_ial_variants": (
        "as a09_lf_ial, d = 2 without prerequisites / biases / lessons (no lessons = a random walk with zero "
        "mean gain)",
        [A09, "--from", "assistments-dkt", "--items-as-lessons", "--protocol", "last-fraction", "--folds", "1",
         "--skills", "2", "--variants", "no-prerequisites,no-biases,no-lessons", *A09_LSE_FIT,
         "--baselines", "irt1pl,pfa"],
    ),
    "a09_lf_ial_noise0.2": (
        "as a09_lf_ial with σ_L = 0.2, d = 1, 2",
        [A09, "--from", "assistments-dkt", "--items-as-lessons", "--protocol", "last-fraction", "--folds", "1",
         "--skills", "1,2", "--variants", "full", "--learning-noise", "0.2", *A09_LSE_FIT,
         "--baselines", "irt1pl,pfa"],
    ),
    "a09_lf_ial_noise0.05": (
        "as a09_lf_ial with σ_L = 0.05, d = 1, 2",
        [A09, "--from", "assistments-dkt", "--items-as-lessons", "--protocol", "last-fraction", "--folds", "1",
         "--skills", "1,2", "--variants", "full", "--learning-noise", "0.05", *A09_LSE_FIT,
         "--baselines", "irt1pl,pfa"],
    ),
    "a09_lf_ial_noise0.01": (
        "as a09_lf_ial with σ_L = 0.01, d = 1, 2 (close to a static model)",
        [A09, "--from", "assistments-dkt", "--items-as-lessons", "--protocol", "last-fraction", "--folds", "1",
         "--skills", "1,2", "--variants", "full", "--learning-noise", "0.01", *A09_LSE_FIT,
         "--baselines", "irt1pl,pfa"],
    ),
    "a09_lb_ial": (
        "ASSISTments 2009 train file, last batch (= each test student's last answer; needs items as lessons, "
        "else every answer is at timestep 0 and nothing is left to train on); LSE MAP d = 1, 2, 3",
        [A09, "--from", "assistments-dkt", "--items-as-lessons", "--protocol", "last-batch", "--folds", "1",
         "--skills", "1,2,3", "--variants", "full", *A09_LSE_FIT, "--baselines", A09_BASE],
    ),
    "a09_lb_ial_noise0.05": (
        "as a09_lb_ial with σ_L = 0.05, d = 1, 2",
        [A09, "--from", "assistments-dkt", "--items-as-lessons", "--protocol", "last-batch", "--folds", "1",
         "--skills", "1,2", "--variants", "full", "--learning-noise", "0.05", *A09_LSE_FIT,
         "--baselines", "irt1pl,pfa"],
    ),
    "a09_official_static": (
        "ASSISTments 2009 train + test files: the test set is the test file's 833 students (last 10% of their "
        "answers held out); trained on the whole train file and the test students' earlier answers; items as "
        "assessments only; needs `prepare`",
        [f"{WORK}/a09_train_test.csv", "--split", f"{WORK}/a09_official_lf.split.csv", "--skills", "1,2",
         "--variants", "no-lessons", *A09_LSE_FIT, "--baselines", "irt1pl,irt2pl,pfa,pfa-online"],
    ),
    "a09_official_ial": (
        "as a09_official_static with items as lessons; LSE d = 2, σ_L = √0.5 and 0.05 are separate commands: "
        "this one is the default",
        [f"{WORK}/a09_train_test_items_as_lessons.csv", "--split", f"{WORK}/a09_official_ial_lf.split.csv",
         "--skills", "2", "--variants", "full", *A09_LSE_FIT, "--baselines", "irt1pl,pfa"],
    ),
}

#: The same fits run to 1000 iterations, kept to show that a closer optimum predicts worse.
for _name in ("a09_lf_static", "a09_lf_ial", "a09_lf_ial_noise0.05", "a09_lb_ial"):
    _desc, _args = EXPERIMENTS[_name]
    _i = _args.index("--maxiter") + 1
    EXPERIMENTS[_name + "_it1000"] = (f"as {_name}, LSE MAP run to 1000 iterations",
                                      [*_args[:_i], "1000", *_args[_i + 1:]])

# ------------------------------------------------- the assessment-history term
EXPERIMENTS["a09_official_history"] = (
    "official split (as a09_official_static), static LSE d = 1, 2 with and without the assessment-history "
    "term (history=True: earlier successes/failures on the same problem in the pass logit)",
    [f"{WORK}/a09_train_test.csv", "--split", f"{WORK}/a09_official_lf.split.csv", "--skills", "1,2",
     "--variants", "no-lessons,no-lessons+history", *A09_LSE_FIT, "--baselines", "irt1pl,irt2pl,pfa,pfa-online"],
)
EXPERIMENTS["a09_lf_static_history"] = (
    "as a09_lf_static, static LSE d = 1, 2 with and without the assessment-history term",
    [A09, "--from", "assistments-dkt", "--protocol", "last-fraction", "--folds", "1", "--skills", "1,2",
     "--variants", "no-lessons,no-lessons+history", *A09_LSE_FIT, "--baselines", "irt1pl,pfa"],
)
EXPERIMENTS["a09_lb_ial_history"] = (
    "as a09_lb_ial, LSE d = 1 with and without the assessment-history term (recorded before the compiled "
    "kernel had the term: the history variant ran on the PyTensor engine)",
    [A09, "--from", "assistments-dkt", "--items-as-lessons", "--protocol", "last-batch", "--folds", "1",
     "--skills", "1", "--variants", "full,history", *A09_LSE_FIT, "--baselines", "irt1pl,pfa"],
)

#: An items-as-lessons run again with forecasts through the *mode* of each step (`--update
#: mode`) instead of its truncated-normal mean: no upward drift from the truncation at zero.
EXPERIMENTS["a09_lf_ial_mode"] = (EXPERIMENTS["a09_lf_ial"][0] + "; forecasts through each step's mode",
                                  [*EXPERIMENTS["a09_lf_ial"][1], "--update", "mode"])


def command(name: str) -> list[str]:
    """The experiment's command as a user types it from the repository root."""
    _, args = EXPERIMENTS[name]
    return ["bayes-lse", "evaluate", *args, "--format", "json", "-o", f"docs/results/{name}.json",
            "--predictions-out", f"{WORK}/{name}.predictions.csv", "--split-out", f"{WORK}/{name}.split.csv",
            "--overwrite"]


def _data_root() -> str:
    return os.environ.get("BAYES_LSE_DATA", DATA)


def _resolve(args: list[str]) -> list[str]:
    root = _data_root()
    return [a.replace(DATA, root, 1) if a.startswith(DATA) else a for a in args]


# ----------------------------------------------------------------------------- prepare
def prepare() -> None:
    """The combined ASSISTments tables (items as assessments only; items also as lessons) and,
    for each, splits whose test set is the test file's students."""
    sys.path.insert(0, str(REPO))
    from bayes_lse.data.log import read_interactions
    from bayes_lse.evaluate.protocols import make_split
    from bayes_lse.data.readers import convert

    work = Path(WORK)
    work.mkdir(parents=True, exist_ok=True)
    root = _data_root()
    train = A09.replace(DATA, root, 1)
    test = A09_TEST.replace(DATA, root, 1)
    for ial, tag in ((False, ""), (True, "_items_as_lessons")):
        df = convert("assistments-dkt", [train, test], items_as_lessons=ial)
        table = work / f"a09_train_test{tag}.csv"
        df.to_csv(table, index=False)
        log = read_interactions(table)
        test_ids = [s for s in log.students.astype(str) if s.startswith(Path(test).stem + "-")]
        protocols = (("last-fraction", "lf"), ("last-batch", "lb")) if ial else (("last-fraction", "lf"),)
        for protocol, ptag in protocols:
            split = make_split(log, folds=1, protocol=protocol, fraction=0.1, test_ids=test_ids, seed=0)
            path = split.write(work / f"a09_official{'_ial' if ial else ''}_{ptag}.split.csv")
            print(f"{path}: {split.summary()}")
        print(f"{table}: {log.n_students} students, {log.n_interactions} rows")


# ----------------------------------------------------------------------------- run
def run(name: str) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from benchmarks.runner import load_average, machine_info, versions

    desc, args = EXPERIMENTS[name]
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{name}.json"
    Path(WORK).mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bayes_lse.cli", *_resolve(command(name)[1:])]
    argv[argv.index("-o") + 1] = str(out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    record: dict[str, Any] = {"name": name, "description": desc, "command": shlex.join(command(name)),
                              "machine": machine_info(), "versions": versions()}
    print(f"[{name}] {record['command']}", flush=True)
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with open(OUT / f"{name}.log", "w") as log:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, preexec_fn=lambda: os.nice(10))
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            log.flush()
            print(f"  {line}", end="", flush=True)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    record.update({
        "started": started, "exit_status": os.waitstatus_to_exitcode(status), "wall_seconds": round(wall, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "load_average_end": load_average(),
    })
    (OUT / f"{name}.run.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"[{name}] exit {record['exit_status']}, wall {wall:.0f} s, CPU {record['cpu_seconds']:.0f} s, "
          f"peak {record['peak_rss_mb']:.0f} MB", flush=True)
    return record


# ----------------------------------------------------------------------------- render
def _pm(v: Any, se: Any = None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ± {se:.{digits}f}"


def _signed(v: Any, se: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{v:+.{digits}f}"
    return f"{v:+.{digits}f} ± {se:.{digits}f}"


def _md(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


SECTIONS = ("metrics", "folds", "lessons", "loo", "repeats", "times", "run")


def render_one(name: str, sections: tuple[str, ...] = SECTIONS, models: list[str] | None = None) -> str:
    """Markdown of one finished experiment: the `sections` asked for, rows of `models` (default all)."""
    res = json.loads((OUT / f"{name}.json").read_text())
    rec_path = OUT / f"{name}.run.json"
    rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}
    s = res["settings"]
    if models:
        s = {**s, "models": [m for m in s["models"] if m in models]}
        keep = set(s["models"])
        for key in ("metrics", "comparisons", "timings", "lessons_check", "loo"):
            if res.get(key):
                res[key] = [r for r in res[key] if r["model"] in keep]
    parts: list[str] = []
    frac = f", last {s['fraction']:.0%} of answers" if s["protocol"] == "last-fraction" else ""
    cv = f"{s['folds']}-fold CV" if s["folds"] >= 2 else "no CV"
    test = f"test set {s['test_students']:.0%} of students" if s.get("test_students") else "no test set"
    meth = s["method"].upper()
    fo = ", ".join(f"{k}={v}" for k, v in s.get("fit_options", {}).items())
    parts.append(f"*{s['n_students']} students, {s['n_interactions']} interaction rows; protocol {s['protocol']}"
                 f"{frac}; {cv}, {test}; LSE by {meth}{' (' + fo + ')' if fo else ''}; "
                 f"± = bootstrap SE over students ({s['n_boot']} resamples).*")
    tm = res["timings"]
    fit_by: dict[tuple[str, str], list[float]] = {}
    for r in tm:
        fit_by.setdefault((r["model"], r["run"]), []).append(r["fit_seconds"])
    cmp = {(c["model"], c["set"]): c for c in res["comparisons"]}
    for g in ("cv", "test"):
        rows_g = [m for m in res["metrics"] if m["set"] == g]
        if not rows_g or "metrics" not in sections:
            continue
        runs = [r for r in s["runs"] if (r == "test") == (g == "test")]
        parts.append("")
        parts.append(f"**{g}**: {rows_g[0]['n']} scored answers of {rows_g[0]['students']} students; "
                     f"paired differences are model − {s['reference']} on the same answers.")
        parts.append("")
        rows = []
        one = rows_g[0]["students"] < 2  # a bootstrap over one student has no spread
        for m in rows_g:
            if one:
                m = {k: (float("nan") if k.endswith("_se") else v) for k, v in m.items()}
            c = cmp.get((m["model"], g))
            if c and one:
                c = {k: (float("nan") if k.endswith("_se") else v) for k, v in c.items()}
            fits = [x for run in runs for x in fit_by.get((m["model"], run), [])]
            rows.append([
                f"`{m['model']}`", _pm(m["auc"], m["auc_se"]), _pm(m["log_loss"], m["log_loss_se"]),
                _pm(m["brier"], m["brier_se"]), _pm(m["accuracy"], m["accuracy_se"]), _pm(m["ece"], m["ece_se"]),
                _signed(c["auc_diff"], c["auc_diff_se"]) if c else "(reference)",
                f"{c['auc_diff_delong_p']:.2g}" if c and c.get("auc_diff_delong_p") is not None else "",
                _signed(c["log_loss_diff"], c["log_loss_diff_se"]) if c else "",
                f"{sum(fits) / len(fits):.1f}" if fits else "–",
            ])
        parts.append(_md(["model", "AUC", "log-loss", "Brier", "accuracy", "ECE", "ΔAUC", "DeLong p",
                          "Δlog-loss", "fit s / run"], rows))
    folds = sorted({m["set"] for m in res["metrics"] if m["set"].startswith("fold ")})
    if folds and "folds" in sections:
        parts.append("")
        parts.append("AUC per fold (held-out students, answers): "
                     + "; ".join(f"{f}: {next(m['students'] for m in res['metrics'] if m['set'] == f)}, "
                                 f"{next(m['n'] for m in res['metrics'] if m['set'] == f)}" for f in folds))
        parts.append("")
        rows = []
        for name_m in s["models"]:
            by = {m["set"]: m for m in res["metrics"] if m["model"] == name_m}
            rows.append([f"`{name_m}`", *[_pm(by[f]["auc"]) if f in by else "–" for f in folds]])
        parts.append(_md(["model", *folds], rows))
    if res.get("lessons_check") and "lessons" in sections:
        parts.append("")
        parts.append("Lessons check (held-out answers after ≥ 1 lesson, predicted from the state at the student's "
                     "last training answer pushed through the lessons taken since, *with* the learning update "
                     "and *without* it; differences with − without):")
        parts.append("")
        rows = []
        for r in res["lessons_check"]:
            rows.append([f"`{r['model']}`", r["set"], str(r["n"]), _pm(r.get("mean_lessons"), None, 1),
                         _pm(r["auc_with"]), _pm(r["auc_without"]), _signed(r["auc_diff"], r["auc_diff_se"]),
                         _pm(r.get("log_loss_with")), _pm(r.get("log_loss_without")),
                         _signed(r.get("log_loss_diff", float("nan")), r.get("log_loss_diff_se"))])
        parts.append(_md(["model", "set", "answers", "lessons", "AUC with", "AUC without", "ΔAUC",
                          "log-loss with", "log-loss without", "Δlog-loss"], rows))
    if res.get("loo") and "loo" in sections:
        parts.append("")
        parts.append(f"PSIS-LOO on the training rows of run {s['runs'][-1]} (higher ELPD is better; Δ against the "
                     "best; k > thr = share of rows with an unreliable Pareto k):")
        parts.append("")
        rows = [[f"`{r['model']}`", f"{r['elpd']:.1f}", f"{r['se']:.1f}", f"{r['elpd_diff']:.1f}", f"{r['dse']:.1f}",
                 f"{r['p']:.1f}", f"{r['pareto_k_bad']:.1%}"] for r in res["loo"]]
        parts.append(_md(["model", "ELPD", "SE", "ΔELPD", "SE of Δ", "p_loo", "k > thr"], rows))
    rep = repeat_table(name, s) if "repeats" in sections else ""
    if rep:
        parts.append("")
        parts.append(rep)
    if "times" in sections:
        parts.append("")
        parts.append("Time per fit (wall seconds, mean over runs; iterations: optimiser iterations of the best "
                     "start):")
        parts.append("")
        rows = []
        for name_m in s["models"]:
            sub = [r for r in tm if r["model"] == name_m]
            fit = [r["fit_seconds"] for r in sub]
            pred = [r["predict_seconds"] for r in sub]
            its = [r.get("iterations") for r in sub if r.get("iterations") is not None]
            stop = next((str(r.get("stop")) for r in sub if r.get("stop")), "")
            rows.append([f"`{name_m}`", f"{sum(fit) / len(fit):.1f}", f"{max(fit):.1f}",
                         f"{sum(pred) / len(pred):.1f}", f"{sum(its) / len(its):.0f}" if its else "–", stop[:60]])
        parts.append(_md(["model", "fit (mean)", "fit (max)", "predict", "iterations", "stop"], rows))
    if rec and "run" in sections:
        parts.append("")
        la = rec.get("machine", {}).get("load_average_start")
        parts.append(f"Whole command: {rec['wall_seconds']:.0f} s wall, {rec['cpu_seconds']:.0f} s CPU, peak "
                     f"{rec['peak_rss_mb']:.0f} MB; load average {la} at start, {rec.get('load_average_end')} at "
                     f"end; bayes-lse {str(rec['versions'].get('git_commit'))[:7]}; started {rec['started']}.")
    return "\n".join(parts)


def repeat_split(name: str) -> Any:
    """Scored predictions of a run with a column ``repeat``: the student answered the same
    assessment in its own training history (before the cut). None if the files are absent."""
    import pandas as pd

    pred_path, split_path = Path(WORK) / f"{name}.predictions.csv", Path(WORK) / f"{name}.split.csv"
    if not (pred_path.exists() and split_path.exists()):
        return None
    pred = pd.read_csv(pred_path, dtype={"student_id": str, "module_id": str, "run": str})
    pred = pred[pred["scored"]].reset_index(drop=True)
    sp = pd.read_csv(split_path, dtype={"student_id": str, "module_id": str, "fold": str, "role": str},
                     usecols=["student_id", "module_id", "module_type", "fold", "role"], keep_default_na=False)
    held_students = set(pred["student_id"])
    tr = sp[(sp["role"] == "train") & (sp["module_type"] == "assessment") & sp["student_id"].isin(held_students)]
    seen = pd.MultiIndex.from_arrays([tr["student_id"], tr["module_id"]]).unique()
    pred["repeat"] = pd.MultiIndex.from_arrays([pred["student_id"], pred["module_id"]]).isin(seen)
    return pred


def repeat_table(name: str, settings: dict[str, Any]) -> str:
    """AUC and log-loss per model on held-out answers to an assessment the student already
    answered before the cut ("repeat") and on first-time answers."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from bayes_lse.evaluate import metrics as mt

    pred = repeat_split(name)
    if pred is None or not len(pred):
        return ""
    lines = []
    rows = []
    for g in ("cv", "test"):
        sub = pred[pred["run"] == "test"] if g == "test" else pred[pred["run"] != "test"]
        if sub.empty:
            continue
        r, f = sub[sub["repeat"]], sub[~sub["repeat"]]
        for m in settings["models"]:
            def cell(part: Any, fn: Any) -> str:
                y = part["outcome"].to_numpy()
                return f"{fn(y, part[m].to_numpy()):.3f}" if len(np.unique(y)) == 2 else "–"

            rows.append([f"`{m}`", g, cell(f, mt.auc), cell(r, mt.auc), cell(f, mt.log_loss), cell(r, mt.log_loss)])
        lines.append(f"{g}: {len(r)} of {len(sub)} scored answers ({len(r) / len(sub):.1%}) are repeats, "
                     f"pass rate {r['outcome'].mean():.3f} on repeats and {f['outcome'].mean():.3f} on first-time "
                     "answers" if len(r) else f"{g}: no repeats among {len(sub)} scored answers")
    return ("Held-out answers split by whether the student had already answered the same assessment before the "
            "cut (*repeat*) or not (*first time*): " + "; ".join(lines) + ".\n\n"
            + _md(["model", "set", "AUC first time", "AUC repeat", "log-loss first time", "log-loss repeat"], rows))


def summary_table(names: list[str], subset: str = "all") -> str:
    """One table across experiments: test-set AUC ± SE of every model (rows) in each experiment
    (columns). `subset` "first" scores only first-time answers (no SE: read the per-experiment
    tables), "repeat" only repeats."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from bayes_lse.evaluate import metrics as mt

    cols: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for name in names:
        if not (OUT / f"{name}.json").exists():
            continue
        res = json.loads((OUT / f"{name}.json").read_text())
        cells: dict[str, str] = {}
        if subset == "all":
            for m in res["metrics"]:
                if m["set"] == "test":
                    cells[m["model"]] = _pm(m["auc"], m["auc_se"])
        else:
            pred = repeat_split(name)
            if pred is None:
                continue
            sub = pred[(pred["run"] == "test") & (pred["repeat"] == (subset == "repeat"))]
            y = sub["outcome"].to_numpy()
            for m in res["settings"]["models"]:
                if len(np.unique(y)) == 2:
                    cells[m] = f"{mt.auc(y, sub[m].to_numpy()):.3f}"
        cols[name] = cells
        order += [m for m in cells if m not in order]
    rows = [[f"`{m}`", *[cols[n].get(m, "") for n in cols]] for m in order]
    return _md(["model", *[f"`{n}`" for n in cols]], rows)


def update(path: Path, names: list[str]) -> None:
    """Replace every generated block of `path`:
    ``<!-- results:NAME [sections=a,b] [models=m1,m2] -->`` … ``<!-- /results:NAME -->``, and
    ``<!-- results:summaryX names=e1,e2 [subset=all|first|repeat] -->`` … ``<!-- /results:summaryX -->``
    (test-set AUC of every model across experiments)."""
    text = path.read_text()
    pat = re.compile(r"(<!-- results:([\w.\-]+)((?: \w+=[\w.,\-]+)*) -->\n).*?(\n<!-- /results:\2 -->)", re.S)

    def fill(m: re.Match) -> str:
        name, opts = m.group(2), dict(kv.split("=", 1) for kv in m.group(3).split())
        if name.startswith("summary"):
            return m.group(1) + summary_table(opts["names"].split(","), opts.get("subset", "all")) + m.group(4)
        if name not in names:
            return m.group(0)
        sections = tuple(opts["sections"].split(",")) if "sections" in opts else SECTIONS
        models = opts["models"].split(",") if "models" in opts else None
        return m.group(1) + render_one(name, sections, models) + m.group(4)

    path.write_text(pat.sub(fill, text))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    sub.add_parser("prepare")
    r = sub.add_parser("run")
    r.add_argument("names", nargs="+")
    g = sub.add_parser("render")
    g.add_argument("names", nargs="*")
    g.add_argument("--update", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.cmd == "list":
        for name, (desc, _) in EXPERIMENTS.items():
            print(f"{name}: {desc}\n    {shlex.join(command(name))}\n")
        return 0
    if a.cmd == "prepare":
        prepare()
        return 0
    if a.cmd == "run":
        unknown = [n for n in a.names if n not in EXPERIMENTS]
        if unknown:
            ap.error(f"unknown experiment(s): {', '.join(unknown)}; see `list`")
        status = 0
        for n in a.names:
            status |= run(n)["exit_status"] != 0
        return int(status)
    names = a.names or [n for n in EXPERIMENTS if (OUT / f"{n}.json").exists()]
    if a.update:
        update(a.update, names)
    else:
        for n in names:
            print(f"### {n}\n\n{render_one(n)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
