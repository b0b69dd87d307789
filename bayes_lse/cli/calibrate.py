"""`bayes-lse calibrate`: simulation-based calibration of NUTS on a design like the user's.

Registered in `commands.py` beside `evaluate`.  The work is
`bayes_lse.evaluate.calibration.run_sbc`; this module reads the options, builds the
design (the user's log scaled down, or an explicit shape), prints progress, the table
and the verdict, and writes the files.  Heavy imports happen when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

#: the design without a data file: 6 students × 3 steps × 3 assessments, 1 lesson (about a minute for 100 simulations)
SHAPE_DEFAULTS = {"students": 6, "steps": 3, "assessments": 3, "lessons": 1}
#: caps on a user's design: enough to look like it, small enough for ~100 NUTS fits in minutes
DATA_CAPS = {"students": 20, "steps": 10, "assessments": 20, "lessons": 10}
OUTPUT_FILES = ("sbc_ranks.nc", "sbc_summary.csv", "sbc_fits.csv", "sbc_ecdf_pit.png", "sbc_ecdf_bands.png")


def _progress(quiet: bool):
    tty = sys.stderr.isatty()

    def report(done: int, total: int, seconds: float) -> None:
        if quiet:
            return
        if tty:
            click.echo(f"\rsimulation {done}/{total} ({seconds:.1f} s)", err=True, nl=done == total)
        elif done == total or done % 10 == 0:
            click.echo(f"simulation {done}/{total} ({seconds:.1f} s the last)", err=True)

    return report


@click.command("calibrate")
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("reports/calibration"),
              show_default=True, help="Folder for the ranks, tables and ECDF-PIT figures.")
@click.option("--students", type=click.IntRange(min=1), default=None,
              help=f"Students (with DATA: keep at most this many, default {DATA_CAPS['students']}; "
                   f"without: default {SHAPE_DEFAULTS['students']}).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help=f"Timesteps per student (with DATA: the first ones, default {DATA_CAPS['steps']}; "
                   f"without: default {SHAPE_DEFAULTS['steps']}).")
@click.option("--assessments", type=click.IntRange(min=1), default=None,
              help=f"Assessments (with DATA: the most answered, default {DATA_CAPS['assessments']}; "
                   f"without: default {SHAPE_DEFAULTS['assessments']}).")
@click.option("--lessons", type=click.IntRange(min=1), default=None,
              help=f"Lessons (with DATA: the most used, default {DATA_CAPS['lessons']}; "
                   f"without: default {SHAPE_DEFAULTS['lessons']}).")
@click.option("--answers-per-step", type=click.IntRange(min=1), default=2, show_default=True,
              help="Without DATA: distinct assessments each student answers at every step.")
@click.option("--skills", "n_skills", type=click.IntRange(min=1), default=1, show_default=True, help="Latent skills d.")
@click.option("--no-prerequisites", is_flag=True, help="Lessons give their full gain to everyone.")
@click.option("--no-biases", is_flag=True, help="No student/assessment bias terms.")
@click.option("--no-lessons", is_flag=True, help="Ignore lesson content: states drift by noise only.")
@click.option("--learning-noise", default=None, help="σ_L: a positive number or 'learned' (default √0.5).")
@click.option("--history", is_flag=True,
              help="With the assessment-history term (memory, recency, practice), drawn answer by answer and "
                   "recounted in every refit.")
@click.option("--simulations", type=click.IntRange(min=2), default=100, show_default=True,
              help="Simulate-and-fit rounds.")
@click.option("--draws", type=click.IntRange(min=10), default=250, show_default=True, help="NUTS draws per chain.")
@click.option("--tune", type=click.IntRange(min=10), default=250, show_default=True, help="NUTS tuning steps per chain.")
@click.option("--chains", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--rank-draws", type=click.IntRange(min=1), default=100, show_default=True,
              help="Posterior draws (thinned) each true value is ranked among.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True,
              help="Family-wise level of the uniformity verdict.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the files of an earlier run in the output folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines on stderr.")
def calibrate_command(data: Path | None, output: Path, students: int | None, steps: int | None,
                      assessments: int | None, lessons: int | None, answers_per_step: int, n_skills: int,
                      no_prerequisites: bool, no_biases: bool, no_lessons: bool, learning_noise: str | None,
                      history: bool, simulations: int, draws: int, tune: int, chains: int, rank_draws: int, alpha: float,
                      seed: int, overwrite: bool, quiet: bool) -> None:
    """Simulation-based calibration: do NUTS and the model agree on a design like yours?

    Draws every parameter from the prior and outcomes on the design, fits it with NUTS,
    and ranks the truth of identified quantities (pass probabilities, D-values, bias
    sums, |a|, |l|, |q|, biases) among the posterior draws, SIMULATIONS times.  Ranks
    should be uniform; the table gives a uniformity p-value per quantity and the
    figures show the ECDF of the ranks.  With DATA (an interaction log) the design is
    the log's own — who answers what at which step, which lessons — scaled down by
    --students/--steps/--assessments/--lessons; without it, a design of that shape.
    Exit status 1 when the ranks are not uniform (SBC FAIL), 2 on bad input.
    """
    from bayes_lse.cli.common import UserError, check_writable, guard

    guard(_run)(data=data, output=output, students=students, steps=steps, assessments=assessments, lessons=lessons,
                answers_per_step=answers_per_step, n_skills=n_skills, no_prerequisites=no_prerequisites,
                no_biases=no_biases, no_lessons=no_lessons, learning_noise=learning_noise, history=history,
                simulations=simulations,
                draws=draws, tune=tune, chains=chains, rank_draws=rank_draws, alpha=alpha, seed=seed,
                overwrite=overwrite, quiet=quiet, user_error=UserError, check_writable=check_writable)


def _run(*, data: Path | None, output: Path, students: int | None, steps: int | None, assessments: int | None,
         lessons: int | None, answers_per_step: int, n_skills: int, no_prerequisites: bool, no_biases: bool,
         no_lessons: bool, learning_noise: str | None, history: bool, simulations: int, draws: int, tune: int,
         chains: int,
         rank_draws: int, alpha: float, seed: int, overwrite: bool, quiet: bool, user_error: Any,
         check_writable: Any) -> None:
    for name in OUTPUT_FILES:
        if (output / name).exists() and not overwrite:
            raise user_error(f"{output / name}: file already exists; pass --overwrite to replace it")
    check_writable(output / OUTPUT_FILES[0], "calibration output")
    from bayes_lse.cli.common import parse_learning_noise

    noise = parse_learning_noise(learning_noise)
    from bayes_lse.api import LatentSkillEmbedding
    from bayes_lse.evaluate.calibration import describe_design, design_from_log, design_from_shape, run_sbc

    kwargs: dict[str, Any] = {"n_skills": n_skills, "prerequisites": not no_prerequisites, "biases": not no_biases,
                              "lessons": not no_lessons, "history": history}
    if noise is not None:
        kwargs["learning_noise"] = noise
    model = LatentSkillEmbedding(**kwargs)
    if data is not None:
        from bayes_lse.data.log import read_interactions

        log = read_interactions(data)
        caps = {k: v if v is not None else DATA_CAPS[k]
                for k, v in {"students": students, "steps": steps, "assessments": assessments, "lessons": lessons}.items()}
        design = design_from_log(log, max_students=caps["students"], max_steps=caps["steps"],
                                 max_assessments=caps["assessments"], max_lessons=caps["lessons"], seed=seed)
        where = f"the design of {data}, at most {caps['students']} students × {caps['steps']} steps"
    else:
        shape = {k: v if v is not None else SHAPE_DEFAULTS[k]
                 for k, v in {"students": students, "steps": steps, "assessments": assessments, "lessons": lessons}.items()}
        if answers_per_step > shape["assessments"]:
            raise user_error("--answers-per-step cannot exceed --assessments (answers at one step are distinct)")
        design = design_from_shape(shape["students"], shape["steps"], shape["assessments"], shape["lessons"],
                                   answers_per_step=answers_per_step, seed=seed)
        where = "a simulated design"
    info = describe_design(design)
    if not quiet:
        click.echo(f"SBC on {where}: {info['students']} students, {info['states']} states, {info['answers']} answers "
                   f"of {info['assessments']} assessments, {info['lesson_rows']} lessons taken of {info['lessons']}; "
                   f"{model!r}", err=True)
        click.echo(f"compiling NUTS once (nutpie), then {simulations} simulations of {chains} × ({tune} + {draws}) "
                   f"iterations", err=True)
    result = run_sbc(model, design, n_simulations=simulations, draws=draws, tune=tune, chains=chains,
                     rank_draws=rank_draws, alpha=alpha, seed=seed, progress=_progress(quiet))
    paths = result.save(output, overwrite=overwrite)
    table = result.summary[["quantity", "elements", "p_value", "p_adjusted", "worst_element_p_adjusted", "status"]]
    click.echo(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    fits = result.fits
    click.echo(f"fits: median {fits['seconds'].median():.2f} s, divergences in {(fits['divergences'] > 0).sum()} "
               f"of {len(fits)}, largest R-hat {fits['max_rhat'].max():.3f}, smallest bulk ESS "
               f"{fits['min_ess_bulk'].min():.0f}; compile {result.design['compile_seconds']:.1f} s, "
               f"total {result.design['total_seconds']:.0f} s")
    click.echo(result.verdict())
    click.echo(f"wrote {', '.join(p.name for p in paths)} to {output}")
    if result.status == "fail":
        sys.exit(1)
