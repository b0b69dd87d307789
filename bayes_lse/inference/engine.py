"""Fitting: MAP (L-BFGS-B from several jittered starts), ADVI (mean-field or
full-rank, with a stopping rule that checks the loss has levelled off) and NUTS
(PyMC, nutpie or numpyro).  Every method returns the same posterior layout.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from bayes_lse.core.lazy import LazyModule
from bayes_lse.core.config import DEFAULT_FIT_CONFIG, DEFAULT_SKILLS, merge, validate_fit_config
from bayes_lse.core.memory import release_free_memory
from bayes_lse.inference.stopping import LossPlateau, TimeLimit
from bayes_lse.model.graph import tags_on
from bayes_lse.model.terms import hyperparameters_used, prior_scale

if TYPE_CHECKING:
    import xarray as xr  # noqa: F811

    from bayes_lse.data.log import InteractionLog
    from bayes_lse.model.graph import IndexArrays, ModelSpec

log = logging.getLogger(__name__)


# imported on first use (_lazy.py): a kernel MAP fit never loads PyMC/PyTensor, and
# loads xarray only after the optimiser, when its memory has been handed back
pm: Any = LazyModule("pymc")
pytensor: Any = LazyModule("pytensor")
pt: Any = LazyModule("pytensor.tensor")
xr: Any = LazyModule("xarray")

#: free variables in the order they are reported
POSITIVE = {"initial_state", "later_state", "requirement", "gain", "prerequisite", "learning_noise"}

PARAMETERS = (
    "requirement",
    "gain",
    "prerequisite",
    "student_bias",
    "assessment_bias",
    "learning_noise",
)


def default_progressbar() -> bool:
    """PyMC's progress bars when a person is watching, quiet otherwise (tests, CI, pipes)."""
    return sys.stderr.isatty()


#: Seconds between MAP progress lines on stderr (with ``progressbar=True``): a terminal
#: gets one every 10 s, a log file or pipe one every 30 s (issue 20: MAP was silent for
#: minutes), plus one line at the end of every start.
MAP_PROGRESS_EVERY = {"terminal": 10.0, "other": 30.0}


class _MapProgress:
    """L-BFGS-B callback printing one line per `MAP_PROGRESS_EVERY` seconds: start,
    iteration, objective, elapsed time."""

    def __init__(self, start: int, n_starts: int, maxiter: int) -> None:
        self.label = f"MAP start {start + 1}/{n_starts}"
        self.maxiter = maxiter
        self.every = MAP_PROGRESS_EVERY["terminal" if sys.stderr.isatty() else "other"]
        self.t0 = self.last = time.perf_counter()
        self.iteration = 0

    def __call__(self, intermediate_result: Any) -> None:
        self.iteration += 1
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            f = float(getattr(intermediate_result, "fun", np.nan))
            print(f"{self.label}: iteration {self.iteration}/{self.maxiter}, -log p = {f:.2f} "
                  f"({now - self.t0:.0f} s)", file=sys.stderr, flush=True)


def run_fit(
    spec: ModelSpec, data: InteractionLog, method: str, progressbar: bool | None = None,
    choices: list[str] | None = None, **overrides: Any
) -> xr.DataTree:
    """Fit `spec` to `data` by `method` and return the posterior DataTree (ARCHITECTURE.md).

    Settings left at "auto" (MAP's starts and maxiter) are chosen from the data
    (`inference.defaults`); the tree's attribute ``choices`` lists every such choice
    with its reason, `choices` (from the caller: the method, the history term) first."""
    from bayes_lse.inference.assemble import build_datatree
    from bayes_lse.inference.defaults import cap_minibatch_draws, choose_student_posterior, resolve_map_settings

    fit_cfg = validate_fit_config(merge(DEFAULT_FIT_CONFIG[method], overrides, f"{method} fit"), method)
    notes = list(choices or [])
    if spec.config["n_skills"] == "auto":
        # not decided by a held-out check (`LatentSkillEmbedding.fit` runs one where it applies)
        spec = spec.with_skills(DEFAULT_SKILLS)
        notes.append(f"n_skills {DEFAULT_SKILLS}: the default d (no held-out choice was made for this fit)")
    if spec.config["lessons"] == "auto":
        # not decided by a held-out check (`LatentSkillEmbedding.fit` runs one where it applies)
        spec = spec.with_lessons(True)
        if data.n_lessons:
            notes.append("lessons on: the default (no held-out choice was made for this fit)")
    if method == "advi" and fit_cfg.get("amortised") and fit_cfg.get("batch_size") is None:
        fit_cfg = {**fit_cfg, "batch_size": 256}
        notes.append("batch_size 256: amortised ADVI trains on minibatches of students (default size)")
    if spec.history_unresolved:
        if (spec.config["history"] == "auto" and method == "advi" and fit_cfg.get("batch_size") is not None
                and not fit_cfg.get("amortised")):
            spec = type(spec).from_config({**spec.config, "history": False, "practice": False})
            notes.append("history term off: minibatch ADVI (batch_size) has no history term yet")
        else:
            spec, why = spec.resolve_history(data)
            if why:
                notes.append(str(why))
    if getattr(data, "modules", None) is not None and spec.config.get("tags", True):
        batched = method == "advi" and fit_cfg.get("batch_size") is not None
        if batched or (method == "map" and spec.config["hierarchical"]):
            data = data.with_modules(None)
            notes.append("tag effects off: " + ("minibatch and amortised ADVI have" if batched else
                         "the empirical-Bayes MAP of a hierarchical model has") + " no tag effects yet (full-batch "
                         "ADVI, NUTS or non-hierarchical MAP do); new assessments are drawn from the population")
    if method == "map":
        fit_cfg, why = resolve_map_settings(fit_cfg, data)
        notes += why
    if method == "advi":
        fit_cfg, why = choose_student_posterior(fit_cfg, data, spec.config["n_skills"])
        notes += why
        if fit_cfg.get("student_posterior") != "parameters":
            fit_cfg, why = cap_minibatch_draws(fit_cfg, data, spec.config["n_skills"], "draws" in overrides)
            notes += why
    with reproducible_compilation():
        tree = _run_fit(spec, data, method, fit_cfg, progressbar)
    tree.attrs["choices"] = json.dumps(notes)
    return tree


def reproducible_compilation() -> Any:
    """A context in which PyTensor compiles the same graph to the same arithmetic every time.

    PyTensor's numba backend compiles with LLVM fast-math flags by default; with
    ``reassoc`` LLVM may reorder sums, and the order it chose differed between a graph
    compiled from scratch and the same graph loaded from the compile cache: the log
    density differed in the last bit (-150.64338450904575 vs ...577), and PyMC's NUTS with
    the same seed drew different chains on a machine's first run and on every later one
    (issue 19, item 5).  With fast-math off, cold and warm caches give identical draws
    (tests/inference/test_reproducible.py) at no measurable cost per gradient
    (benchmarks/bench_fastmath.py: off/on 0.7-1.1 on a shared 2-core machine).  Chains
    that PyMC runs in forked processes inherit the setting; nutpie compiles inside it."""
    import pytensor

    return pytensor.config.change_flags(numba__fastmath=False)


def _run_fit(
    spec: ModelSpec, data: InteractionLog, method: str, fit_cfg: dict[str, Any], progressbar: bool | None
) -> xr.DataTree:
    from bayes_lse.inference.assemble import build_datatree

    if progressbar is None:
        progressbar = default_progressbar()
    release_free_memory()
    if data.table["module_type"].eq("assessment").sum() == 0:
        raise ValueError("the interaction log has no assessment rows: there is nothing to fit")
    if method == "advi" and fit_cfg.get("amortised"):
        # students through a jointly trained encoder, globals by SVI, in JAX (amortised_fit.py)
        from bayes_lse.inference.amortised_fit import run_amortised_advi

        return run_amortised_advi(spec, data, fit_cfg, progressbar)
    if method == "advi" and fit_cfg.get("batch_size") is not None:
        if spec.config["history"]:
            raise ValueError("minibatch ADVI (batch_size) does not support history=True yet; "
                             "use full-batch ADVI, MAP or NUTS")
        if spec.config["hierarchical"]:
            raise ValueError("minibatch ADVI (batch_size) does not support hierarchical=True yet; "
                             "use full-batch ADVI, MAP or NUTS, or hierarchical=False")
        # minibatch ADVI over students: its own per-batch graph, no full PyMC model (minibatch.py)
        from bayes_lse.inference.minibatch import run_minibatch_advi

        return run_minibatch_advi(spec, data, fit_cfg, progressbar)
    is_map = method == "map"
    if is_map and _use_kernel(spec, data, fit_cfg):
        # centred MAP: one compiled pass over the data, no PyMC model (map_kernel.py)
        from bayes_lse.model.graph import IndexArrays

        idx = IndexArrays.from_log(data)
        release_free_memory()  # the transitions table from_log went through (~35 MB on ASSISTments)
        t0 = time.perf_counter()
        raw, extra = fit_map_kernel(spec, data, idx, fit_cfg, progressbar)
        idata = build_datatree(spec.config, fit_cfg, method, data, idx, raw, extra, time.perf_counter() - t0)
        return idata
    fixed_hyper = None
    eb_config = hierarchical_config(spec, data) if is_map else None
    if eb_config is not None:
        # empirical Bayes (inference.empirical_bayes): the graph with every prior at the
        # config's scales; the biases' hyperparameters are optimised around it
        from bayes_lse.inference.empirical_bayes import initial_hyperparameters

        fixed_hyper = initial_hyperparameters(eb_config)
    model, idx = spec.build_model(
        data,
        parametrization=fit_cfg["parametrization"],
        normalised=not (is_map and not fit_cfg.get("normalised", True)),
        constrained=is_map and fit_cfg.get("constrained", False),
        requirement=fit_cfg.get("requirement", "cartesian") if method == "nuts" else "cartesian",
        hyper=fixed_hyper,
        # MAP: σ_τ by empirical Bayes around the graph at the prior's scale (`_tag_scale_fit`)
        tag_scale=float(prior_scale("sigma_tag_bias", spec.config["priors"])) if is_map else None,
    )
    t0 = time.perf_counter()
    if method == "map":
        eb = (idx, eb_config, data.n_students, data.n_assessments) if eb_config is not None else None
        raw, extra = fit_map(model, fit_cfg, progressbar, empirical_bayes=eb,
                             tags=(idx, spec.config) if tags_on(spec.config, idx) else None)
    elif method == "advi":
        raw, extra = fit_advi(model, fit_cfg, progressbar)
    else:
        raw, extra = fit_nuts(model, fit_cfg, progressbar)
    runtime = time.perf_counter() - t0
    idata = build_datatree(spec.config, fit_cfg, method, data, idx, raw, extra, runtime)
    return idata


# ----------------------------------------------------------------------- MAP
def logp_and_grad(model: pm.Model, jacobian: bool, fixed: dict[str, np.ndarray] | None = None):
    """One compiled function x ↦ (−log p, −∇ log p) over the raveled unconstrained point;
    variables in `fixed` are held at the given values."""
    point = model.initial_point()
    from pymc.pytensorf import join_nonshared_inputs
    from pytensor.graph.replace import clone_replace

    fixed = fixed or {}
    value_vars = [v for v in model.value_vars if v.name not in fixed]
    cost = model.logp(jacobian=jacobian)
    if fixed:
        held = {v: pt.as_tensor(fixed[v.name]) for v in model.value_vars if v.name in fixed}
        cost = clone_replace(cost, held)
    grads = pt.grad(cost, value_vars)
    flat_grad = pt.concatenate([g.ravel() for g in grads])
    (cost_j, grad_j), x = join_nonshared_inputs(point, [cost, flat_grad], value_vars)
    fn = pytensor.function([x], [-cost_j, -grad_j], mode=None, on_unused_input="ignore")
    bij = pm.blocking.DictToArrayBijection
    x0 = bij.map({v.name: point[v.name] for v in value_vars})
    return fn, x0


def hierarchical_config(spec: ModelSpec, data: InteractionLog) -> dict[str, Any] | None:
    """The model config as it applies to `data` (lessons only if the log has some) when
    it is hierarchical, else None."""
    cfg = {**spec.config, "lessons": bool(spec.config["lessons"]) and data.n_lessons > 0}
    return cfg if hyperparameters_used(cfg) else None


def _empirical_bayes(
    inner: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    named: Callable[[np.ndarray], dict[str, np.ndarray]],
    slices: dict[str, slice],
    positive: np.ndarray,
    eb: tuple[IndexArrays, dict[str, Any], int, int],
    cfg: dict[str, Any],
    progressbar: bool,
) -> tuple[dict[str, np.ndarray], xr.Dataset]:
    """MAP of a hierarchical model (inference.empirical_bayes): `inner` is the MAP
    objective with every prior at the config's scales, `slices` where the biases sit
    in its x.  Without bias terms there is nothing to learn and this is the plain MAP,
    with the (fixed) hyperparameters recorded."""
    from bayes_lse.inference import empirical_bayes

    idx, config, n_students, n_assessments = eb
    if "student_bias" not in slices:
        best_x, opt = _multistart(inner, x0, positive, cfg, progressbar)
        hyper, records = empirical_bayes.initial_hyperparameters(config), []
        point = named(best_x)
    else:
        def solve(fun: Callable, start: np.ndarray, c: dict[str, Any]) -> tuple[np.ndarray, xr.Dataset]:
            return _multistart(fun, start, np.concatenate([positive, np.zeros(3, dtype=bool)]), c, progressbar)

        say = (lambda m: print(m, file=sys.stderr)) if progressbar else None
        point, opt, hyper, records = empirical_bayes.fit(
            inner, x0, named, solve, (slices["student_bias"], slices["assessment_bias"]),
            idx, config, cfg, n_students, n_assessments, progress=say,
        )
    point = {**point, **{h: np.asarray(v, dtype=float) for h, v in hyper.items()}}
    opt.attrs["empirical_bayes"] = json.dumps(records)
    return point, opt


def fit_map(
    model: pm.Model,
    cfg: dict[str, Any],
    progressbar: bool,
    *,
    empirical_bayes: tuple[IndexArrays, dict[str, Any], int, int] | None = None,
    tags: tuple[IndexArrays, dict[str, Any]] | None = None,
) -> tuple[xr.Dataset, dict]:
    """Joint point estimate by L-BFGS-B from `starts` jittered points; the best is kept
    and every start's result is recorded.

    The joint mode of this model depends on where it is taken, and two obvious
    choices are unsound (measured on 300 simulated students, σ_L = 0.707):
    - centred states with the exact truncated transition: the mode puts states on
      their expected path, where the normaliser −log Φ(mu/σ) rewards small means,
      so every gain collapses to 0;
    - the same in log space with the transform's Jacobian: states and gains grow
      without bound (|l| ≈ 12 against a true ≈ 1.3).
    Default: the non-centred trajectory (standard-normal innovations mapped through
    the truncated-normal inverse CDF; the exact joint density, nothing dropped),
    positive variables in log space, no Jacobian.  Its gains agree with NUTS's
    posterior means.  For histories too long for the non-centred graph the centred
    form is used with the normaliser dropped (the original LSE objective), which
    does not collapse but shrinks gains (about 3× against NUTS).
    """
    fixed = {}
    if cfg.get("trajectory", "joint") == "median" and "innovation" in model.named_vars:
        fixed["innovation"] = np.zeros(model.initial_point()["innovation"].shape)
    fn, x0 = logp_and_grad(model, jacobian=cfg.get("jacobian", True), fixed=fixed)
    bij = pm.blocking.DictToArrayBijection
    # box constraints where a positive variable is left untransformed
    positive = np.concatenate(
        [
            np.full(size, name in POSITIVE and cfg.get("constrained", False))
            for name, _, size, _ in x0.point_map_info
        ]
    )

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            f, g = fn(x)
        except ValueError:  # a line-search probe outside the support (PyMC's parameter checks)
            return 1e300, np.zeros_like(x)
        return float(f), np.asarray(g, dtype=float)

    def named(x: np.ndarray) -> dict[str, np.ndarray]:
        point_t = bij.rmap(pm.blocking.RaveledVars(x, x0.point_map_info))
        point_t.update(fixed)
        return _constrained_point(model, point_t)

    if empirical_bayes is not None:
        slices, pos = {}, 0
        for name, _, size, _ in x0.point_map_info:
            slices[name] = slice(pos, pos + size)
            pos += size
        point, opt = _empirical_bayes(fun, x0.data, named, slices, positive, empirical_bayes, cfg, progressbar)
        return _point_dataset(point), {"optimization": opt}
    if tags is not None:
        pos, tau = 0, None
        for name, _, size, _ in x0.point_map_info:
            if name == "tag_bias":
                tau = slice(pos, pos + size)
            pos += size
        point, opt = _tag_scale_fit(fun, x0.data, named, tau, positive, *tags, cfg, progressbar)
        return _point_dataset(point), {"optimization": opt}
    best_x, opt = _multistart(fun, x0.data, positive, cfg, progressbar)
    return _point_dataset(named(best_x)), {"optimization": opt}


def _point_dataset(point: dict[str, np.ndarray]) -> xr.Dataset:
    """A point estimate in the (chain, draw, ...) layout that every method returns."""
    return xr.Dataset(
        {k: (("chain", "draw", *[f"_{k}_{i}" for i in range(np.ndim(v))]), np.asarray(v)[None, None]) for k, v in point.items()}
    )


def _multistart(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray | Callable[[], np.ndarray],
    positive: np.ndarray,
    cfg: dict[str, Any],
    progressbar: bool,
) -> tuple[np.ndarray, xr.Dataset]:
    """L-BFGS-B from `starts` jittered copies of `x0`; `positive` marks coordinates kept
    ≥ 0 by box constraints.  Returns the best point and every start's record.

    `x0` may be a function returning the point: it is then made anew for every start
    rather than held through the optimisation (5 MB at ASSISTments' 667k parameters).

    BLAS is held to one thread: L-BFGS-B's vector updates on ~10⁶ parameters are
    memory-bound, and OpenBLAS threads spinning on a busy 2-core machine made each
    iteration 5× slower (measured on ASSISTments, 667k parameters).
    """
    rng = np.random.default_rng(cfg["seed"])
    size = len(positive)

    def safe(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = fun(x)
        if not np.isfinite(f) or not np.all(np.isfinite(g)):
            return 1e300, np.zeros_like(x)
        return f, g

    results = []
    with threadpool_limits(limits=1, user_api="blas"):
        for start in range(int(cfg["starts"])):
            x_init = rng.uniform(-cfg["jitter"], cfg["jitter"], size=size)
            x_init += x0() if callable(x0) else x0  # in place: the same sum as x0 + jitter
            x_init[positive] = np.abs(x_init[positive]) + 0.05
            t0 = time.perf_counter()
            callback = _MapProgress(start, int(cfg["starts"]), int(cfg["maxiter"])) if progressbar else None
            res, restarts, g = lbfgsb_with_restarts(safe, x_init, positive, cfg,
                                                     _maxcor(cfg.get("maxcor", "auto"), size), callback)
            results.append(
                {
                    "x": res.x,
                    "objective": float(res.fun),
                    "n_iterations": int(res.nit),
                    "n_evaluations": int(res.nfev),
                    "grad_norm": float(np.linalg.norm(g)),
                    "grad_max": float(np.max(np.abs(g))) if len(g) else 0.0,
                    "success": bool(res.success),
                    "message": str(res.message),
                    "restarts": restarts,
                    "seconds": time.perf_counter() - t0,
                }
            )
            # res.hess_inv views L-BFGS-B's whole workspace (2·maxcor+5 vectors): do not
            # keep it through the next start (80 MB at 667k parameters)
            del res, g
            if progressbar:
                print(
                    f"MAP start {start + 1}/{cfg['starts']}: -log p = {results[-1]['objective']:.2f} "
                    f"after {results[-1]['n_iterations']} iterations ({results[-1]['message']})",
                    file=sys.stderr,
                )
    best = int(np.argmin([r["objective"] for r in results]))
    opt = xr.Dataset(
        {
            key: ("start", np.array([r[key] for r in results]))
            for key in ("objective", "n_iterations", "n_evaluations", "grad_norm", "grad_max", "success", "message",
                        "restarts", "seconds")
        },
        coords={"start": np.arange(len(results))},
        attrs={"best_start": best, "jacobian": int(bool(cfg.get("jacobian", True)))},
    )
    return results[best]["x"], opt


#: L-BFGS-B restarts, from where it stopped, after a stop on the relative reduction of the
#: objective while the gradient is still far from zero (`lbfgsb_with_restarts`)
MAX_RESTARTS = 3
#: the largest gradient coordinate from which a stop on the objective's reduction is a stall
RESTART_GRAD = 1.0


def lbfgsb_with_restarts(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray, positive: np.ndarray, cfg: dict[str, Any],
    maxcor: int, callback: Any,
) -> tuple[Any, int, np.ndarray]:
    """scipy's L-BFGS-B (`positive` coordinates bounded below by 0), restarted with a fresh
    memory where it stopped when it stopped because the objective's relative reduction
    fell below ``ftol`` while some projected gradient coordinate was still above
    `RESTART_GRAD` and iterations were left (at most `MAX_RESTARTS` times, and only while
    a restart gains more than ``ftol``).  Returns the last result, with the iterations and
    evaluations of every leg summed, the number of restarts, and the projected gradient at
    the result (a coordinate held at its bound by a push outward counts as stationary).

    Why: a default MAP fit of one CV run of ASSISTments (items as lessons, lessons off,
    d = 2; 263k answers) stopped after 83 of its 1,000 iterations with "CONVERGENCE:
    RELATIVE REDUCTION OF F <= FACTR*EPSMCH" and the largest gradient coordinate at 7,159:
    a stall of the line search on a stale curvature memory, not an optimum."""
    bounds = [(0.0, None) if p else (None, None) for p in positive] if positive.any() else None
    maxiter = int(cfg["maxiter"])
    nit = nfev = restarts = 0
    previous = None
    while True:
        res = optimize.minimize(fun, x, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
                                options={"maxiter": maxiter - nit, "ftol": cfg["ftol"], "gtol": cfg["gtol"],
                                         "maxcor": maxcor})
        nit += int(res.nit)
        nfev += int(res.nfev)
        g = np.array(res.jac, dtype=float)
        g[positive & (res.x <= 0.0) & (g > 0)] = 0.0  # held at its bound by a push outward: stationary
        stalled = ("RELATIVE REDUCTION" in str(res.message) and nit < maxiter
                   and float(np.max(np.abs(g), initial=0.0)) > RESTART_GRAD)
        gained = previous is None or previous - float(res.fun) > cfg["ftol"] * max(abs(float(res.fun)), 1.0)
        if not (stalled and gained) or restarts >= MAX_RESTARTS:
            break
        previous, x = float(res.fun), res.x
        restarts += 1
        del res, g
    res.nit, res.nfev = nit, nfev
    return res, restarts, g


def _maxcor(value: Any, n: int) -> int:
    if value == "auto":
        return 20 if n <= 200_000 else 5
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"maxcor must be a positive integer or 'auto', got {value!r}")
    return value


def _use_kernel(spec: ModelSpec, data: InteractionLog, cfg: dict[str, Any]) -> bool:
    """Whether MAP runs on the compiled centred kernel rather than a PyMC graph."""
    from bayes_lse.model.graph import NONCENTERED_MAX_STEPS

    engine = cfg.get("engine", "auto")
    if engine not in ("auto", "kernel", "pytensor"):
        raise ValueError(f"MAP engine must be 'auto', 'kernel' or 'pytensor', got {engine!r}")
    par = cfg["parametrization"]
    if par == "auto" and engine == "kernel":
        par = "centered"  # the kernel has only the centred form: asking for it chooses it
    if par == "auto":
        steps = np.asarray(data.state_step)
        par = "noncentered" if (int(steps.max()) if len(steps) else 0) <= NONCENTERED_MAX_STEPS else "centered"
    if engine == "kernel" and par != "centered":
        raise ValueError(
            f"MAP engine 'kernel' computes the centred trajectory only, but parametrization is {par!r}: "
            "set parametrization to 'centered' or 'auto' (config key `parametrization`), or engine to 'pytensor'"
        )
    return par == "centered" and engine != "pytensor"


def fit_map_kernel(
    spec: ModelSpec, data: InteractionLog, idx: IndexArrays, cfg: dict[str, Any], progressbar: bool
) -> tuple[xr.Dataset, dict]:
    """Centred MAP on `map_kernel.CentredObjective`: the same density and optimiser
    settings as the PyMC path (fit_map), evaluated in one compiled pass."""
    from bayes_lse.inference.map_kernel import CentredObjective

    constrained = bool(cfg.get("constrained", False))
    obj = CentredObjective(
        idx,
        spec.config,
        n_students=data.n_students,
        n_assessments=data.n_assessments,
        n_lessons=data.n_lessons,
        normalised=bool(cfg.get("normalised", True)),
        log_space=not constrained,
        jacobian=bool(cfg.get("jacobian", True)),
        backend=cfg.get("kernel_backend", "numpy"),
    )
    positive = obj.positive if constrained else np.zeros(obj.size, dtype=bool)
    config = hierarchical_config(spec, data)
    if config is not None:
        slices = {n: slice(b.start, b.stop) for n, b in obj.blocks.items() if n in ("student_bias", "assessment_bias")}
        eb = (idx, config, data.n_students, data.n_assessments)
        point, opt = _empirical_bayes(obj, obj.initial_point(), obj.named_point, slices, positive, eb, cfg, progressbar)
        opt.attrs["engine"] = "kernel"
        return _point_dataset(point), {"optimization": opt}
    if obj.tags is not None:
        b = obj.blocks["tag_bias"]
        point, opt = _tag_scale_fit(obj, obj.initial_point, obj.named_point, slice(b.start, b.stop), positive, idx,
                                    spec.config, cfg, progressbar)
        opt.attrs["engine"] = "kernel"
        return _point_dataset(point), {"optimization": opt}
    best_x, opt = _multistart(obj, obj.initial_point, positive, cfg, progressbar)
    opt.attrs["engine"] = "kernel"
    return _point_dataset(obj.named_point(best_x)), {"optimization": opt}


def _tag_scale_fit(
    inner: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray | Callable[[], np.ndarray],
    named: Callable[[np.ndarray], dict[str, np.ndarray]],
    tags: slice,
    positive: np.ndarray,
    idx: IndexArrays,
    config: dict[str, Any],
    cfg: dict[str, Any],
    progressbar: bool,
) -> tuple[dict[str, np.ndarray], xr.Dataset]:
    """MAP of a model with tag effects: the parameters and log σ_τ in one optimisation of
    `empirical_bayes.TagScaleObjective` around `inner` (whose tag effects have the prior
    N(0, tag_bias_sd²), at `tags` in its x); the point gets ``sigma_tag_bias``."""
    from bayes_lse.inference.empirical_bayes import TagScaleObjective

    pri = config["priors"]
    sd0 = float(prior_scale("sigma_tag_bias", pri))
    n_j = np.bincount(np.asarray(idx.obs_assessment, dtype=np.int64), minlength=idx.tag_matrix.shape[0])
    fisher = TagScaleObjective.curvature(idx.tag_matrix, n_j, float(prior_scale("assessment_bias", pri)))
    obj = TagScaleObjective(inner, tags, sd0, fisher)
    start = x0() if callable(x0) else np.asarray(x0, dtype=float)
    z0 = np.concatenate([start, [math.log(sd0)]])
    best, opt = _multistart(obj, z0, np.concatenate([positive, [False]]), cfg, progressbar)
    point = named(best[:-1])
    point["sigma_tag_bias"] = np.asarray(math.exp(float(best[-1])))
    opt.attrs["sigma_tag_bias"] = math.exp(float(best[-1]))
    return point, opt


def _constrained_point(model: pm.Model, point_t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map an unconstrained point back to the free variables' own values."""
    outs = model.unobserved_value_vars
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", point_fn=False)
    values = fn(*[point_t[v.name] for v in model.value_vars])
    wanted = {rv.name for rv in model.free_RVs} | {d.name for d in model.deterministics}
    return {o.name: np.asarray(v) for o, v in zip(outs, values, strict=True) if o.name in wanted}


# ---------------------------------------------------------------------- ADVI
def fit_advi(model: pm.Model, cfg: dict[str, Any], progressbar: bool) -> tuple[xr.Dataset, dict]:
    """Full-batch ADVI through `pm.fit`.  With `batch_size` set, `run_fit` goes to
    `minibatch.run_minibatch_advi` instead (minibatches of students, no full model)."""
    kinds = {"meanfield": "advi", "fullrank": "fullrank_advi"}
    if cfg["kind"] not in kinds:
        raise ValueError(f"ADVI kind must be 'meanfield' or 'fullrank', got {cfg['kind']!r}")
    stop = LossPlateau(cfg["window"], cfg["tolerance"])
    callbacks: list[Any] = [stop]
    if cfg.get("max_seconds") is not None:
        callbacks.append(TimeLimit(float(cfg["max_seconds"])))
    seed = cfg["seed"]
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ii]nference data.*")
        approx = pm.fit(
            n=int(cfg["max_iterations"]),
            method=kinds[cfg["kind"]],
            random_seed=seed,
            obj_optimizer=pm.adam(learning_rate=cfg["learning_rate"]),
            callbacks=callbacks,
            progressbar=progressbar,
            backend=_advi_backend(cfg),  # None (PyTensor default, numba) or "jax"; see _advi_backend
        )
        draws = approx.sample(int(cfg["draws"]), random_seed=seed, return_inferencedata=True)
    posterior = _posterior_dataset(draws)
    hist = np.asarray(approx.hist, dtype=float)
    opt = xr.Dataset(
        {"loss": ("iteration", hist)},
        coords={"iteration": np.arange(1, len(hist) + 1)},
        attrs={
            "kind": cfg["kind"],
            "converged": int(stop.converged_at is not None),
            "iterations": len(hist),
            "converged_at": -1 if stop.converged_at is None else stop.converged_at,
            "rule": f"relative change of the {cfg['window']}-iteration mean loss < {cfg['tolerance']:g}",
        },
    )
    if stop.converged_at is None:
        warnings.warn(
            f"ADVI did not meet its stopping rule within {len(hist)} iterations (max_iterations="
            f"{cfg['max_iterations']}, max_seconds={cfg.get('max_seconds')}); raise them or check the loss history",
            RuntimeWarning,
            stacklevel=3,
        )
    return posterior, {"optimization": opt}


def _advi_backend(cfg: dict[str, Any]) -> str | None:
    """ADVI fit option `backend`: None (PyTensor's default linker) or "jax", which PyMC 6.4
    offers as `pm.fit(..., backend="jax")`: the whole optimisation step (ELBO gradient and
    Adam update) is compiled by JAX, so it runs on a GPU when `jax[cuda12]` is installed.
    (The JAX linker copies the model's RNG shared variables and warns that it does; the
    copies advance between steps, so the Monte Carlo ELBO is still fresh every step.)"""
    backend = cfg.get("backend")
    if backend is None:
        return None
    if backend != "jax":
        raise ValueError(f"ADVI backend must be None or 'jax', got {backend!r}")
    try:
        import jax  # noqa: F401
    except ImportError:
        raise ImportError("backend='jax' needs JAX: pip install 'bayes-lse[jax]'") from None
    warnings.filterwarnings("ignore", category=UserWarning, message=".*RandomType SharedVariables.*")
    return "jax"


# ---------------------------------------------------------------------- NUTS
JAX_CHAIN_METHODS = ("auto", "parallel", "sequential", "vectorized")


def jax_chain_method(requested: str, chains: int) -> str:
    """How numpyro runs `chains` chains: 'parallel' (one XLA device per chain, `jax.pmap`),
    'sequential' or 'vectorized' (`jax.vmap` on one device).

    'auto': on CPU, ask XLA for one host device per chain — possible only before JAX
    has run anything in this process, and only if neither the user nor PyMC (importing
    `pymc.sampling.jax` sets `--xla_force_host_platform_device_count=100`) has set a
    count — then 'parallel' when there are enough devices, else 'sequential' on CPU
    and 'vectorized' on a single GPU/TPU.  More chains than cores is fine: the chains'
    threads share the cores.
    """
    if requested not in JAX_CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {', '.join(JAX_CHAIN_METHODS)}; got {requested!r}")
    if requested != "auto" or chains <= 1:
        return "sequential" if requested == "auto" else requested
    import os

    import jax

    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", "") and jax.config.jax_num_cpu_devices < 0:
        try:
            jax.config.update("jax_num_cpu_devices", int(chains))
        except RuntimeError:  # JAX already initialised its backends in this process: keep what it has
            pass
    if jax.local_device_count() >= chains:
        return "parallel"
    return "sequential" if jax.default_backend() == "cpu" else "vectorized"


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def fit_nuts(model: pm.Model, cfg: dict[str, Any], progressbar: bool) -> tuple[xr.Dataset, dict]:
    """NUTS through `pm.sample(nuts_sampler=...)`: 'nutpie' (Rust, numba-compiled
    log-density; the default), 'pymc' (PyMC's own NUTS, one process per chain) or
    'numpyro' (JAX; the GPU path: `pip install "bayes-lse[jax]"`, plus `"jax[cuda12]"`
    for a GPU).  Every sampler returns `sample_stats` with diverging / energy /
    tree depth, so `FittedLSE.diagnostics()` works the same for all three."""
    sampler = cfg["sampler"]
    if sampler not in ("pymc", "nutpie", "numpyro"):
        raise ValueError(f"sampler must be 'pymc', 'nutpie' or 'numpyro', got {sampler!r}")
    chain_method = cfg.get("chain_method", "auto")
    if chain_method not in JAX_CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {', '.join(JAX_CHAIN_METHODS)}; got {chain_method!r}")
    if sampler == "numpyro":
        try:
            import jax  # noqa: F401
            import numpyro  # noqa: F401
        except ImportError:
            raise ImportError(
                "sampler='numpyro' needs the optional JAX backend: pip install 'bayes-lse[jax]' "
                "(the same as 'bayes-lse[numpyro]'; add 'jax[cuda12]' for an NVIDIA GPU)"
            ) from None
    kwargs: dict[str, Any] = dict(
        draws=int(cfg["draws"]),
        tune=int(cfg["tune"]),
        chains=int(cfg["chains"]),
        random_seed=cfg["seed"],
        progressbar=progressbar,
        nuts_sampler=sampler,
        compute_convergence_checks=False,
    )
    # PyMC's default is min(4, cpu_count // 2), assuming hyper-threads: on a 2-core machine
    # that is 1 and nutpie ran its chains one after another (measured: 412 s wall = 412 s
    # CPU for 4 chains). Use every core this process may run on, up to one per chain.
    kwargs["cores"] = int(cfg["cores"]) if cfg.get("cores") else min(int(cfg["chains"]), available_cores())
    if sampler == "pymc":
        kwargs["target_accept"] = cfg["target_accept"]
    else:
        kwargs["nuts"] = {"target_accept": cfg["target_accept"]}
    if sampler == "numpyro":
        kwargs["nuts"]["chain_method"] = jax_chain_method(chain_method, int(cfg["chains"]))
    adaptation = cfg.get("adaptation")
    if adaptation is not None:
        if sampler != "nutpie" or adaptation not in ("diag", "draw_diag", "low_rank"):
            raise ValueError(
                f"adaptation must be None, or for sampler='nutpie' one of 'diag', 'draw_diag', 'low_rank'; "
                f"got {adaptation!r} with sampler={sampler!r}"
            )
        kwargs["nuts"]["adaptation"] = adaptation
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, message=".*[Cc]hains.*fewer.*")
        # the JAX linker copies the model's RNG shared variables; sampling uses none of them
        warnings.filterwarnings("ignore", category=UserWarning, message=".*RandomType SharedVariables.*")
        idata = pm.sample(**kwargs)
    posterior = _posterior_dataset(idata)
    extra: dict[str, Any] = {}
    if "sample_stats" in idata.children:
        extra["sample_stats"] = idata["sample_stats"].to_dataset()
    return posterior, extra


def _posterior_dataset(idata: Any) -> xr.Dataset:
    post = idata["posterior"]
    return post.to_dataset() if hasattr(post, "to_dataset") else post
