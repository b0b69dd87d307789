"""`bayes-lse evaluate`: the evaluation harness on the command line.

Registered in `cli.py` with ``main.add_command(evaluate_command)``.  Input errors
(bad files, bad option values) become one line on stderr with exit status 2 through
`cli.guard`, imported when the command runs (importing it here at module level
would be circular).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from bayes_lse.evaluate.names import BASELINES, DEFAULT_BASELINES, PROTOCOLS, VARIANTS


def _guarded(fn):
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from bayes_lse.cli.common import UserError, guard
        from bayes_lse.evaluate.distributed import SchedulerUnreachable

        try:
            return guard(fn)(*args, **kwargs)
        except SchedulerUnreachable as exc:
            raise UserError(str(exc)) from None

    return wrapper


def _skills_list(text: str) -> list[int | str]:
    """`--skills`: comma-separated integers >= 1 and/or 'auto' (`cli.common.parse_skills`)."""
    from bayes_lse.cli.common import parse_skills

    values = [parse_skills(x) for x in text.split(",") if x.strip()]
    if not values:
        raise ValueError(f"--skills must be comma-separated integers >= 1 or 'auto', got {text!r}")
    return list(dict.fromkeys(values))


def _name_list(text: str) -> list[str]:
    if text.strip().lower() in ("", "none"):
        return []
    return list(dict.fromkeys(x.strip().lower() for x in text.split(",") if x.strip()))


def build_models(skills: list[int | str], variants: list[str], baselines: list[str], **lse_options: Any) -> dict[str, Any]:
    """LSE variants for every d, then the baselines; ``mirt`` becomes one ``mirt-d<d>`` per
    d >= 2 in `skills` (``mirt-d2`` if there is none)."""
    from bayes_lse.evaluate.baselines import make_baseline
    from bayes_lse.evaluate.protocols import lse_variants

    models: dict[str, Any] = dict(lse_variants(skills, variants, **lse_options)) if variants else {}
    for name in baselines:
        if name == "mirt":
            for d in [d for d in skills if d != "auto" and d >= 2] or [2]:
                models[f"mirt-d{d}"] = make_baseline(f"mirt-d{d}")
        else:
            b = make_baseline(name)
            models[b.name] = b
    return models


def run_evaluate_cli(
    data: Path,
    fmt_in: str | None = None,
    items_as_lessons: bool = False,
    explanations_as_lessons: bool = False,
    folds: int = 5,
    method: str = "map",
    skills: str = "auto",
    variants: str = "full",
    baselines: str = ",".join(DEFAULT_BASELINES),
    protocol: str = "last-batch",
    fraction: float = 0.1,
    test_students: float = 0.2,
    seed: int | None = 0,
    learning_noise: str | None = None,
    history: bool | None = None,
    hierarchical: bool = False,
    starts: int | None = None,
    maxiter: int | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    reference: str | None = None,
    lessons_check: bool = True,
    loo: bool = False,
    bootstrap: int = 200,
    split_out: Path | None = None,
    split_in: Path | None = None,
    predictions_out: Path | None = None,
    fmt: str = "table",
    output: Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    update: str = "auto",
    modules: Path | None = None,
) -> Any:
    """Everything `bayes-lse evaluate` does, callable from Python; returns the EvaluationResult."""
    from bayes_lse.data.log import read_interactions
    from bayes_lse.evaluate.distributed import check_engine
    from bayes_lse.evaluate.protocols import evaluate
    from bayes_lse.core.files import atomic_write_text

    try:
        check_engine(scheduler, workers)
    except ValueError as exc:
        raise ValueError(str(exc).replace("scheduler", "--scheduler").replace("workers", "--workers")) from None
    for path in (output, split_out, predictions_out):
        if path is not None and Path(path).exists() and not overwrite:
            raise FileExistsError(f"{path}: already exists; pass --overwrite to replace it")
        if path is not None:
            from bayes_lse.cli.common import check_writable

            check_writable(Path(path))
    from bayes_lse.cli.common import read_modules_option

    module_table = read_modules_option(modules)
    if fmt_in is None and (items_as_lessons or explanations_as_lessons):
        raise ValueError("--items-as-lessons / --explanations-as-lessons need --from (a public format)")
    d_list = _skills_list(skills)
    v_list = _name_list(variants)
    for v in v_list:
        for part in v.split("+"):
            if part.strip() not in VARIANTS:
                raise ValueError(f"unknown --variants entry {part.strip()!r}; choose from {', '.join(VARIANTS)}, "
                                 "several joined by '+', or none")
    b_list = _name_list(baselines)
    for b in b_list:
        if b not in BASELINES and not (b.startswith("mirt-d") and b[6:].isdigit()):
            raise ValueError(f"unknown --baselines entry {b!r}; choose from {', '.join(BASELINES)} (or none)")
    lse_options: dict[str, Any] = {"history": "auto" if history is None else bool(history),
                                   "hierarchical": bool(hierarchical)}
    from bayes_lse.cli.common import parse_learning_noise

    noise = parse_learning_noise(learning_noise)
    if noise is not None:
        lse_options["learning_noise"] = noise
    models = build_models(d_list, v_list, b_list, **lse_options)
    if not models:
        raise ValueError("nothing to evaluate: --variants none and --baselines none")
    fit_options = {k: v for k, v in {"starts": starts, "maxiter": maxiter, "draws": draws, "tune": tune,
                                     "chains": chains}.items()
                   if v is not None}
    from bayes_lse.core.config import DEFAULT_FIT_CONFIG

    unknown = sorted(set(fit_options) - set(DEFAULT_FIT_CONFIG[method]))
    if unknown:
        raise ValueError(f"option(s) {', '.join('--' + u for u in unknown)} do not apply to --method {method}")

    if fmt_in is not None:
        from bayes_lse.data.readers import convert

        options: dict[str, Any] = {}
        if items_as_lessons:
            options["items_as_lessons"] = True
        if explanations_as_lessons:
            options["explanations_as_lessons"] = True
        log = read_interactions(convert(fmt_in, [str(data)], **options), name=str(data))
    else:
        from bayes_lse.cli.common import read_log

        log = read_log(data, accepts_from=True)  # a raw DKT / Riiid / ... file: the --from to add
    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    say(f"evaluating {len(models)} model(s) on {log.n_students} students, "
        f"{int((log.table['module_type'] == 'assessment').sum())} answers: {', '.join(models)}")
    import warnings

    with warnings.catch_warnings():
        # the small-scored-set warning is printed once below, in command-line words
        warnings.filterwarnings("ignore", message="the (cv|test) set scores only", category=UserWarning)
        result = evaluate(
            log, models, folds=folds, protocol=protocol, fraction=fraction, test_students=test_students, seed=seed,
            method=method, fit_options=fit_options, split=split_in, reference=reference, lessons=lessons_check,
            loo=loo, n_boot=bootstrap, progress=say, scheduler=scheduler, workers=workers, update=update,
            modules=module_table,
        )
    for w in result.settings.get("warnings", []):
        click.echo(f"bayes-lse: warning: {w}", err=True)
    if split_out is not None:
        result.split.write(split_out, overwrite=True)
        say(f"wrote the split to {split_out} (settings in {split_out}.json)")
    if predictions_out is not None:
        atomic_write_text(Path(predictions_out), result.predictions.to_csv(index=False), exclusive=not overwrite)
        say(f"wrote {len(result.predictions)} predictions to {predictions_out}")
    text = result.to_json() + "\n" if fmt == "json" else result.to_text()
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write_text(Path(output), text, exclusive=not overwrite)
        say(f"wrote the results to {output}")
    return result


@click.command("evaluate")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--from", "fmt_in", type=click.Choice(["assistments-dkt", "ednet-kt4", "riiid", "datashop"]), default=None,
              help="DATA is in this public format (as for `convert`) instead of the interaction table.")
@click.option("--items-as-lessons", is_flag=True, help="With --from assistments-dkt: every answered item is also a lesson.")
@click.option("--explanations-as-lessons", is_flag=True, help="With --from ednet-kt4: explanations are lessons.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=1),
              help="Cross-validation folds over the non-test students (1: no cross-validation).")
@click.option("--method", type=click.Choice(["map", "advi", "nuts"]), default="map", show_default=True,
              help="How the LSE models are fit (baselines: always MAP).")
@click.option("--skills", default="auto", show_default=True,
              help="Latent skills d of the LSE models, e.g. 1,2,3; auto (the fit's default): chosen per fit by a "
                   "held-out check above 20,000 answers (model lse-auto).")
@click.option("--variants", default="full", show_default=True,
              help=f"LSE variants, comma-separated: {', '.join(VARIANTS)}, or several joined by '+' "
                   "(no-lessons+history); or none.")
@click.option("--baselines", default=",".join(DEFAULT_BASELINES), show_default=True,
              help=f"Comma-separated from {', '.join(BASELINES)}, mirt-d<d>; or none. "
                   "mirt gives one model per d >= 2 in --skills.")
@click.option("--protocol", type=click.Choice(list(PROTOCOLS)), default="last-batch", show_default=True)
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True,
              help="last-fraction: share of each held-out student's answers held out (at least one).")
@click.option("--test-students", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Share of students set apart as the test set (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, the fits and the bootstrap.")
@click.option("--learning-noise", default=None, help="σ_L of the LSE models: a positive number or 'learned' (default √0.5).")
@click.option("--history/--no-history", default=None,
              help="The LSE models' assessment-history term (default: chosen per training log, on when at "
                   "least 5% of the answers repeat a (student, assessment) pair; variant 'history' forces it).")
@click.option("--hierarchical/--no-hierarchical", default=False, show_default=True,
              help="Learned prior scales and assessment-bias mean (MAP: empirical Bayes).")
@click.option("--starts", type=click.IntRange(min=1), default=None,
              help="MAP starts per LSE fit (default: 2 up to 20k answers, 1 beyond).")
@click.option("--maxiter", type=click.IntRange(min=1), default=None, help="MAP L-BFGS iterations per LSE start (default 1000).")
@click.option("--draws", type=click.IntRange(min=1), default=None, help="ADVI/NUTS draws (per chain).")
@click.option("--tune", type=click.IntRange(min=0), default=None, help="NUTS tuning steps.")
@click.option("--chains", type=click.IntRange(min=1), default=None, help="NUTS chains.")
@click.option("--reference", default=None, help="Model the paired differences are against (default: first LSE).")
@click.option("--lessons-check/--no-lessons-check", default=True, show_default=True,
              help="Compare LSE predictions after lessons with and without the learning update.")
@click.option("--loo", is_flag=True, help="PSIS-LOO comparison of the LSE fits (ADVI/NUTS only).")
@click.option("--update", type=click.Choice(["auto", "expected", "mode"]), default="auto", show_default=True,
              help="How LSE forecasts move a state through held-out steps: each step's truncated-normal "
                   "mean, or its mode (no upward drift from the truncation); auto: the mode for MAP fits, the "
                   "mean for ADVI/NUTS.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=200, show_default=True,
              help="Bootstrap resamples (over students) for the standard errors.")
@click.option("--split-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the split (row, fold, role per interaction) as CSV.")
@click.option("--split", "split_in", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Reuse a split written by --split-out.")
@click.option("--predictions-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every held-out row's predictions (one column per model) as CSV.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results here instead of stdout.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run the fits on the Dask scheduler at ADDRESS, e.g. tcp://host:8786 "
                   "(its workers need the same bayes-lse).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Run the fits on a local Dask cluster of this many worker processes (default: in-process).")
@click.option("--modules", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Modules table (module_id, module_type, tags, groups; `convert --modules-out` writes one) for "
                   "the LSE fits: held-out answers to assessments a run never trained on are predicted from the "
                   "fitted ones sharing their tags.")
@_guarded
def evaluate_command(**kwargs: Any) -> None:
    """Compare LSE variants and baselines on held-out answers of DATA.

    Students are split into a test set and cross-validation folds; each held-out
    student's history is cut (before its last batch of answers, or before its last
    --fraction of answers) and every model predicts the cut answers after fitting
    on everything else. Prints AUC, log-loss, Brier, accuracy and calibration
    error with standard errors, paired differences, and the lessons check.
    Every (run, model) fit is a job: in-process by default, or on Dask with
    --workers N (a local cluster) or --scheduler tcp://host:8786 (an existing one).
    """
    run_evaluate_cli(**kwargs)
