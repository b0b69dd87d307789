"""Settings chosen from the data when the user leaves them at "auto": the inference
method, the MAP optimiser's starts and iterations, and the assessment-history term.
Each choice comes with a one-line reason that `fit` prints on stderr and the fitted
tree keeps (attribute ``choices``), so a user sees what ran and why, and can override it.

Why these thresholds (docs/results.md, issue 15):
- NUTS is exact but costs minutes at a few thousand answers and hours at 300k; MAP of
  the default model fits MoFaCTS (54k answers) in 8 s (6.7x a 1PL fit; docs/benchmarks.md)
  and predicts as well
  as NUTS does where both ran.  So NUTS up to `NUTS_MAX_ANSWERS` answers, MAP beyond.
- MAP's old defaults (4 starts × 5,000 iterations, ftol 1e-12) had not finished after
  40 minutes on ASSISTments (536k rows), and took 129 s on a simulated cohort of 3,600
  answers, every start stopping at the iteration limit.  Now `MAXITER` iterations
  (the held-out check of d runs `CHECK_MAXITER`)
  (on ASSISTments 1,000 and 2,000 iterations predicted within 0.002 AUC of each other,
  and more iterations predicted worse in docs/results.md's iteration study), from
  `SMALL_STARTS` starts up to `SMALL_ANSWERS` answers and one start beyond.
- MAP's trajectory form and engine on large logs: above `SMALL_ANSWERS` answers the
  centred trajectory on the compiled kernel (`map_kernel.py`), with the numba backend
  up to `NUMBA_MAX_ANSWERS` answers and numpy beyond (numba's ~105 MB would break
  issue 7's memory budget on ASSISTments' 268k answers).  Measured on the last-10 %
  protocol, one fit each (issue 15, 2026-12-03): MoFaCTS (55k answers, short histories
  with lessons) AUC 0.859 / log loss 0.443 centred-numba in 7.0 s against 0.854 / 0.450
  non-centred PyTensor in 31.9 s, most of which was PyTensor compiling a 3,200-node
  gradient graph; ASSISTments 0.824 / 0.471 against 0.823 / 0.472.  Up to
  `SMALL_ANSWERS` the non-centred form stays: on small simulated cohorts the centred
  mode shrinks the lesson gains (`tests/model/test_graph.py::test_map_does_not_collapse_the_gains`).
- Amortised ADVI (issue 16) from `AMORTISED_MIN_ANSWERS` answers when students average at
  most `AMORTISED_MAX_PER_STUDENT` answers, where it runs (the ``jax`` extra; a fixed
  learning_noise, not hierarchical; `amortised_blocker` says what stopped it).  Measured
  2026-12-04 (`benchmarks/bench_amortised_end_to_end.py --compare-map`, held-out last-step
  answers): simulated logs of 4.7 answers a student, 176k answers — MAP 32 s, AUC 0.761;
  amortised 49 s, 0.784; 1.73M answers — MAP 464 s, 0.741; amortised 71 s, 0.779 (full-batch
  ADVI on a subsample 0.773); 17.3M answers — MAP's 1,000 iterations would take over an
  hour (docs/benchmarks.md), amortised fits in minutes under 4 GiB.  Long histories go the
  other way: ASSISTments (268k answers, 80 a student) MAP 40 s, amortised 335 s at the same
  AUC (0.8241 vs 0.8243, DeLong p 0.95), three copies of it (805k answers) MAP 89 s against
  more than 6 minutes; MoFaCTS (55k answers) 6 s against 205 s, AUC 0.859 vs 0.863 (p 0.22).
- The history term (PFA's per-item memory) gained +0.04 AUC on both real logs with
  repeated answers (MoFaCTS 0.821 → 0.862, ASSISTments 0.780 → 0.827); it is switched
  on where at least `HISTORY_MIN_REPEATS` of the answers repeat an earlier
  (student, assessment) pair, and off where no one answers anything twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

# the history rule lives with the model spec (`ModelSpec.resolve_history`, also used when a
# graph is built or a cohort simulated from an unresolved "auto"); re-exported here, with
# the other data-driven choices
from bayes_lse.model.graph import HISTORY_MIN_REPEATS, choose_history, repeat_share

__all__ = ["HISTORY_MIN_REPEATS", "choose_history", "repeat_share", "choose_method", "amortised_blocker", "resolve_map_settings",
           "n_answers", "cap_minibatch_draws", "choose_student_posterior"]

if TYPE_CHECKING:
    from bayes_lse.data.log import InteractionLog

NUTS_MAX_ANSWERS = 2_000
#: from this many answers, at most `AMORTISED_MAX_PER_STUDENT` a student on average,
#: ``method="auto"`` fits by amortised ADVI (where it can run; module docstring)
AMORTISED_MIN_ANSWERS = 500_000
AMORTISED_MAX_PER_STUDENT = 20
AMORTISED_WHY = ("many short histories, where MAP pays per student and overfits them (1.7M answers: "
                 "amortised 71 s and held-out AUC 0.779, MAP 464 s and 0.741)")
SMALL_ANSWERS = 20_000
MAXITER = 1_000
#: MAP iterations of the held-out check of d (`results.selection`): on MoFaCTS and
#: ASSISTments (5-fold CV, last 10 %) 300 iterations predicted exactly as 1,000 did (AUC /
#: log-loss 0.865 / 0.443 and 0.828 / 0.470 both ways) and the check's scores moved by
#: < 0.001; not the fits' default: on a simulated cohort whose lessons teach (the bubble
#: protocol, tests/evaluate/test_paths.py) 300 iterations ranked 77 % of the path pairs
#: right where 1,000 ranked all of them
CHECK_MAXITER = 150
SMALL_STARTS = 2
NUMBA_MAX_ANSWERS = 200_000
#: the largest posterior state array (draws × states × skills, float64) a minibatch or
#: amortised ADVI fit writes at its default number of draws
MAX_STATE_BYTES = 1_000_000_000
MIN_DRAWS = 20


def n_answers(log: InteractionLog) -> int:
    return int((log.table["module_type"] == "assessment").sum())


def amortised_blocker(model_config: Mapping[str, Any] | None = None,
                      options: Mapping[str, Any] | None = None) -> str | None:
    """Why the amortised ADVI fit cannot run for this model and these fit options here
    (None when it can): options that are ADVI's (a user who passes ``starts=`` is asking
    for MAP), the ``jax`` extra, and what `inference.amortised_fit.unsupported` lists (a
    fixed ``learning_noise``, ``hierarchical=False``, mean-field without a backend)."""
    import importlib.util

    from bayes_lse.core.config import DEFAULT_FIT_CONFIG

    opts = {k: v for k, v in (options or {}).items() if k != "progressbar"}  # any method's
    foreign = sorted(set(opts) - set(DEFAULT_FIT_CONFIG["advi"]))
    if foreign:
        return (f"{', '.join(foreign)} {'is not an ADVI option' if len(foreign) == 1 else 'are not ADVI options'} "
                "(given for MAP or NUTS)")
    if opts.get("amortised") is False:
        return "amortised=False was passed"
    missing = [m for m in ("jax", "numpyro") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install 'bayes-lse[jax]')"
    from bayes_lse.inference.amortised_fit import unsupported  # what the fit itself refuses

    return unsupported(model_config or {}, opts)


def choose_method(log: InteractionLog, model_config: Mapping[str, Any] | None = None,
                  options: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any], str]:
    """The inference method for ``method="auto"``: (method, fit settings it implies, reason).

    NUTS up to `NUTS_MAX_ANSWERS` answers; amortised ADVI from `AMORTISED_MIN_ANSWERS`
    when it can run (`amortised_blocker`: the ``jax`` extra, a model it supports, the
    user's fit `options`), else MAP, saying what stopped the amortised fit."""
    n = n_answers(log)
    if (options or {}).get("amortised"):
        return "advi", {}, "method amortised ADVI: amortised=True was passed"
    if n <= NUTS_MAX_ANSWERS:
        return "nuts", {}, f"method NUTS: {n} answers (<= {NUTS_MAX_ANSWERS}; full posterior in minutes)"
    per_student = n / max(int(log.n_students), 1)
    if n >= AMORTISED_MIN_ANSWERS and per_student <= AMORTISED_MAX_PER_STUDENT:
        blocker = amortised_blocker(model_config, options)
        if blocker is None:
            return "advi", {"amortised": True}, (
                f"method amortised ADVI: {n} answers (>= {AMORTISED_MIN_ANSWERS}), {per_student:.1f} a student "
                f"(<= {AMORTISED_MAX_PER_STUDENT}): {AMORTISED_WHY} — pass --method map / method='map' for MAP")
        return "map", {}, (f"method MAP: {n} answers, {per_student:.1f} a student; amortised ADVI would be chosen "
                           f"(>= {AMORTISED_MIN_ANSWERS} answers, <= {AMORTISED_MAX_PER_STUDENT} a student) but "
                           f"{blocker}")
    return "map", {}, (f"method MAP: {n} answers (> {NUTS_MAX_ANSWERS}; NUTS would take long — "
                       "pass --method nuts / method='nuts' for the full posterior)")


def resolve_map_settings(cfg: dict[str, Any], log: InteractionLog) -> tuple[dict[str, Any], list[str]]:
    """`cfg` with "auto" starts / maxiter replaced by numbers for this log, and the reasons."""
    n = n_answers(log)
    small = n <= SMALL_ANSWERS
    out, why = dict(cfg), []
    if out.get("starts") == "auto":
        out["starts"] = SMALL_STARTS if small else 1
        why.append(f"MAP starts {out['starts']} ({n} answers {'<=' if small else '>'} {SMALL_ANSWERS})")
    if out.get("maxiter") == "auto":
        out["maxiter"] = MAXITER
        why.append(f"MAP maxiter {MAXITER}")
    if out.get("parametrization") == "auto" and not small and out.get("engine", "auto") in ("auto", "kernel"):
        out["parametrization"] = "centered"
        why.append(f"MAP centred trajectory on the compiled kernel ({n} answers > {SMALL_ANSWERS}: "
                   "as accurate as the non-centred graph on the real logs and ~4x faster)")
    if out.get("kernel_backend") == "auto":
        fast = n <= NUMBA_MAX_ANSWERS
        out["kernel_backend"] = "numba" if fast else "numpy"
        if out.get("parametrization") == "centered" and out.get("engine", "auto") != "pytensor":
            why.append(f"MAP kernel backend {out['kernel_backend']} ({n} answers "
                       f"{'<=' if fast else '>'} {NUMBA_MAX_ANSWERS}; numba is ~2x faster, numpy ~105 MB lighter)")
    return out, why


def cap_minibatch_draws(cfg: dict[str, Any], log: InteractionLog, n_skills: int,
                        user_set: bool) -> tuple[dict[str, Any], list[str]]:
    """Minibatch and amortised ADVI exist for logs too large for per-student parameters,
    but their posterior DataTree still holds every state in every draw: 1,000 draws of a
    25M-row log's 42M states × 2 skills would be 670 GB.  Unless the user set ``draws``,
    lower it so that array stays under `MAX_STATE_BYTES` (at least `MIN_DRAWS`), and say so."""
    if user_set or cfg.get("batch_size") is None:
        return cfg, []
    per_draw = 8 * int(log.n_states) * int(n_skills)
    fit = max(MIN_DRAWS, MAX_STATE_BYTES // max(per_draw, 1))
    if fit >= int(cfg["draws"]):
        return cfg, []
    return {**cfg, "draws": int(fit)}, [
        f"ADVI draws {fit} (not {cfg['draws']}): {log.n_states:,} states × {n_skills} skills × 8 bytes a draw; "
        f"the posterior's state array stays under {MAX_STATE_BYTES / 1e9:g} GB (pass draws= to override)"]



def choose_student_posterior(cfg: dict[str, Any], log: InteractionLog, n_skills: int) -> tuple[dict[str, Any], list[str]]:
    """How an amortised fit keeps its students' posterior (fit setting
    ``student_posterior``): "auto" becomes "draws" when every state in every draw fits in
    `MAX_STATE_BYTES` (float64), else "parameters": each state's truncated normal and each
    bias's normal from the encoder, 24 bytes a state at d = 2 instead of 16 a draw, drawn
    on demand for the states a prediction or a picture needs
    (`results.posterior.STUDENT_POSTERIOR`).  At 25M interactions (11M states) 1,000 draws
    would be 180 GB; the parameters are 180 MB.  Globals keep all ``draws``."""
    if not cfg.get("amortised") or cfg.get("student_posterior", "auto") != "auto":
        return cfg, []
    per_draw = 8 * int(log.n_states) * int(n_skills)
    total = per_draw * int(cfg["draws"])
    if total <= MAX_STATE_BYTES:
        return {**cfg, "student_posterior": "draws"}, []
    return {**cfg, "student_posterior": "parameters"}, [
        f"student_posterior 'parameters': {cfg['draws']} draws of {log.n_states:,} states × {n_skills} skills would "
        f"take {total / 1e9:,.1f} GB (> {MAX_STATE_BYTES / 1e9:g} GB); each state's and bias's posterior is kept as the "
        "encoder's parameters and drawn on demand (pass student_posterior='draws' to store draws)"]
