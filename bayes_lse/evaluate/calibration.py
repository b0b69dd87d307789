"""Simulation-based calibration (SBC) of NUTS on a design like the user's (issue 20 §1).

Draw every parameter from the prior and outcomes from the model on a fixed design
(`model.simulate.simulate_on_design`), fit the same design with NUTS, and rank the
true value of each identified quantity among the posterior draws.  When the sampler
and the model agree, every rank is uniform (Talts et al. 2018).  The quantities are the
ones `diagnostics.identified_quantities` computes — pass probabilities and D-values of
answered rows, |a|, |l|, |q|, D(s, q) of lesson steps, biases, σ_L — plus the
student-plus-assessment bias of answered (student, assessment) pairs: things the
skill-axis permutations and rotations leave unchanged, so a chain that settles on
another labelling of the skills does not pass for a miscalibration.

Uniformity: each element's ranks over the simulations, as PIT values
(rank + U(0,1)) / (L + 1), are independent draws that are exactly U(0, 1) under
calibration; each element is tested with `arviz_stats`' pointwise order test
(``uniformity_test(method="pot_c")``), and a quantity's element p-values are joined by
the Cauchy combination (Liu & Xie 2020), which stays valid however the elements of one
simulation depend on each other; quantities are then Bonferroni-adjusted.  (Testing
the pooled PITs of all elements at once is not valid: the 12 D(s_t, q) values of a
one-lesson design share q, so their PITs move together, and on a correctly specified
model the pooled test gave p = 0.0002 where the per-element tests gave 0.17.)  The
figures are `arviz_plots.plot_ecdf_pit` (every element's PIT pooled per quantity, as a
picture, annotated with the valid p-values) and per-element ECDFs inside the
simultaneous bands of `arviz_stats.ecdf_utils.ecdf_pit`.

Why not `simuk` (0.3, the ArviZ project's SBC package)?  It cannot drive this model:

* it draws the reference parameters with `pm.sample_prior_predictive`, which cannot
  draw from the graphs NUTS fits: the polar requirement form has a ``pm.Flat``
  assessment offset whose prior is a ``pm.Potential``, and the centred trajectory a
  ``pm.HalfFlat`` later state with the transition density as a potential
  ("NotImplementedError: Cannot sample from flat variable" / "half_flat variable";
  a custom ``simulator=`` replaces only the data, not the reference draws);
* it ranks each free variable on its own (``transform(name, value)`` sees one
  variable), so pass probabilities — functions of states, requirements and biases
  together — cannot be ranked, and the free variables themselves (raw skill
  coordinates, innovations) are not identified;
* it refits through `pm.observe` + `pm.sample`, which rebuilds and recompiles the
  model every simulation (8–20 s each on a 6-student design, against 0.5 s for a
  compiled nutpie model refit on new data, `inference.refit`), and ranks among all
  draws without thinning.

So the loop is the package's own simulator and a compiled nutpie model; ranks are
stored in simuk's layout (a DataTree group ``prior_sbc``, dims ``(chain=1,
draw=simulation, …)``) so ArviZ's tools read them as they read simuk's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayes_lse.diagnostics.arrays import as_array, thin_draws
from bayes_lse.diagnostics.estimators import convergence_stats
from bayes_lse.model.terms import HISTORY_COEFFICIENTS
from bayes_lse.diagnostics.quantities import identified_quantities
from bayes_lse.diagnostics.settings import MAX_OBS, MAX_TRANSITIONS

if TYPE_CHECKING:
    import xarray as xr

    from bayes_lse.data.log import InteractionLog
    from bayes_lse.model.graph import ModelSpec

__all__ = ["SBCResult", "design_from_log", "design_from_shape", "run_sbc"]

#: quantities ranked, in report order (those a model variant lacks are left out)
QUANTITIES = (
    "pass_probability",
    "relevance",
    "assessment_logit",
    "bias_sum",
    "requirement_norm",
    "assessment_offset",
    "gain_norm",
    "prerequisite_norm",
    "prerequisite_relevance",
    "student_bias",
    "assessment_bias",
    "learning_noise",
    *HISTORY_COEFFICIENTS,
    "tag_bias",
    "sigma_tag_bias",
)

#: one line per quantity for the table and the figure
QUANTITY_MEANING = {
    "pass_probability": "σ(D(s,a)+g_u+g_j) of answered rows",
    "relevance": "D(s, a) of answered rows",
    "assessment_logit": "D(s, a) + g_j of answered rows",
    "assessment_offset": "g_j − |a| per assessment",
    "tag_bias": "a tag's effect τ_t on the biases of the assessments it tags",
    "sigma_tag_bias": "σ_τ, the tag effects' scale",
    "bias_sum": "g_u + g_j of answered (student, assessment) pairs",
    "requirement_norm": "|a| per assessment",
    "gain_norm": "|l| per lesson",
    "prerequisite_norm": "|q| per lesson",
    "prerequisite_relevance": "D(s_t, q) of lesson steps",
    "student_bias": "g_u per student",
    "assessment_bias": "g_j per assessment",
    "learning_noise": "σ_L",
    "history_success": "γ_s (same-assessment successes)",
    "history_failure": "γ_f (same-assessment failures)",
    "history_recency": "γ_r (recency of the same assessment)",
    "history_practice_success": "γ_ps (successes on any assessment)",
    "history_practice_failure": "γ_pf (failures on any assessment)",
}


# --------------------------------------------------------------------------- designs
def _interaction_columns(table: pd.DataFrame) -> pd.DataFrame:
    return table[["student_id", "module_id", "module_type", "outcome", "timestep"]].copy()


def design_from_log(
    log: InteractionLog,
    *,
    max_students: int | None = None,
    max_steps: int | None = None,
    max_assessments: int | None = None,
    max_lessons: int | None = None,
    seed: int = 0,
) -> InteractionLog:
    """The user's design, optionally scaled down: who answers what at which step, which lessons.

    Parameters
    ----------
    log : InteractionLog
        The user's log; its outcomes are never used (SBC simulates its own).
    max_students : int, optional
        Keep a random subset of this many students (seed `seed`).
    max_steps : int, optional
        Keep each student's first `max_steps` states: answers at timesteps below it,
        lessons below ``max_steps - 1``.
    max_assessments, max_lessons : int, optional
        Keep the most used assessments / lessons (ties: first seen).  A dropped
        lesson's step stays a step with no lesson (σ_L noise only), as in the log.
    seed : int
        Seed of the student subset.

    Returns
    -------
    InteractionLog
        The design, re-indexed (students without answers left dropped).
    """
    from bayes_lse.data.log import read_interactions

    t = _interaction_columns(log.table)
    if max_students is not None and max_students < log.n_students:
        keep = np.random.default_rng(seed).choice(log.n_students, size=int(max_students), replace=False)
        t = t[log.table["student"].isin(keep).to_numpy()]
    is_a = t["module_type"] == "assessment"
    if max_steps is not None:
        t = t[(is_a & (t["timestep"] < max_steps)) | (~is_a & (t["timestep"] < max_steps - 1))]
        is_a = t["module_type"] == "assessment"
    for kind, cap in (("assessment", max_assessments), ("lesson", max_lessons)):
        if cap is None:
            continue
        rows = t["module_type"] == kind
        counts = t.loc[rows, "module_id"].astype(str).value_counts(sort=False)  # first-seen order (str, not category)
        kept = counts.sort_values(ascending=False, kind="stable").index[: int(cap)]
        t = t[~rows | t["module_id"].isin(kept)]
    answered = t.loc[t["module_type"] == "assessment", "student_id"].unique()
    t = t[t["student_id"].isin(answered)]
    if not len(t):
        raise ValueError("the scaled-down design has no answers left; keep more students, steps or assessments")
    return read_interactions(t.reset_index(drop=True), name=f"design of {log.source}")


def design_from_shape(
    n_students: int,
    n_steps: int,
    n_assessments: int,
    n_lessons: int,
    answers_per_step: int = 2,
    seed: int = 0,
) -> InteractionLog:
    """A design of the given shape, as `model.simulate.simulate` lays one out: every student
    answers `answers_per_step` random distinct assessments at each of `n_steps` steps
    and takes one random lesson between consecutive steps."""
    from bayes_lse.data.log import read_interactions
    from bayes_lse.model.simulate import simulate

    cohort = simulate(n_students=n_students, n_steps=n_steps, n_assessments=n_assessments, n_lessons=n_lessons,
                      n_skills=1, answers_per_step=answers_per_step, seed=seed)
    return read_interactions(_interaction_columns(cohort.table),
                             name=f"design {n_students}×{n_steps}×{n_assessments}+{n_lessons}")


def describe_design(log: InteractionLog) -> dict[str, int]:
    """Counts that say what a design is (printed by the CLI, stored with the result)."""
    is_a = (log.table["module_type"] == "assessment").to_numpy()
    return {
        "students": int(log.n_students),
        "states": int(len(log.state_student)),
        "max_steps": int(log.state_step.max()) + 1 if len(log.state_step) else 0,
        "assessments": int(len(log.assessments)),
        "lessons": int(len(log.lessons)),
        "answers": int(is_a.sum()),
        "lesson_rows": int((~is_a).sum()),
    }


# --------------------------------------------------------------------------- quantities
def _with_bias_sum(q: xr.Dataset) -> xr.Dataset:
    """Add g_u + g_j of each distinct (student, assessment) pair among the kept answered rows."""
    import xarray as xr

    if "student_bias" not in q or "assessment_bias" not in q or "obs_student" not in q.coords:
        return q
    su = np.asarray(q["obs_student"].values).astype(str)
    aj = np.asarray(q["obs_assessment"].values).astype(str)
    pairs = pd.DataFrame({"s": su, "a": aj}).drop_duplicates()
    gu = q["student_bias"].sel(student=xr.DataArray(pairs["s"].to_numpy(), dims="pair"))
    gj = q["assessment_bias"].sel(assessment=xr.DataArray(pairs["a"].to_numpy(), dims="pair"))
    total = (gu.drop_vars("student") + gj.drop_vars("assessment")).assign_coords(
        pair=np.arange(len(pairs)), pair_student=("pair", pairs["s"].to_numpy()),
        pair_assessment=("pair", pairs["a"].to_numpy()))
    return q.assign(bias_sum=total)


def sbc_quantities(tree: xr.DataTree, *, max_obs: int = MAX_OBS, max_transitions: int = MAX_TRANSITIONS) -> xr.Dataset:
    """The identified quantities SBC ranks, per draw (`identified_quantities` plus ``bias_sum``)."""
    q = _with_bias_sum(identified_quantities(tree, max_obs=max_obs, max_transitions=max_transitions, seed=0,
                                                length_and_bias=True))
    return q[[v for v in QUANTITIES if v in q]]


def truth_tree(fitted: xr.DataTree, params: dict[str, np.ndarray]) -> xr.DataTree:
    """`fitted` with its posterior replaced by one chain and one draw: the true parameters."""
    import xarray as xr

    post = fitted["posterior"].to_dataset()
    one = post.isel(chain=[0], draw=[0])
    for name in one.data_vars:
        if name not in params:
            raise ValueError(f"the simulated truth has no {name!r} (model variants of simulation and fit differ)")
        value = np.asarray(params[name], dtype=float)
        one[name] = one[name].copy(data=value.reshape(one[name].shape))
    tree = fitted.copy()
    tree["posterior"] = xr.DataTree(one)
    return tree


# --------------------------------------------------------------------------- result
@dataclass
class SBCResult:
    """Ranks of the truth among posterior draws, per quantity, element and simulation.

    Attributes
    ----------
    ranks : xarray.DataTree
        Group ``prior_sbc``: integer ranks in 0..``n_rank_draws``, one variable per
        quantity, dims ``(chain=1, draw=simulation, element…)`` (simuk's layout);
        group ``prior_sbc_pit``: the same as PIT values (rank + U(0,1))/(L + 1).
    summary : pandas.DataFrame
        One row per quantity: elements, ``p_value`` (its elements' pot_c p-values,
        Cauchy-combined), ``p_adjusted`` (× number of quantities, Bonferroni), the worst
        single element's p-value and its Bonferroni adjustment over the quantity's
        elements, and a ``status`` (``fail`` when ``p_adjusted`` < alpha).
    fits : pandas.DataFrame
        One row per simulation: sampler seed, seconds, divergences, largest R-hat and
        smallest bulk ESS over the identified quantities.
    n_rank_draws : int
        L: posterior draws each truth is ranked among (after thinning).
    design : dict
        What the design was (`describe_design`) and the settings of the run.
    alpha : float
        Family-wise level of the verdict.
    """

    ranks: Any
    summary: pd.DataFrame
    fits: pd.DataFrame
    n_rank_draws: int
    design: dict[str, Any] = field(default_factory=dict)
    alpha: float = 0.01

    @property
    def status(self) -> str:
        """"fail" when some quantity's ranks are not uniform at the family-wise level
        `alpha`; "warn" when they are but some fit diverged; else "ok"."""
        if (self.summary["status"] == "fail").any():
            return "fail"
        if (self.fits["divergences"] > 0).any():
            return "warn"
        return "ok"

    def verdict(self) -> str:
        """One line: the status and what it rests on."""
        worst = self.summary.sort_values("p_adjusted").iloc[0]
        n_sims = int(self.fits.shape[0])
        div = int((self.fits["divergences"] > 0).sum())
        line = (f"SBC {self.status.upper()}: {n_sims} simulations, ranks among {self.n_rank_draws} draws; "
                f"smallest adjusted p = {worst['p_adjusted']:.3g} ({worst['quantity']})")
        if self.status == "fail":
            line += " — the sampler and the model disagree on this design; do not trust intervals of these quantities"
        if div:
            line += f"; {div} of {n_sims} fits had divergences"
        return line

    def plot(self, path: str | Path | None = None, *, method: str = "pot_c", max_elements: int = 4) -> Any:
        """ECDF-PIT figure, one panel per quantity.

        ``method="pot_c"`` (default): `arviz_plots.plot_ecdf_pit` on every element's
        PIT pooled per quantity (a picture of the overall shape: ∪ = posteriors too
        narrow, ∩ = too wide, a slope = biased), annotated with the summary's valid
        p-values (per-element tests, Cauchy-combined), not the pooled test's.  ``method="envelope"``: the Δ-ECDF of each of the
        first `max_elements` elements of a quantity (the first ones, not chosen by their
        ranks) inside the simultaneous 1 − alpha band of `arviz_stats.ecdf_utils.ecdf_pit`
        (Säilynoja et al. 2022) — valid per element, whose ranks across simulations are
        independent.  (arviz-plots 1.3.2's own ``method="envelope"`` fails on any input:
        it passes a DataArray to ``np.linspace``.)

        Returns
        -------
        matplotlib.figure.Figure
        """
        if method == "pot_c":
            fig = self._plot_pooled()
        elif method == "envelope":
            fig = self._plot_bands(max_elements)
        else:
            raise ValueError(f"method must be 'pot_c' or 'envelope', got {method!r}")
        if path is not None:
            fig.savefig(path, dpi=110, bbox_inches="tight")
        return fig

    def _title(self, what: str) -> str:
        return f"SBC: {int(self.fits.shape[0])} simulations, ranks among {self.n_rank_draws} draws ({what})"

    def _plot_pooled(self) -> Any:
        import xarray as xr
        from arviz_plots import plot_ecdf_pit

        pit = self.ranks["prior_sbc_pit"].to_dataset()
        # every element of a quantity pooled: one sample dim per quantity, of its own name
        flat = xr.Dataset({name: xr.DataArray(np.asarray(da.values).reshape(1, -1), dims=("chain", f"{name}_pit"))
                           for name, da in pit.data_vars.items()})
        rows = -(-len(flat.data_vars) // 4)
        # no p-value text or highlighted points from arviz: its test on pooled PITs assumes them independent
        # (and arviz-plots 1.3.2 puts some panels' text on other panels' axes); the
        # summary's per-element, Cauchy-combined p-values are written instead
        pc = plot_ecdf_pit(xr.DataTree.from_dict({"prior_sbc": flat}), group="prior_sbc",
                           sample_dims=list(flat.dims), method="pot_c", envelope_prob=1 - self.alpha,
                           backend="matplotlib", visuals={"p_value_text": False, "suspicious_points": False},
                           figure_kwargs={"figsize": (13, 3.3 * rows)})
        fig = pc.viz["figure"].item()
        table = self.summary.set_index("quantity")
        for name in flat.data_vars:
            ax = pc.viz["title"][name].item().axes
            row = table.loc[name]
            ax.text(0.03, 0.95, f"p = {row['p_value']:.2g}, adjusted {row['p_adjusted']:.2g} ({row['status']})",
                    transform=ax.transAxes, fontsize=8, va="top",
                    color="firebrick" if row["status"] == "fail" else "black")
        fig.suptitle(self._title("ECDF of every element's PIT pooled; p: per-element pot_c tests, Cauchy-combined"), fontsize=10)
        return fig

    def _plot_bands(self, max_elements: int) -> Any:
        import matplotlib.pyplot as plt
        from arviz_stats.ecdf_utils import ecdf_pit

        pit = self.ranks["prior_sbc_pit"].to_dataset()
        names = list(pit.data_vars)
        n_sims = int(self.fits.shape[0])
        x, _, lower, upper = ecdf_pit(np.linspace(0, 1, n_sims), 1 - self.alpha, 1000,
                                      rng=np.random.default_rng(0))
        cols = min(4, len(names))
        rows = -(-len(names) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), sharex=True, sharey=True,
                                 squeeze=False)
        grid = np.linspace(0, 1, 201)
        for ax, name in zip(axes.ravel(), names):
            values = np.asarray(pit[name].values)[0]  # (simulation, element…)
            flat = values.reshape(values.shape[0], -1)[:, :max_elements]
            ax.fill_between(x, lower - x, upper - x, step="post", color="0.85",
                            label=f"{100 * (1 - self.alpha):.0f}% simultaneous band")
            for k in range(flat.shape[1]):
                ecdf = np.searchsorted(np.sort(flat[:, k]), grid, side="right") / n_sims
                ax.step(grid, ecdf - grid, where="post", lw=1)
            ax.axhline(0, color="0.4", lw=0.6, ls="--")
            ax.set_title(f"{name} ({flat.shape[1]} of {values[0].size})", fontsize=9)
        for ax in axes.ravel()[len(names):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("PIT")
        for ax in axes[:, 0]:
            ax.set_ylabel("ECDF − uniform")
        axes.ravel()[0].legend(fontsize=7, loc="lower left")
        fig.suptitle(self._title("one line per element, first elements"), fontsize=10)
        fig.tight_layout()
        return fig

    def save(self, folder: str | Path, *, overwrite: bool = False) -> list[Path]:
        """Write ``sbc_ranks.nc``, ``sbc_summary.csv``, ``sbc_fits.csv`` and the two figures
        (``sbc_ecdf_pit.png``, ``sbc_ecdf_bands.png``) into `folder`."""
        import json

        import matplotlib.pyplot as plt

        from bayes_lse.core.files import atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / n for n in ("sbc_ranks.nc", "sbc_summary.csv", "sbc_fits.csv",
                                      "sbc_ecdf_pit.png", "sbc_ecdf_bands.png")]
        if not overwrite:
            for p in paths:
                if p.exists():
                    raise FileExistsError(f"{p}: file already exists; pass --overwrite to replace it")
        tree = self.ranks.copy()
        tree.attrs = {**tree.attrs, "design": json.dumps(self.design), "n_rank_draws": self.n_rank_draws,
                      "alpha": self.alpha, "status": self.status}
        tmp = paths[0].with_suffix(".nc.tmp")
        tree.to_netcdf(tmp, engine="h5netcdf")
        tmp.replace(paths[0])
        atomic_write_text(paths[1], self.summary.to_csv(index=False))
        atomic_write_text(paths[2], self.fits.to_csv(index=False))
        for p, method in ((paths[3], "pot_c"), (paths[4], "envelope")):
            plt.close(self.plot(p, method=method))
        return paths


# --------------------------------------------------------------------------- the loop
def _pit(ranks: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Randomised PIT of integer ranks in 0..L: exactly U(0, 1) when the ranks are uniform."""
    return (ranks + rng.random(ranks.shape)) / (n_draws + 1)


def element_pvalues(pit: np.ndarray) -> np.ndarray:
    """pot_c uniformity p-value of every element, from PITs ``(simulation, element…)``."""
    from arviz_stats.base import array_stats

    flat = np.asarray(pit, dtype=float).reshape(pit.shape[0], -1)
    p, _, _ = array_stats.uniformity_test(flat.T, axis=-1, method="pot_c")
    return np.atleast_1d(np.asarray(p, dtype=float))


def cauchy_combination(p: np.ndarray) -> float:
    """Cauchy combination of p-values (Liu & Xie 2020): T = mean cot(π p_i),
    p = P(Cauchy > T); valid under arbitrary dependence between the p-values."""
    p = np.clip(np.asarray(p, dtype=float), 1e-16, 1 - 1e-16)
    t = float(np.mean(1.0 / np.tan(np.pi * p)))
    return float(np.arctan(1.0 / t) / np.pi) if t > 0 else float(0.5 - np.arctan(t) / np.pi)


def summarise(pit: dict[str, np.ndarray], alpha: float) -> pd.DataFrame:
    """The per-quantity table of `SBCResult.summary` from PIT arrays ``(simulation, element…)``."""
    rows = []
    n_q = max(len(pit), 1)
    for name, values in pit.items():
        p_el = element_pvalues(values)
        worst = int(np.nanargmin(p_el))
        rows.append({
            "quantity": name,
            "meaning": QUANTITY_MEANING.get(name, ""),
            "elements": len(p_el),
            "simulations": values.shape[0],
            "p_value": cauchy_combination(p_el),
            "worst_element": worst,
            "worst_element_p": float(p_el[worst]),
            "worst_element_p_adjusted": float(min(1.0, p_el[worst] * len(p_el))),
        })
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_adjusted"] = np.minimum(1.0, out["p_value"] * n_q)
    out["status"] = np.where(out["p_adjusted"] < alpha, "fail", "ok")
    cols = ["quantity", "meaning", "elements", "simulations", "p_value", "p_adjusted",
            "worst_element", "worst_element_p", "worst_element_p_adjusted", "status"]
    return out[cols]


def run_sbc(
    model: ModelSpec,
    design: InteractionLog,
    *,
    n_simulations: int = 100,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    rank_draws: int = 100,
    target_accept: float = 0.9,
    fit_model: ModelSpec | None = None,
    alpha: float = 0.01,
    seed: int = 0,
    max_obs: int = MAX_OBS,
    progress: Callable[[int, int, float], None] | None = None,
) -> SBCResult:
    """Simulation-based calibration of NUTS for `model` on `design`.

    For each simulation: draw parameters from `model`'s priors and outcomes on the
    design, fit the design with NUTS (nutpie, compiled once: `inference.refit`), thin
    the posterior to about `rank_draws` draws and rank the truth of every identified
    quantity among them.  See the module docstring for the test and for why `simuk`
    does not drive this loop.

    Parameters
    ----------
    model : ModelSpec or LatentSkillEmbedding
        The model the data are simulated from (and fitted with, unless `fit_model`).
    design : InteractionLog
        Who answers what when, which lessons (`design_from_log`, `design_from_shape`).
    n_simulations : int
        Simulate-and-fit rounds (100 resolves gross miscalibration; the ECDF bands
        narrow as 1/√n).
    draws, tune, chains : int
        NUTS settings of every fit.
    rank_draws : int
        Cap on the posterior draws the truth is ranked among (thinned evenly per chain,
        so they are close to independent).
    target_accept : float
        NUTS target acceptance.
    fit_model : ModelSpec, optional
        Fit with another model than the one simulated from (to see what a
        misspecification looks like; the variants must have the same parameters).
    alpha : float
        Family-wise level of the verdict (Bonferroni over quantities).
    seed : int
        Seeds the simulations and the fits.
    max_obs : int
        Answered rows whose pass probability / D-value are ranked (a fixed subsample).
    progress : callable, optional
        Called after every simulation with (done, total, seconds of that simulation).

    Returns
    -------
    SBCResult
    """
    import xarray as xr

    from bayes_lse.inference.refit import OutcomeRefitter
    from bayes_lse.model.graph import IndexArrays
    from bayes_lse.model.simulate import simulate_on_design

    if n_simulations < 2:
        raise ValueError("SBC needs at least 2 simulations")
    if rank_draws < 1:
        raise ValueError("rank_draws must be at least 1")
    fit_model = fit_model or model
    # history="auto" (the default) is what the simulating model does: simulate_on_design draws
    # "auto" without the term, history=True with it (each refit recounts from its outcomes)
    if fit_model.config["history"] == "auto":
        fit_model = type(fit_model).from_config({**fit_model.config, "history": model.config["history"] is True})
    t_start = time.perf_counter()
    refitter = OutcomeRefitter(fit_model, design, draws=draws, tune=tune, chains=chains, target_accept=target_accept)
    idx = IndexArrays.from_log(design)
    keep = thin_draws(chains, draws, rank_draws)
    n_rank = chains * len(keep)
    root = np.random.SeedSequence(seed)
    sim_rngs = [np.random.default_rng(s) for s in root.spawn(n_simulations)]
    fit_seeds = np.random.default_rng(root.spawn(1)[0]).integers(0, 2**31 - 1, size=n_simulations)
    ranks: dict[str, list[np.ndarray]] = {}
    template: dict[str, xr.DataArray] = {}
    fit_rows = []
    for i in range(n_simulations):
        t0 = time.perf_counter()
        drawn = simulate_on_design(idx, len(design.assessments), len(design.lessons), model.config, sim_rngs[i])
        fitted = refitter.fit(drawn.outcome, int(fit_seeds[i]))
        q_post = sbc_quantities(fitted, max_obs=max_obs)
        q_true = sbc_quantities(truth_tree(fitted, drawn.params), max_obs=max_obs)
        thinned = q_post.isel(draw=keep)
        for name in q_post.data_vars:
            post = as_array(thinned[name], *[d for d in thinned[name].dims if d not in ("chain", "draw")])
            truth = as_array(q_true[name], *[d for d in q_true[name].dims if d not in ("chain", "draw")])
            ranks.setdefault(name, []).append((post < truth).sum(axis=(0, 1)))
            template.setdefault(name, q_post[name].isel(chain=0, draw=0, drop=True))
        flat = np.concatenate([as_array(q_post[v], *[d for d in q_post[v].dims if d not in ("chain", "draw")])
                               .reshape(chains, draws, -1) for v in q_post.data_vars], axis=2)
        stats = convergence_stats(flat)
        diverging = fitted["sample_stats"]["diverging"].values if "sample_stats" in fitted.children else np.zeros(1)
        seconds = time.perf_counter() - t0
        fit_rows.append({"simulation": i, "seed": int(fit_seeds[i]), "seconds": seconds,
                         "divergences": int(np.asarray(diverging).sum()),
                         "max_rhat": float(np.nanmax(stats["rhat"])) if chains > 1 else np.nan,
                         "min_ess_bulk": float(np.nanmin(stats["ess_bulk"]))})
        if progress is not None:
            progress(i + 1, n_simulations, seconds)

    pit_rng = np.random.default_rng(root.spawn(1)[0])
    rank_vars, pit_vars, pit_arrays = {}, {}, {}
    for name, per_sim in ranks.items():
        r = np.stack(per_sim)  # (simulation, element…)
        p = _pit(r, n_rank, pit_rng)
        pit_arrays[name] = p
        tpl = template[name]
        dims = ("chain", "draw", *tpl.dims)
        coords = {k: v for k, v in tpl.coords.items() if k not in ("chain", "draw")}
        rank_vars[name] = xr.DataArray(r[None].astype(np.int64), dims=dims, coords=coords)
        pit_vars[name] = xr.DataArray(p[None], dims=dims, coords=coords)
    tree = xr.DataTree.from_dict({"prior_sbc": xr.Dataset(rank_vars), "prior_sbc_pit": xr.Dataset(pit_vars)})
    tree.attrs = {"modeling_interface": "bayes_lse", "n_rank_draws": n_rank}
    info = {**describe_design(design), "simulations": n_simulations, "draws": draws, "tune": tune, "chains": chains,
            "rank_draws": n_rank, "seed": seed, "model": repr(model), "fit_model": repr(fit_model),
            "compile_seconds": round(refitter.compile_seconds, 2),
            "total_seconds": round(time.perf_counter() - t_start, 2)}
    return SBCResult(ranks=tree, summary=summarise(pit_arrays, alpha), fits=pd.DataFrame(fit_rows),
                     n_rank_draws=n_rank, design=info, alpha=alpha)
