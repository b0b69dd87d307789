"""`bayes-lse` command line.  Bad input gets one line on stderr and exit status 2;
nothing already saved is overwritten unless --overwrite is given."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


from bayes_lse.cli.common import (  # noqa: F401
    EXIT_INPUT,
    UserError,
    check_writable,
    guard,
    read_log,
    read_modules_option,
    refuse_existing,
    write_text,
)


class OneLineErrors(click.Group):
    """Usage errors as one line on stderr, exit status 2, like every other input error
    (issue 19 item 15: click printed usage, a hint and the error, four lines)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        import warnings

        # the package's own warnings as one line each ("bayes-lse: warning: ..."), not Python's
        # file:line and source echo, which points into this CLI's code rather than at the data
        show = warnings.showwarning

        def one_line(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                     line: str | None = None) -> None:
            if issubclass(category, UserWarning) and "bayes_lse" in filename.replace("-", "_"):
                click.echo(f"bayes-lse: warning: {message}", err=True)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        try:
            self._run(*args, **kwargs)
        finally:  # the hook is this command's: a caller that catches SystemExit (tests, a notebook) gets its own back
            warnings.showwarning = show

    def _run(self, *args: Any, **kwargs: Any) -> None:
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "bayes-lse"
            click.echo(f"bayes-lse: error: {exc.format_message()} (see '{where} --help')", err=True)
            sys.exit(EXIT_INPUT)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bayes-lse")
def main() -> None:
    """Bayesian Latent Skill Embedding: fit, diagnose and use models of how students learn."""


# ----------------------------------------------------------------- simulate
@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="CSV to write.")
@click.option("--students", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--steps", default=10, show_default=True, type=click.IntRange(min=1), help="Timesteps per student.")
@click.option("--assessments", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--lessons", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--skills", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--answers-per-step", default=3, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", type=int, default=None, help="Random seed (default: fresh entropy).")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), help="Also write the true parameters as JSON.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@guard
def simulate(output: Path, students: int, steps: int, assessments: int, lessons: int, skills: int,
             answers_per_step: int, seed: int | None, truth: Path | None, overwrite: bool) -> None:
    """Draw a cohort from the generative model (with p_true per assessment row)."""
    from bayes_lse.model.simulate import simulate as run

    refuse_existing(output, overwrite)
    if truth is not None:
        if truth.resolve() == output.resolve() or (truth.exists() and output.exists() and truth.samefile(output)):
            raise UserError(f"--truth {truth} is the same file as -o {output}: the truth would replace the data")
        refuse_existing(truth, overwrite)
    cohort = run(n_students=students, n_steps=steps, n_assessments=assessments, n_lessons=lessons,
                 n_skills=skills, answers_per_step=answers_per_step, seed=seed)
    cohort.write(output, truth, overwrite=overwrite)
    click.echo(f"wrote {len(cohort.table)} interactions of {students} students to {output}")
    if truth is not None:
        click.echo(f"wrote the true parameters to {truth}")


# ---------------------------------------------------------------------- fit
def _model_options(fn):
    opts = [
        click.option("--skills", "n_skills", default="auto", show_default=True,
                     help="Latent skills d, or auto: a MAP fit with at least 1,000 answers to hold out compares d = 1 "
                          "and d = 2 on them and keeps the better (fit says which and why); otherwise 2."),
        click.option("--no-prerequisites", is_flag=True, help="Lessons give their full gain to everyone."),
        click.option("--no-biases", is_flag=True, help="No student/assessment bias terms."),
        click.option("--lessons/--no-lessons", default=None,
                     help="--no-lessons: ignore lesson content (states drift by noise only); --lessons: keep "
                          "them. Default: off for a log whose answers are also its lessons (items as lessons); "
                          "elsewhere a MAP fit with enough held-out answers also fits the model without lessons "
                          "and drops them only when that predicts clearly better. fit says which and why."),
        click.option("--learning-noise", default=None, help="σ_L: a positive number or 'learned' (default √0.5)."),
        click.option("--history/--no-history", default=None,
                     help="Add earlier successes/failures on the same assessment, its recency and the "
                          "student's successes/failures on any assessment to the pass logit (PFA-style memory "
                          "and practice). Default for fit: on when at least 5% of the answers repeat a "
                          "(student, assessment) pair, and fit says so."),
        click.option("--hierarchical/--no-hierarchical", default=False, show_default=True,
                     help="Learn the prior scales and the assessment biases' mean from the data (partial "
                          "pooling; MAP sets them by empirical Bayes)."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _model_from_options(n_skills: int | str, no_prerequisites: bool, no_biases: bool, lessons: bool | str,
                        learning_noise: str | None, history: bool | str | None = False, hierarchical: bool = False):
    from bayes_lse.core.config import DEFAULT_LEARNING_NOISE
    from bayes_lse.api import LatentSkillEmbedding

    from bayes_lse.cli.common import parse_learning_noise, parse_skills

    noise = parse_learning_noise(learning_noise)
    if noise is None:
        noise = DEFAULT_LEARNING_NOISE
    return LatentSkillEmbedding(n_skills=parse_skills(n_skills), prerequisites=not no_prerequisites, biases=not no_biases,
                                lessons=lessons, learning_noise=noise, history=history,
                                hierarchical=hierarchical)


def _no_lessons_why(fitted: Any) -> str:
    """Why a fitted model has no lessons, in command-line words."""
    if fitted.model_config["lessons"]:
        return "was fitted to a log with no lesson rows"
    if any(c.startswith("lessons off:") for c in fitted.choices):
        return ("was fitted without lessons, as chosen from its data (the fit's 'chosen from the data: lessons off' "
                "line says why); fit with --lessons to keep them")
    return "was fitted with --no-lessons; fit without it"


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model folder (default models/<data name>).")
@click.option("--method", type=click.Choice(["auto", "map", "advi", "nuts"]), default="auto", show_default=True,
              help="auto: NUTS up to 2,000 answers, MAP beyond, amortised ADVI from 500k answers of <= 20 a "
                   "student (extra jax) (fit says which and why).")
@_model_options
@click.option("--sampler", type=click.Choice(["nutpie", "pymc", "numpyro"]), default=None, help="NUTS backend (default nutpie).")
@click.option("--draws", type=click.IntRange(min=1), default=None, help="Posterior draws per chain (NUTS/ADVI).")
@click.option("--tune", type=click.IntRange(min=0), default=None, help="NUTS tuning steps per chain.")
@click.option("--chains", type=click.IntRange(min=1), default=None, help="NUTS chains.")
@click.option("--starts", type=click.IntRange(min=1), default=None, help="MAP optimiser starts.")
@click.option("--maxiter", type=click.IntRange(min=1), default=None,
              help="MAP: L-BFGS-B iterations per start (default 5000; a few hundred suffice for "
              "prediction on large logs, see docs/benchmarks.md).")
@click.option("--advi-kind", type=click.Choice(["meanfield", "fullrank"]), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="ADVI: students per minibatch (minibatch ADVI; default full batch).")
@click.option("--amortised", is_flag=True, default=None,
              help="ADVI: students through an encoder trained jointly with the modules (needs the jax extra); "
              "training memory does not grow with the number of students; minibatches of 256 unless --batch-size.")
@click.option("--seed", type=int, default=None)
@click.option("--modules", "modules_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Modules table (CSV/Parquet: module_id, module_type, tags ';'-separated, groups such as part; "
                   "`convert --modules-out` writes one): kept with the model, so that an assessment added "
                   "after the fit is predicted from the fitted ones sharing its tags.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON file with fit settings merged over the method's defaults.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or notes on stderr (warnings and errors still show).")
@guard
def fit(data: Path, output: Path | None, method: str, n_skills: str, no_prerequisites: bool, no_biases: bool,
        lessons: bool | None, learning_noise: str | None, history: bool | None, hierarchical: bool,
        sampler: str | None, draws: int | None,
        tune: int | None, chains: int | None, starts: int | None, maxiter: int | None, advi_kind: str | None,
        batch_size: int | None, amortised: bool | None,
        seed: int | None, modules_file: Path | None, config_file: Path | None, overwrite: bool, quiet: bool) -> None:
    """Fit the model to DATA (CSV or Parquet) and save it as a model folder.

    Progress goes to stderr: a MAP fit prints a line every 10 s on a terminal, every
    30 s otherwise (a log file), and one per start; -q silences it."""
    from bayes_lse.results.storage import MANIFEST, folder_lock

    output = output or Path("models") / data.stem
    check_writable(output, "model folder")
    # Held from the existence check to the save: a second `fit -o` to the same folder fails
    # at once (exit 2) instead of silently replacing this one's model (issue 19 item 1).
    with folder_lock(output):
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            if not overwrite:
                raise UserError(f"{output}: already exists; pass --overwrite to replace it")
            if output.is_dir() and not (output / MANIFEST).exists():
                raise UserError(f"{output}: holds files that are not a bayes-lse model; refusing to replace them")
        model = _model_from_options(n_skills, no_prerequisites, no_biases, "auto" if lessons is None else lessons,
                                    learning_noise,
                                    "auto" if history is None else history, hierarchical)
        log = read_log(data)  # a raw DKT / EdNet / ... file gets the convert command to run
        modules = read_modules_option(modules_file)
        overrides: dict[str, Any] = {}
        if config_file is not None:
            try:
                overrides.update(json.loads(config_file.read_text()))
            except json.JSONDecodeError as exc:
                raise UserError(f"{config_file}: not valid JSON ({exc})") from None
        for key, value in {"sampler": sampler, "draws": draws, "tune": tune, "chains": chains, "starts": starts,
                           "maxiter": maxiter, "kind": advi_kind, "batch_size": batch_size,
                           "amortised": amortised or None, "seed": seed}.items():
            if value is not None:
                overrides[key] = value
        choices: list[str] = []
        if method == "auto":
            from bayes_lse.inference.defaults import choose_method

            method, implied, why = choose_method(log, model.config, overrides)
            choices.append(why)
            overrides = {**implied, **overrides}  # what the choice implies (amortised), under the options
        from bayes_lse.core.config import DEFAULT_FIT_CONFIG

        unknown = sorted(set(overrides) - set(DEFAULT_FIT_CONFIG[method]))
        if unknown:
            raise UserError(f"option(s) {', '.join(unknown)} do not apply to --method {method}")
        from bayes_lse.core.config import merge, validate_fit_config

        try:  # before any work: a bad setting names its key (and the file it came from)
            validate_fit_config(merge(DEFAULT_FIT_CONFIG[method], overrides, f"{method} fit"), method)
        except ValueError as exc:
            raise UserError(f"{config_file}: {exc}" if config_file is not None else str(exc)) from None
        model, why = model.resolve(log, method, **overrides)  # d, lessons, history: said before the fit starts
        choices += why
        say = _say(quiet)
        for why in choices:
            say(f"chosen from the data: {why}")
        say(f"fitting {model} by {method.upper()} to {log.n_students} students, "
            f"{log.summary().get('n_assessment_rows', '?')} answers ...")
        # MAP's and amortised ADVI's progress lines also when stderr is not a terminal (issue 20:
        # silent for minutes); NUTS and ADVI keep their progress bars on a terminal only
        progressbar = False if quiet else (True if method == "map" or overrides.get("amortised") else None)
        fitted = model.fit(log, method=method, choices=choices, progressbar=progressbar, modules=modules,
                           **overrides)
        for why in fitted.choices[len(choices):]:  # what the engine chose (MAP starts, iterations)
            say(f"chosen from the data: {why}")
        # the fit's own checks, in one line (issue 20): a saved model whose checks fail must say so.
        # Run before saving: the verdict is recorded in the tree and saved with the model, so that
        # predict and recommend can warn about a failed fit without diagnosing again.
        try:
            line = fitted.diagnostics().verdict_line()
        except Exception as exc:  # noqa: BLE001 - the model is still saved; a failing check must not hide that
            line = f"diagnostics could not run ({type(exc).__name__}: {exc})"
        fitted.save(output, overwrite=overwrite)
    click.echo(f"fitted in {fitted.runtime_seconds:.1f} s; model saved to {output}")
    click.echo(f"{line}\n(details: bayes-lse report {output})")


def _say(quiet: bool):
    """A line on stderr, unless -q."""
    return (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))


def _warn_if_failed(fitted: Any, model: Path) -> dict[str, Any] | None:
    """One line on stderr when a loaded model failed its own checks (issue 20): the verdict
    saved at fit time, else the diagnostics run now without PSIS-LOO (`FittedLSE.verdict`).
    Returns the verdict (recommend states it in its output too)."""
    try:
        rec = fitted.verdict()
    except Exception as exc:  # noqa: BLE001 - a check that cannot run must not stop the command
        click.echo(f"bayes-lse: note: the model's diagnostics could not be run ({type(exc).__name__}: {exc})",
                   err=True)
        return {"status": "unknown", "line": f"diagnostics could not run ({type(exc).__name__}: {exc})"}
    if rec.get("status") == "fail":
        line = " ".join(str(rec.get("line", "diagnostics: FAIL")).split())
        click.echo(f"bayes-lse: warning: this model failed its own checks, so these numbers may not be "
                   f"trustworthy ({line}); details: bayes-lse report {model}", err=True)
    return rec


# ------------------------------------------------------------------ predict
@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here instead of stdout.")
@click.option("--ci", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.9, show_default=True,
              help="Credible interval mass for p_low/p_high.")
@click.option("--update", type=click.Choice(["auto", "expected", "mode", "sample"]), default="auto", show_default=True,
              help="How a state moves through steps beyond the fitted history: each step's truncated-normal "
                   "mean, its mode, or one noisy draw per posterior draw; auto: the mode for a MAP fit (which "
                   "follows the modes), the mean for ADVI/NUTS.")
@click.option("--seed", type=int, default=None, help="Seed for --update sample and for placing new students.")
@click.option("--placement", type=click.Choice(["auto", "exact", "amortised"]), default="auto", show_default=True,
              help="How students not in the model are placed from their answered rows: the model's amortised "
                   "encoder (one forward pass), the exact particle filter, or auto (the encoder when the model "
                   "has one, else exact).")
@click.option("--particles", type=click.IntRange(min=1), default=500, show_default=True,
              help="Particles per posterior draw for exact placement.")
@click.option("--modules", "modules_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A modules table to use instead of the one saved with the model (e.g. one listing the "
                   "assessments added since the fit with their tags).")
@click.option("--overwrite", is_flag=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress or notes on stderr (warnings and errors still show).")
@guard
def predict(model: Path, data: Path, fmt: str, output: Path | None, ci: float, update: str, seed: int | None,
            placement: str, particles: int, modules_file: Path | None, overwrite: bool, quiet: bool) -> None:
    """Pass probability of every assessment row of DATA under a saved MODEL.

    DATA needs no outcome column. Without a timestep column, each student's rows
    continue from their current (last fitted) state.

    Students who are not in the model are placed without refitting: their assessment
    rows with an outcome (and lessons before their first row to predict) are their
    history, their rows with an empty outcome are the ones predicted (--placement)."""
    from bayes_lse.api import load

    if output is not None:
        refuse_existing(output, overwrite)
    from bayes_lse.data.log import read_interactions

    fitted = load(model)
    if modules_file is not None:
        fitted.modules = read_modules_option(modules_file)
    rows = read_interactions(data, require_outcomes=False)  # rows to predict need no outcome
    _warn_if_failed(fitted, model)
    if rows.timesteps_derived:  # issue 20: such rows were scored at step 0, before any lesson
        _say(quiet)(f"bayes-lse: note: {data} has no timestep column, so each student's rows are scored from "
                    "their current (last fitted) state on, one step further after each lesson row; add a "
                    "timestep column to score rows inside the fitted history")
    if placement == "amortised" and fitted.encoder is None:
        raise UserError(f"{model} has no amortised encoder: train one (bayes-lse train-encoder {model}) "
                        "or use --placement exact")
    known = set(fitted.last_states().index.astype(str))
    n_new = rows.table.loc[~rows.table["student_id"].astype(str).isin(known), "student_id"].nunique()
    if n_new:
        how = fitted.placement_method(placement)[1]
        _say(quiet)(f"bayes-lse: placing {n_new} student(s) not in the model from their answered rows ({how})")
    pred = fitted.predict(rows, ci=ci, update=update, seed=seed, from_last_state=rows.timesteps_derived,
                          placement=placement, n_particles=particles)
    cols = ["student_id", "module_id", "timestep", "p_mean", "p_low", "p_high", "assessment_from"]
    pred = pred[cols]
    new = pred["assessment_from"] != "fit"
    if new.any():
        _say(quiet)(f"bayes-lse: {int(new.sum())} row(s) answer assessments the model has not seen: "
                    f"{int((pred['assessment_from'] == 'tags').sum())} predicted from the fitted assessments "
                    f"sharing their tags, {int((pred['assessment_from'] == 'population').sum())} from all of them "
                    "(column assessment_from; their bands include the spread of assessments)")
    text = pred.to_csv(index=False) if fmt == "csv" else pred.to_json(orient="records", indent=1) + "\n"
    write_text(output, text, overwrite)
    if output is not None:
        _say(quiet)(f"wrote {len(pred)} predictions to {output}")


@main.command("train-encoder")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--steps", type=click.IntRange(min=1), default=3000, show_default=True, help="Adam steps.")
@click.option("--hidden", type=click.IntRange(min=2), default=64, show_default=True, help="Units per hidden layer.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Simulated students per step.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@guard
def train_encoder(model: Path, steps: int, hidden: int, batch_size: int, seed: int, quiet: bool) -> None:
    """Train MODEL's amortised placement encoder (needs the extra jax) and save it in the folder.

    Trained on students simulated from the model's own posterior; afterwards `predict`
    and `recommend --history` place new students with one forward pass (issue 16)."""
    from bayes_lse.api import load

    fitted = load(model)
    say = _say(quiet)
    try:
        fitted.train_encoder(steps=steps, hidden=hidden, batch_size=batch_size, seed=seed,
                             progress=lambda m: say(f"bayes-lse: encoder {m}"))
    except ImportError as exc:
        raise UserError(str(exc)) from None
    fitted.save(model, overwrite=True)
    tr = fitted.encoder.spec["training"]
    say(f"bayes-lse: encoder trained in {tr['seconds']} s (final loss {tr['final_loss']:.3f}), saved in {model}")


def _student_band_costs(student: str | None, history: Path | None, band: str,
                        costs: str | None) -> tuple[float, float, Any]:
    """What `recommend` and `plan` check before loading the model: a student or a history,
    the --band quantiles, and --costs (None, 'log', 'unit', or a CSV read into a mapping)."""
    if student is None and history is None:
        raise UserError("give --student (a student of the training data) or --history (a new student's log)")
    try:
        lo, hi = (float(x) for x in band.split(","))
    except ValueError:
        raise UserError(f"--band must be two numbers like 0.05,0.95, got {band!r}") from None
    if costs is None or costs in ("log", "unit"):
        return lo, hi, costs
    if not Path(costs).is_file():
        raise UserError(f"--costs {costs!r}: no such file (give a CSV lesson_id,cost, or 'log' or 'unit')")
    return lo, hi, _read_costs(Path(costs))


def _read_costs(path: Path) -> dict[str, float]:
    """--costs as {lesson_id: cost}; every problem names the file, line and column
    (issue 19 item 14: parser messages named neither, duplicates silently kept the last)."""
    import csv

    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text (save the costs file as UTF-8 CSV)") from None
    if not rows:
        raise UserError(f"{path}: empty; expected a header lesson_id,cost and one row per lesson")
    header = [h.strip() for h in rows[0]]
    if "lesson_id" not in header or "cost" not in header:
        raise UserError(f"{path}, line 1: needs columns lesson_id,cost; found {', '.join(header) or 'none'}")
    i_id, i_cost = header.index("lesson_id"), header.index("cost")
    out: dict[str, float] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(x.strip() for x in row):
            continue
        if len(row) != len(header):
            raise UserError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        lesson, value = row[i_id].strip(), row[i_cost].strip()
        if not lesson:
            raise UserError(f"{path}, line {line}, column 'lesson_id': empty lesson id")
        try:
            cost = float(value)
        except ValueError:
            raise UserError(f"{path}, line {line}, column 'cost': {value!r} is not a number") from None
        if lesson in out:
            raise UserError(f"{path}, line {line}, column 'lesson_id': lesson {lesson!r} is listed twice")
        out[lesson] = cost
    return out


def _candidate_list(text: str | None) -> list[str] | None:
    """--candidates as a list; an option given with no lesson in it is an error, not "all"."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise UserError(f"--candidates names no lesson ({text!r}); omit it to choose from every lesson")
    return names


# ------------------------------------------------------------------- report
@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file (default reports/<model name>.html).")
@click.option("--title", default=None)
@click.option("--rhat-max", type=click.FloatRange(min=1.0), default=1.01, show_default=True)
@click.option("--ess-min", type=click.FloatRange(min=0.0), default=400, show_default=True)
@click.option("--ebfmi-min", type=click.FloatRange(min=0.0), default=0.3, show_default=True)
@click.option("--skills", default=None, help="Two skill indices to plot when d > 2, e.g. 0,2.")
@click.option("--lesson", default=None, help="Lesson whose gain field to draw (default: the largest gain).")
@click.option("--overwrite", is_flag=True)
@click.option("-q", "--quiet", is_flag=True, help="No status line on stderr.")
@guard
def report(model: Path, output: Path | None, title: str | None, rhat_max: float, ess_min: float, ebfmi_min: float,
           skills: str | None, lesson: str | None, overwrite: bool, quiet: bool) -> None:
    """Write a self-contained HTML diagnostic report for a saved MODEL."""
    from bayes_lse.api import load

    output = output or Path("reports") / f"{Path(model).name}.html"
    refuse_existing(output, overwrite)
    import math

    for name, value in (("--rhat-max", rhat_max), ("--ess-min", ess_min), ("--ebfmi-min", ebfmi_min)):
        if not math.isfinite(value):  # FloatRange lets nan through; a nan threshold passes every check
            raise UserError(f"{name} must be a finite number, got {value}")
    fitted = load(model)
    pair = None
    if skills:
        try:
            pair = tuple(int(x) for x in skills.split(","))
        except ValueError:
            raise UserError(f"--skills must be two integers like 0,1, got {skills!r}") from None
        d = fitted.n_skills
        if len(pair) != 2 or pair[0] == pair[1] or not all(0 <= k < d for k in pair):
            raise UserError(f"--skills must be two different skill indices in 0..{d - 1}, got {skills!r}")
    if lesson is not None and lesson not in {str(x) for x in fitted.lessons}:
        shown = ", ".join(map(str, list(fitted.lessons)[:10]))
        raise UserError(f"--lesson {lesson!r} is not a lesson of the model (lessons: {shown or 'none'}"
                        f"{', ...' if len(fitted.lessons) > 10 else ''})")
    diag = fitted.diagnostics(rhat_max=rhat_max, ess_min=ess_min, ebfmi_min=ebfmi_min)
    path = fitted.report(output, title=title or f"bayes-lse report: {Path(model).name}", diagnostics=diag,
                         skills=pair, lesson=lesson)
    click.echo(str(path))
    _say(quiet)(diag.verdict_line())  # the page's overall status, in one line (issue 20)


# ---------------------------------------------------------------- recommend
@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--student", default=None, help="A student of the training data (or a name for --history).")
@click.option("--goal", "goals", multiple=True, required=True, help="Goal assessment id; repeat for several.")
@click.option("--max-length", default=None, type=click.IntRange(min=1),
              help="Longest sequence (default: as many lessons as fit in --budget, else 3). Shorter than the "
                   "budget allows: kept, with a warning.")
@click.option("--candidates", default=None, help="Comma-separated lesson ids to choose from (default: all).")
@click.option("--history", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV of a new student's interactions so far: place them without refitting.")
@click.option("--target", type=click.FloatRange(0, 1), default=None,
              help="Find the shortest sequence reaching this pass probability ...")
@click.option("--confidence", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="... with this posterior probability.")
@click.option("--costs", default=None, metavar="FILE|log|unit",
              help="Lesson costs: a CSV with columns lesson_id,cost; 'log' (the default) predicts them from the "
                   "training log's timestamps (1 per lesson, said on the output, when it has none); 'unit': 1 "
                   "per lesson.")
@click.option("--budget", type=click.FloatRange(min=0), default=None,
              help="Largest total cost of a sequence, in the costs' units (default: none). Works for every "
                   "model: with prerequisites, ordered sequences within it are searched.")
@click.option("--search", type=click.Choice(["auto", "exhaustive", "beam", "knapsack"]), default="auto",
              show_default=True,
              help="auto: knapsack without prerequisites, else exhaustive when the estimated work is small, "
                   "else beam (said on the output). Exhaustive searches estimated above 2 GB or 10 min are refused.")
@click.option("--time-limit", type=click.FloatRange(min=0), default=None,
              help="Seconds the knapsack's branch and bound may run before returning the best sets found "
                   "(default 60; said on the output).")
@click.option("--beam-width", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--repeats/--no-repeats", default=False, show_default=True,
              help="Allow a lesson more than once within one recommended sequence.")
@click.option("--allow-retake", is_flag=True,
              help="Also recommend lessons the student has already taken (in their logged history); "
                   "by default those are left out and named.")
@click.option("--group-by-set", is_flag=True,
              help="One row per lesson set, in its best order (top rows are often reorderings of the same "
                   "lessons); p_best is then that of the set.")
@click.option("--noise/--expected", "include_noise", default=False, show_default=True,
              help="Include the learning-update noise by Monte Carlo, or use the expected update.")
@click.option("--band", default="0.05,0.95", show_default=True, help="Credible band quantiles.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows shown. p_best does not depend on it: it is over every sequence searched.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--placement", type=click.Choice(["auto", "exact", "amortised"]), default="auto", show_default=True,
              help="How a --history student is placed: the model's amortised encoder, the exact particle "
                   "filter, or auto (the encoder when the model has one).")
@guard
def recommend(model: Path, student: str | None, goals: tuple[str, ...], max_length: int | None,
              candidates: str | None,
              history: Path | None, target: float | None, confidence: float, costs: str | None,
              budget: float | None, search: str, time_limit: float | None, beam_width: int, repeats: bool,
              allow_retake: bool,
              group_by_set: bool, include_noise: bool, band: str,
              top: int, fmt: str, seed: int | None, placement: str) -> None:
    """Rank lesson sequences for a student by the probability of passing the goals."""
    from bayes_lse.api import load

    lo, hi, cost_map = _student_band_costs(student, history, band, costs)
    fitted = load(model)
    # refusals in command-line words (the Python API's messages name keyword arguments)
    if not fitted.model_config["lessons"] or not fitted.has("gain"):
        raise UserError(f"{model} {_no_lessons_why(fitted)}: it has no lessons to recommend")
    if history is None and str(student) not in set(fitted.last_states().index):
        raise UserError(f"student {student!r} is not in the model {model}; to place a new student, give their "
                        "interactions so far with --history FILE (no refit needed)")
    if history is not None and placement == "amortised" and fitted.encoder is None:
        raise UserError(f"{model} has no amortised encoder: train one (bayes-lse train-encoder {model}) "
                        "or use --placement exact")
    verdict = _warn_if_failed(fitted, model)
    result = fitted.recommend(
        student, list(goals), max_length=max_length,
        candidates=_candidate_list(candidates),
        history=history, seed=seed, band=(lo, hi), include_noise=include_noise, search=search,
        beam_width=beam_width, top=top, costs=cost_map, budget=budget, target=target, confidence=confidence,
        allow_repeats=repeats, allow_taken=allow_retake, group_by_set=group_by_set, fit_verdict=verdict,
        time_limit=time_limit, progress=lambda msg: click.echo(msg, err=True), placement=placement,
    )
    click.echo(result.to_json() if fmt == "json" else result.to_text())


# --------------------------------------------------------------------- plan
@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--student", default=None, help="A student of the training data (or a name for --history).")
@click.option("--goal", "goals", multiple=True, required=True, help="Goal assessment id; repeat for several.")
@click.option("--history", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV of a new student's interactions so far: place them without refitting.")
@click.option("--policy", type=click.Choice(["voi", "receding", "greedy", "thompson", "open-loop"]), default="voi",
              show_default=True,
              help="voi: re-plan, assess only when the information is worth its time; receding / greedy / "
                   "thompson: re-plan with an assessment after every lesson; open-loop: today's best sequence.")
@click.option("--horizon", type=click.IntRange(min=1), default=5, show_default=True, help="Lessons looked ahead.")
@click.option("--budget", type=click.FloatRange(min=0), default=None,
              help="Time left, in lesson-cost units (default: HORIZON lessons).")
@click.option("--costs", default="unit", show_default=True, metavar="FILE|log|unit",
              help="Lesson costs: a CSV lesson_id,cost; 'log': predicted from the training log's timestamps; "
                   "'unit': 1 per lesson.")
@click.option("--assessment-cost", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Time an assessment takes, in the same units.")
@click.option("--probe", "probes", multiple=True,
              help="Assessment the policy may give; repeat (default: every assessment of the model).")
@click.option("--candidates", default=None, help="Comma-separated lesson ids to choose from (default: all).")
@click.option("--repeats/--no-repeats", default=False, show_default=True, help="Allow a lesson more than once.")
@click.option("--discount", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Reward factor per unit of time (1: none; the budget bounds the time).")
@click.option("--tree", "tree_depth", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also print the policy as a decision tree for this many actions.")
@click.option("--placement", type=click.Choice(["auto", "exact", "amortised"]), default="auto", show_default=True,
              help="How a --history student is placed (as for recommend): the amortised encoder, the exact "
                   "particle filter, or auto (FittedLSE.placement_method).")
@click.option("--band", default="0.05,0.95", show_default=True, help="Credible band quantiles.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--seed", type=int, default=None)
@guard
def plan(model: Path, student: str | None, goals: tuple[str, ...], history: Path | None, policy: str, horizon: int,
         budget: float | None, costs: str, assessment_cost: float, probes: tuple[str, ...], candidates: str | None,
         repeats: bool, discount: float, tree_depth: int, placement: str, band: str, fmt: str,
         seed: int | None) -> None:
    """The next action for a student under an adaptive policy (lesson, assessment or stop), with its
    expected value and band; --tree shows what to do after each outcome."""
    from bayes_lse.api import load

    lo, hi, cost_map = _student_band_costs(student, history, band, costs)
    fitted = load(model)
    if not fitted.model_config["lessons"] or not fitted.has("gain"):
        raise UserError(f"{model} {_no_lessons_why(fitted)}: it has no lessons to plan")
    if history is None and str(student) not in set(fitted.last_states().index):
        raise UserError(f"student {student!r} is not in the model {model}; to place a new student, give their "
                        "interactions so far with --history FILE (no refit needed)")
    if history is not None and placement == "amortised" and fitted.encoder is None:
        raise UserError(f"{model} has no amortised encoder: train one (bayes-lse train-encoder {model}) "
                        "or use --placement exact")
    _warn_if_failed(fitted, model)
    advice = fitted.plan(student, list(goals), history=history, policy=policy, horizon=horizon, budget=budget,
                         placement=placement,
                         costs=cost_map, assessment_cost=assessment_cost, probes=list(probes) or None,
                         discount=discount, candidates=_candidate_list(candidates), allow_repeats=repeats,
                         band=(lo, hi), tree=tree_depth, seed=seed)
    click.echo(advice.to_json() if fmt == "json" else advice.to_text())


# ------------------------------------------------------------------ convert
@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--from", "fmt", required=True, type=click.Choice(["assistments-dkt", "ednet-kt4", "riiid", "datashop"]))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--items-as-lessons", is_flag=True, help="assistments-dkt: every answered item is also a lesson.")
@click.option("--explanations-as-lessons", is_flag=True, help="ednet-kt4: entering an explanation is a lesson.")
@click.option("--lesson-outcomes", default=None, metavar="A,B",
              help="datashop: Outcome values that are lessons (default STUDY).")
@click.option("--module-column", default=None, metavar="COLUMN",
              help="datashop: the column that names the module (default 'KC (Default)', e.g. 'KC (Cluster)').")
@click.option("--modules-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the modules table (tags, groups) from the format's metadata: riiid / ednet-kt4 "
                   "read questions.csv and lectures.csv beside the first input, datashop its KC columns.")
@click.option("--overwrite", is_flag=True)
@guard
def convert(inputs: tuple[Path, ...], fmt: str, output: Path, items_as_lessons: bool,
            explanations_as_lessons: bool, lesson_outcomes: str | None, module_column: str | None,
            modules_out: Path | None, overwrite: bool) -> None:
    """Convert public interaction logs (ASSISTments DKT, EdNet-KT4, Riiid, DataShop) to the bayes-lse table."""
    from bayes_lse.data.readers import convert as run

    refuse_existing(output, overwrite)
    options: dict[str, Any] = {}
    if items_as_lessons:
        options["items_as_lessons"] = True
    if explanations_as_lessons:
        options["explanations_as_lessons"] = True
    if (lesson_outcomes is not None or module_column is not None) and fmt != "datashop":
        raise UserError("--lesson-outcomes and --module-column apply to --from datashop only")
    if lesson_outcomes is not None:
        options["lesson_outcomes"] = [x.strip() for x in lesson_outcomes.split(",") if x.strip()]
        if not options["lesson_outcomes"]:
            raise UserError("--lesson-outcomes needs at least one value, e.g. STUDY")
    if module_column is not None:
        options["module_column"] = module_column
    if modules_out is not None:
        if fmt == "assistments-dkt":
            raise UserError("--modules-out: assistments-dkt files carry no module metadata (tags)")
        refuse_existing(modules_out, overwrite)
    table = run(fmt, [str(p) for p in inputs], **options)
    modules = None
    if modules_out is not None:  # read before anything is written: a metadata error leaves no half output
        from bayes_lse.data.readers import convert_modules

        modules = convert_modules(fmt, [str(p) for p in inputs], **options)
    from bayes_lse.core.files import atomic_write_text

    atomic_write_text(output, table.to_csv(index=False), exclusive=not overwrite)
    n_a = int((table["module_type"] == "assessment").sum())
    click.echo(f"wrote {len(table)} interactions ({n_a} assessments, {len(table) - n_a} lessons, "
               f"{table['student_id'].nunique()} students) to {output}")
    if modules is not None:
        atomic_write_text(modules_out, modules.to_frame().to_csv(index=False), exclusive=not overwrite)
        click.echo(f"wrote the modules table ({modules!r}) to {modules_out}")


# --------------------------------------------------------------------- demo
@main.command()
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("models"),
              show_default=True)
@click.option("--reports", "reports_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"),
              show_default=True)
@click.option("--method", type=click.Choice(["map", "advi", "nuts"]), default="nuts", show_default=True)
@click.option("--seed", type=int, default=2015, show_default=True)
@guard
def demo(models_dir: Path, reports_dir: Path, method: str, seed: int) -> None:
    """Simulate the built-in cohort (~200 students), fit it, and show what the model learned."""
    from bayes_lse.cli.demo import run_demo

    run_demo(models_dir=models_dir, reports_dir=reports_dir, method=method, seed=seed)


def _register_optional_commands() -> None:
    from bayes_lse.cli.calibrate import calibrate_command
    from bayes_lse.cli.evaluate import evaluate_command
    from bayes_lse.cli.paths import evaluate_paths_command

    main.add_command(evaluate_command, name="evaluate")
    main.add_command(evaluate_paths_command, name="evaluate-paths")
    main.add_command(calibrate_command, name="calibrate")


_register_optional_commands()


def run() -> None:  # pragma: no cover - console entry when imported as a module
    main(prog_name="bayes-lse")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
