"""Matplotlib figures of a fitted LSE: traces, energy, ELBO, skill space, gain field, calibration.

Every function returns a `matplotlib.figure.Figure` built without pyplot, so nothing
here changes the caller's backend or leaks open figures (a notebook still shows the
returned figure).  Per-dimension pictures use chain-aligned draws
(`diagnostics.align_chains`), and every picture caps how many entities it draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse
from matplotlib.ticker import MaxNLocator

from bayes_lse.diagnostics import (
    Diagnostics,
    align_chains,
    convergence_stats,
    predictive_checks,
)
from bayes_lse.diagnostics.arrays import (
    as_array,
    dim_labels,
    flatten_quantities,
    group_of,
    state_owner,
    state_steps,
    student_labels,
    thin_draws,
)
from bayes_lse.model import terms as eq
from bayes_lse.results.posterior import has_student_states, state_draws

__all__ = [
    "choose_skills",
    "plot_calibration",
    "plot_elbo",
    "plot_energy",
    "plot_gain_field",
    "plot_pass_rates",
    "plot_skill_space",
    "plot_trace_rank",
]

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]


def _t(s: Any) -> str:
    """Text safe for matplotlib: a user id with '$' must not start mathtext."""
    return str(s).replace("\\", "\\\\").replace("$", r"\$")


def _fig(w: float, h: float, **kw: Any) -> Figure:
    return Figure(figsize=(w, h), layout="constrained", **kw)


def _message(text: str) -> Figure:
    fig = _fig(6, 1.5)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, _t(text), ha="center", va="center", wrap=True)
    return fig


def _aligned(idata: xr.DataTree, aligned: xr.Dataset | None) -> xr.Dataset:
    return aligned if aligned is not None else align_chains(idata)[0]


def _thinned(post: xr.Dataset, max_draws: int) -> xr.Dataset:
    idx = thin_draws(post.sizes["chain"], post.sizes["draw"], max(1, max_draws))
    return post.isel(draw=idx)


def _samples(da: xr.DataArray, *tail: str) -> np.ndarray:
    """(sample, *tail) array from (chain, draw, *tail)."""
    a = as_array(da, *tail)
    return a.reshape(-1, *a.shape[2:])


def choose_skills(aligned: xr.Dataset, skills: Sequence[int] | None = None) -> tuple[int, int]:
    """The two skills to draw: the user's, else the two with most variance of mean states."""
    d = aligned.sizes.get("skill", 1)
    if skills is not None:
        i, j = (int(s) for s in skills)
        if not (0 <= i < d and 0 <= j < d) or i == j:
            raise ValueError(f"skills must be two different integers in 0..{d - 1}, got {skills!r}")
        return i, j
    if d < 2:
        return 0, 0
    parts = []
    for v in ("student_state", "requirement"):
        if v in aligned:
            m = aligned[v].mean(("chain", "draw")).transpose(..., "skill").values.reshape(-1, d)
            parts.append(m)
    var = np.concatenate(parts).var(axis=0) if parts else np.ones(d)
    i, j = sorted(np.argsort(-var)[:2].tolist())
    return int(i), int(j)


# --------------------------------------------------------------------------- convergence pictures
def plot_trace_rank(source: xr.DataTree | Diagnostics, *, n: int = 4, max_draws: int = 500,
                    seed: int = 0) -> Figure:
    """Trace (left) and rank histograms (right) of the n identified quantities with worst R-hat.

    Rank plots show mixing better than traces: with well-mixed chains every chain's
    ranks are uniform.
    """
    from bayes_lse.diagnostics import identified_quantities

    ident = source.identified if isinstance(source, Diagnostics) else identified_quantities(source)
    if ident is None or not ident.data_vars:
        return _message("No identified quantities to plot.")
    arr, labels = flatten_quantities(ident, 500, seed)
    n_c, n_d, k = arr.shape
    if n_d < 4:
        return _message("Trace and rank plots need more than a handful of draws (MAP has one).")
    table = source.tables.get("identified") if isinstance(source, Diagnostics) else None
    if table is not None and "rhat" in table:
        key = {(v, lab): i for i, (v, lab) in enumerate(zip(labels["variable"], labels["label"]))}
        picks = [key[(v, lab)] for v, lab in zip(table["variable"], table["label"]) if (v, lab) in key][:n]
    else:
        r = convergence_stats(arr)["rhat"]
        picks = list(np.argsort(-np.nan_to_num(r, nan=-1))[:n])
    fig = _fig(10, 1.9 * len(picks) + 0.4)
    axes = fig.subplots(len(picks), 2, squeeze=False, gridspec_kw={"width_ratios": [3, 1]})
    keep = thin_draws(1, n_d, max_draws)
    bins = 20
    for row, q in enumerate(picks):
        x = arr[:, :, q]
        ax_t, ax_r = axes[row]
        for c in range(n_c):
            ax_t.plot(keep, x[c, keep], lw=0.7, alpha=0.8, color=COLORS[c % len(COLORS)], label=f"chain {c}")
        title = f"{labels['variable'].iloc[q]}: {labels['label'].iloc[q]}"
        ax_t.set_title(_t(title[:90]), fontsize=9, loc="left")
        ax_t.tick_params(labelsize=8)
        ranks = x.reshape(-1).argsort().argsort().reshape(n_c, n_d)
        edges = np.linspace(0, n_c * n_d, bins + 1)
        for c in range(n_c):
            h, _ = np.histogram(ranks[c], bins=edges)
            ax_r.stairs(h, edges, color=COLORS[c % len(COLORS)], lw=1.2, baseline=None)
        ax_r.axhline(n_d / bins, color="k", ls="--", lw=0.8)
        ax_r.set_yticks([])
        ax_r.tick_params(labelsize=8)
        if row == 0:
            ax_r.set_title("rank histogram per chain", fontsize=9)
            if n_c <= 8:
                ax_t.legend(fontsize=7, ncol=n_c, loc="upper right")
    axes[-1, 0].set_xlabel("draw")
    axes[-1, 1].set_xlabel("rank of draw (all chains)")
    return fig


def plot_energy(idata: xr.DataTree) -> Figure:
    """Marginal energy vs energy transition distributions (NUTS); similar widths are good."""
    ss = group_of(idata, "sample_stats")
    if ss is None or "energy" not in ss:
        return _message("No sampler energy recorded (not a NUTS fit).")
    e = as_array(ss["energy"]).astype(float)
    marg = (e - e.mean(axis=1, keepdims=True)).ravel()
    trans = np.diff(e, axis=1).ravel()
    fig = _fig(6.5, 3.2)
    ax = fig.add_subplot()
    lo, hi = np.percentile(np.concatenate([marg, trans]), [0.5, 99.5])
    edges = np.linspace(lo, hi, 50)
    ax.hist(marg, bins=edges, density=True, alpha=0.5, color=COLORS[0], label="marginal energy (centred)")
    ax.hist(trans, bins=edges, density=True, alpha=0.5, color=COLORS[1], label="energy transition ΔE")
    num = np.mean(np.diff(e, axis=1) ** 2, axis=1)
    bfmi = num / np.var(e, axis=1)
    ax.set_title("Energy: E-BFMI per chain " + ", ".join(f"{b:.2f}" for b in bfmi[:8]), fontsize=10)
    ax.set_yticks([])
    ax.legend(fontsize=8)
    return fig


def plot_elbo(idata: xr.DataTree) -> Figure:
    """The ADVI loss (negative ELBO) per iteration, with a rolling mean."""
    opt = group_of(idata, "optimization")
    if opt is None or "loss" not in opt:
        return _message("No ADVI loss history recorded.")
    loss = np.asarray(opt["loss"].values, dtype=float)
    it = np.asarray(opt["iteration"].values) if "iteration" in opt.coords else np.arange(len(loss))
    fig = _fig(7, 3.2)
    ax = fig.add_subplot()
    ax.plot(it, loss, lw=0.5, color="0.6", label="loss")
    w = max(1, len(loss) // 50)
    if len(loss) > 2 * w:
        roll = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax.plot(it[w - 1:], roll, lw=1.5, color=COLORS[0], label=f"rolling mean ({w})")
    finite = loss[np.isfinite(loss)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
        ax.set_yscale("log")
    elif finite.size > 10:
        lo, hi = np.percentile(finite, [0, 99])
        tail_lo = finite[len(finite) // 2:].min()
        ax.set_ylim(min(lo, tail_lo) - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_xlabel("iteration")
    ax.set_ylabel("negative ELBO")
    ax.set_title("ADVI convergence", fontsize=10)
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------- skill space
def _with_states(idata: xr.DataTree, post: xr.Dataset, flat: np.ndarray | None = None) -> xr.Dataset:
    """`post` with a ``student_state`` variable: as it is when the posterior stores state
    draws; for a fit that keeps its students' posterior as parameters
    (`results.posterior.STUDENT_POSTERIOR`) the draws of states `flat` (default: all)
    made on demand, as many as `post` has, the other states NaN — a picture needs a
    handful of students, not the millions of states of a large amortised fit."""
    if "student_state" in post or not has_student_states(idata):
        return post
    n_states, d = post.sizes["state"], post.sizes.get("skill", 1)
    C, D = post.sizes["chain"], post.sizes["draw"]
    flat = np.arange(n_states) if flat is None else np.unique(np.asarray(flat, dtype=np.int64))
    arr = np.full((C, D, n_states, d), np.nan)
    arr[:, :, flat] = state_draws(idata, flat, stacked=False)[:C, :D]
    return post.assign(student_state=(("chain", "draw", "state", "skill"), arr))


def _student_choice(idata: xr.DataTree, post: xr.Dataset, students: Sequence[str] | None,
                    max_students: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    labels = student_labels(idata)
    owner = state_owner(post, labels)
    if students is not None:
        lookup = {s: i for i, s in enumerate(labels)}
        missing = [s for s in students if str(s) not in lookup]
        if missing:
            raise KeyError(f"unknown student(s) {missing!r}")
        chosen = [lookup[str(s)] for s in students][:max_students]
    else:  # long histories show the most learning; spread them over where they end up
        counts = np.bincount(owner[owner >= 0], minlength=len(labels))
        ranked = np.argsort(-counts, kind="stable")
        n_long = int((counts >= np.quantile(counts[counts > 0], 0.75)).sum()) if counts.any() else 0
        candidates = ranked[: min(max(n_long, max_students), 200)]
        chosen = [int(u) for u in candidates]
        if len(candidates) > max_students and "student_state" in post:
            steps = state_steps(post)
            last = np.array([np.flatnonzero(owner == u)[np.argmax(steps[owner == u])] for u in candidates])
            end = as_array(post["student_state"].isel(state=last), "state", "skill").mean(axis=(0, 1))  # (cand, d)
            key = np.arctan2(end[:, -1], end[:, 0]) if end.shape[1] > 1 else end[:, 0]
            order = np.argsort(key, kind="stable")
            picks = np.unique(np.linspace(0, len(order) - 1, max_students).round().astype(int))
            chosen = [int(candidates[order[k]]) for k in picks]
    return labels, owner, chosen


def _ellipse(ax: Any, pts: np.ndarray, cred: float, color: str) -> None:
    from scipy.stats import chi2

    if len(pts) < 3:
        return
    cov = np.cov(pts.T)
    if not np.all(np.isfinite(cov)):
        return
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, 0)
    k = chi2.ppf(cred, 2)
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
    ax.add_patch(Ellipse(pts.mean(axis=0), 2 * np.sqrt(k * vals[1]), 2 * np.sqrt(k * vals[0]), angle=angle,
                         facecolor=color, alpha=0.10, edgecolor=color, lw=0.8))


def plot_skill_space(
    idata: xr.DataTree,
    *,
    aligned: xr.Dataset | None = None,
    skills: Sequence[int] | None = None,
    students: Sequence[str] | None = None,
    max_students: int = 6,
    max_assessments: int = 60,
    max_lessons: int = 12,
    max_labels: int = 15,
    cred: float = 0.9,
    max_draws: int = 400,
) -> Figure:
    """Assessments (requirements a) as points, lessons (gains l, from the origin) as arrows
    with prerequisites q marked, and student trajectories with credible ellipses per step.

    For d > 2 two skills are shown (default: the two with most variance); for d = 1
    skill is drawn against the step.
    """
    post = _thinned(_aligned(idata, aligned), max_draws)
    d = post.sizes.get("skill", 1)
    labels, owner, chosen = _student_choice(idata, post, students, max_students)
    post = _with_states(idata, post, np.flatnonzero(np.isin(owner, chosen)))
    steps = state_steps(post)
    if d == 1:
        return _skill_space_1d(post, labels, owner, steps, chosen, max_assessments, max_lessons, max_labels, cred)
    i, j = choose_skills(post, skills)
    a_m = g_m = q_m = None
    alab = llab = None
    a_order = l_order = np.zeros(0, dtype=int)
    if "requirement" in post:
        a_s = _samples(post["requirement"], "assessment", "skill")
        a_m = a_s[..., [i, j]].mean(axis=0)
        a_order = np.argsort(-eq.norm(a_s).mean(axis=0))[:max_assessments]
        alab = dim_labels(post, "assessment", post.sizes["assessment"])
    if "gain" in post:
        g = _samples(post["gain"], "lesson", "skill")
        g_m = g.mean(axis=0)[:, [i, j]]
        l_order = np.argsort(-eq.norm(g).mean(axis=0))[:max_lessons]
        llab = dim_labels(post, "lesson", post.sizes["lesson"])
        q_m = _samples(post["prerequisite"], "lesson", "skill").mean(axis=0)[:, [i, j]] if "prerequisite" in post else None
    s = _samples(post["student_state"], "state", "skill")[..., [i, j]]  # (S, states, 2)
    paths = []
    for r, u in enumerate(chosen):
        idx = np.flatnonzero(owner == u)
        idx = idx[np.argsort(steps[idx], kind="stable")]
        if len(idx):
            paths.append((r, u, idx, s[:, idx].mean(axis=0)))

    def extent(points: list[np.ndarray]) -> np.ndarray:
        pts = [p.reshape(-1, 2) for p in points if p is not None and p.size]
        return np.nanmax(np.concatenate(pts), axis=0) if pts else np.zeros(2)

    modules = extent([a_m[a_order] if a_m is not None else None, g_m[l_order] if g_m is not None else None,
                      q_m[l_order] if q_m is not None else None])
    whole = np.maximum(modules, extent([p for *_, p in paths]))
    # Long histories carry students far from the modules (states drift up step after step):
    # on one shared scale every assessment and lesson label piled up near the origin.  Then
    # a second panel zooms on the modules, and only it carries their labels.
    zoom = bool(np.all(modules > 0) and np.max(whole / np.maximum(modules, 1e-9)) > 3)
    fig = _fig(14 if zoom else 8, 7)
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1]}) if zoom else [fig.add_subplot()]

    def draw(ax: Any, lim: np.ndarray, label_modules: bool, label_students: bool) -> None:
        if a_m is not None:
            ax.scatter(a_m[a_order, 0], a_m[a_order, 1], s=28, c="k", marker="o", zorder=3)
            if label_modules:
                for o in a_order[:max_labels]:
                    ax.annotate(_t(alab[o])[:24], a_m[o], xytext=(4, 3), textcoords="offset points", fontsize=7)
        if g_m is not None:
            for r, o in enumerate(l_order):
                col = COLORS[(r + 3) % len(COLORS)]
                ax.annotate("", xy=g_m[o], xytext=(0, 0),
                            arrowprops={"arrowstyle": "-|>", "color": col, "lw": 1.6, "alpha": 0.85})
                if label_modules:
                    ax.annotate(_t(llab[o])[:20], g_m[o], xytext=(3, -8), textcoords="offset points", fontsize=7,
                                color=col)
                if q_m is not None:
                    ax.scatter([q_m[o, 0]], [q_m[o, 1]], marker="^", facecolors="none", edgecolors=col, s=50, lw=1.3)
        for r, u, idx, path in paths:
            col = COLORS[r % len(COLORS)]
            ax.plot(path[:, 0], path[:, 1], "-", color=col, lw=1.4, zorder=4)
            ax.scatter(path[:, 0], path[:, 1], color=col, s=14, zorder=5)
            if len(path) > 1:
                ax.annotate("", xy=path[-1], xytext=path[-2], arrowprops={"arrowstyle": "->", "color": col, "lw": 1.4})
            # credible ellipses at every step of short paths, else at the first and last step
            for st in (idx if len(idx) <= 4 else idx[[0, -1]]):
                _ellipse(ax, s[:, st], cred, col)
            if label_students:  # at the path's end, where paths are apart, not at step 0 by the origin
                ax.annotate(f"{_t(labels[u])[:24]} (step {len(idx) - 1})", path[-1], xytext=(4, 4),
                            textcoords="offset points", fontsize=7, color=col, clip_on=True)
        ax.set_xlim(0, max(lim[0] * 1.12, 0.5))
        ax.set_ylim(0, max(lim[1] * 1.12, 0.5))
        ax.set_xlabel(f"skill {i}")
        ax.set_ylabel(f"skill {j}")

    which = "" if d == 2 else f" {i} and {j} of {d} (most variance)" if skills is None else f" {i} and {j} of {d}"
    title = f"Latent skill space{(' — skills' + which) if which else ''}; aligned posterior means"
    if zoom:
        draw(axes[0], whole, label_modules=False, label_students=True)
        axes[0].set_title(title + "\nwhole space: student paths", fontsize=10)
        draw(axes[1], modules, label_modules=True, label_students=False)
        axes[1].set_title("zoom on the assessments and lessons (paths leave the frame)", fontsize=10)
    else:
        draw(axes[0], whole, label_modules=True, label_students=True)
        axes[0].set_title(title, fontsize=10)
    handles = [Line2D([], [], marker="o", color="k", ls="", label="assessment requirement a"),
               Line2D([], [], color=COLORS[3], marker=">", label="lesson gain l (from origin)")]
    if "prerequisite" in post:
        handles.append(Line2D([], [], marker="^", color=COLORS[3], mfc="none", ls="", label="lesson prerequisite q"))
    handles.append(Line2D([], [], color=COLORS[0], marker=".",
                          label=f"student path (means), {int(cred * 100)}% ellipses"))
    axes[-1].legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)
    return fig


def _skill_space_1d(post: xr.Dataset, labels: np.ndarray, owner: np.ndarray, steps: np.ndarray,
                    chosen: list[int], max_assessments: int, max_lessons: int, max_labels: int,
                    cred: float) -> Figure:
    has_lessons = "gain" in post
    fig = _fig(9 if has_lessons else 7, 5)
    axes = fig.subplots(1, 2 if has_lessons else 1, squeeze=False,
                        gridspec_kw={"width_ratios": [3, 1] if has_lessons else [1]})[0]
    ax = axes[0]
    s = _samples(post["student_state"], "state", "skill")[..., 0]
    lo_q, hi_q = 50 * (1 - cred), 50 * (1 + cred)
    for r, u in enumerate(chosen):
        idx = np.flatnonzero(owner == u)
        idx = idx[np.argsort(steps[idx], kind="stable")]
        if not len(idx):
            continue
        col = COLORS[r % len(COLORS)]
        lo, hi = np.percentile(s[:, idx], [lo_q, hi_q], axis=0)
        ax.fill_between(steps[idx], lo, hi, color=col, alpha=0.15)
        ax.plot(steps[idx], s[:, idx].mean(axis=0), "-o", color=col, ms=3, label=_t(labels[u])[:24])
    if "requirement" in post:
        a = _samples(post["requirement"], "assessment", "skill")[..., 0].mean(axis=0)
        alab = dim_labels(post, "assessment", post.sizes["assessment"])
        order = np.argsort(-a)[:max_assessments]
        for r, o in enumerate(order):
            ax.axhline(a[o], color="0.4", ls=":", lw=0.7)
            if r < max_labels:
                ax.annotate(_t(alab[o])[:16], (1.0, a[o]), xycoords=("axes fraction", "data"), fontsize=7,
                            xytext=(2, 0), textcoords="offset points", va="center")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step (lessons completed)")
    ax.set_ylabel("skill")
    ax.set_title(f"Student skill over steps ({int(cred * 100)}% bands); dotted: assessment requirements",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    if has_lessons:
        ax2 = axes[1]
        g = _samples(post["gain"], "lesson", "skill")[..., 0]
        llab = dim_labels(post, "lesson", post.sizes["lesson"])
        order = np.argsort(-g.mean(axis=0))[:max_lessons]
        x = np.arange(len(order))
        lo, hi = np.percentile(g[:, order], [lo_q, hi_q], axis=0)
        ax2.bar(x, g[:, order].mean(axis=0), color=COLORS[3], alpha=0.7, label="gain l")
        ax2.errorbar(x, g[:, order].mean(axis=0), yerr=[g[:, order].mean(axis=0) - lo, hi - g[:, order].mean(axis=0)],
                     fmt="none", ecolor="k", lw=0.8)
        if "prerequisite" in post:
            q = _samples(post["prerequisite"], "lesson", "skill")[..., 0].mean(axis=0)
            ax2.scatter(x, q[order], marker="^", facecolors="none", edgecolors="k", label="prerequisite q")
        ax2.set_xticks(x, [_t(llab[o])[:10] for o in order], rotation=60, fontsize=7)
        ax2.set_title("Lessons", fontsize=9)
        ax2.legend(fontsize=7)
    return fig


def plot_gain_field(
    idata: xr.DataTree,
    *,
    aligned: xr.Dataset | None = None,
    lesson: str | None = None,
    skills: Sequence[int] | None = None,
    grid: int = 15,
    max_draws: int = 200,
) -> Figure:
    """The vector field of skill gains of one lesson (blog Figure 0).

    Arrows: the posterior-expected gain E[l·σ(D(s, q))] of a student at s; contours:
    its magnitude.  Default lesson: the one with the largest mean |l|.  For d > 2 the
    other skills are held at the students' mean.
    """
    post = _thinned(_aligned(idata, aligned), max_draws)
    if "gain" not in post or post.sizes.get("lesson", 0) == 0:
        return _message("This model has no lessons: there is no gain field to draw.")
    llab = dim_labels(post, "lesson", post.sizes["lesson"])
    l_all = _samples(post["gain"], "lesson", "skill")  # (S, L, d)
    if lesson is None:
        k = int(np.argmax(eq.norm(l_all).mean(axis=0)))
    else:
        hits = np.flatnonzero(llab == str(lesson))
        if not len(hits):
            raise KeyError(f"unknown lesson {lesson!r}")
        k = int(hits[0])
    lk = l_all[:, k]  # (S, d)
    qk = _samples(post["prerequisite"], "lesson", "skill")[:, k] if "prerequisite" in post else None
    d = lk.shape[1]
    if "student_state" not in post:  # states kept as parameters: a sample of them is enough here
        post = _with_states(idata, post, np.unique(np.random.default_rng(0).integers(0, post.sizes["state"], 5000)))
    states = _samples(post["student_state"], "state", "skill").mean(axis=0)  # (states, d)
    states = states[np.isfinite(states).all(axis=-1)]
    title = f"Expected skill gain of lesson {_t(llab[k])[:30]}: l·σ(D(s, q))"
    if qk is None:
        title += " — no prerequisites: uniform field"
    if d == 1:
        smax = max(1.0, float(np.percentile(states[:, 0], 99)) * 1.2)
        xs = np.linspace(0, smax, 200)
        w = eq.gain_weight(xs[None, :, None], None if qk is None else qk[:, None, :])
        gain = lk[:, 0][:, None] * w
        fig = _fig(6.5, 3.5)
        ax = fig.add_subplot()
        lo, hi = np.percentile(gain, [5, 95], axis=0)
        ax.fill_between(xs, lo, hi, alpha=0.2, color=COLORS[0])
        ax.plot(xs, gain.mean(axis=0), color=COLORS[0])
        if qk is not None:
            ax.axvline(qk.mean(), color="k", ls=":", lw=0.8, label="prerequisite q")
            ax.legend(fontsize=8)
        ax.set_xlabel("student skill s")
        ax.set_ylabel("expected gain")
        ax.set_title(title, fontsize=9)
        return fig
    i, j = choose_skills(post, skills)
    base = states.mean(axis=0)
    smax = [max(1.0, float(np.percentile(states[:, c], 99)) * 1.2) for c in (i, j)]
    if qk is not None:  # where the prerequisites bite: up to a few units past |q|
        qn = float(eq.norm(qk).mean())
        smax = [max(min(m, qn + 3.0), 2 * float(qk[:, c].mean()), 1.0) for m, c in zip(smax, (i, j))]

    def field(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        gx, gy = np.meshgrid(np.linspace(0, smax[0], n), np.linspace(0, smax[1], n))
        s = np.tile(base, (n * n, 1))
        s[:, i], s[:, j] = gx.ravel(), gy.ravel()
        w = eq.gain_weight(s[None], None if qk is None else qk[:, None, :])  # (S, n²)
        g = (lk[:, None, :] * w[..., None]).mean(axis=0)  # (n², d)
        return gx, gy, g

    fig = _fig(7, 6)
    ax = fig.add_subplot()
    fx, fy, fg = field(60)
    mag = np.linalg.norm(fg, axis=1).reshape(fx.shape)
    cs = ax.contourf(fx, fy, mag, levels=12, cmap="viridis", alpha=0.85)
    fig.colorbar(cs, ax=ax, label="|expected gain| (all skills)")
    gx, gy, g = field(grid)
    ax.quiver(gx, gy, g[:, i].reshape(gx.shape), g[:, j].reshape(gx.shape), color="white",
              angles="xy", scale_units="xy", scale=None, width=0.004)
    if qk is not None:
        ax.scatter([qk[:, i].mean()], [qk[:, j].mean()], marker="^", s=90, facecolors="none",
                   edgecolors="red", lw=1.6, label="prerequisite q", zorder=5)
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel(f"skill {i}")
    ax.set_ylabel(f"skill {j}")
    if d > 2:
        title += "\n(other skills held at the students' mean)"
    ax.set_title(title, fontsize=9)
    return fig


# --------------------------------------------------------------------------- predictive checks
def _ppc_tables(source: xr.DataTree | Diagnostics) -> dict:
    if isinstance(source, Diagnostics):
        return source.tables
    return predictive_checks(source)[0]


def plot_calibration(source: xr.DataTree | Diagnostics) -> Figure:
    """Reliability diagram: PAV-adjusted curve with a 90% consistency band (as ArviZ's
    plot_ppc_pava) and binned observed rates with 90% predictive intervals."""
    tabs = _ppc_tables(source)
    if "pava" not in tabs or "calibration" not in tabs:
        return _message("No observed answers: calibration cannot be drawn.")
    pava, cal = tabs["pava"], tabs["calibration"]
    fig = _fig(5.8, 5.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=0.8, label="perfect calibration")
    ax.fill_between(pava["predicted"], pava["lo90"], pava["hi90"], step="post", color=COLORS[0], alpha=0.2,
                    label="90% band if the model were right")
    ax.step(pava["predicted"], pava["cep"], where="post", color=COLORS[0], lw=1.6, label="PAV-adjusted observed rate")
    if len(cal):
        ax.errorbar(cal["predicted"], cal["observed"],
                    yerr=[np.maximum(cal["observed"] - cal["lo90"], 0), np.maximum(cal["hi90"] - cal["observed"], 0)],
                    fmt="none", ecolor="0.3", lw=0.8)
        ax.scatter(cal["predicted"], cal["observed"], s=16 + 60 * cal["answers"] / cal["answers"].max(),
                   c=np.where(cal["outside"], COLORS[3], "k"), zorder=5, label="bins (size ∝ answers)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed pass rate")
    source = cal.attrs.get("source", "in-sample")
    ax.set_xlabel("predicted pass probability (" + ("leave-one-out, PSIS" if source == "leave-one-out"
                                                    else "in-sample posterior mean") + ")")
    ax.set_title("Calibration of predicted pass probabilities", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def plot_pass_rates(source: xr.DataTree | Diagnostics, *, max_points: int = 300) -> Figure:
    """Observed against predicted pass rate per student and per assessment (90% intervals)."""
    tabs = _ppc_tables(source)
    parts = [(k, tabs[k]) for k in ("students", "assessments") if k in tabs and len(tabs[k])]
    if not parts:
        return _message("No observed answers: pass rates cannot be drawn.")
    fig = _fig(5 * len(parts), 4.4)
    axes = fig.subplots(1, len(parts), squeeze=False)[0]
    for ax, (name, t) in zip(axes, parts):
        t = t.head(max_points)  # already sorted most surprising first
        out = t["outside"].to_numpy()
        ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=0.8)
        ax.vlines(t["predicted"], t["lo90"], t["hi90"], color="0.7", lw=0.8)
        ax.scatter(t["predicted"][~out], t["observed"][~out], s=10, c="k", label="inside 90% interval")
        ax.scatter(t["predicted"][out], t["observed"][out], s=16, c=COLORS[3], label="outside")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("predicted pass rate")
        ax.set_ylabel("observed pass rate")
        total = len(tabs[name])
        ax.set_title(f"Per {name[:-1]} ({len(t)} of {total} shown)", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    return fig
