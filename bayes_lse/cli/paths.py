"""`bayes-lse evaluate-paths`: the bubble protocol for lesson paths on the command line
(`evaluate.paths`).

Registered in `cli/commands.py` like `evaluate`.  Heavy imports (the evaluation, PyMC)
happen when the command runs, so `bayes-lse --help` stays light; input errors become
one line on stderr with exit status 2 through `cli.common.guard`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click

from bayes_lse.evaluate.names import PATH_BASELINES, PATH_CUTS


def _guarded(fn):
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from bayes_lse.cli.common import guard

        return guard(fn)(*args, **kwargs)

    return wrapper


def run_evaluate_paths_cli(
    data: Path,
    fmt_in: str | None = None,
    items_as_lessons: bool = False,
    explanations_as_lessons: bool = False,
    heldout: float = 0.2,
    seed: int = 0,
    min_length: int = 2,
    max_length: int = 3,
    min_students: int = 10,
    min_history: int = 1,
    skills: int = 2,
    prerequisites: bool = True,
    learning_noise: str | None = None,
    history: bool | None = None,
    method: str = "map",
    starts: int | None = None,
    maxiter: int | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    config_file: Path | None = None,
    baselines: str = ",".join(PATH_BASELINES),
    cut: str = "each",
    update: str = "expected",
    clip: float = 0.05,
    bootstrap: int = 500,
    max_students: int | None = None,
    members_out: Path | None = None,
    fmt: str = "table",
    output: Path | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Any:
    """Everything `bayes-lse evaluate-paths` does, callable from Python; returns the
    `PathEvaluation`."""
    from bayes_lse.api import LatentSkillEmbedding
    from bayes_lse.cli.common import check_writable
    from bayes_lse.core.files import atomic_write_text
    from bayes_lse.data.log import read_interactions
    from bayes_lse.evaluate.paths import evaluate_paths

    for path in (output, members_out):
        if path is not None and Path(path).exists() and not overwrite:
            raise FileExistsError(f"{path}: already exists; pass --overwrite to replace it")
        if path is not None:
            check_writable(Path(path))
    if fmt_in is None and (items_as_lessons or explanations_as_lessons):
        raise ValueError("--items-as-lessons / --explanations-as-lessons need --from (a public format)")
    b_list = [] if baselines.strip().lower() in ("", "none") else \
        list(dict.fromkeys(x.strip().lower() for x in baselines.split(",") if x.strip()))
    for b in b_list:
        if b not in PATH_BASELINES:
            raise ValueError(f"unknown --baselines entry {b!r}; choose from {', '.join(PATH_BASELINES)} (or none)")
    if max_length < min_length:
        raise ValueError(f"--max-length ({max_length}) must be >= --min-length ({min_length})")
    options: dict[str, Any] = {"n_skills": skills, "prerequisites": prerequisites,
                               "history": "auto" if history is None else bool(history)}
    if learning_noise is not None:
        if str(learning_noise).strip().lower() == "learned":
            options["learning_noise"] = "learned"
        else:
            try:
                options["learning_noise"] = float(learning_noise)
            except ValueError:
                raise ValueError(f"--learning-noise must be a positive number or 'learned', "
                                 f"got {learning_noise!r}") from None
    model = LatentSkillEmbedding(**options)
    fit_options: dict[str, Any] = {}
    if config_file is not None:
        import json

        try:
            fit_options.update(json.loads(Path(config_file).read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{config_file}: not valid JSON ({exc})") from None
        if not isinstance(fit_options, dict):
            raise ValueError(f"{config_file}: must hold a JSON object of fit settings")
    fit_options.update({k: v for k, v in {"starts": starts, "maxiter": maxiter, "draws": draws, "tune": tune,
                                          "chains": chains}.items() if v is not None})
    from bayes_lse.core.config import DEFAULT_FIT_CONFIG, merge, validate_fit_config

    unknown = sorted(set(fit_options) - set(DEFAULT_FIT_CONFIG[method]))
    if unknown:
        raise ValueError(f"option(s) {', '.join(unknown)} do not apply to --method {method}")
    try:  # before any work: a bad setting names its key (and the file it came from)
        validate_fit_config(merge(DEFAULT_FIT_CONFIG[method], fit_options, f"{method} fit"), method)
    except ValueError as exc:
        raise ValueError(f"{config_file}: {exc}" if config_file is not None else str(exc)) from None
    if fmt_in is not None:
        from bayes_lse.data.readers import convert

        ropts: dict[str, Any] = {}
        if items_as_lessons:
            ropts["items_as_lessons"] = True
        if explanations_as_lessons:
            ropts["explanations_as_lessons"] = True
        log = read_interactions(convert(fmt_in, [str(data)], **ropts), name=str(data))
    else:
        from bayes_lse.cli.common import read_log

        log = read_log(data, accepts_from=True)
    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    result = evaluate_paths(
        log, heldout=heldout, seed=seed, min_length=min_length, max_length=max_length, min_students=min_students,
        min_history=min_history, model=model, method=method, fit_options=fit_options, baselines=b_list, cut=cut,
        update=update, clip=clip, n_boot=bootstrap, max_students=max_students, progress=say,
    )
    if members_out is not None:
        m = result.members.copy()
        atomic_write_text(Path(members_out), m.to_csv(index=False), exclusive=not overwrite)
        say(f"wrote {len(m)} (bubble, student) rows to {members_out}")
    text = result.to_json() + "\n" if fmt == "json" else result.to_text()
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write_text(Path(output), text, exclusive=not overwrite)
        say(f"wrote the results to {output}")
    return result


@click.command("evaluate-paths")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--from", "fmt_in", type=click.Choice(["assistments-dkt", "ednet-kt4", "riiid", "datashop"]), default=None,
              help="DATA is in this public format (as for `convert`) instead of the interaction table.")
@click.option("--items-as-lessons", is_flag=True,
              help="With --from assistments-dkt: every answered item is also a lesson (the original LSE's way).")
@click.option("--explanations-as-lessons", is_flag=True, help="With --from ednet-kt4: explanations are lessons.")
@click.option("--heldout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True,
              help="Share of students held out; bubbles are found in their histories.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the held-out students, the fits, the coin and the bootstrap.")
@click.option("--min-length", type=click.IntRange(min=1), default=2, show_default=True,
              help="Fewest lessons per branch (the start lesson included).")
@click.option("--max-length", type=click.IntRange(min=1), default=3, show_default=True,
              help="Most lessons per branch.")
@click.option("--min-students", type=click.IntRange(min=1), default=10, show_default=True,
              help="Held-out students each branch needs.")
@click.option("--min-history", type=click.IntRange(min=0), default=1, show_default=True,
              help="Answers a student needs before the bubble start to enter it.")
@click.option("--skills", type=click.IntRange(min=1), default=2, show_default=True, help="Latent skills d.")
@click.option("--prerequisites/--no-prerequisites", default=True, show_default=True)
@click.option("--learning-noise", default=None, help="σ_L: a positive number or 'learned' (default √0.5).")
@click.option("--history/--no-history", default=None,
              help="The assessment-history term (default: on when >= 5% of answers repeat a (student, assessment) pair).")
@click.option("--method", type=click.Choice(["map", "advi", "nuts"]), default="map", show_default=True)
@click.option("--starts", type=click.IntRange(min=1), default=None, help="MAP starts.")
@click.option("--maxiter", type=click.IntRange(min=1), default=None, help="MAP L-BFGS iterations per start.")
@click.option("--draws", type=click.IntRange(min=1), default=None, help="ADVI/NUTS draws (per chain).")
@click.option("--tune", type=click.IntRange(min=0), default=None, help="NUTS tuning steps.")
@click.option("--chains", type=click.IntRange(min=1), default=None, help="NUTS chains.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON file with fit settings merged over the method's defaults (as for `fit`).")
@click.option("--baselines", default=",".join(PATH_BASELINES), show_default=True,
              help=f"Comma-separated from {', '.join(PATH_BASELINES)}; or none.")
@click.option("--cut", type=click.Choice(list(PATH_CUTS)), default="each", show_default=True,
              help="each: one cut history per bubble start; earliest: one per student, pushed to later starts.")
@click.option("--update", type=click.Choice(["expected", "mode"]), default="expected", show_default=True,
              help="How a state moves through a branch's lessons.")
@click.option("--clip", type=click.FloatRange(0, 0.5, max_open=True), default=0.05, show_default=True,
              help="Propensities are clipped to [clip, 1 - clip].")
@click.option("--bootstrap", type=click.IntRange(min=0), default=500, show_default=True,
              help="Bootstrap resamples of students for the intervals.")
@click.option("--max-students", type=click.IntRange(min=2), default=None,
              help="Use a seeded random subset of this many students (long logs).")
@click.option("--members-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every (bubble, student) row with features, predictions and choices as CSV.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results here instead of stdout.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
@_guarded
def evaluate_paths_command(**kwargs: Any) -> None:
    """Do students who follow the LSE's recommended lesson path do better? (bubbles)

    Holds out students, finds "bubbles" in their histories — a start lesson and a
    later final assessment joined by two different lesson paths of the same length,
    each taken by enough students — fits once on the other students plus the
    held-out histories cut at the bubble starts, recommends a branch to every
    student, and reports the odds ratio of passing the final assessment for those
    who followed the recommendation against those who did not (inverse-propensity
    weighted; bootstrap interval), beside the popular-branch, random and no-lessons
    baselines.
    """
    run_evaluate_paths_cli(**kwargs)
