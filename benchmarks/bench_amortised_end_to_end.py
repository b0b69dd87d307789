"""Amortised ADVI end to end at scale, as a user runs it: a simulated log of ~25M rows
written to a CSV file, `bayes-lse fit FILE` with the defaults (method "auto", which is
amortised ADVI at this size; the run fails if it chose anything else) in its own process,
then `bayes-lse predict` on held-out answers.

    python -m benchmarks.bench_amortised_end_to_end                 # ~25M rows
    python -m benchmarks.bench_amortised_end_to_end --rows 2500000  # any size
    python -m benchmarks.bench_amortised_end_to_end --rows 250000 --dir /tmp/e2e --keep
    python -m benchmarks.bench_amortised_end_to_end --rows 2500000 --compare-map      # and MAP, the old default
    python -m benchmarks.bench_amortised_end_to_end --compare-map 20 --subsample 0    # MAP's first 20 iterations

`--compare-map` also runs `bayes-lse fit FILE --method map` (the default below
`inference.defaults.AMORTISED_MIN_ANSWERS` answers) and predicts the same rows; with a
number, MAP stops after that many iterations (its seconds per iteration and its peak, for
sizes where the 1,000 iterations would take hours).

Printed: rows, students, the writing time (not counted), the fit's wall time and peak RSS
(ru_maxrss of the child process: reading, validation, index arrays, JAX compilation,
the SVI, the posterior draws, the DataTree and the saved model folder), the model
folder's size, the predict call's time and peak, and the held-out AUC of the saved
model next to the AUC of the true pass probabilities on the same rows (the ceiling).

The cohort: 50 assessments, 20 lessons, d = 2, prerequisites, σ_L = 0.5 (as
`bench_amortised_fit`), at most 5 steps and 3 answers a step, ~6.5 rows a student.
Held out: the last-step answers of 1 % of the students whose last step is reached by a
lesson (that lesson stays in training, so their last state is in the model).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROWS_PER_STUDENT = 6.5
CHUNK = 50_000


def _peak_children_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def write_log(path: Path, heldout: Path, n_students: int, seed: int = 0, holdout_frac: float = 0.01) -> dict:
    """Simulate `n_students` in chunks and write them as a CSV log (§2 columns, string ids);
    held-out rows (with their true pass probability) go to `heldout`."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from benchmarks.bench_amortised_fit import design

    src, r, (req, gain, _, _) = design(seed)
    A, L = req.shape[1], gain.shape[1]
    a_ids = np.array([f"a{i}" for i in range(A)], dtype=object)
    l_ids = np.array([f"l{i}" for i in range(L)], dtype=object)
    schema = pa.schema([("student_id", pa.string()), ("module_id", pa.string()), ("module_type", pa.string()),
                        ("outcome", pa.int8()), ("timestep", pa.int32())])
    hschema = pa.schema([("student_id", pa.string()), ("module_id", pa.string()), ("module_type", pa.string()),
                         ("timestep", pa.int32()), ("outcome", pa.int8()), ("p_true", pa.float64())])
    rows = held = off = 0
    t0 = time.perf_counter()
    with pacsv.CSVWriter(str(path), schema) as w, pacsv.CSVWriter(str(heldout), hschema) as wh:
        while off < n_students:
            s = src.simulate(min(CHUNK, n_students - off), r)
            sid = np.char.add("u", (s.student + off).astype(str)).astype(object)
            lesson = s.kind == 1
            mid = np.where(lesson, l_ids[np.minimum(s.code, L - 1)], a_ids[np.minimum(s.code, A - 1)])
            mtype = np.where(lesson, "lesson", "assessment").astype(object)
            # held out: the last-step answers of students whose last step follows a lesson
            last = s.last[s.student]
            pick = r.random(s.n_students) < holdout_frac
            reached = np.zeros(s.n_students, bool)
            reached[s.student[lesson & (s.step == last - 1)]] = True
            out = ~lesson & (s.step == last) & pick[s.student] & reached[s.student]
            keep = ~out
            outcome = pa.array(np.nan_to_num(s.outcome[keep]).astype(np.int8), mask=lesson[keep])
            w.write(pa.Table.from_arrays([pa.array(sid[keep]), pa.array(mid[keep]), pa.array(mtype[keep]), outcome,
                                          pa.array(s.step[keep].astype(np.int32))], schema=schema))
            wh.write(pa.Table.from_arrays([pa.array(sid[out]), pa.array(mid[out]), pa.array(mtype[out]),
                                           pa.array(s.step[out].astype(np.int32)),
                                           pa.array(s.outcome[out].astype(np.int8)), pa.array(s.p[out])],
                                          schema=hschema))
            rows += int(keep.sum())
            held += int(out.sum())
            off += s.n_students
    return {"students": n_students, "rows": rows, "heldout_rows": held, "write_seconds": round(time.perf_counter() - t0, 1),
            "file_mb": round(path.stat().st_size / 2**20, 1)}


def _timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run `cmd`, return (wall seconds, peak RSS MB of this child, result). ru_maxrss of
    RUSAGE_CHILDREN is the largest child so far, so each command runs in a fresh helper."""
    wrapper = ("import resource,subprocess,sys,time,json;t=time.perf_counter();"
               "p=subprocess.run(sys.argv[1:]);"
               "print(json.dumps({'rc':p.returncode,'s':time.perf_counter()-t,"
               "'mb':resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024}),file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    info = json.loads(p.stderr.strip().splitlines()[-1])
    if info["rc"] != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return info["s"], info["mb"], p


def subsample_comparison(work: Path, held, pred, n_students: int, seed: int, exe: str) -> dict:
    """Full-batch ADVI (`bayes-lse fit --method advi`, defaults) on the log's rows of
    `n_students` random students among those with held-out rows, and both fits' AUC on
    those students' held-out rows (paired, DeLong)."""
    import pandas as pd

    from bayes_lse.evaluate.metrics import auc, log_loss
    from bayes_lse.evaluate.protocols import delong_auc_difference

    rng = np.random.default_rng(seed + 1)
    ids = held["student_id"].unique()
    pick = set(rng.choice(ids, min(n_students, len(ids)), replace=False))
    sub = work / "sub.csv"
    first = True
    for chunk in pd.read_csv(work / "log.csv", chunksize=2_000_000, dtype={"student_id": str, "module_id": str}):
        chunk[chunk["student_id"].isin(pick)].to_csv(sub, mode="w" if first else "a", header=first, index=False)
        first = False
    h = held[held["student_id"].isin(pick)].reset_index(drop=True)
    h.to_csv(work / "sub_heldout.csv", index=False)
    sub_s, sub_mb, _ = _timed([exe, "fit", str(sub), "--method", "advi", "-o", str(work / "sub_model"),
                               "--overwrite", "--seed", str(seed), "-q"])
    _timed([exe, "predict", str(work / "sub_model"), str(work / "sub_heldout.csv"), "-o",
            str(work / "sub_pred.csv"), "--overwrite", "-q"])
    pf = pd.read_csv(work / "sub_pred.csv")["p_mean"].to_numpy()
    key = held["student_id"].isin(pick).to_numpy()
    pa_ = pred["p_mean"].to_numpy()[key]
    y = h["outcome"].to_numpy()
    dl = delong_auc_difference(y, pa_, pf)
    return {"subsample_students": len(pick), "subsample_rows": int(sum(1 for _ in open(sub)) - 1),
            "subsample_heldout_rows": len(h), "full_batch_fit_seconds": round(sub_s, 1),
            "auc_amortised_on_subsample": round(float(auc(y, pa_)), 4),
            "auc_full_batch_on_subsample": round(float(auc(y, pf)), 4),
            "auc_difference": round(float(auc(y, pa_) - auc(y, pf)), 4),
            "auc_difference_delong": {k: round(float(v), 4) for k, v in dl.items()},
            "log_loss_amortised_on_subsample": round(float(log_loss(y, pa_)), 4),
            "log_loss_full_batch_on_subsample": round(float(log_loss(y, pf)), 4),
            "auc_true_p_on_subsample": round(float(auc(y, h["p_true"].to_numpy())), 4)}


def map_comparison(work: Path, held, maxiter: int, seed: int, exe: str) -> dict:
    """`bayes-lse fit --method map` on the same file (its defaults, or `maxiter` iterations)
    and its held-out AUC and log-loss on the same rows."""
    import pandas as pd

    from bayes_lse.evaluate.metrics import auc, log_loss

    extra = ["--maxiter", str(maxiter)] if maxiter else []
    fit_s, fit_mb, p = _timed([exe, "fit", str(work / "log.csv"), "--method", "map", *extra, "-o",
                               str(work / "map_model"), "--overwrite", "--seed", str(seed)])
    iters = [line for line in p.stderr.splitlines() if line.startswith("MAP start")]
    pred_s, pred_mb, _ = _timed([exe, "predict", str(work / "map_model"), str(work / "heldout.csv"), "-o",
                                 str(work / "map_pred.csv"), "--overwrite", "-q"])
    pm = pd.read_csv(work / "map_pred.csv")["p_mean"].to_numpy()
    y = held["outcome"].to_numpy()
    return {"map_maxiter": maxiter or "default", "map_fit_seconds": round(fit_s, 1), "map_fit_peak_mb": round(fit_mb, 1),
            "map_last_progress": iters[-1] if iters else "", "map_predict_seconds": round(pred_s, 1),
            "map_predict_peak_mb": round(pred_mb, 1), "map_heldout_auc": round(float(auc(y, pm)), 4),
            "map_heldout_log_loss": round(float(log_loss(y, pm)), 4)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=25_000_000)
    ap.add_argument("--dir", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the log and the model folder")
    ap.add_argument("--reuse", action="store_true", help="reuse a log already written in --dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout-frac", type=float, default=0.01, help="students whose last-step answers are held out")
    ap.add_argument("--fit-args", default="", help="extra arguments of the amortised `bayes-lse fit` (one string)")
    ap.add_argument("--subsample", type=int, default=5000,
                    help="students of the full-batch ADVI comparison (0: none)")
    ap.add_argument("--compare-map", type=int, nargs="?", const=0, default=None, metavar="MAXITER",
                    help="also fit by MAP (its default 1,000 iterations, or MAXITER) and predict the same rows")
    a = ap.parse_args(argv)
    import shutil
    import tempfile

    work = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="lse_e2e_"))
    work.mkdir(parents=True, exist_ok=True)
    log, held, model, pred = work / "log.csv", work / "heldout.csv", work / "model", work / "pred.csv"
    n = int(round(a.rows / ROWS_PER_STUDENT))
    if a.reuse and log.exists():
        info = json.loads((work / "log.json").read_text())
    else:
        info = write_log(log, held, n, seed=a.seed, holdout_frac=a.holdout_frac)
        (work / "log.json").write_text(json.dumps(info))
    print(json.dumps(info), flush=True)
    exe = str(Path(sys.executable).with_name("bayes-lse"))
    fit_s, fit_mb, p = _timed([exe, "fit", str(log), "-o", str(model), "--overwrite", "--seed", str(a.seed),
                               *a.fit_args.split()])
    choices = [line for line in p.stderr.splitlines() if "amortised ADVI:" in line or "chose" in line.lower()]
    if not any("method amortised ADVI" in line for line in choices) and "--method" not in a.fit_args:
        raise SystemExit("the default fit did not choose amortised ADVI:\n" + "\n".join(choices))
    model_mb = sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) / 2**20
    pred_s, pred_mb, _ = _timed([exe, "predict", str(model), str(held), "-o", str(pred), "--overwrite", "-q"])
    import pandas as pd

    from bayes_lse.evaluate.metrics import auc, log_loss

    h = pd.read_csv(held)
    pr = pd.read_csv(pred)
    out = {**info, "fit_seconds": round(fit_s, 1), "fit_peak_mb": round(fit_mb, 1), "model_mb": round(model_mb, 1),
           "predict_seconds": round(pred_s, 1), "predict_peak_mb": round(pred_mb, 1),
           "heldout_auc": round(float(auc(h["outcome"].to_numpy(), pr["p_mean"].to_numpy())), 4),
           "heldout_log_loss": round(float(log_loss(h["outcome"].to_numpy(), pr["p_mean"].to_numpy())), 4),
           "true_p_auc": round(float(auc(h["outcome"].to_numpy(), h["p_true"].to_numpy())), 4),
           "fit_stderr_tail": choices[-6:]}
    if a.compare_map is not None:
        out.update(map_comparison(work, h, a.compare_map, a.seed, exe))
    if a.subsample:
        out.update(subsample_comparison(work, h, pr, a.subsample, a.seed, exe))
    from benchmarks.runner import emit_result

    quality = {k: out[k] for k in ("heldout_auc", "heldout_log_loss", "true_p_auc", "auc_amortised_on_subsample",
                                   "auc_full_batch_on_subsample", "auc_difference", "map_heldout_auc") if k in out}
    figures = {k: v for k, v in out.items() if k not in quality and k != "fit_stderr_tail"}
    emit_result("amortised_end_to_end", quality=quality, figures=figures,
                targets={"fit_seconds": "<= 900 (25M interactions, 2 cores)", "fit_peak_mb": "<= 4096",
                         "auc_difference": "within 0.01 of full-batch ADVI on the subsample"},
                notes=f"{out['rows']:,} rows; `bayes-lse fit FILE` with the defaults "
                      f"({'; '.join(out['fit_stderr_tail'][-4:])})")
    if not a.keep and not a.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
