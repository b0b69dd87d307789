"""The hierarchical model by NUTS on a real-log subset (issue 15): divergences, R-hat and
bulk ESS of the identified quantities, and the learned prior scales.

100 MoFaCTS students (seed 0) with their study trials as lessons, d = 1, history term
on, `hierarchical=True`, NUTS at the package defaults (nutpie, 4 chains x 1,000 draws).
Target: no divergences and bulk ESS >= 400 on every identified quantity.  ``--tags``
fits with the export's modules table (tag effects on the assessment biases, σ_τ learned).

    python -m benchmarks.bench_hierarchical_nuts [--quick] [--tags]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MOFACTS = SHARED / "mofacts_statistics_cloze" / "largerawsample.csv.gz"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="30 students, 2 chains x 300 draws")
    ap.add_argument("--students", type=int, default=None)
    ap.add_argument("--tags", action="store_true", help="with the export's modules table (tag effects)")
    args = ap.parse_args(argv)
    from benchmarks.runner import emit_result

    if not MOFACTS.is_file():
        emit_result("hierarchical_nuts", notes="skipped", skipped=f"{MOFACTS} is absent")
        return
    import numpy as np

    import bayes_lse as bl
    from bayes_lse.data.datashop import read_datashop

    table = read_datashop(MOFACTS)
    table = table.table if hasattr(table, "table") else table
    n = args.students or (30 if args.quick else 100)
    students = np.sort(table["student_id"].astype(str).unique())
    keep = set(np.random.default_rng(0).choice(students, n, replace=False))
    sub = table[table["student_id"].astype(str).isin(keep)]
    log = bl.read_interactions(sub)
    fit_kw = dict(chains=2, draws=300, tune=300) if args.quick else {}
    t0 = time.perf_counter()
    if args.tags:
        from bayes_lse.data.datashop import datashop_modules
        from bayes_lse.data.modules import read_modules

        fit_kw["modules"] = read_modules(datashop_modules(MOFACTS), name=str(MOFACTS))
    fit = bl.LatentSkillEmbedding(n_skills=1, hierarchical=True, history=True).fit(log, method="nuts", seed=0,
                                                                                    progressbar=False, **fit_kw)
    seconds = time.perf_counter() - t0
    d = fit.diagnostics()
    summary = d.tables["identified_summary"].set_index("variable")
    divergences = int(np.asarray(fit.idata["sample_stats"]["diverging"].values).sum())
    print(f"{n} students, {len(sub)} rows; NUTS {seconds:.0f} s; divergences {divergences}")
    print(summary[["n", "max_rhat", "min_ess_bulk", "min_ess_tail"]].round(3).to_string())
    print(d.verdict_line())
    scales = {k: float(fit.idata["posterior"][k].mean()) for k in fit.idata["posterior"].data_vars
              if k.startswith(("sigma_", "mu_")) and fit.idata["posterior"][k].ndim == 2}
    print("learned prior scales (posterior means):", {k: round(v, 3) for k, v in scales.items()})
    emit_result(
        "hierarchical_nuts",
        quality={"divergences": divergences, "max_rhat": float(summary["max_rhat"].max()),
                 "min_ess_bulk": float(summary["min_ess_bulk"].min()),
                 "worst_ess_quantity": str(summary["min_ess_bulk"].idxmin())},
        figures={"students": n, "rows": len(sub), "nuts_seconds": round(seconds, 1), **scales},
        targets={"divergences": "0", "min_ess_bulk": ">= 400 on every identified quantity"},
        notes="MoFaCTS subset, seed 0; shared machine",
    )


if __name__ == "__main__":
    main()
