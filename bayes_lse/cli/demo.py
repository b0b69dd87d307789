"""`bayes-lse demo`: the built-in example end to end — simulate the default
cohort, fit it, check predictions against the truth, save, and say where."""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from bayes_lse.evaluate.metrics import auc


def run_demo(models_dir: Path, reports_dir: Path, method: str = "nuts", seed: int = 2015) -> None:
    from bayes_lse.api import LatentSkillEmbedding
    from bayes_lse.model.simulate import simulate

    t_start = time.perf_counter()
    cohort = simulate(n_students=200, n_steps=10, seed=seed)
    table = cohort.table
    students = table["student_id"].unique()
    rng = np.random.default_rng(seed)
    held = set(rng.choice(students, size=len(students) // 5, replace=False))
    last = table.groupby("student_id")["timestep"].transform("max")
    test_mask = table["student_id"].isin(held) & (table["timestep"] == last) & (table["module_type"] == "assessment")
    train, test = table[~test_mask], table[test_mask]
    click.echo(
        f"Simulated {len(students)} students, {int((table.module_type == 'assessment').sum())} answers, "
        f"{int((table.module_type == 'lesson').sum())} lessons (seed {seed}); holding out the last-step "
        f"answers of {len(held)} students ({len(test)} rows)."
    )
    model = LatentSkillEmbedding(n_skills=2)
    kwargs = {"seed": seed}
    if method == "nuts":
        kwargs.update(chains=2, draws=300, tune=300)
    click.echo(f"Fitting {model} by {method.upper()} ...")
    fitted = model.fit(train, method=method, **kwargs)
    click.echo(f"  done in {fitted.runtime_seconds:.1f} s")

    pred = fitted.predict(test)
    y = pred["outcome"].to_numpy()
    click.echo("\nHeld-out last-step answers:")
    click.echo(f"  AUC of the model's p_mean     {auc(y, pred['p_mean'].to_numpy()):.3f}")
    click.echo(f"  AUC of the true probabilities {auc(y, pred['p_true'].to_numpy()):.3f}")
    if method != "map":
        inside = (pred["p_true"] >= pred["p_low"]) & (pred["p_true"] <= pred["p_high"])
        click.echo(f"  90% intervals covering the true probability: {inside.mean():.0%}")

    gains = fitted.draws("gain").mean(axis=0)
    norms = np.linalg.norm(gains, axis=-1)
    order = np.argsort(-norms)[:3]
    click.echo("\nLessons with the largest posterior-mean gain |l|:")
    for k in order:
        click.echo(f"  {fitted.lessons[k]:>5}  |l| = {norms[k]:.2f}")
    req = np.linalg.norm(fitted.draws("requirement").mean(axis=0), axis=-1)
    hard = np.argsort(-req)[:3]
    click.echo("Hardest assessments by |a|:")
    for j in hard:
        click.echo(f"  {fitted.assessments[j]:>5}  |a| = {req[j]:.2f}")

    out = Path(models_dir) / "demo"
    fitted.save(out, overwrite=True)
    report = fitted.report(Path(reports_dir) / "demo.html", title="bayes-lse demo: simulated cohort")
    verdicts = fitted.diagnostics().verdicts
    bad = verdicts[verdicts["status"] != "ok"]
    click.echo(f"\nDiagnostics: {len(verdicts) - len(bad)} of {len(verdicts)} checks ok"
               + (f"; not ok: {', '.join(f'{c} ({s})' for c, s in zip(bad['check'], bad['status'], strict=True))}"
                  if len(bad) else ""))

    # recommendations for the two held-out students least likely to pass the hardest assessment now
    goal = str(fitted.assessments[hard[0]])
    recs = [fitted.recommend(str(sid), [goal], max_length=2, top=3, seed=seed) for sid in sorted(held)]
    recs.sort(key=lambda r: r.current["p_mean"])
    click.echo(f"\nRecommended lesson sequences (up to 2 lessons) towards {goal}, for the two held-out "
               "students least likely to pass it now:")
    for rec in recs[:2]:
        click.echo("")
        click.echo(rec.to_text())

    click.echo(f"\nModel saved to   {out}")
    click.echo(f"Report written to {report}")
    click.echo(f"Total time {time.perf_counter() - t_start:.0f} s")
