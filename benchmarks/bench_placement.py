"""Placing new students: amortised encoder vs the exact particle filter (issue 16).

Fits a simulated cohort (ADVI by default), trains the fit's encoder on students
simulated from that fit's posterior, then simulates held-out students from the same
posterior, cuts each history at a random timestep and places the student from the
rows before the cut, by both methods, and predicts the answers after it (states pushed
through the later lessons per posterior draw with sampled learning noise). Prints:

- speed: ms per student one at a time (`FittedLSE.place`, end to end from a
  DataFrame, and the encoder's forward pass alone), students per second in a batch
  (`place_students` on one table), and the exact placement's ms per student;
- quality: AUC on the later answers (both methods, paired bootstrap SE of the
  difference), share of later answers whose true pass probability lies in the 90 %
  interval of the predicted one, and share of held-out students whose true current
  state lies in the encoder's 90 % interval per skill.

Targets (issue 16): ≤ 5 ms per student, ≥ 5,000 students/s, AUC within 0.005 of exact,
coverage 88–92 %.

    python -m benchmarks.bench_placement            # defaults below (~ a few minutes on 2 cores)
    python -m benchmarks.bench_placement --quick    # smaller everything (a smoke run)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def rows_table(sim, keep: np.ndarray, a_ids, l_ids, prefix: str = "new") -> pd.DataFrame:
    """DESIGN §2 rows of simulated students (rows flagged in `keep`)."""
    u = sim.student[keep]
    kind = sim.kind[keep]
    code = sim.code[keep]
    mid = np.where(kind == 0, np.asarray(a_ids, dtype=object)[np.where(kind == 0, code, 0)],
                   np.asarray(l_ids if len(l_ids) else ["-"], dtype=object)[np.where(kind == 1, code, 0)])
    return pd.DataFrame({
        "student_id": [f"{prefix}{i:05d}" for i in u],
        "module_id": mid,
        "module_type": np.where(kind == 0, "assessment", "lesson"),
        "outcome": sim.outcome[keep],
        "timestep": sim.step[keep],
    })


def predict_later(fitted, states: np.ndarray, bias: np.ndarray | None, sim, cut: np.ndarray, rng) -> np.ndarray:
    """Pass-probability draws (S, rows) of every later answer (step ≥ the student's cut):
    states (S, n, d) at the cut, pushed through the later lessons with sampled noise."""
    from bayes_lse.model import terms as eq

    req = fitted.draws("requirement")
    S = req.shape[0]
    ab = fitted.draws("assessment_bias") if fitted.has("assessment_bias") else np.zeros(req.shape[:2])
    gain = fitted.draws("gain") if fitted.has("gain") else None
    pre = fitted.draws("prerequisite") if fitted.has("prerequisite") else None
    noise = np.broadcast_to(np.asarray(fitted.learning_noise_draws(), dtype=float), (S,))
    n = sim.n_students
    later = (sim.step >= cut[sim.student])
    ans = np.flatnonzero(later & (sim.kind == 0))
    les = np.flatnonzero(later & (sim.kind == 1))
    rel_a = sim.step[ans] - cut[sim.student[ans]]
    lesson_at = {(int(sim.student[i]), int(sim.step[i] - cut[sim.student[i]])): int(sim.code[i]) for i in les}
    out = np.empty((S, len(ans)))
    cur = states.copy()
    gu = np.zeros((S, n)) if bias is None else bias
    horizon = int(rel_a.max()) + 1 if len(ans) else 0
    for k in range(horizon):
        sel = ans[rel_a == k]
        if len(sel):
            uu, jj = sim.student[sel], sim.code[sel]
            out[:, np.flatnonzero(rel_a == k)] = eq.pass_probability(cur[:, uu], req[:, jj], gu[:, uu], ab[:, jj])
        lk = np.array([lesson_at.get((u, k), -1) for u in range(n)])
        cur = eq.step_states(cur, lk, gain, pre, noise[:, None, None], "sample", rng)
    return out, ans


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from bayes_lse.evaluate.metrics import auc as _auc

    return float(_auc(y, p))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--students", type=int, default=300, help="training cohort size")
    # 800: the coverage target is a band of ±2 points; 300 held-out students (~1,400 later
    # answers, correlated within a student) measured 92.3 % against 89.9 % with 800 — a
    # binomial SE of 0.8 points before the correlation, too coarse to place it in the band
    ap.add_argument("--held-out", type=int, default=800)
    ap.add_argument("--steps", type=int, default=3000, help="encoder training steps")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--method", default="advi")
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--particles", type=int, default=500)
    ap.add_argument("--batch", type=int, default=10000, help="students in the throughput batch")
    ap.add_argument("--model", type=Path, default=None, help="reuse / keep the fitted model folder here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--objective", choices=["npe", "elbo", "both"], default="npe",
                    help="encoder training objective (both: quality of each, speed of the first)")
    a = ap.parse_args(argv)
    if a.quick:
        a.students, a.held_out, a.steps, a.hidden, a.draws, a.particles, a.batch = 60, 40, 200, 16, 100, 200, 2000

    from bayes_lse import LatentSkillEmbedding, load, simulate
    from bayes_lse.results.encoder import encode_histories, module_source

    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    if a.model is not None and a.model.exists():
        fitted = load(a.model)
        print(f"fit: loaded {a.model}")
    else:
        cohort = simulate(n_students=a.students, n_steps=10, n_assessments=20, n_lessons=10, n_skills=2, seed=a.seed)
        kw = {"draws": a.draws, "seed": a.seed} if a.method == "advi" else {"seed": a.seed}
        # history=False: the held-out students are simulated without the history term
        fitted = LatentSkillEmbedding(n_skills=2, history=False).fit(cohort.table, method=a.method, **kw)
        print(f"fit: {a.method} on {a.students} simulated students x 10 steps, {time.perf_counter() - t0:.1f} s")
    S = fitted.draws("requirement").shape[0]
    if a.model is not None and not a.model.exists():
        fitted.save(a.model)  # the fit only: encoders are trained below on every run
    objectives = ["npe", "elbo"] if a.objective == "both" else [a.objective]
    encoders = {}
    for obj in objectives:
        t1 = time.perf_counter()
        encoders[obj] = fitted.train_encoder(objective=obj, hidden=a.hidden, steps=a.steps, seed=a.seed)
        print(f"encoder ({obj}): trained in {time.perf_counter() - t1:.1f} s ({a.steps} steps, hidden {a.hidden}, "
              f"final loss {encoders[obj].spec['training']['final_loss']:.3f})")
    fitted.encoder = encoders[objectives[0]]
    enc = fitted.encoder
    a_ids = [str(x) for x in fitted.assessments]
    l_ids = [str(x) for x in fitted.lessons]

    # held-out students from the fit's own posterior, cut at a random timestep
    src = module_source(fitted)
    sim = src.simulate(a.held_out, rng)
    cut = np.array([rng.integers(1, max(2, last)) if last >= 2 else 1 for last in sim.last])
    hist_keep = sim.step < cut[sim.student]
    hist = rows_table(sim, hist_keep, a_ids, l_ids)
    n = sim.n_students
    ids = [f"new{i:05d}" for i in range(n)]
    # students with no rows before the cut are placed from an empty history: skip them
    has_rows = np.isin(np.arange(n), sim.student[hist_keep])

    # ---- speed
    one = [g for _, g in hist.groupby("student_id", sort=False)][:200]
    fitted.place(one[0], placement="amortised", seed=0)  # warm-up
    t1 = time.perf_counter()
    for g in one:
        fitted.place(g, placement="amortised", seed=0)
    ms_place = (time.perf_counter() - t1) / len(one) * 1e3
    from bayes_lse.inference.encoder import histories_from_table
    from bayes_lse.results.encoder import fit_tables

    tables = fit_tables(fitted)
    hs = [histories_from_table(g, a_ids, l_ids) for g in one]
    t1 = time.perf_counter()
    for h in hs:
        enc.posterior(h, tables)
    ms_forward = (time.perf_counter() - t1) / len(hs) * 1e3
    big_sim = src.simulate(a.batch, rng)
    big = rows_table(big_sim, np.ones(len(big_sim.student), bool), a_ids, l_ids)
    t1 = time.perf_counter()
    post_big = encode_histories(enc, fitted, big)
    sec_post = time.perf_counter() - t1
    t1 = time.perf_counter()
    placed_big = fitted.place_students(big, placement="amortised", seed=0)
    sec_draws = time.perf_counter() - t1
    n_big = len(post_big.ids)
    t1 = time.perf_counter()
    exact_one = [fitted.place(g, placement="exact", n_particles=a.particles, seed=0) for g in one[:20]]
    ms_exact = (time.perf_counter() - t1) / len(exact_one) * 1e3
    del placed_big
    rows_per = len(hist) / max(1, hist["student_id"].nunique())
    print(f"\nspeed ({S} posterior draws, ~{rows_per:.0f} rows per history):")
    print(f"  amortised, one at a time, FittedLSE.place from a DataFrame ({S} draws out): {ms_place:.2f} ms/student")
    print(f"  amortised, one at a time, encoder forward pass only:                 {ms_forward:.3f} ms/student")
    print(f"  amortised, batch of {n_big:,} (table -> posterior loc/scale):      {n_big / sec_post:,.0f} students/s")
    print(f"  amortised, batch of {n_big:,} with {S} draws per student:           {n_big / sec_draws:,.0f} students/s")
    print(f"  exact particle filter ({a.particles} particles x {S} draws):         {ms_exact:.1f} ms/student")
    figures = {"ms_per_student_place": ms_place, "ms_per_student_forward": ms_forward,
               "students_per_s_batch": n_big / sec_post, "students_per_s_batch_with_draws": n_big / sec_draws,
               "ms_per_student_exact": ms_exact, "posterior_draws": S}
    quality = {}

    # ---- quality
    t1 = time.perf_counter()
    ex = fitted.place_students(hist, placement="exact", n_particles=a.particles, seed=1)
    t_ex = time.perf_counter() - t1
    d = enc.n_skills
    prior = np.abs(rng.normal(size=(S, n, d))) * fitted.model_config["priors"]["initial_state_scale"]

    def stack(placed, attr):
        arrs = []
        for i, sid in enumerate(ids):
            if sid in placed:
                v = getattr(placed[sid], attr)
                arrs.append(v if v is not None else np.zeros(S))
            else:
                arrs.append(prior[:, i] if attr == "state" else np.zeros(S))
        return np.stack(arrs, axis=1)

    def later(placed):
        st = stack(placed, "state")
        bi = stack(placed, "student_bias") if fitted.has("student_bias") else None
        return predict_later(fitted, st, bi, sim, cut, np.random.default_rng(2))

    p_ex, rows = later(ex)
    y = sim.outcome[rows]
    ptrue = sim.p[rows]
    keep = has_rows[sim.student[rows]]
    y, ptrue = y[keep], ptrue[keep]
    stu = sim.student[rows][keep]
    us = np.unique(stu)
    by = {u: np.flatnonzero(stu == u) for u in us}

    def scores(p):
        p = p[:, keep]
        lo, hi = np.quantile(p, [0.05, 0.95], axis=0)
        return auc(y, p.mean(0)), float(np.mean((ptrue >= lo) & (ptrue <= hi))), p.mean(0)

    sc_ex = scores(p_ex)
    print(f"\nquality on {int(has_rows.sum())} held-out students simulated from the fit's posterior, "
          f"{len(y):,} later answers; exact placement of all {t_ex:.1f} s:")
    print(f"  exact:            AUC later answers {sc_ex[0]:.4f}   90% interval coverage of true p {sc_ex[1]:.1%}")
    quality.update(auc_exact=sc_ex[0], coverage_p_exact=sc_ex[1])
    from bayes_lse.model import terms as eq

    for obj, e in encoders.items():
        fitted.encoder = e
        t1 = time.perf_counter()
        am = fitted.place_students(hist, placement="amortised", seed=1)
        t_am = time.perf_counter() - t1
        p_am, _ = later(am)
        sc = scores(p_am)
        diffs = []
        brng = np.random.default_rng(3)
        for _ in range(200):  # paired bootstrap over students of the AUC difference
            pick = np.concatenate([by[u] for u in brng.choice(us, len(us))])
            if len(np.unique(y[pick])) < 2:
                continue
            diffs.append(auc(y[pick], sc[2][pick]) - auc(y[pick], sc_ex[2][pick]))
        pa = encode_histories(e, fitted, hist)
        order = [int(x[3:]) for x in pa.ids]
        true_now = sim.states[order, pa.last]
        lo = eq.truncated_normal_quantile(pa.loc, pa.scale, 0.95)
        hi = eq.truncated_normal_quantile(pa.loc, pa.scale, 0.05)
        cov_state = float(np.mean((true_now >= lo) & (true_now <= hi)))
        print(f"  amortised ({obj}): AUC later answers {sc[0]:.4f} (difference {sc[0] - sc_ex[0]:+.4f}, bootstrap SE "
              f"{np.std(diffs):.4f})   90% interval coverage of true p {sc[1]:.1%}   of the true current state "
              f"{cov_state:.1%}   (placement of all {t_am:.2f} s)")
        # calibration of the placed students (SBC-style): the probability integral transform of the
        # true current state (per skill) and bias under the encoder's posterior, uniform if calibrated
        from scipy import stats as sst
        from scipy.special import ndtr

        a0 = ndtr(-pa.loc / pa.scale)
        pit = (ndtr((true_now - pa.loc) / pa.scale) - a0) / (1 - a0)
        pits = [pit.ravel()]
        if pa.bias_loc is not None:
            pits.append(ndtr((sim.bias[order] - pa.bias_loc) / pa.bias_scale))
        pit_all = np.concatenate(pits)
        ks = sst.kstest(pit_all, "uniform")
        hist_counts = np.histogram(pit_all, bins=10, range=(0, 1))[0]
        print(f"      PIT of the true state and bias: KS p = {ks.pvalue:.3f}; deciles {hist_counts.tolist()}")
        quality.update({f"pit_ks_p_{obj}": ks.pvalue})
        quality.update({f"auc_{obj}": sc[0], f"auc_diff_{obj}": sc[0] - sc_ex[0], f"auc_diff_se_{obj}": np.std(diffs),
                        f"coverage_p_{obj}": sc[1], f"coverage_state_{obj}": cov_state})
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    from benchmarks.runner import emit_result

    emit_result("placement", quality=quality, figures=figures,
                targets={"ms_per_student_place": "<= 5", "students_per_s_batch": ">= 5000",
                         "auc_diff": "within 0.005 of exact", "coverage_p": "88-92 %"},
                notes=f"{n} held-out students simulated from a {fitted.method} fit's posterior; "
                      f"encoders {', '.join(encoders)}")


if __name__ == "__main__":
    main()
