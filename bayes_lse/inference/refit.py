"""One NUTS model compiled once and sampled on many outcome vectors of the same design.

Simulation-based calibration fits the same design (same students, states, answers
and lessons) again and again with only the outcomes changed.  A fit through
`engine.run_fit` builds and compiles its PyMC model every time (about 8–20 s on a
6-student design, of which sampling is under a second); here the outcomes are a
`pm.Data` container (`ModelSpec.build_model(outcome_data=True)`; with the history term
its features too, recounted from each outcome vector), nutpie compiles
the log-density once, and each refit swaps the data (`CompiledModel.with_data`).
Each refit returns the same DataTree layout as `run_fit` (`assemble.build_datatree`),
so everything downstream (diagnostics, identified quantities) reads it unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from bayes_lse.core.config import DEFAULT_FIT_CONFIG, merge, validate_fit_config
from bayes_lse.inference.assemble import build_datatree
from bayes_lse.inference.engine import available_cores, reproducible_compilation
from bayes_lse.model.graph import history_feature_data
from bayes_lse.model.terms import assessment_history_counts

if TYPE_CHECKING:
    import xarray as xr

    from bayes_lse.data.log import InteractionLog
    from bayes_lse.model.graph import ModelSpec


__all__ = ["OutcomeRefitter"]


class OutcomeRefitter:
    """NUTS (nutpie) on one design, compiled once, refit on new outcomes.

    Parameters
    ----------
    spec : ModelSpec
        The model to fit.
    log : InteractionLog
        The design: its students, states, answers and lessons (outcomes are replaced
        at every `fit`).
    **overrides
        NUTS settings over `core.config.DEFAULT_FIT_CONFIG["nuts"]` (``draws``,
        ``tune``, ``chains``, ``target_accept``, ``parametrization``, ``requirement``,
        ``cores``, ``adaptation``); ``sampler`` must stay ``"nutpie"``.
    """

    def __init__(self, spec: ModelSpec, log: InteractionLog, **overrides: Any) -> None:
        import nutpie

        cfg = validate_fit_config(merge(DEFAULT_FIT_CONFIG["nuts"], overrides, "nuts fit"), "nuts")
        if cfg["sampler"] != "nutpie":
            raise ValueError("refitting on new outcomes uses nutpie's compiled model; sampler must be 'nutpie'")
        if spec.config["history"] == "auto":  # off, as simulate_on_design draws "auto" (say True for the term)
            spec = type(spec).from_config({**spec.config, "history": False})
        spec, _ = spec.resolve_history(log)  # practice="auto" as a fit decides it for this design
        self.spec, self.log, self.config = spec, log, cfg
        model, self.idx = spec.build_model(log, parametrization=cfg["parametrization"],
                                           requirement=cfg["requirement"], outcome_data=True)
        t0 = time.perf_counter()
        with reproducible_compilation():  # same-seed refits identical on cold and warm caches
            self.compiled = nutpie.compile_pymc_model(model, backend="numba")
        self.compile_seconds = time.perf_counter() - t0
        self._is_answer = (log.table["module_type"] == "assessment").to_numpy()

    @property
    def n_answers(self) -> int:
        return len(self.idx.outcome)

    def fit(self, outcome: np.ndarray, seed: int) -> xr.DataTree:
        """Sample the posterior given `outcome` (0/1 per answer, in the design's answer order).

        Parameters
        ----------
        outcome : numpy.ndarray
            One outcome per assessment row of the design, in table order.
        seed : int
            The sampler's seed.

        Returns
        -------
        xarray.DataTree
            The posterior tree of `run_fit`'s layout, with these outcomes as the
            observed data and in the interactions table.
        """
        import nutpie

        cfg = self.config
        outcome = np.asarray(outcome)
        if outcome.shape != (self.n_answers,) or not np.isin(outcome, (0, 1)).all():
            raise ValueError(f"outcome must be {self.n_answers} values of 0 or 1, one per answer of the design")
        outcome = outcome.astype(np.int8)
        kwargs: dict[str, Any] = {"target_accept": cfg["target_accept"]}
        if cfg.get("adaptation") is not None:
            kwargs["adaptation"] = cfg["adaptation"]
        cores = int(cfg["cores"]) if cfg.get("cores") else min(int(cfg["chains"]), available_cores())
        t0 = time.perf_counter()
        data: dict[str, np.ndarray] = {"outcome_data": outcome}
        if self.spec.config["history"]:  # its counts follow the outcomes (`history_feature_data`)
            idx = self.idx
            data.update(history_feature_data(
                assessment_history_counts(idx.obs_student, idx.obs_assessment, outcome, idx.obs_state),
                self.spec.config))
        trace = nutpie.sample(
            self.compiled.with_data(**data),
            draws=int(cfg["draws"]), tune=int(cfg["tune"]), chains=int(cfg["chains"]), cores=cores,
            seed=int(seed), progress_bar=False, save_warmup=False, **kwargs,
        )
        runtime = time.perf_counter() - t0
        table = self.log.table.copy()
        column = table["outcome"].to_numpy(dtype=float, copy=True)
        column[self._is_answer] = outcome
        table["outcome"] = column
        log = dataclasses.replace(self.log, table=table)
        idx = dataclasses.replace(self.idx, outcome=outcome)
        raw = trace["posterior"].to_dataset()
        extra = {"sample_stats": trace["sample_stats"].to_dataset()}
        fit_cfg = {**cfg, "seed": int(seed)}
        return build_datatree(self.spec.config, fit_cfg, "nuts", log, idx, raw, extra, runtime)
