"""One self-contained HTML report of a fit: verdicts first, then data, config, pictures,
tables and versions.

The page embeds its pictures as base64 PNG and its CSS (and a few lines of script
for sortable tables) inline: nothing is fetched from the network, so it opens
offline and can be mailed to a colleague.  Jinja2 renders it with autoescaping on,
so ids from the user's data are always text, never markup.  The file is written to
a temporary file next to the target and renamed over it, never left half-written.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from jinja2 import Environment, PackageLoader, StrictUndefined

from bayes_lse.core.files import new_file_mode
from bayes_lse.diagnostics import TABLE_INFO, Diagnostics, diagnose
from bayes_lse.diagnostics.arrays import as_array, dim_labels, group_of, json_attr
from bayes_lse.model import terms as eq

__all__ = ["render_report", "write_report"]

#: Libraries whose versions the report lists.
LIBRARIES = ("bayes-lse", "numpy", "scipy", "pandas", "xarray", "pymc", "pytensor", "nutpie", "arviz",
             "arviz-base", "arviz-stats", "arviz-plots", "matplotlib", "jinja2")
#: Draws used for the embedding tables (evenly thinned).
MAX_TABLE_DRAWS = 1000
#: Long per-entity tables, folded (<details>) so the page stays short; links open them.
FOLDED_TABLES = ("identified", "raw", "divergent_draws", "pareto_k", "pareto_k_worst", "students", "assessments",
                 "thin_entities", "pava")
#: Sampler pictures shown right above the table they explain (figure key -> table key).
FIGURE_BESIDE = {"trace": "identified_summary", "energy": "chains", "elbo": "advi"}
#: Tables shown in the "diagnostic tables" section, in this order.
DIAGNOSTIC_TABLES = ("identified_summary", "raw_summary", "alignment", "chains", "divergence_implicated",
                     "divergent_draws", "map", "advi", "loo", "pareto_k", "pareto_k_worst", "calibration",
                     "students", "assessments", "data_sufficiency", "thin_entities", "identified", "raw")


#: Where the evidence behind each check sits, by the check's name prefix: table ids
#: ("t-" + table key) and figure ids ("fig-" + figure key), best first; only those on the
#: page are linked.
EVIDENCE = (
    ("R-hat (identified)", ("t-identified_summary", "t-identified", "fig-trace")),
    ("Bulk ESS", ("t-identified_summary", "t-identified", "fig-trace")),
    ("Tail ESS", ("t-identified_summary", "t-identified", "fig-trace")),
    ("MCSE", ("t-identified_summary", "t-identified")),
    ("R-hat (raw", ("t-raw_summary", "t-raw", "t-alignment")),
    ("Skill alignment", ("t-alignment", "t-chains")),
    ("Divergences", ("t-divergence_implicated", "t-divergent_draws", "t-chains")),
    ("Tree depth", ("t-chains",)),
    ("E-BFMI", ("t-chains", "fig-energy")),
    ("Calibration", ("fig-calibration", "t-calibration", "t-pava")),
    ("Pass rates per student", ("t-students", "fig-pass-rates")),
    ("Pass rates per assessment", ("t-assessments", "fig-pass-rates")),
    ("PSIS-LOO", ("t-pareto_k", "t-pareto_k_worst", "t-loo")),
    ("Data sufficiency", ("t-data_sufficiency", "t-thin_entities")),
    ("MAP", ("t-map",)),
    ("ADVI", ("t-advi", "fig-elbo")),
)

#: Plain definitions of the terms the page uses (shown in the glossary and as tooltips).
GLOSSARY = {
    "identified quantity": "A number the data can pin down whatever the labels of the skill axes: pass "
                           "probabilities, gain and prerequisite lengths, D-values, biases. Raw skill "
                           "coordinates are not identified (skills can be swapped or rotated), so the "
                           "verdicts rest on identified quantities.",
    "R-hat": "Compares the spread within each chain with the spread between chains. 1.00 means the chains "
             "agree; above 1.01 they have not settled on the same answer yet.",
    "ESS": "Effective sample size: how many independent draws the correlated draws are worth. Bulk ESS "
           "is for means and medians, tail ESS for the 5 % and 95 % quantiles; below ~400 summaries are noisy.",
    "MCSE": "Monte Carlo standard error: how far a posterior mean could move if the sampler were run again.",
    "divergence": "A NUTS step where the numerical integrator broke down; the posterior near such draws "
                  "may be missed, so even a few matter.",
    "tree depth saturation": "NUTS hit its maximum trajectory length: the sampler is slow there and "
                             "may not explore the whole posterior.",
    "E-BFMI": "Energy Bayesian fraction of missing information, per chain: below 0.3 NUTS moves too "
              "slowly between energy levels, usually because of hard geometry such as a funnel.",
    "skill alignment": "Skill axes carry no names, so two chains can find the same solution with the skills "
                       "swapped. The check relabels each chain to match the others; its value is the number "
                       "of chains relabelled. It is informational (always ok): relabelling is expected, "
                       "and the tables and pictures use the aligned draws.",
    "relevance (D-value)": "D(s, a) = s·a/|a| − |a|: how far the student's skill along the assessment's "
                           "direction exceeds what it requires. The pass probability is σ(D + biases).",
    "assessment offset": "g_j − |a_j|: an assessment's bias minus its requirement length. The likelihood "
                         "sees only this difference, so it is what the checks judge.",
    "calibration": "Do predicted pass probabilities match observed pass rates? Answers are binned by "
                   "prediction; each bin's observed rate should fall inside its 90 % predictive band.",
    "Pareto k": "From leave-one-out cross-validation (PSIS-LOO): above 0.7 an answer is so influential that "
                "its leave-one-out estimate is unreliable.",
    "data sufficiency": "Modules with fewer than 5 answers or uses and students with fewer than 3 answers are "
                        "thin: their estimates are mostly prior.",
}


def _evidence_links(check: str, on_page: set[str]) -> list[dict[str, str]]:
    for prefix, anchors in EVIDENCE:
        if check.startswith(prefix):
            return [{"href": f"#{a}", "text": _anchor_text(a)} for a in anchors if a in on_page]
    return []


def _glossary_term(check: str) -> str | None:
    for key, term in (("R-hat", "R-hat"), ("ESS", "ESS"), ("MCSE", "MCSE"), ("Divergences", "divergence"),
                      ("Tree depth", "tree depth saturation"), ("E-BFMI", "E-BFMI"),
                      ("Skill alignment", "skill alignment"), ("Calibration", "calibration"),
                      ("Pareto", "Pareto k"), ("Data sufficiency", "data sufficiency")):
        if key in check:
            return term
    return None


def _anchor_text(anchor: str) -> str:
    kind, _, key = anchor.partition("-")
    return ("figure: " if kind == "fig" else "table: ") + key.replace("_", " ").replace("-", " ")


# --------------------------------------------------------------------------- formatting
def _samples_from(da: xr.DataArray, *tail: str) -> np.ndarray:
    """(sample, *tail) array from (chain, draw, *tail)."""
    a = as_array(da, *tail)
    return a.reshape(-1, *a.shape[2:])


def _cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "—"
        if float(v).is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


def _table(df: pd.DataFrame, *, key: str, title: str, description: str = "", max_rows: int | None = None,
           status_col: str | None = None) -> dict[str, Any]:
    """A DataFrame as plain strings for the template (which escapes them)."""
    total = len(df)
    shown = df if max_rows is None else df.head(max_rows)
    rows = []
    for _, r in shown.iterrows():
        cells = []
        for c in shown.columns:
            v = r[c]
            cls = "num" if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) else ""
            if c == status_col:
                cls = f"status status-{v}"
            cells.append({"text": _cell(v), "cls": cls})
        rows.append(cells)
    note = f"Showing {len(shown)} of {total:,} rows." if len(shown) < total else ""
    return {"key": key, "title": title, "description": description, "columns": [str(c) for c in shown.columns],
            "rows": rows, "note": note}


def _kv_table(items: dict[str, Any], key: str, title: str, description: str = "") -> dict[str, Any]:
    df = pd.DataFrame({"setting": list(items), "value": [_cell(v) for v in items.values()]})
    return _table(df, key=key, title=title, description=description)


def _flatten_config(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten_config(v, name + "."))
        else:
            out[name] = v
    return out


def _png(fig: Any, dpi: int) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- sections
def _data_summary(idata: xr.DataTree) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]:
    inter = group_of(idata, "interactions")
    obs = group_of(idata, "observed_data")
    cd = group_of(idata, "constant_data")
    facts: dict[str, Any] = {}
    dist_rows = []

    def dist(name: str, values: np.ndarray) -> None:
        if len(values):
            dist_rows.append({"per": name, "min": float(np.min(values)), "median": float(np.median(values)),
                              "mean": float(np.mean(values)), "max": float(np.max(values))})

    if inter is not None and "student_id" in inter:
        t = pd.DataFrame({k: np.asarray(inter[k].values) for k in inter.data_vars if inter[k].dims == ("row",)})
        is_a = t["module_type"].astype(str) == "assessment" if "module_type" in t else pd.Series(True, index=t.index)
        answers = t[is_a]
        lessons = t[~is_a]
        facts.update({
            "interactions (rows)": len(t),
            "students": t["student_id"].nunique(),
            "assessments": answers["module_id"].nunique() if "module_id" in t else np.nan,
            "lessons": lessons["module_id"].nunique() if "module_id" in t else 0,
            "answers": len(answers),
            "lesson completions": len(lessons),
            "overall pass rate": float(pd.to_numeric(answers["outcome"], errors="coerce").mean()) if "outcome" in t else np.nan,
        })
        per_student = t.groupby("student_id").size().to_numpy()
        dist("interactions per student", per_student)
        dist("answers per student", answers.groupby("student_id").size().reindex(t["student_id"].unique(), fill_value=0).to_numpy())
        if len(lessons):
            dist("lessons per student", lessons.groupby("student_id").size().reindex(t["student_id"].unique(), fill_value=0).to_numpy())
        if "module_id" in t and len(answers):
            g = answers.assign(outcome=pd.to_numeric(answers["outcome"], errors="coerce")).groupby("module_id")["outcome"]
            dist("answers per assessment", g.size().to_numpy())
            dist("pass rate per assessment", g.mean().to_numpy())
            gs = answers.assign(outcome=pd.to_numeric(answers["outcome"], errors="coerce")).groupby("student_id")["outcome"]
            dist("pass rate per student", gs.mean().to_numpy())
    elif obs is not None and "outcome" in obs:
        y = np.asarray(obs["outcome"].values, dtype=float)
        facts.update({"answers": len(y), "overall pass rate": float(np.nanmean(y)) if len(y) else np.nan})
        if cd is not None and "obs_student" in cd:
            su = np.asarray(cd["obs_student"].values).astype(int)
            facts["students"] = len(np.unique(su))
            dist("answers per student", np.bincount(su)[np.bincount(su) > 0])
    post = group_of(idata, "posterior")
    if post is not None and "state" in post.sizes:
        facts["latent states (student × step)"] = post.sizes["state"]
    if cd is not None and "transition" in cd.sizes:
        facts["transitions"] = cd.sizes["transition"]
    dist_t = pd.DataFrame(dist_rows)
    return (_kv_table(facts, "data", "Data summary", "The training interactions the model saw."),
            _table(dist_t, key="data_dist", title="History lengths and pass rates") if len(dist_t) else None,
            facts)


def _embedding_tables(idata: xr.DataTree, aligned: xr.Dataset, max_rows: int) -> list[dict[str, Any]]:
    from bayes_lse.diagnostics.arrays import thin_draws

    idx = thin_draws(aligned.sizes["chain"], aligned.sizes["draw"], MAX_TABLE_DRAWS)
    post = aligned.isel(draw=idx)
    d = post.sizes.get("skill", 1)
    shown = min(d, 6)

    def vec(m: np.ndarray) -> str:
        s = ", ".join(f"{x:.2f}" for x in m[:shown])
        return f"({s}{', …' if d > shown else ''})"

    inter = group_of(idata, "interactions")
    t = None
    if inter is not None and "module_id" in inter:
        t = pd.DataFrame({k: np.asarray(inter[k].values) for k in ("module_id", "module_type", "outcome")
                          if k in inter})
    tables = []
    if "requirement" in post:
        a = _samples_from(post["requirement"], "assessment", "skill")
        n = eq.norm(a)
        lab = dim_labels(post, "assessment", post.sizes["assessment"])
        df = pd.DataFrame({"assessment": lab, "|a| mean": n.mean(0), "|a| 5%": np.percentile(n, 5, 0),
                           "|a| 95%": np.percentile(n, 95, 0)})
        if "assessment_bias" in post:
            df["bias mean"] = _samples_from(post["assessment_bias"], "assessment").mean(0)
        df["requirement a (aligned)"] = [vec(m) for m in a.mean(0)]
        if t is not None and "outcome" in t:
            ans = t[t["module_type"].astype(str) == "assessment"]
            g = ans.assign(outcome=pd.to_numeric(ans["outcome"], errors="coerce")).groupby(ans["module_id"].astype(str))["outcome"]
            df["answers"] = df["assessment"].map(g.size()).fillna(0).astype(int)
            df["pass rate"] = df["assessment"].map(g.mean())
        raw = idata["posterior"]
        if "sigma_assessment_bias" in raw and "answers" in df and "pass rate" in df:
            # how much each assessment's bias was pulled towards the population mean μ_g:
            # the prior's share of its posterior precision, 1/σ_g² over (1/σ_g² + F_j), with
            # the likelihood's curvature F_j ≈ n_j·p_j(1 − p_j) from its answers
            prec = 1.0 / float(np.mean(np.asarray(raw["sigma_assessment_bias"].values)) ** 2)
            pr = df["pass rate"].fillna(0.5).clip(0.02, 0.98)
            df["pooled to μ_g"] = prec / (prec + df["answers"] * pr * (1 - pr))
        df = df.sort_values("|a| mean", ascending=False)
        tables.append(_table(df, key="emb_assessments", max_rows=max_rows,
                             title=f"Assessments: the {min(max_rows, len(df))} hardest by |a|",
                             description="|a| is the difficulty (identified); the requirement vector's "
                                         "coordinates are shown after aligning skills across chains."))
    if "gain" in post and post.sizes.get("lesson", 0):
        g_ = _samples_from(post["gain"], "lesson", "skill")
        n = eq.norm(g_)
        lab = dim_labels(post, "lesson", post.sizes["lesson"])
        df = pd.DataFrame({"lesson": lab, "|l| mean": n.mean(0), "|l| 5%": np.percentile(n, 5, 0),
                           "|l| 95%": np.percentile(n, 95, 0)})
        if "prerequisite" in post:
            q = _samples_from(post["prerequisite"], "lesson", "skill")
            df["|q| mean"] = eq.norm(q).mean(0)
        df["gain l (aligned)"] = [vec(m) for m in g_.mean(0)]
        if "prerequisite" in post:
            df["prerequisite q (aligned)"] = [vec(m) for m in q.mean(0)]
        if t is not None:
            les = t[t["module_type"].astype(str) == "lesson"]
            df["times taken"] = df["lesson"].map(les.groupby(les["module_id"].astype(str)).size()).fillna(0).astype(int)
        df = df.sort_values("|l| mean", ascending=False)
        tables.append(_table(df, key="emb_lessons", max_rows=max_rows,
                             title=f"Lessons: the {min(max_rows, len(df))} largest gains |l|",
                             description="|l| is how much a lesson moves a student who meets its prerequisites "
                                         "(|q| = how demanding they are)."))
    hyper = [h for h in eq.LEARNED_SCALES if h in idata["posterior"]]
    if hyper:
        rows = []
        for h in hyper:
            x = np.asarray(idata["posterior"][h].values, dtype=float).ravel()
            rows.append({"hyperparameter": h, "mean": x.mean(), "5%": np.percentile(x, 5), "95%": np.percentile(x, 95),
                         "learned": "yes" if x.std() > 0 or idata.attrs.get("method") != "map"
                         or h in ("sigma_student_bias", "sigma_assessment_bias", "mu_assessment_bias",
                                  "sigma_tag_bias") else
                         "no (MAP: held at the hyperprior's scale)"})
        tables.append(_table(pd.DataFrame(rows), key="emb_hyper", max_rows=max_rows,
                             title="Learned prior scales (hierarchical model)",
                             description="The population the modules and students are pooled towards: each "
                                         "group's prior scale σ and the assessment biases' mean μ_g "
                                         "(σ_tag_bias: how far the tags' effects spread). The "
                                         "assessments table's 'pooled to μ_g' column says how far each bias "
                                         "was pulled towards μ_g (1: all prior, 0: all data)."))
    return tables


def _versions(idata: xr.DataTree) -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(),
                           "bayes-lse (at fit time)": idata.attrs.get("bayes_lse_version", "unknown")}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def _figures(idata: xr.DataTree, diag: Diagnostics, dpi: int, skills: Any, lesson: Any,
             notes: list[str]) -> list[dict[str, str]]:
    from bayes_lse.report import plots

    method = diag.method
    specs: list[tuple[str, str, str, Callable[[], Any]]] = [
        ("skill-space", "Latent skill space",
         "Assessments as points (requirements), lessons as arrows from the origin (gains; triangles mark "
         "prerequisites), and the students with the longest histories moving through the space, with "
         "credible ellipses per step. When paths run far beyond the modules, a second panel zooms on the "
         "assessments and lessons. In a MAP fit points often sit exactly on an axis: the mode of a "
         "non-negative posterior has coordinates at 0; that is the fit, not the drawing.",
         lambda: plots.plot_skill_space(idata, aligned=diag.aligned, skills=skills)),
        ("gain-field", "Vector field of skill gains",
         "Where a student at s would move after the lesson: gains shrink where prerequisites are not met.",
         lambda: plots.plot_gain_field(idata, aligned=diag.aligned, lesson=lesson, skills=skills)),
        ("calibration", "Calibration",
         "Are predicted pass probabilities right on average? The curve should stay inside its band.",
         lambda: plots.plot_calibration(diag)),
        ("pass-rates", "Pass rates per student and per assessment",
         "Observed against predicted pass rates; red points fall outside their 90% predictive interval.",
         lambda: plots.plot_pass_rates(diag)),
    ]
    if method == "nuts":
        specs += [
            ("trace", "Trace and rank plots",
             "The identified quantities with the worst R-hat. Chains should overlap, rank histograms be flat.",
             lambda: plots.plot_trace_rank(diag)),
            ("energy", "Energy", "Marginal energy against energy transitions: similar widths mean NUTS explores well.",
             lambda: plots.plot_energy(idata)),
        ]
    elif method == "advi":
        specs.append(("elbo", "ELBO", "The loss should fall and then level off.", lambda: plots.plot_elbo(idata)))
    out = []
    for key, title, caption, make in specs:
        try:
            fig = make()
            out.append({"key": key, "title": title, "caption": caption, "png": _png(fig, dpi)})
        except Exception as err:  # noqa: BLE001 - one broken picture must not lose the report
            notes.append(f"The picture “{title}” could not be drawn: {type(err).__name__}: {err}")
    return out


def _interval(x: np.ndarray) -> str:
    """Mean [5 %, 95 %] over the draws; a point estimate (MAP: one draw) has no interval."""
    lo, hi = np.quantile(x, [0.05, 0.95])
    return f"{np.mean(x):.2f}" if hi - lo < 1e-12 else f"{np.mean(x):.2f} [{lo:.2f}, {hi:.2f}]"


def _learned(post: xr.Dataset | None, diag: Diagnostics, facts: dict[str, Any], method: str) -> list[dict[str, str]]:
    """"What did it learn?": a few sentences from the posterior, each with its numbers
    (posterior mean and 90 % interval over the draws)."""
    out: list[dict[str, str]] = []

    def fact(key: str) -> str:
        v = facts.get(key)
        return _cell(v) if v is not None and not (isinstance(v, float) and not np.isfinite(v)) else "?"

    out.append({"label": "Data", "text": f"{fact('students')} students, {fact('answers')} answers to "
                f"{fact('assessments')} assessments, {fact('lesson completions')} lesson completions of "
                f"{fact('lessons')} lessons; overall pass rate {fact('overall pass rate')}."})
    if post is None:
        return out
    d = post.sizes.get("skill", 1)
    out.append({"label": "Model", "text": f"{d} latent skill{'s' if d != 1 else ''}, fitted by {method.upper()}."})
    if "gain" in post and post.sizes.get("lesson", 0):
        g = np.linalg.norm(_samples_from(post["gain"], "lesson", "skill"), axis=-1)
        labels = dim_labels(post, "lesson", g.shape[1])
        order = np.argsort(-g.mean(0))
        top = "; ".join(f"{labels[i]} {_interval(g[:, i])}" for i in order[:3])
        least = (f" Smallest: {labels[order[-1]]} {_interval(g[:, order[-1]])}." if len(order) > 3 else "")
        out.append({"label": "Lessons that teach most",
                    "text": f"gain length |l|{', mean [90 % interval]' if method != 'map' else ' (MAP point estimate)'}: "
                            f"{top}.{least}"})
    table = diag.tables.get("assessments")
    if table is not None and len(table) and {"assessment", "predicted"} <= set(table.columns):
        t = table.sort_values("predicted")
        hard = ", ".join(f"{r.assessment} ({r.predicted:.2f})" for r in t.head(3).itertuples())
        easy = ", ".join(f"{r.assessment} ({r.predicted:.2f})" for r in t.tail(3).iloc[::-1].itertuples())
        out.append({"label": "Assessments", "text": f"hardest by predicted pass rate: {hard}; easiest: {easy}."})
    if "history_success" in post and "history_failure" in post:
        gs = np.asarray(post["history_success"].values).ravel()
        gf = np.asarray(post["history_failure"].values).ravel()
        out.append({"label": "Practice effect",
                    "text": f"each earlier success on the same assessment adds γ_s·log(1+S) to the logit, "
                            f"γ_s = {_interval(gs)}; earlier failures γ_f = {_interval(gf)}"
                            + (f"; recency γ_r = {_interval(np.asarray(post['history_recency'].values).ravel())} "
                               "times R = 1/√(answers since the last answer to it)"
                               if "history_recency" in post else "")
                            + (f"; practice (earlier answers to any assessment) γ_ps = "
                               f"{_interval(np.asarray(post['history_practice_success'].values).ravel())} per log(1+successes), "
                               f"γ_pf = {_interval(np.asarray(post['history_practice_failure'].values).ravel())} per log(1+failures)"
                               if "history_practice_success" in post and "history_practice_failure" in post else "")
                            + "."})
    if "learning_noise" in post:
        out.append({"label": "Learning noise", "text": f"σ_L = {_interval(np.asarray(post['learning_noise'].values).ravel())}."})
    return out


def _trust(verdicts: pd.DataFrame, on_page: dict[str, str]) -> list[dict[str, Any]]:
    """The checks that did not pass, failures first, each with links to its evidence."""
    rows = []
    for r in verdicts.itertuples():
        if r.status == "ok":
            continue
        rows.append({"status": r.status, "check": r.check, "message": str(r.message),
                     "links": _evidence_links(str(r.check), on_page)})
    rows.sort(key=lambda x: 0 if x["status"] == "fail" else 1)
    return rows


# --------------------------------------------------------------------------- public API
def render_report(
    idata: xr.DataTree,
    *,
    title: str | None = None,
    max_rows: int = 20,
    diagnostics: Diagnostics | None = None,
    thresholds: dict[str, float] | None = None,
    skills: tuple[int, int] | None = None,
    lesson: str | None = None,
    dpi: int = 90,
) -> str:
    """The report as an HTML string (see `write_report`)."""
    t0 = time.perf_counter()
    diag = diagnostics if diagnostics is not None else diagnose(idata, **(thresholds or {}))
    t_diag = time.perf_counter() - t0
    notes = list(diag.notes)
    method = diag.method
    model_config = json_attr(idata, "model_config")
    fit_config = json_attr(idata, "fit_config")

    verdicts = diag.verdicts.copy()
    counts = verdicts["status"].value_counts().to_dict()
    status = diag.status
    headline = {
        "ok": "All checks passed.",
        "warn": f"{counts.get('warn', 0)} check(s) need attention; none failed.",
        "fail": f"{counts.get('fail', 0)} check(s) failed: do not trust this fit before reading them.",
    }[status]

    data_t, dist_t, data_facts = _data_summary(idata)
    fit_facts = {"method": method.upper(), "run time (s)": idata.attrs.get("runtime_seconds"),
                 "created": idata.attrs.get("created", "unknown"),
                 "config hash": idata.attrs.get("config_hash", "")}
    post = group_of(idata, "posterior")
    if post is not None:
        fit_facts["chains × draws"] = f"{post.sizes.get('chain', 1)} × {post.sizes.get('draw', 1)}"
    if "source" in idata.attrs:
        fit_facts["data source"] = idata.attrs["source"]
    t1 = time.perf_counter()
    figures = _figures(idata, diag, dpi, skills, lesson, notes)
    t_fig = time.perf_counter() - t1

    diag_tables = []
    for key in DIAGNOSTIC_TABLES:
        if key in diag.tables and len(diag.tables[key]):
            ttl, desc = TABLE_INFO.get(key, (key, ""))
            df = diag.tables[key]
            if key in ("students", "assessments"):
                df = df.drop(columns=["judged"], errors="ignore")
            t = _table(df, key=key, title=ttl, description=desc, max_rows=max_rows)
            t["folded"] = key in FOLDED_TABLES
            t["n_rows"] = len(t["rows"])
            t["figures"] = []
            diag_tables.append(t)
    # sampler pictures go above the table they explain, the others stay under "Pictures"
    by_key = {t["key"]: t for t in diag_tables}
    kept = []
    for f in figures:
        home = FIGURE_BESIDE.get(f["key"])
        if home in by_key:
            by_key[home]["figures"].append(f)
        else:
            kept.append(f)
    on_page = {f"t-{t['key']}": t["title"] for t in diag_tables} | {f"fig-{f['key']}": f["title"] for f in figures}
    verdict_t = _table(verdicts, key="verdicts", title="Verdicts", status_col="status")
    verdict_t["columns"].append("evidence")
    for row, check in zip(verdict_t["rows"], verdicts["check"].astype(str)):
        term = _glossary_term(check)
        if term:
            row[0]["title"] = GLOSSARY[term]
        row.append({"text": "", "cls": "", "links": _evidence_links(check, on_page)})
    emb = _embedding_tables(idata, diag.aligned if diag.aligned is not None else post, max_rows) if post is not None else []
    thresholds_t = _kv_table(dict(diag.thresholds), "thresholds", "Thresholds used")

    env = Environment(loader=PackageLoader("bayes_lse.report", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    template = env.get_template("report.html.j2")
    return template.render(
        title=title or f"bayes-lse report — {method.upper()} fit",
        status=status,
        headline=headline,
        verdicts=verdict_t,
        trust=_trust(verdicts, on_page),
        n_checks=len(verdicts),
        learned=_learned(post, diag, data_facts, method),
        glossary=GLOSSARY,
        data=data_t,
        data_dist=dist_t,
        fit=_kv_table(fit_facts, "fit", "Fit"),
        fit_config=_kv_table(_flatten_config(fit_config), "fit_config", "Fit configuration"),
        model_config=_kv_table(_flatten_config(model_config), "model_config", "Model configuration and priors"),
        figures=kept,
        diag_tables=diag_tables,
        thresholds=thresholds_t,
        embeddings=emb,
        notes=notes,
        versions=_kv_table(_versions(idata), "versions", "Versions"),
        generated=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        timing=f"diagnostics {t_diag:.1f} s, pictures {t_fig:.1f} s, total {time.perf_counter() - t0:.1f} s",
    )


def write_report(
    idata: xr.DataTree,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    max_rows: int = 20,
    diagnostics: Diagnostics | None = None,
    thresholds: dict[str, float] | None = None,
    skills: tuple[int, int] | None = None,
    lesson: str | None = None,
    dpi: int = 90,
) -> Path:
    """Write the self-contained HTML report of a fit to `path`; return the path.

    Per-entity tables show at most `max_rows` rows; `thresholds` go to `diagnose`;
    `skills` picks the two skills drawn when d > 2; `lesson` the gain field's lesson.
    The page is written to a temporary file in the same folder and renamed into place.
    """
    path = Path(path)
    html = render_report(idata, title=title, max_rows=max_rows, diagnostics=diagnostics, thresholds=thresholds,
                         skills=skills, lesson=lesson, dpi=dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp makes it private; the user's umask decides
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
