"""The two public classes, as thin facades over the pipeline's layers.

`LatentSkillEmbedding` is the model spec (`model.graph.ModelSpec`) plus `fit`, which
hands the spec to an inference engine (`inference.engine.run_fit`) and wraps the
DataTree it returns.  `FittedLSE` is the posterior and its accessors
(`results.posterior.FitResult`) plus the steps that come after a fit: diagnostics,
the HTML report and recommendations.  Nothing below this module imports it, so
each layer can be used and tested on its own (ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayes_lse.model.graph import METHODS, ModelSpec
from bayes_lse.results.posterior import VERDICT_ATTR, FitResult, load_tree, read_history, read_modules_file

if TYPE_CHECKING:
    from bayes_lse.data.log import InteractionLog
    from bayes_lse.data.modules import ModuleTable
    from bayes_lse.diagnostics import Diagnostics
    from bayes_lse.recommend.policies import PlanAdvice
    from bayes_lse.recommend.sequences import Recommendation
    from bayes_lse.results.summary import Summary

__all__ = ["FittedLSE", "LatentSkillEmbedding", "load"]


class LatentSkillEmbedding(ModelSpec):
    """Students, lessons and assessments in one non-negative latent skill space.

    Parameters
    ----------
    n_skills : int or "auto"
        Dimension d of the skill space.  "auto" (the default, as on the command line): a
        MAP fit whose check holds out at least 1,000 answers fits d = 1 and d = 2 to all but
        the last 10 % of 150 students' answers and keeps the d that predicts those better
        (d = 1 on both real logs, docs/results.md); other fits use d = 2 (`results.selection`).  The choice
        and its held-out scores are listed in ``fitted.choices``.
    prerequisites : bool
        Whether lessons have prerequisite vectors q (gain realised as σ(D(s, q))).
    biases : bool
        Student and assessment bias terms in the pass logit.
    lessons : bool or "auto"
        Whether lessons move the state (False: a model of assessments only).  "auto" (the
        default, as on the command line; `results.selection.choose_structure`): off for a
        log whose answers are also its lessons (items as lessons: ASSISTments, last 10 %,
        AUC 0.722 with them, 0.815 without); elsewhere, where the held-out check of d runs
        (a MAP fit), the best d is also fitted without lessons and they are dropped only
        when that lowers the held-out log-loss by more than 0.01 and 2 SE; otherwise on.
        Listed in ``fitted.choices``.
    learning_noise : float or "learned"
        σ_L of the learning update; ``"learned"`` gives it a half-normal prior.
    priors : dict, optional
        Overrides of individual prior scales (`core.config.DEFAULT_MODEL_CONFIG`).
    history : bool or "auto"
        Adds the student's earlier successes/failures on the same assessment, how many
        answers ago it last answered it, and its earlier successes/failures on any
        assessment to the pass logit (the memory and practice counts of a
        performance-factors model, `model.terms.history_logit`).  "auto" (the
        default, as on the command line): on when at least 5 % of the answers repeat an
        earlier (student, assessment) pair (`model.graph.choose_history`; +0.04 AUC on
        both real logs with repeats), decided at fit time and listed in ``fitted.choices``.
    practice : bool or "auto"
        The history term's practice counts (the student's earlier successes/failures on any
        assessment).  "auto" (the default): on where the model has no lessons to learn
        from (no lesson rows, or ``lessons=False``; ASSISTments +0.001 AUC over PFA), off
        where lessons model the learning (docs/results.md "Practice").
    hierarchical : bool
        Learned prior scales and assessment-bias mean (partial pooling; MAP by empirical Bayes).
    tags : bool
        When the fit is given a modules table (``fit(..., modules=)``): each assessment's bias
        centred on the mean effect of its tags and group values (each ~ N(0, tag_bias_sd²)),
        so sparse items borrow strength from their tags and new ones are predicted from
        them. Nothing changes without a table (default True).
    """

    def resolve(self, log: InteractionLog, method: str = "map", **kwargs: Any) -> tuple[LatentSkillEmbedding, list[str]]:
        """This model with the settings left at "auto" that `log` decides, and why (one line
        each, as ``fitted.choices`` lists them): ``n_skills`` and ``lessons`` by the held-out
        check of a MAP fit (`results.selection.choose_structure`; `kwargs` are the fit's
        settings, its seed among them), then the history term (`ModelSpec.resolve_history`;
        left to the fit under minibatch ADVI, which turns it off).  `fit` calls it; the
        command line calls it first to say what was chosen before the fit starts."""
        from bayes_lse.results.selection import choose_structure

        spec, why = choose_structure(self, log, method, _fit_candidate, kwargs)
        minibatch = method == "advi" and kwargs.get("batch_size") is not None and not kwargs.get("amortised")
        if spec.history_unresolved and not (minibatch and spec.config["history"] == "auto"):
            spec, why_history = spec.resolve_history(log)
            if why_history:
                why = [*why, why_history]
        return spec, why  # type: ignore[return-value]  # from_config keeps the class

    def fit(self, log: InteractionLog | pd.DataFrame | str, method: str = "auto", *,
            modules: Any = None, **kwargs: Any) -> FittedLSE:
        """Fit the model to an interaction log.

        Parameters
        ----------
        log : InteractionLog, DataFrame or path
            The interactions (DESIGN §2); anything but an `InteractionLog` is read and
            validated with `read_interactions`.
        modules : ModuleTable, DataFrame or path, optional
            The modules table (`bayes_lse.data.modules.read_modules`: ``module_id``,
            ``module_type``, ``tags``, groups such as ``part``), kept with the fit and in
            its saved folder. With it the model has tag effects (config ``tags``): each
            assessment's bias is centred on its tags' effects, and an assessment added
            after the fit is predicted from its tags when the fit's check says they predict
            difficulty (`FitResult.tag_check`, printed among ``fitted.choices``). Refused
            when it names none of the log's modules (ids spelt differently, e.g. ``q12`` /
            ``12``).
        method : {"auto", "map", "advi", "nuts"}
            Inference method; "auto" (default): NUTS up to 2,000 answers, MAP beyond,
            amortised ADVI from 500k answers at most 20 a student where it can run
            (`inference.defaults.choose_method`; the choice and its reason are in
            ``fitted.choices``).  A config with ``history="auto"`` gets the history
            term when at least 5 % of the answers repeat a (student, assessment) pair.
        **kwargs
            Override the method's defaults in `core.config.DEFAULT_FIT_CONFIG`
            (e.g. ``draws=``, ``chains=``, ``sampler=``, ``starts=``, ``kind=``,
            ``seed=``, ``progressbar=``).

        Returns
        -------
        FittedLSE
            The posterior (or point estimate) with the data and configs it came from.
        """
        from bayes_lse.data.log import InteractionLog, read_interactions
        from bayes_lse.inference.engine import run_fit

        from bayes_lse.inference.defaults import choose_method

        if not isinstance(log, InteractionLog):
            log = read_interactions(log)
        if method not in (*METHODS, "auto"):
            raise ValueError(f"method must be one of auto, {', '.join(METHODS)}, got {method!r}")
        choices: list[str] = list(kwargs.pop("choices", None) or [])  # made by a caller (the CLI)
        if method == "auto":
            method, settings, why = choose_method(log, self.config, kwargs)
            choices.append(why)
            kwargs = {**settings, **kwargs}  # what the choice implies (amortised=True), under the caller's
        spec, why = self.resolve(log, method, **kwargs)
        choices += why
        if self.config["lessons"] is True:  # an "auto" resolved here never keeps item lessons: no second share
            _warn_items_as_lessons(spec, log)
        table = None
        if modules is not None:
            table, why = _modules_for(modules, log)
            choices.append(why)
            log = log.with_modules(table)  # the model's tag effects (config "tags") read it from the log
        # history="auto" (the default) is decided by `run_fit` for this log, with its reason
        fitted = FittedLSE(run_fit(spec, log, method, choices=choices, **kwargs))
        fitted.modules = table
        if table is not None and fitted.has("tag_bias"):
            sigma = float(fitted.draws("sigma_tag_bias").mean()) if fitted.has("sigma_tag_bias") else float("nan")
            note = f"tag effects on {fitted.idata.posterior.sizes['tag']} tags (σ_τ {sigma:.3g}); " + fitted.tag_check()["reason"]
            fitted.idata.attrs["choices"] = json.dumps([*fitted.choices, note])
        return fitted


def _warn_items_as_lessons(spec: ModelSpec, log: InteractionLog) -> None:
    """Warn when a model forced to keep its lessons is fit to a log whose answers are also
    its lessons: forecasts pushed through many such lessons overshoot (docs/results.md, "MAP's
    iteration budget, in-sample calibration, items as lessons")."""
    from bayes_lse.results.selection import ITEMS_AS_LESSONS_SHARE

    if not spec.config["lessons"] or not log.n_lessons:
        return
    share = log.mirrored_answer_share()
    if share >= ITEMS_AS_LESSONS_SHARE:
        warnings.warn(
            f"{share:.0%} of this log's answers are also lessons (items as lessons): the model adds a learned gain "
            "for every one, and forecasts pushed through many of them overshoot (the default, lessons='auto', "
            "drops such lessons). ASSISTments 2009 converted with --items-as-lessons, last 10 % of each "
            "student's answers held out: AUC 0.722 / log-loss 0.777 with "
            "the lessons against 0.813 / 0.484 with lessons=False (--no-lessons) and 0.828 / 0.468 for the log "
            "without item lessons (docs/results.md)", UserWarning, stacklevel=3)


def _modules_for(modules: Any, log: InteractionLog) -> tuple[ModuleTable, str]:
    """`modules` read and validated (`read_modules`) and checked against `log`: the table
    and a line saying how much of the log it tags."""
    from bayes_lse.data.modules import read_modules

    table = read_modules(modules)
    keys = table.keys_of("assessment")
    tagged = sum(1 for a in log.assessments if keys.get(str(a)))
    lesson_keys = table.keys_of("lesson")
    tagged_l = sum(1 for m in log.lessons if lesson_keys.get(str(m)))
    if tagged + tagged_l == 0 and (log.n_assessments + log.n_lessons):
        example = next(iter(keys or lesson_keys), None)
        raise ValueError(f"{table.source}: the modules table tags none of the log's modules (the log has e.g. "
                         f"{str(log.assessments[0]) if log.n_assessments else str(log.lessons[0])!r}, the table "
                         f"{example!r}); module ids must be spelt as in the log")
    return table, (f"modules table {table.source}: {tagged} of {log.n_assessments} assessments and {tagged_l} of "
                   f"{log.n_lessons} lessons tagged ({len(table.tag_index())} tags, groups "
                   f"{', '.join(table.groups) or 'none'}): each assessment's bias is centred on its tags' effects "
                   "(model config tags)")


def _fit_candidate(spec: ModelSpec, table: pd.DataFrame, options: dict[str, Any]) -> FitResult:
    """A quiet MAP fit of `spec` to `table` (a candidate of the held-out choice of d)."""
    from bayes_lse.data.log import read_interactions
    from bayes_lse.inference.engine import run_fit

    return FitResult(run_fit(spec, read_interactions(table, name="held-out check"), "map",
                             **{**options, "progressbar": False}))


class FittedLSE(FitResult):
    """A fitted Latent Skill Embedding: posterior draws plus everything needed to use them."""

    # ----------------------------------------------------------- diagnostics
    def diagnostics(self, **thresholds: Any) -> Diagnostics:
        """Convergence, predictive and data checks with ok/warn/fail verdicts (see
        `diagnostics.diagnose`).

        Called with the default thresholds (no arguments), the overall verdict is also
        recorded in the tree (`results.posterior.VERDICT_ATTR`), so that `save` keeps it
        in the model folder and `verdict` (the CLI's `predict` and `recommend`) reads it
        back instead of diagnosing again.
        """
        from bayes_lse.diagnostics import diagnose

        diag = diagnose(self.idata, **thresholds)
        if not thresholds:
            self.idata.attrs[VERDICT_ATTR] = json.dumps(diag.to_record())
        return diag

    def verdict(self) -> dict[str, Any]:
        """The fit's overall verdict (`Diagnostics.to_record`: ``status``, ``line``, counts,
        ``worst``), plus ``saved``: True when it was recorded at fit time (and saved with
        the model), False when it was computed now.

        Computed now, it uses the default thresholds and skips PSIS-LOO (the rest of
        `diagnose` takes well under a second on a MAP fit and seconds on a large NUTS
        fit), so it can differ from the full diagnostics by the LOO checks alone.
        """
        saved = self.saved_verdict()
        if saved is not None:
            return {**saved, "saved": True}
        return {**self.diagnostics(loo=False).to_record(), "saved": False}

    def summary(self, *, ci: float = 0.9, goals: list[str] | str | None = None) -> Summary:
        """What the fit learned, as tidy tables (`results.summary.Summary`): per student
        (current skill norm and per-skill values, bias, answers, lessons; pass
        probability now for each of `goals`), per lesson (gain norm with its `ci`
        interval, uses), per assessment (difficulty |a| − bias with its interval,
        answers, observed pass rate).

        Per-skill values come from the chains after their skill labels are aligned
        (`diagnostics.align_chains`); norms, difficulties and probabilities do not depend
        on the labels.
        """
        from bayes_lse.results.summary import summarise

        aligned = None
        if self.idata["posterior"].sizes.get("chain", 1) > 1:
            from bayes_lse.diagnostics import align_chains

            aligned, _ = align_chains(self.posterior)
        goals = [goals] if isinstance(goals, str) else goals
        return summarise(self, posterior=aligned, ci=ci, goals=goals)

    def report(self, path: str | Path, *, title: str | None = None, **options: Any) -> Path:
        """Write the self-contained HTML diagnostic report.

        Parameters
        ----------
        path : str or Path
            The HTML file to write.
        title : str, optional
            The page title (default: the method and data source).
        **options
            Passed to `report.html.write_report` (thresholds, figure choices).

        Returns
        -------
        Path
            The file written.
        """
        from bayes_lse.report.html import write_report

        return write_report(self.idata, Path(path), title=title, **options)

    # ----------------------------------------------------- a student's state
    def _student_draws(
        self, student: str | None, history: pd.DataFrame | str | Path | None, n_particles: int, seed: int | None,
        placement: str = "auto",
    ) -> tuple[np.ndarray, np.ndarray | None, str, pd.DataFrame | None]:
        """(state draws (S, d), student-bias draws (S,) or None, the student's label, the new
        student's history or None): a training student's current state, or a new student placed
        from `history` by `place` (the trained encoder when there is one and `placement` allows
        it, else the particle filter of `recommend.sequences.place_student`)."""
        if history is not None:
            hist = history if isinstance(history, pd.DataFrame) else read_history(history)
            placed = self.place(hist, placement=placement, n_particles=n_particles, seed=seed)
            return placed.state, placed.student_bias, str(student or "new student"), hist
        if student is None:
            raise ValueError("give a student id, or a history for a new student")
        if str(student) not in set(self.last_states().index):
            raise KeyError(f"student {student!r} is not in the fitted model; pass history= to place a new student")
        state = self.current_state(str(student))
        s_bias = None
        if self.has("student_bias"):
            s_bias = self.bias_draws(np.array([list(self.ids_of("student")).index(str(student))]))[:, 0]
        return state, s_bias, str(student), None

    def _history_offset(self, student: str, hist: pd.DataFrame | None) -> np.ndarray | None:
        """The history term's offset per (draw, assessment), or None without the term: a goal's
        logit also has γ_s·log(1+S) + γ_f·log(1+F) + γ_r·R (+ practice) for the student's earlier
        successes/failures on it (R as if it were answered next: lessons are not answers),
        which lessons do not change — folded into the assessment bias.  (The exact
        placement of a new student counts its repeats with the term too; the amortised
        encoder does not, so "auto" placement is exact for such a model: `placement_method`.)"""
        if not self.model_config.get("history"):
            return None
        if hist is not None:
            past = hist  # one student's rows (read_history checked)
        else:
            past = self.interactions
            past = past[past["student_id"].astype(str) == str(student)]
        past = past[past["module_type"].astype(str) == "assessment"]
        codes = pd.Index([str(a) for a in self.assessments]).get_indexer(past["module_id"].astype(str))
        ok = codes >= 0
        y = past["outcome"].to_numpy(dtype=float)
        memory = _assessment_memory(codes[ok], y[ok], len(self.assessments))
        last = memory[:, 2]
        lag = np.where(last >= 0, ok.sum() - last, 0.0)  # the lag of an answer given next
        counts = _history_counts(memory, lag, y)
        from bayes_lse.model.terms import history_logit

        return history_logit(counts[None], [c[:, None] for c in self.history_draws()])

    # ------------------------------------------------------------- recommend
    # ------------------------------------------------------------ prediction with new students
    def predict(
        self,
        interactions: pd.DataFrame | str | Path | InteractionLog,
        *,
        ci: float = 0.9,
        update: str = "auto",
        seed: int | None = None,
        new_assessments: bool = True,
        from_last_state: bool | None = None,
        placement: str = "auto",
        n_particles: int = 500,
    ) -> pd.DataFrame:
        """`results.posterior.FitResult.predict`, and students who are not in the model.

        A new student's assessment rows with an outcome are its history, those with an
        empty outcome the rows to predict; its lesson rows before the first row to predict
        belong to the history, the later ones are pushed through (`update`). The student
        is placed from its history (`place_students`, `placement` "auto" | "exact" |
        "amortised", `n_particles` for exact) and its rows to predict are scored from
        there, one state and bias draw per posterior draw. Rows of students in the model
        are predicted as before. Output rows keep the input's order.
        """
        from bayes_lse.data.log import InteractionLog, read_interactions

        log = (interactions if isinstance(interactions, InteractionLog)
               else read_interactions(interactions, require_outcomes=False))
        t = log.table
        known = set(self.last_states().index.astype(str))
        new = ~t["student_id"].astype(str).isin(known).to_numpy()
        if not new.any():
            return super().predict(log, ci=ci, update=update, seed=seed, new_assessments=new_assessments,
                                   from_last_state=from_last_state)
        if from_last_state is None:
            from_last_state = bool(getattr(log, "timesteps_derived", False))
        parts = []
        is_a = (t["module_type"].astype(str) == "assessment").to_numpy()
        todo = is_a & pd.to_numeric(t["outcome"], errors="coerce").isna().to_numpy()
        sid = t["student_id"].astype(str)
        without = new & ~sid.isin(set(sid[new & todo])).to_numpy()
        if without.any():  # nothing to predict: more likely a mistyped id than a history on purpose
            from bayes_lse.core.errors import InteractionLogError

            i = int(np.flatnonzero(without)[0])
            raise InteractionLogError(
                str(log.source),
                f"student {sid.iloc[i]!r} is not in the fitted model, and none of its rows has an empty outcome: "
                "a new student's rows with an outcome are its history and those with an empty outcome the rows "
                "to predict (check the id if this student should be in the model)",
                row=int(t["source_row"].iloc[i]) if "source_row" in t.columns else i, column="student_id",
                row_kind=getattr(log, "row_kind", "row"))
        if (~new).any():
            old = super().predict(t[~new], ci=ci, update=update, seed=seed, new_assessments=new_assessments,
                                  from_last_state=from_last_state)
            parts.append(old.assign(_row=np.flatnonzero(~new & is_a)))
        parts.append(self._predict_placed(t[new], np.flatnonzero(new), ci=ci, update=update, seed=seed,
                                          placement=placement, n_particles=n_particles))
        out = pd.concat(parts, ignore_index=True).sort_values("_row", kind="stable").drop(columns="_row")
        return out.reset_index(drop=True)

    def _predict_placed(self, t: pd.DataFrame, positions: np.ndarray, *, ci: float, update: str,
                        seed: int | None, placement: str, n_particles: int) -> pd.DataFrame:
        """Rows of new students: place each from its answered rows, score the others."""
        from bayes_lse.model import terms as eq

        update = self.resolve_update(update)
        sid = t["student_id"].astype(str).to_numpy()
        is_a = (t["module_type"].astype(str) == "assessment").to_numpy()
        y = pd.to_numeric(t["outcome"], errors="coerce").to_numpy(dtype=float)
        step = t["timestep"].to_numpy().astype(np.int64)
        todo = is_a & np.isnan(y)
        first = pd.Series(np.where(todo, step, np.iinfo(np.int64).max)).groupby(sid).transform("min").to_numpy()
        in_hist = (is_a & ~np.isnan(y)) | (~is_a & (step < first))
        hist = t[in_hist]
        placed = self.place_students(hist, placement=placement, n_particles=n_particles, seed=seed) if len(hist) else {}
        a_ids = pd.Index([str(a) for a in self.assessments])
        l_ids = pd.Index([str(x) for x in self.lessons])
        a_idx = a_ids.get_indexer(t["module_id"].astype(str))
        if (todo & (a_idx < 0)).any():
            bad = t["module_id"].astype(str).to_numpy()[todo & (a_idx < 0)][0]
            raise ValueError(f"assessment {bad!r} is not in the fitted model (new students are placed and "
                             "predicted on known modules only)")
        S = int(self.idata["posterior"].sizes["chain"] * self.idata["posterior"].sizes["draw"])
        d = int(self.model_config["n_skills"])
        pri = self.model_config["priors"]
        rng = np.random.default_rng(seed)
        req = self.draws("requirement")
        ab = self.draws("assessment_bias") if self.has("assessment_bias") else np.zeros(req.shape[:2])
        use_lessons = self.model_config["lessons"] and self.has("gain")
        gain = self.draws("gain") if use_lessons else None
        prereq = self.draws("prerequisite") if use_lessons and self.has("prerequisite") else None
        noise = np.broadcast_to(np.asarray(self.learning_noise_draws(), dtype=float), (S,))
        l_idx = l_ids.get_indexer(t["module_id"].astype(str))
        alpha = (1 - ci) / 2
        rows_out = []
        for s in pd.unique(sid):
            mine = sid == s
            pl = placed.get(s)
            if pl is not None:
                cur, bias, T = pl.state.copy(), pl.student_bias, pl.timestep
            else:  # no history at all: the prior (initial state, bias)
                cur = np.abs(rng.normal(size=(S, d))) * pri["initial_state_scale"]
                bias = rng.normal(scale=pri["student_bias_sd"], size=S) if self.has("student_bias") else None
                T = 0
            rows = np.flatnonzero(mine & todo)
            if not len(rows):
                continue
            if step[rows].min() < T:
                raise ValueError(f"student {s!r}: a row to predict (empty outcome) at timestep {step[rows].min()} "
                                 f"comes before the end of its history (timestep {T}); give the rows to predict "
                                 "after the answered ones")
            les = {int(step[i]): int(l_idx[i]) for i in np.flatnonzero(mine & ~is_a & ~in_hist)}
            if use_lessons and any(k < 0 for k in les.values()):
                raise ValueError(f"student {s!r}: a lesson to push through is not in the fitted model")
            memory = None
            if self.model_config.get("history"):
                past = mine & is_a & ~np.isnan(y)
                memory = _assessment_memory(a_idx[past], y[past], len(a_ids))
                q = np.cumsum(mine & is_a) - 1  # each row's answer index (rows to predict count as answers)
                past_q = np.append(q[past], 0)  # the answer index of each answered row (+ a pad for "none")
            g_u = 0.0 if bias is None else bias[:, None]
            for k in range(T, int(step[rows].max()) + 1):
                at = rows[step[rows] == k]
                if len(at):
                    j = a_idx[at]
                    off = ab[:, j]
                    if memory is not None:
                        # lag from the last answered row (index into the answered rows → answer index)
                        last = memory[j, 2].astype(np.int64)  # −1 (none) reads the pad
                        lag = np.where(last >= 0, q[at] - past_q[last], 0)
                        counts = _history_counts(memory[j], lag, y[past])
                        off = off + eq.history_logit(counts[None], [c[:, None] for c in self.history_draws()])
                    p = eq.pass_probability(cur[:, None, :], req[:, j], g_u, off)
                    lo, hi = np.quantile(p, [alpha, 1 - alpha], axis=0)
                    for c, i in enumerate(at):
                        rows_out.append((positions[i], s, t["module_id"].iloc[i], int(k), float(p[:, c].mean()),
                                         float(lo[c]), float(hi[c])))
                lk = np.array([les.get(k, -1)])
                cur = eq.step_states(cur[:, None, :], lk, gain, prereq, noise[:, None, None], update, rng)[:, 0]
        return pd.DataFrame(rows_out, columns=["_row", "student_id", "module_id", "timestep", "p_mean", "p_low",
                                               "p_high"]).assign(assessment_seen=True, assessment_from="fit")

    # ------------------------------------------------------------ placing new students
    def train_encoder(self, *, progress: Any = None, design: dict[str, Any] | None = None, **options: Any) -> Any:
        """Train the amortised placement encoder of this fit (issue 16; needs the extra
        ``jax``) and keep it as ``self.encoder``; `save` then writes it into the model
        folder. Trained on students simulated from this fit's posterior
        (`inference.amortised`); `options`: hidden (64), steps (3000), batch_size (256),
        learning_rate, seed; `design`: max_steps, max_answers of the simulated histories
        (default: like the training log's). Returns the encoder."""
        from bayes_lse.results.encoder import train_for_fit

        self.encoder = train_for_fit(self, progress=progress, design=design, **options)
        return self.encoder

    def place_students(
        self,
        table: pd.DataFrame | str | Path,
        *,
        placement: str = "auto",
        n_particles: int = 500,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Place new students (not in the fit) from their interactions so far, without
        refitting: {student_id: `recommend.sequences.Placement`}, one state and bias draw
        per posterior draw of the modules.

        `placement`: "exact" — the particle filter per posterior draw
        (`recommend.sequences.place_student`, `n_particles`); "amortised" — one forward pass
        of the trained encoder (`train_encoder`), its posterior sampled once per module
        draw; "auto" — `placement_method`: amortised when the model has an encoder and no
        history term, else exact.
        """
        from bayes_lse.recommend import sequences as rec

        how, _ = self.placement_method(placement)
        table = table if isinstance(table, pd.DataFrame) else pd.read_csv(table)
        if "student_id" not in table.columns:
            table = table.assign(student_id="new student")
        sizes = self.idata["posterior"].sizes
        S = int(sizes["chain"] * sizes["draw"])
        if how == "amortised":
            from bayes_lse.results.encoder import encode_histories

            post = encode_histories(self.encoder, self, table)
            states, bias = post.sample(S, seed)
            return {
                sid: rec.Placement(state=states[:, i], student_bias=None if bias is None else bias[:, i],
                                   ess=np.full(S, np.nan), timestep=int(post.last[i]), n_particles=0)
                for i, sid in enumerate(post.ids)
            }
        return {sid: self._place_exact(rows, n_particles, seed)
                for sid, rows in table.groupby(table["student_id"].astype(str), sort=False)}

    def _place_exact(self, rows: pd.DataFrame, n_particles: int, seed: int | None) -> Any:
        """One student placed by the particle filter per posterior draw (no rows: the prior)."""
        from bayes_lse.recommend import sequences as rec

        pri = self.model_config["priors"]
        return rec.place_student(
            rows,
            requirement=self.draws("requirement"),
            assessment_ids=[str(a) for a in self.assessments],
            gain=self.draws("gain") if self.has("gain") else None,
            lesson_ids=[str(x) for x in self.lessons] if self.has("gain") else (),
            prerequisite=self.draws("prerequisite") if self.has("prerequisite") else None,
            assessment_bias=self.draws("assessment_bias") if self.has("assessment_bias") else None,
            state_scale=pri["initial_state_scale"],
            bias_scale=pri["student_bias_sd"] if self.has("student_bias") else None,
            noise=self.learning_noise_draws(),
            n_particles=n_particles,
            seed=seed,
            history_coefficients=self.history_draws(),
        )

    def placement_method(self, placement: str = "auto") -> tuple[str, str]:
        """What `placement` ("auto" | "exact" | "amortised") becomes for this model —
        "exact" or "amortised" — and why, in words.

        "auto" takes the encoder when there is one, except for a model with the
        assessment-history term: the encoder is trained on simulated students without that
        term, so it reads a repeated answer as fresh evidence about the state, where the
        exact filter (and the fit) count it as a repeat.  An explicit "amortised" on such a
        model is allowed, with a warning."""
        if placement not in ("auto", "exact", "amortised"):
            raise ValueError(f"placement must be 'auto', 'exact' or 'amortised', got {placement!r}")
        if placement == "amortised" and self.encoder is None:
            raise ValueError("this model has no amortised encoder: train one (FittedLSE.train_encoder, "
                             "`bayes-lse train-encoder`) or use placement='exact'")
        history = self.has("history_success")
        if placement == "amortised":
            if history:
                warnings.warn("the amortised encoder ignores this model's assessment-history term (it was trained "
                              "on students simulated without it); placement='exact' counts repeats as the fit does",
                              stacklevel=3)
            return "amortised", "amortised encoder"
        if placement == "exact":
            return "exact", "exact particle filter"
        if self.encoder is None:
            return "exact", "exact particle filter: the model has no amortised encoder"
        if history:
            return "exact", ("exact particle filter: the encoder ignores the model's assessment-history term "
                             "(--placement amortised to use it anyway)")
        return "amortised", "amortised encoder"

    def place(
        self,
        history: pd.DataFrame | str | Path,
        *,
        placement: str = "auto",
        n_particles: int = 500,
        seed: int | None = None,
    ) -> Any:
        """Place one new student from its interactions so far (`place_students`):
        a `recommend.sequences.Placement`."""
        hist = history if isinstance(history, pd.DataFrame) else read_history(history)
        if "student_id" in hist.columns and hist["student_id"].astype(str).nunique() > 1:
            raise ValueError("history must hold the rows of one student; got several student_id values")
        if placement not in ("auto", "exact", "amortised"):
            raise ValueError(f"placement must be 'auto', 'exact' or 'amortised', got {placement!r}")
        if not len(hist):  # nothing observed yet: the prior, one draw per posterior draw (as before issue 16)
            return self._place_exact(hist, n_particles, seed)
        return next(iter(self.place_students(hist, placement=placement, n_particles=n_particles,
                                             seed=seed).values()))

    def recommend(
        self,
        student: str | None,
        goals: list[str] | str,
        max_length: int | None = None,
        candidates: list[str] | None = None,
        *,
        history: pd.DataFrame | str | Path | None = None,
        n_particles: int = 500,
        seed: int | None = None,
        allow_taken: bool = False,
        fit_verdict: dict[str, Any] | None = None,
        placement: str = "auto",
        **options: Any,
    ) -> Recommendation:
        """Rank lesson sequences by the posterior probability of passing `goals`.

        `student` is a student of the training data, or (with `history`) a new one
        placed from their interactions so far without refitting. Other options
        (band, include_noise, search, beam_width, top, costs, budget, target,
        confidence, allow_repeats, group_by_set, time_limit, progress) go to
        `recommend.sequences.recommend_sequences`.

        Parameters
        ----------
        student : str or None
            A student of the training data; None with `history` for a new student.
        goals : str or list of str
            Goal assessments: a sequence is scored by the probability of passing all.
        max_length : int, optional
            Longest sequence considered (default: as many lessons as fit in ``budget``,
            else 3; one shorter than the budget allows is kept and warned about).
        candidates : list of str, optional
            Lessons to choose from (default: every lesson of the model).
        history : DataFrame or path, optional
            A new student's interactions so far; the student is placed by a particle
            filter per posterior draw (`n_particles`), without refitting.
        n_particles : int
            Particles per draw when placing a new student (500: median ESS 336 in
            docs/benchmarks.md).
        placement : str
            How a new student is placed (`place`): "exact" (particle filter), "amortised"
            (the trained encoder) or "auto" (the encoder when the model has one).
        seed : int, optional
            Seed of the placement and of the simulated learning noise.
        allow_taken : bool
            Recommend lessons the student has already taken (in the training log, or in
            `history` for a new student) again. Default False: they are left out and the
            result names them (`Recommendation.excluded_taken`). Not the same as
            ``allow_repeats``, which lets one sequence hold a lesson twice.
        costs : mapping, "log" or "unit", optional (in ``options``)
            Lesson costs for ``budget`` and the output. Default (None or "log"): predicted
            from the training log's timestamps (`recommend.costs.lesson_costs_from_log`:
            time to the student's next row, capped, log-normal lesson and student
            effects), shown with their bands and source; a log without timestamps gives
            1 per lesson, and the output says so. "unit": 1 per lesson.
        fit_verdict : dict, optional
            The fit's overall diagnostic verdict (`verdict`); default: the one saved with
            the fit, else computed now (no PSIS-LOO). A failed fit is stated at the top of
            the recommendation (issue 17: a recommendation from a fit that failed its own
            checks read as trustworthy as any other).

        Returns
        -------
        Recommendation
            The ranked sequences with posterior mean pass probability and its band.
        """
        from bayes_lse.recommend import sequences as rec

        if not self.model_config["lessons"] or not self.has("gain"):
            raise ValueError("this model has no lessons (fit with lessons=True): there is nothing to recommend")
        goals = [goals] if isinstance(goals, str) else list(goals)
        if not goals:
            raise ValueError("give at least one goal assessment")
        noise = self.learning_noise_draws()
        prereq = self.draws("prerequisite") if self.has("prerequisite") else None
        a_bias = self.draws("assessment_bias") if self.has("assessment_bias") else None
        state, s_bias, student, hist = self._student_draws(student, history, n_particles, seed, placement)
        offset = self._history_offset(student, hist)
        if offset is not None:
            a_bias = offset if a_bias is None else a_bias + offset
        if history is not None:
            mine = hist
        else:
            mine = self.interactions
            mine = mine[mine["student_id"].astype(str) == str(student)]
        is_lesson = mine["module_type"].astype(str).str.strip().str.lower() == "lesson"
        taken = sorted(set(mine.loc[is_lesson, "module_id"].astype(str)))
        table = self.interactions
        lesson_rows = table[table["module_type"].astype(str) == "lesson"]
        evidence = lesson_rows.groupby(lesson_rows["module_id"].astype(str))["student_id"].nunique().to_dict()
        costs = options.pop("costs", None)
        cost_source, cost_bands = None, None
        if costs is None or (isinstance(costs, str) and costs == "log"):
            # issue 17: a budget needs costs; the log's timestamps predict them (recommend/costs.py)
            from bayes_lse.recommend.costs import lesson_costs_from_log

            lc = lesson_costs_from_log(table, [str(x) for x in self.lessons],
                                       student=None if history is not None else str(student))
            costs = lc.costs if lc.predicted else None
            cost_source, cost_bands = lc.source, (lc.bands if lc.predicted else None)
        elif isinstance(costs, str) and costs == "unit":
            costs, cost_source = None, "1 per lesson (unit costs asked for)"
        elif isinstance(costs, str):
            raise ValueError(f"costs must be a mapping lesson -> cost, 'log' or 'unit', got {costs!r}")
        if fit_verdict is None:
            # computed once per object: a fit never diagnosed would otherwise be diagnosed on every
            # call (a notebook recommending for each student of a cohort)
            fit_verdict = getattr(self, "_verdict_for_recommend", None)
        if fit_verdict is None:
            try:
                fit_verdict = self.verdict()
            except Exception as exc:  # noqa: BLE001 - a check that cannot run must not stop the recommendation
                fit_verdict = {"status": "unknown", "line": f"diagnostics could not run ({type(exc).__name__}: {exc})"}
            self._verdict_for_recommend = fit_verdict
        modules = rec.ModuleDraws.from_arrays(
            gain=self.draws("gain"),
            lesson_ids=[str(x) for x in self.lessons],
            requirement=self.draws("requirement"),
            assessment_ids=[str(a) for a in self.assessments],
            goals=goals,
            prerequisite=prereq,
            assessment_bias=a_bias,
            student_bias=s_bias,
            noise=noise,
        )
        return rec.recommend_sequences(
            state, modules, max_length=max_length, candidates=candidates, seed=seed, student=str(student),
            taken=taken, allow_taken=allow_taken, evidence=evidence, fit_verdict=fit_verdict, costs=costs,
            cost_source=cost_source, cost_bands=cost_bands, **options
        )

    # ------------------------------------------------------------------ plan
    def plan(
        self,
        student: str | None = None,
        goal: list[str] | str = (),
        history: pd.DataFrame | str | Path | None = None,
        policy: str = "voi",
        horizon: int = 5,
        *,
        budget: float | None = None,
        costs: dict[str, float] | str | None = "unit",
        assessment_cost: float = 0.5,
        probes: list[str] | None = None,
        discount: float = 1.0,
        candidates: list[str] | None = None,
        allow_repeats: bool = False,
        width: int = 5,
        band: tuple[float, float] = (0.05, 0.95),
        max_draws: int = 1000,
        tree: int = 0,
        n_particles: int = 500,
        seed: int | None = None,
        placement: str = "auto",
    ) -> PlanAdvice:
        """The next action for a student under an adaptive lesson policy (issue 18).

        The belief is the student's state per posterior draw (a training student's current
        state, or a new student placed from `history`), with the module draws of this fit;
        `policy` is one of ``recommend.policies.POLICIES``: "open-loop" (today's best sequence,
        executed blind), "greedy" and "receding" (re-plan on the belief after every observed
        outcome, an assessment after every lesson), "thompson" (a posterior draw's best plan),
        "voi" (default: receding horizon that gives an assessment only when its value of
        information for the goals beats its time cost).  The reward is P(pass all `goal`) at the
        end, times `discount` per unit of time.

        Parameters
        ----------
        student, history, placement : as in `recommend` (a new student is placed by `place`).
        goal : str or list of str
            Goal assessments.
        horizon : int
            Lessons looked ahead when re-planning (5: next action ≤ 100 ms with 20 lessons and
            1,000 draws, docs/plan.md).
        budget : float, optional
            Time left (default: `horizon` lessons' worth at the cheapest lesson cost).
        costs : mapping, "unit" or "log"
            Lesson time costs (default 1 each; "log": predicted from the training log's
            timestamps, `recommend.costs`).
        assessment_cost : float
            Time an assessment takes, in the lessons' units.
        probes : list of str, optional
            Assessments the policy may give (default: every assessment of the model).
        max_draws : int
            Posterior draws used (evenly thinned beyond it).
        tree : int
            Unroll the policy for this many actions as a decision tree (0: none).

        Returns
        -------
        PlanAdvice
            ``.action`` (kind, module, expected value and its band, the plan, for an assessment
            the plans after a pass and after a fail), ``.tree``; ``to_text()`` / ``to_json()``.
        """
        from bayes_lse.recommend import policies as pol

        if not self.model_config["lessons"] or not self.has("gain"):
            raise ValueError("this model has no lessons (fit with lessons=True): there is nothing to plan")
        goals = [goal] if isinstance(goal, str) else list(goal)
        if not goals:
            raise ValueError("give at least one goal assessment")
        a_ids = [str(a) for a in self.assessments]
        l_ids = [str(x) for x in self.lessons]
        unknown = [g for g in goals if g not in a_ids]
        probes = a_ids if probes is None else [str(p) for p in probes]
        unknown += [p for p in probes if p not in a_ids]
        if unknown:
            raise ValueError(f"unknown assessment(s): {', '.join(dict.fromkeys(unknown))}")
        state, s_bias, student, hist = self._student_draws(student, history, n_particles, seed, placement)
        S = state.shape[0]
        a_bias = self.draws("assessment_bias") if self.has("assessment_bias") else np.zeros((S, len(a_ids)))
        offset = self._history_offset(student, hist)
        if offset is not None:
            a_bias = a_bias + offset
        if s_bias is not None:
            a_bias = a_bias + np.asarray(s_bias)[:, None]
        req = self.draws("requirement")
        gi = [a_ids.index(g) for g in goals]
        pi = [a_ids.index(p) for p in probes]
        notes: list[str] = []
        if isinstance(costs, str) and costs == "log":
            from bayes_lse.recommend.costs import lesson_costs_from_log

            lc = lesson_costs_from_log(self.interactions, l_ids, student=None if hist is not None else student)
            costs = lc.costs if lc.predicted else None
            notes.append(f"lesson costs: {lc.source}")
        elif isinstance(costs, str) and costs == "unit":
            costs = None
        elif isinstance(costs, str):
            raise ValueError(f"costs must be a mapping lesson -> cost, 'log' or 'unit', got {costs!r}")
        cost_vec = None if costs is None else [float(costs.get(k, 1.0)) for k in l_ids]
        model = pol.PlanModel(
            gain=self.draws("gain"), prerequisite=self.draws("prerequisite") if self.has("prerequisite") else None,
            goal_requirement=req[:, gi], lesson_ids=l_ids, goal_ids=goals, goal_bias=a_bias[:, gi],
            probe_requirement=req[:, pi], probe_bias=a_bias[:, pi], probe_ids=probes,
            noise=self.learning_noise_draws(), lesson_costs=cost_vec, assessment_cost=assessment_cost,
            discount=discount,
        )
        if S > max_draws:
            keep = np.linspace(0, S - 1, max_draws).round().astype(np.int64)
            model, state = model.take(keep), state[keep]
            notes.append(f"{max_draws} of {S} posterior draws used (evenly thinned; max_draws=)")
        if S == 1:
            notes.append("one posterior draw (a MAP fit): the belief is a point, so no assessment can inform it "
                         "and the bands have no width; fit with NUTS or ADVI for an adaptive plan")
        if budget is None:
            budget = horizon * float(model.lesson_costs.min())
        cand = None
        if candidates is not None:
            bad = [c for c in candidates if str(c) not in l_ids]
            if bad:
                raise ValueError(f"unknown candidate lesson(s): {', '.join(map(str, bad))}")
            cand = [l_ids.index(str(c)) for c in candidates]
        belief = pol.Belief(model, state)
        policy_obj = pol.make_policy(policy, horizon=horizon, width=width, allow_repeats=allow_repeats, band=band,
                                     rng=seed, candidates=cand)
        action = policy_obj.next_action(belief, float(budget))
        p = belief.p_goal()
        lo, hi = pol.weighted_quantile(p, belief.weights, band)
        tr = pol.decision_tree(policy_obj, belief, float(budget), depth=tree, rng=seed) if tree else None
        if self.model_config.get("history"):
            notes.append("the history term's offset is held fixed: outcomes observed while following the plan "
                         "do not change it")
        return pol.PlanAdvice(student=student, goals=tuple(goals), policy=policy, budget=float(budget),
                              horizon=int(horizon), action=action, p_now=float(belief.weights @ p),
                              p_now_band=(float(lo), float(hi)), n_draws=model.n_draws,
                              assessment_cost=float(assessment_cost), tree=tr, notes=notes)


def _assessment_memory(codes: np.ndarray, y: np.ndarray, n_assessments: int) -> np.ndarray:
    """(n_assessments, 3): a student's successes and failures per assessment (the history
    term's S and F), from the codes and 0/1 outcomes of its answered rows in order, and in
    the last column the index (in those rows) of its last answer to each (−1: none)."""
    out = np.zeros((n_assessments, 3))
    np.add.at(out[:, 0], codes, y)
    np.add.at(out[:, 1], codes, 1.0 - y)
    last = np.full(n_assessments, -1.0)
    np.maximum.at(last, codes, np.arange(len(codes), dtype=float))  # the latest answer to each
    out[:, 2] = last
    return out


def _history_counts(memory: np.ndarray, lag: np.ndarray, answered: np.ndarray) -> np.ndarray:
    """The history term's counts (`terms.HISTORY_COUNTS`) of answers to the assessments of
    `memory` rows (`_assessment_memory`) at lags `lag`, by a student whose answered rows had
    the 0/1 outcomes `answered` (its practice: the same for every row, as rows being
    predicted do not count each other's outcomes)."""
    won = float(np.sum(answered))
    return np.column_stack([memory[:, :2], lag, np.full(len(memory), won),
                            np.full(len(memory), len(answered) - won)])


def load(path: str | Path) -> FittedLSE:
    """Open a saved model folder.

    Parameters
    ----------
    path : str or Path
        A folder written by `FittedLSE.save`.

    Returns
    -------
    FittedLSE

    Raises
    ------
    ModelFolderError
        When the folder is incomplete, tampered with, from another format version, or
        its draws and config do not belong together.
    """
    from bayes_lse.results.encoder import read_encoder

    fitted = FittedLSE(load_tree(path))
    fitted.encoder = read_encoder(path, fitted)
    fitted.modules = read_modules_file(path)
    return fitted
