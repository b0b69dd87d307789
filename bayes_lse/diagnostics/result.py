"""What a check returns (`CheckResult`) and what `diagnose` returns (`Diagnostics`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import xarray as xr

if TYPE_CHECKING:
    from bayes_lse.diagnostics.predictive import Predictive

__all__ = ["STATUS_ORDER", "TABLE_INFO", "VERDICT_COLUMNS", "CheckResult", "Diagnostics", "grade"]

STATUS_ORDER = {"ok": 0, "warn": 1, "fail": 2}
VERDICT_COLUMNS = ["check", "status", "value", "threshold", "message"]

TABLE_INFO: dict[str, tuple[str, str]] = {
    "identified_summary": (
        "Convergence of identified quantities",
        "R-hat, ESS and MCSE per kind of quantity that does not depend on how skills are labelled.",
    ),
    "identified": (
        "Identified quantities, worst first",
        "One row per quantity; sorted by R-hat (worst first).",
    ),
    "raw_summary": (
        "Raw coordinates after aligning skills across chains",
        "Per-dimension parameters; R-hat before and after relabelling skills chain by chain.",
    ),
    "raw": ("Raw coordinates (aligned), worst first", "One row per coordinate; sorted by R-hat."),
    "alignment": (
        "Skill alignment",
        "Which chains had their skill labels permuted to match the reference (aligned skill k = original skill permutation[k]).",
    ),
    "chains": ("Sampler, per chain", "Divergences, tree depth, E-BFMI and how far each chain sits from the others."),
    "divergent_draws": ("Divergent transitions", "Chain and draw of every divergent transition (capped)."),
    "divergence_implicated": (
        "Quantities that differ most in divergent draws",
        "z = (mean in divergent draws − mean elsewhere) / sd; large |z| points at where the sampler struggles.",
    ),
    "advi": ("ADVI convergence", "Summary of the loss (negative ELBO) history."),
    "loss_history": ("ADVI loss history", "Loss (negative ELBO) at every iteration."),
    "map": ("MAP optimiser, per start", "L-BFGS-B result of every start; the best one is kept."),
    "calibration": (
        "Calibration (binned)",
        "Observed pass rate against the mean predicted pass probability (leave-one-out when PSIS-LOO is "
        "available, else in-sample), with 90% predictive intervals.",
    ),
    "students": (
        "Per-student pass rates",
        "Observed against predicted pass rate with 90% posterior predictive interval; the most surprising first.",
    ),
    "assessments": (
        "Per-assessment pass rates",
        "Observed against predicted pass rate with 90% posterior predictive interval; the most surprising first.",
    ),
    "loo": ("PSIS-LOO", "Expected log pointwise predictive density of held-out answers (ArviZ)."),
    "pareto_k": ("Pareto k", "How reliable each row's importance-sampling LOO estimate is."),
    "pareto_k_worst": ("Rows with the largest Pareto k", "The answers LOO struggles with most."),
    "data_sufficiency": (
        "Data per module and student",
        "Answers per assessment, uses per lesson, answers per student; 'thin' ones have fewer than the "
        "threshold, and their parameters stay close to the prior.",
    ),
    "thin_entities": ("Thinnest modules and students", "The assessments, lessons and students with the least data."),
}


def grade(ok: bool, warn: bool) -> str:
    """``"ok"`` if `ok`, else ``"warn"`` if `warn`, else ``"fail"``."""
    if ok:
        return "ok"
    return "warn" if warn else "fail"


@dataclass
class CheckResult:
    """What one check found: its verdict rows, the tables behind them, and notes.

    A check that does not apply returns an empty result; `diagnose` merges the results
    in a fixed order, so the verdict table and the report keep one order.
    """

    verdicts: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, check: str, status: str, value: Any, threshold: Any, message: str) -> CheckResult:
        """Append one verdict row (``status`` is ``"ok"``, ``"warn"`` or ``"fail"``); returns self."""
        self.verdicts.append({"check": check, "status": status, "value": value, "threshold": threshold,
                              "message": message})
        return self

    def merge(self, other: CheckResult) -> CheckResult:
        """Append another result's verdicts, tables (a later table replaces one of the same name in
        place) and notes; returns self."""
        self.verdicts.extend(other.verdicts)
        self.tables.update(other.tables)
        self.notes.extend(other.notes)
        return self

    def verdict_table(self) -> pd.DataFrame:
        """The verdict rows as a DataFrame with columns check, status, value, threshold, message."""
        return pd.DataFrame(self.verdicts, columns=VERDICT_COLUMNS)


@dataclass
class Diagnostics:
    """Result of `diagnose`: a verdict table and the labelled tables behind it."""

    method: str
    verdicts: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    thresholds: dict[str, float]
    notes: list[str] = field(default_factory=list)
    aligned: xr.Dataset | None = field(default=None, repr=False)
    identified: xr.Dataset | None = field(default=None, repr=False)
    predictive: Predictive | None = field(default=None, repr=False)
    timings: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def status(self) -> str:
        """Worst status over all checks: 'ok', 'warn' or 'fail'."""
        if self.verdicts.empty:
            return "ok"
        return max(self.verdicts["status"], key=STATUS_ORDER.__getitem__)

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def verdict_line(self) -> str:
        """One line a user reads after a fit: the overall status, how many checks
        warn or fail, and the worst check with what to do about it.

        Issue 20: `fit` printed "fitted in 74.9 s; model saved" while its own checks
        said FAIL (R-hat 1.14, bulk ESS 10); this line is printed after every fit.
        """
        n = len(self.verdicts)
        if not n:
            return "diagnostics: OK (no checks apply)"
        status = self.status
        counts = self.verdicts["status"].value_counts()
        head = f"diagnostics: {status.upper()} ({counts.get('fail', 0)} fail, {counts.get('warn', 0)} warn of {n} checks)"
        if status == "ok":
            return head
        rank = self.verdicts["status"].map(STATUS_ORDER)
        worst = self.verdicts.loc[rank.idxmax()]
        message = " ".join(str(worst.get("message", "")).split())
        return f"{head}; worst: {worst['check']} — {message}"

    def to_record(self) -> dict[str, Any]:
        """The overall verdict as a small JSON-able dict: ``status``, ``line``
        (`verdict_line`), the ``fail`` / ``warn`` / ``checks`` counts and the ``worst``
        check's name (None when all pass).

        What a model folder keeps of its diagnostics (`FittedLSE.diagnostics` records it
        in the tree, so `save` writes it): `predict` and `recommend` read it to warn
        about a failed fit without diagnosing again.
        """
        counts = self.verdicts["status"].value_counts() if len(self.verdicts) else pd.Series(dtype=int)
        worst = None
        if self.status != "ok":
            worst = str(self.verdicts.loc[self.verdicts["status"].map(STATUS_ORDER).idxmax(), "check"])
        return {"status": self.status, "line": self.verdict_line(), "fail": int(counts.get("fail", 0)),
                "warn": int(counts.get("warn", 0)), "checks": len(self.verdicts), "worst": worst}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name == "verdicts":
            return self.verdicts
        return self.tables[name]

    def check(self, name: str) -> pd.Series:
        """The verdict row of one check, by its name."""
        rows = self.verdicts[self.verdicts["check"] == name]
        if rows.empty:
            raise KeyError(f"no check named {name!r}; checks: {list(self.verdicts['check'])}")
        return rows.iloc[0]

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", 80, "display.width", 160):
            return (f"Diagnostics({self.method}, status={self.status})\n"
                    f"{self.verdicts[['check', 'status', 'value', 'threshold']].to_string(index=False)}")
