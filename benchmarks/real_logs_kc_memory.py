"""Issue 15 screening: do study counts (lessons as item memory) or per-KC memory carry
information PFA's counts miss? PFA against PFA plus extra count features on the last
FRACTION of each held-out student's answers (default: both 10 % and 50 %), the test run
of a seeded split (20 % of students) or, with ``--folds K``, K-fold CV over all students.

    python -m benchmarks.real_logs_kc_memory TABLE.csv [--kc DATASHOP_EXPORT] [--fraction F ...]
        [--seed S] [--folds K] [--models NAME ...]

TABLE.csv as in `benchmarks.real_logs_hierarchical`. ``--kc`` names the DataShop export
the table was converted from; its KC columns (`data.datashop.datashop_modules`) give
each module's knowledge component: the module's tags other than its own id (MoFaCTS:
``KC (Cluster)``, the fact an item tests, 36 facts × 4 items; a study trial has the
same module id as the graded item it shows). Without ``--kc`` only the study-count
models run.

Features, each entering as log(1 + n) with its own coefficient (N(0, 1) prior, like
PFA's four; ``pfa`` = μ + θ_u + b_j + γ·log1p(S_u, F_u, S_uj, F_uj)):

| model | extra counts of the student before the answer |
|---|---|
| ``pfa+study`` | study trials of this item; of the other items of its KC |
| ``pfa+study-item`` | study trials of this item |
| ``pfa+kc`` | successes, failures on the other items of its KC |
| ``pfa+kc+study`` | both of the above |
| ``pfa-kc`` | classic per-KC PFA: the item counts (S_uj, F_uj) *replaced* by KC counts (item included) |

Information at a held-out answer: the success/failure counts (PFA's and the KC ones)
count training answers only (what ``pfa`` gets); the study counts count every study
trial before the answer, including held-out ones (a lesson reveals no outcome; the
LSE with lessons uses them the same way).

Measured 2026-12-04 on MoFaCTS (quoted in docs/results.md, "What did not close the gap
to PFA"): **no feature beats PFA.** 5-fold CV over all 478 students (``--folds 5``,
seed 0), model − pfa on the same answers (± bootstrap SE over students):

| model | last 10 %: 5,567 answers, ΔAUC (DeLong p) | Δlog-loss | last 50 %: 27,561 answers, ΔAUC (p) | Δlog-loss |
|---|---|---|---|---|
| ``pfa`` (AUC; log-loss) | 0.848 ± 0.005 | 0.464 ± 0.009 | 0.799 ± 0.004 | 0.544 ± 0.005 |
| ``pfa+study`` | −0.0007 ± 0.0004 (0.10) | +0.0008 ± 0.0005 | −0.0000 ± 0.0002 (0.88) | −0.0000 ± 0.0003 |
| ``pfa+study-item`` | −0.0005 ± 0.0002 (0.028) | +0.0004 ± 0.0003 | +0.0001 ± 0.0001 (0.33) | −0.0000 ± 0.0002 |
| ``pfa+kc`` | +0.0007 ± 0.0003 (0.045) | −0.0004 ± 0.0005 | −0.0004 ± 0.0002 (0.032) | +0.0004 ± 0.0003 |
| ``pfa+kc+study`` | −0.0001 ± 0.0005 (0.81) | +0.0004 ± 0.0007 | −0.0003 ± 0.0003 (0.22) | +0.0003 ± 0.0004 |
| ``pfa-kc`` (classic per-KC) | −0.035 ± 0.005 (1e-13) | +0.039 ± 0.006 | −0.028 ± 0.002 (1e-43) | +0.029 ± 0.003 |
| ``irt1pl`` | −0.035 ± 0.005 (4e-12) | +0.066 ± 0.007 | −0.025 ± 0.003 (2e-28) | +0.022 ± 0.003 |

The test run of seeds 0, 1, 2 (96 students each, 1,108–1,122 answers at 10 %,
5,507–5,547 at 50 %) agrees: every study/KC variant within ±0.002 AUC of PFA; the one
p < 0.05 of those 24 comparisons is ``pfa+kc`` at 10 %, seed 2 (+0.002, p 0.016),
while the same model at 50 % is −0.0004 (p 0.03) in the CV above — noise around zero.
On the answers that follow a study trial of the same item (679 at 10 %, 3,500 at
50 %, CV) the study counts make log-loss *worse* (``pfa+study-item`` +0.010 ± 0.002
and +0.004 ± 0.002), AUC within ±0.001. Fitted coefficients (test run, 10 %): PFA's own
[S_u, F_u, S_uj, F_uj] = [0.09, −0.02, 1.54, 0.96] (an item failure *raises* the next
pass probability: the feedback shows the answer); study counts of the item and of its
siblings +0.25 and +0.29, sibling successes/failures +0.09 and +0.11 — real but small
effects the item counts already carry. Per-KC memory *instead of* per-item memory
(``pfa-kc``) is as bad as no memory at all (1PL) on AUC: on MoFaCTS the item is the
unit of memory.

ASSISTments (``a09.csv``): nothing to screen. The problem-level files have no skill
column and no lessons; the skill-level chrispiech files cannot be joined to them
(338,001 vs 525,534 answers over 4,163 vs 4,217 students; only 273 of 1,879
(length, successes) signatures match one student uniquely) and are sorted by skill,
not time.

    python -m benchmarks.real_logs_kc_memory mofacts.csv --kc largerawsample.csv.gz --folds 5   # 2–3 min on one core, 1.9 GB
    python -m benchmarks.real_logs_kc_memory mofacts.csv --kc largerawsample.csv.gz [--seed 1]  # test run, 25 s
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd


# --------------------------------------------------------------------------- #
# counts
# --------------------------------------------------------------------------- #
def module_kcs(modules: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """module id → its knowledge components: its tags other than its own id (a module
    with no other tag is its own KC). `modules` as `datashop_modules` returns it."""
    out: dict[str, tuple[str, ...]] = {}
    for mid, tags in zip(modules["module_id"].astype(str), modules["tags"].astype(str)):
        kcs = tuple(sorted({t for t in tags.split(";") if t and t != mid} | set(out.get(mid, ()))))
        out[mid] = kcs
    return {m: (k if k else (m,)) for m, k in out.items()}


def memory_counts(table: pd.DataFrame, kcs: dict[str, tuple[str, ...]] | None) -> pd.DataFrame:
    """Per row of `table` (columns student_id, module_id, module_type, outcome, timestep;
    any order) the student's counts over the rows chronologically before it:
    ``study_item`` (lessons of this module id), ``study_sib`` (lessons of the other
    modules of its KCs), ``s_kc``/``f_kc`` (assessment successes/failures on its KCs,
    this module included) and ``s_sib``/``f_sib`` (the same without this module).
    Chronological order as in `evaluate.protocols`: timestep, assessments before the
    lesson of their step, table order. A module in several KCs sums over them."""
    from bayes_lse.evaluate.protocols import _chrono_key

    n = len(table)
    t = pd.DataFrame({
        "student": pd.factorize(table["student_id"].astype(str))[0],
        "module_id": table["module_id"].astype(str).to_numpy(),
        "module_type": table["module_type"].astype(str).to_numpy(),
        "timestep": table["timestep"].to_numpy(),
    })
    order = _chrono_key(t)
    f = t.iloc[order].reset_index(drop=True)
    is_les = (f["module_type"] == "lesson").to_numpy().astype(float)
    y = np.nan_to_num(table["outcome"].to_numpy(dtype=float)[order])
    succ = (1.0 - is_les) * y
    fail = (1.0 - is_les) * (1.0 - y)
    stu = f["student"].to_numpy()

    def earlier(values: np.ndarray, keys: list[np.ndarray]) -> np.ndarray:
        return pd.Series(values).groupby(keys).cumsum().to_numpy() - values

    mod = f["module_id"].to_numpy()
    study_item = earlier(is_les, [stu, mod])
    s_item, f_item = earlier(succ, [stu, mod]), earlier(fail, [stu, mod])
    out = np.zeros((n, 6))
    out[:, 0] = study_item
    if kcs is not None:
        # one row per (row, KC); counts per (student, KC), summed back per row
        kc_lists = [kcs.get(m, (m,)) for m in mod]
        rep = np.repeat(np.arange(n), [len(k) for k in kc_lists])
        kc = np.concatenate([np.asarray(k, dtype=object) for k in kc_lists])
        st_kc = earlier(is_les[rep], [stu[rep], kc])
        s_kc = earlier(succ[rep], [stu[rep], kc])
        f_kc = earlier(fail[rep], [stu[rep], kc])
        for j, v in ((1, st_kc), (2, s_kc), (3, f_kc)):
            out[:, j] = np.bincount(rep, v, minlength=n)
        out[:, 1] -= study_item * np.array([len(k) for k in kc_lists])
        out[:, 4] = out[:, 2] - s_item * np.array([len(k) for k in kc_lists])
        out[:, 5] = out[:, 3] - f_item * np.array([len(k) for k in kc_lists])
    res = np.empty_like(out)
    res[order] = out
    return pd.DataFrame(res, columns=["study_item", "study_sib", "s_kc", "f_kc", "s_sib", "f_sib"])


FEATURES = {
    "pfa+study": ["study_item", "study_sib"],
    "pfa+study-item": ["study_item"],
    "pfa+kc": ["s_sib", "f_sib"],
    "pfa+kc+study": ["s_sib", "f_sib", "study_item", "study_sib"],
    "pfa-kc": ["s_kc", "f_kc"],  # replaces PFA's item counts
}


def make_models(full_counts: pd.DataFrame, kcs: dict[str, tuple[str, ...]] | None,
                names: list[str]) -> dict[str, object]:
    """The PFA variants of `names` (keys of FEATURES). `full_counts`: `memory_counts` of
    the whole log table, looked up by the held-out rows' ``row`` (study counts only)."""
    import pymc as pm

    from bayes_lse.evaluate.baselines import PerformanceFactors

    class PFAMemory(PerformanceFactors):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name
            self.extra = FEATURES[name]
            self.replace_item = name == "pfa-kc"

        def fit_key(self) -> tuple:  # every variant is a model of its own
            return (*super().fit_key(), self.name)

        def build_model(self, log):
            self._train_counts = memory_counts(log.table, kcs)
            return super().build_model(log)

        def _combine(self, base: np.ndarray, extra: np.ndarray) -> np.ndarray:
            if self.replace_item:
                return np.column_stack([base[:, :2], extra])
            return np.column_stack([base, extra])

        def _features(self, frame: pd.DataFrame) -> np.ndarray:
            extra = self._train_counts[self.extra].to_numpy()[frame["row"].to_numpy()]
            return self._combine(super()._features(frame), np.log1p(extra))

        def _params(self, n_students: int, n_assessments: int) -> None:
            super(PerformanceFactors, self)._params(n_students, n_assessments)
            k = (2 if self.replace_item else 4) + len(self.extra)
            pm.Normal("coefficients", 0.0, self.priors["coefficient_sd"], shape=k)

        def _predict_features(self, fitted, rows: pd.DataFrame) -> np.ndarray:
            base = super()._predict_features(fitted, rows)
            sid = rows["student_id"].astype(str).to_numpy()
            mid = rows["module_id"].astype(str).to_numpy()
            cols = []
            h = fitted.history
            hy = h["outcome"].to_numpy(dtype=float)
            hk = [kcs.get(m, (m,)) for m in h["module_id"].astype(str)] if kcs is not None else None
            for c in self.extra:
                if c.startswith("study"):  # every lesson before the answer (held-out ones too)
                    cols.append(full_counts[c].to_numpy()[rows["row"].to_numpy()])
                    continue
                # training answers only, as PFA's own counts
                v = hy if c[0] == "s" else 1.0 - hy
                rep = np.repeat(np.arange(len(h)), [len(k) for k in hk])
                tot = pd.Series(v[rep]).groupby([h["student_id"].astype(str).to_numpy()[rep],
                                                 np.concatenate([np.asarray(k, dtype=object) for k in hk])]).sum()
                rk = [kcs.get(m, (m,)) for m in mid]
                rrep = np.repeat(np.arange(len(rows)), [len(k) for k in rk])
                idx = pd.MultiIndex.from_arrays([sid[rrep], np.concatenate([np.asarray(k, dtype=object) for k in rk])])
                val = np.bincount(rrep, tot.reindex(idx).fillna(0.0).to_numpy(), minlength=len(rows))
                if c.endswith("sib"):  # minus this module's own counts
                    own = pd.Series(v).groupby([h["student_id"].astype(str).to_numpy(),
                                                h["module_id"].astype(str).to_numpy()]).sum()
                    val = val - own.reindex(pd.MultiIndex.from_arrays([sid, mid])).fillna(0.0).to_numpy() \
                        * np.array([len(k) for k in rk])
                cols.append(val)
            return self._combine(base, np.log1p(np.column_stack(cols)))

    return {n: PFAMemory(n) for n in names}


def main(argv: list[str] | None = None) -> None:
    from bayes_lse.data.datashop import datashop_modules
    from bayes_lse.data.log import read_interactions
    from bayes_lse.evaluate.metrics import auc
    from bayes_lse.evaluate.protocols import evaluate, paired_comparison

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--kc", help="the DataShop export the table came from (KC columns)")
    ap.add_argument("--fraction", type=float, nargs="+", default=[0.1, 0.5])
    ap.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    ap.add_argument("--folds", type=int, default=1,
                    help="K >= 2: K-fold CV over all students (no test set), pooled; default 1: the test run")
    ap.add_argument("--models", nargs="+", default=None, help=f"from {', '.join(FEATURES)}")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)

    log = read_interactions(args.table)
    kcs = module_kcs(datashop_modules(args.kc)) if args.kc else None
    has_lessons = bool((log.table["module_type"] == "lesson").any())
    names = args.models or [n for n in FEATURES if (kcs is not None or "kc" not in n)
                            and (has_lessons or "study" not in n)]
    if not names:
        raise SystemExit("nothing to screen: the log has no lessons and no --kc was given")
    full = memory_counts(log.table, kcs)
    for frac in args.fraction:
        t0 = time.perf_counter()
        models = {"pfa": "pfa", **make_models(full, kcs, names), "irt1pl": "irt1pl"}
        res = evaluate(log, models, folds=args.folds, test_students=0.0 if args.folds > 1 else 0.2,
                       protocol="last-fraction", fraction=frac, seed=args.seed, n_boot=100, reference="pfa",
                       keep_fits=True, progress=lambda m: print(m, flush=True))
        print(f"\n=== last {frac:.0%}, seed {args.seed}, folds {args.folds}: {time.perf_counter() - t0:.0f} s ===")
        print(res.to_text())
        cmp = res.comparisons
        print("\nmodel − pfa, more digits:")
        for r in cmp.itertuples():
            print(f"  {r.model:14s} [{r.set}] n {r.n}: ΔAUC {r.auc_diff:+.4f} ± {r.auc_diff_se:.4f} "
                  f"(DeLong p {r.auc_diff_delong_p:.2g}), "
                  f"Δlog-loss {r.log_loss_diff:+.4f} ± {r.log_loss_diff_se:.4f}")
        sc = res.predictions[res.predictions["scored"]].reset_index(drop=True)
        fr = full.iloc[sc["row"].to_numpy()].reset_index(drop=True)
        subsets = {"after a study trial of the item": fr["study_item"] > 0,
                   "after a study trial of a sibling item": fr["study_sib"] > 0}
        if kcs is not None:
            subsets["after an answer to a sibling item"] = (fr["s_sib"] + fr["f_sib"]) > 0
        print(f"\nsubsets of the {len(sc)} scored answers (full-log counts), model − pfa:")
        print(f"{'subset':40s} {'n':>5s} {'model':14s} {'pfa AUC':>8s} {'ΔAUC':>15s} {'DeLong p':>9s} "
              f"{'Δlog-loss':>16s}")
        for label, m in subsets.items():
            sub = sc[m.to_numpy()]
            y = sub["outcome"].to_numpy()
            if len(sub) < 10 or len(np.unique(y)) < 2:
                print(f"{label:40s} {len(sub):5d} (too few to score)")
                continue
            for name in names:
                c = paired_comparison(y, sub[name].to_numpy(), sub["pfa"].to_numpy(), sub["student_id"].to_numpy(),
                                      n_boot=100, seed=0)
                print(f"{label:40s} {len(sub):5d} {name:14s} {auc(y, sub['pfa'].to_numpy()):8.3f} "
                      f"{c['auc_diff']:+.3f} ± {c['auc_diff_se']:.3f} {c['auc_diff_delong_p']:9.2g} "
                      f"{c['log_loss_diff']:+.4f} ± {c['log_loss_diff_se']:.4f}")
        for name, runs in res.fits.items():
            for run, fb in runs.items():
                if "coefficients" in getattr(fb, "params", {}):
                    print(f"{name} ({run}) coefficients: {np.round(fb.params['coefficients'], 3).tolist()}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
