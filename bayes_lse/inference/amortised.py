"""Training the amortised placement encoder (issue 16), with JAX (extra ``jax``).

What is learned.  For a fitted model, the posterior of a *new* student's current state
s_T and bias g given its interactions y, with the modules held at their posterior:
p(s_T, g | y) = ∫ p(s_T, g | y, θ) p(θ | data) dθ — what `recommend.sequences.place_student`
computes by a particle filter per posterior draw θ.  The encoder q_φ (`inference.encoder`:
per skill a normal truncated to (0, ∞), a normal bias) is trained on students simulated
from the fitted model itself (`model.simulate.simulate_students`: a posterior draw θ per
student, then the student's initial state, bias, trajectory and answers from the model's
priors and terms).  Two objectives (`train_encoder(objective=...)`):

- ``"npe"`` (default): E_{θ, (s, g, y) ~ p} [−log q_φ(s_T, g | y)], the expected
  KL(p(s_T, g | y) ‖ q_φ) up to a constant — amortised posterior estimation (the
  objective of BayesFlow / sbi).  It targets the marginal of (s_T, g) with the
  trajectory's learning noise integrated out, and is mass-covering.
- ``"elbo"``: the amortised ELBO, E_q[log p(y, s_0..s_T, g | θ) − log q_φ(s_0..s_T, g | y)]
  with one reparameterised sample (inverse-CDF truncated normals), where q_φ is
  mean-field over the whole trajectory: the state head is asked for every timestep
  (`inference.encoder.state_head`); the joint density is the model's own (priors,
  learning update, pass logit from `model.terms` under jax.numpy).  It is the
  VAE-style objective the issue names; being reverse-KL and mean-field over a chain of
  strongly coupled states, its intervals are too narrow — measured: 65 % coverage of
  the true current state by 90 % intervals on a small check, against 90 % for "npe"
  (tests/inference/test_amortised.py, benchmarks/bench_placement.py --objective).

The network and its optimiser come from libraries: the forward pass is
`inference.encoder.network` under ``jax.numpy`` with `jax.ops.segment_sum`, gradients by
`jax.value_and_grad`, Adam from `numpyro.optim` (optax is not installed here; numpyro is
the project's JAX extra already).  Placement at run time needs numpy only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from bayes_lse.inference.encoder import (
    ENCODER_FORMAT,
    PARAM_NAMES,
    Encoder,
    Histories,
    ModuleTables,
    bias_distribution,
    current_posterior,
    layer_shapes,
    network,
    row_features,
    state_distribution,
    state_head,
    student_features,
)
from bayes_lse.model import terms as eq
from bayes_lse.model.simulate import SimulatedStudents, simulate_students

JAX_HINT = (
    "training the amortised encoder needs JAX and numpyro: pip install 'bayes-lse[jax]' "
    "(placing students with a trained encoder needs numpy only)"
)


def import_jax() -> tuple[Any, Any, Any]:
    try:
        import jax
        import jax.numpy as jnp
        import numpyro.optim as optim
    except ImportError as exc:  # pragma: no cover - the extra is installed in CI
        raise ImportError(JAX_HINT) from exc
    return jax, jnp, optim


@dataclass
class ModuleSource:
    """What the encoder is trained on: posterior draws of the modules (S leading), the
    point tables the encoder conditions on, the model's priors and variant, and the
    design of the simulated students (max steps, answers per step, module frequencies)."""

    requirement: np.ndarray
    assessment_bias: np.ndarray | None
    gain: np.ndarray | None
    prerequisite: np.ndarray | None
    noise: Any
    priors: dict[str, Any]
    biases: bool
    tables: ModuleTables
    max_steps: int = 10
    max_answers: int = 3
    lesson_probability: float = 1.0
    assessment_weights: np.ndarray | None = None
    lesson_weights: np.ndarray | None = None

    def simulate(self, n: int, rng: np.random.Generator) -> SimulatedStudents:
        return simulate_students(
            n, requirement=self.requirement, priors=self.priors, assessment_bias=self.assessment_bias,
            gain=self.gain, prerequisite=self.prerequisite, noise=self.noise, biases=self.biases,
            max_steps=self.max_steps, max_answers=self.max_answers, lesson_probability=self.lesson_probability,
            assessment_weights=self.assessment_weights, lesson_weights=self.lesson_weights, rng=rng,
        )


def histories_of(sim: SimulatedStudents) -> Histories:
    """The encoder's input for simulated students (their rows as they are)."""
    return Histories.from_arrays(sim.student, sim.kind, sim.code, sim.outcome, sim.step, sim.n_students)


def targets_of(sim: SimulatedStudents, bias: bool) -> np.ndarray:
    """(n, d [+ 1]) true state at each student's current timestep [and bias]."""
    s = sim.states[np.arange(sim.n_students), sim.last]
    return np.column_stack([s, sim.bias]) if bias else s


OBJECTIVES = ("npe", "elbo")


def batch_arrays(sim: SimulatedStudents, source: ModuleSource, bias: bool, sizes: dict[str, int],
           elbo: bool) -> dict[str, np.ndarray]:
    """Arrays of one simulated batch of B students, padded to fixed `sizes` so that every
    step has one shape (padding rows go to a dummy segment B or carry mask 0).

    Always: ``x``, ``seg`` (rows), ``g`` (B, G), ``target`` (B, d [+ 1]). With `elbo`,
    the trajectory the ELBO integrates over: one state row per (student, t ≤ T)
    (``st_student``, ``st_sf`` the state head's timestep features, ``st_first``,
    ``st_mask``), answers (``an_state`` flat state row, ``an_student``, ``an_sign``, the
    student's module draw's ``an_req``, ``an_ab``, ``an_mask``) and transitions
    (``tr_from``, ``tr_to``, the draw's ``tr_gain``, ``tr_pre``, ``tr_noise``, ``tr_mask``).
    """
    tables = source.tables
    h = histories_of(sim)
    B = h.n_students
    x = row_features(h, tables)
    pad = sizes["rows"] - len(x)
    out = {
        "x": np.vstack([x, np.zeros((pad, x.shape[1]))]),
        "seg": np.concatenate([h.student, np.full(pad, B)]),
        "g": student_features(h, tables),
        "target": targets_of(sim, bias),
    }
    if not elbo:
        return out
    d = tables.n_skills
    last = h.last
    n_st = last + 1
    off = np.concatenate([[0], np.cumsum(n_st)[:-1]])
    NS = int(n_st.sum())
    st_u = np.repeat(np.arange(B), n_st)
    st_t = np.arange(NS) - off[st_u]
    # lesson taken at each state row's step (-1: none)
    les_at = np.full(NS, -1, dtype=np.int64)
    il = np.flatnonzero(h.kind == 1)
    les_at[off[h.student[il]] + h.step[il]] = h.code[il]
    # a log without lessons (ASSISTments) has an empty lesson table: zero gains of width d
    g_row = (np.where((les_at >= 0)[:, None], tables.lesson[np.maximum(les_at, 0), :d], 0.0) if len(tables.lesson)
             else np.zeros((NS, d)))
    csum = np.vstack([np.cumsum(g_row[::-1], axis=0)[::-1], np.zeros((1, d))])
    end = off + n_st
    g_after = csum[:NS] - csum[end[st_u]]
    sf = np.column_stack([np.log1p(last[st_u] - st_t), g_after])

    def padto(a: np.ndarray, n: int, fill: float = 0.0) -> np.ndarray:
        extra = n - len(a)
        return np.concatenate([a, np.full((extra, *a.shape[1:]), fill, dtype=a.dtype)])

    S_ = sizes["states"]
    out.update(st_student=padto(st_u, S_), st_sf=padto(sf, S_), st_first=padto((st_t == 0).astype(float), S_),
               st_mask=padto(np.ones(NS), S_), st_t=padto(st_t, S_, -1))
    draw = sim.draw
    ia = np.flatnonzero(h.kind == 0)
    au = h.student[ia]
    aj = h.code[ia]
    req = source.requirement[draw[au], aj]
    ab = np.zeros(len(ia)) if source.assessment_bias is None else source.assessment_bias[draw[au], aj]
    A_ = sizes["answers"]
    out.update(an_code=padto(aj, A_), an_state=padto(off[au] + h.step[ia], A_), an_student=padto(au, A_),
               an_sign=padto(2.0 * h.outcome[ia] - 1.0, A_), an_req=padto(req, A_, 1.0), an_ab=padto(ab, A_),
               an_mask=padto(np.ones(len(ia)), A_))
    tr = np.flatnonzero(st_t < last[st_u])
    tu = st_u[tr]
    k = les_at[tr]
    has = k >= 0
    gain = np.zeros((len(tr), d))
    pre = np.zeros((len(tr), d))
    if source.gain is not None and has.any():
        gain[has] = source.gain[draw[tu[has]], k[has]]
        if source.prerequisite is not None:
            pre[has] = source.prerequisite[draw[tu[has]], k[has]]
    noise = np.broadcast_to(np.asarray(source.noise, dtype=float), (source.requirement.shape[0],))[draw[tu]]
    T_ = sizes["transitions"]
    out.update(tr_lesson=padto(np.maximum(k, 0), T_), tr_has=padto(has.astype(float), T_), tr_from=padto(tr, T_), tr_to=padto(tr + 1, T_), tr_gain=padto(gain, T_), tr_pre=padto(pre, T_, 1.0),
               tr_noise=padto(noise, T_, 1.0), tr_mask=padto(np.ones(len(tr)), T_))
    return out


def _context(params: dict[str, Any], stats: dict[str, Any], b: dict[str, Any], jnp: Any,
             segment_sum: Callable[..., Any]) -> Any:
    n = b["g"].shape[0]
    xs = (b["x"] - stats["x_mean"]) / stats["x_std"]
    gs = (b["g"] - stats["g_mean"]) / stats["g_std"]
    return network(params, xs, b["seg"], n, gs, xp=jnp, segment_sum=segment_sum)


def npe_loss(params: dict[str, Any], stats: dict[str, Any], b: dict[str, Any], d: int, bias: bool, jnp: Any,
             segment_sum: Callable[..., Any]) -> Any:
    """Mean over the batch of −log q(true s_T, true g | y): truncated-normal states,
    normal bias (`terms.truncated_normal_logpdf`, `terms.normal_logpdf`)."""
    from jax.scipy.special import log_ndtr

    z = _context(params, stats, b, jnp, segment_sum)
    loc, scale, bl, bs = current_posterior({**params, **stats}, z, d, bias, xp=jnp)
    target = b["target"]
    lq = jnp.sum(eq.truncated_normal_logpdf(target[:, :d], loc, scale, jnp, log_ndtr), axis=1)
    if bias:
        lq = lq + eq.normal_logpdf(target[:, d], bl, bs, jnp)
    return -jnp.mean(lq)


#: the Markov guide's location is kept ≥ this many scales below 0 (float32: Φ(−8)·u stays
#: representable, so the inverse-CDF draw stays finite)
MIN_STANDARDISED_LOC = -8.0


def markov_states(loc: Any, scale: Any, u: Any, b: dict[str, Any], max_step: int, has_prereq: bool,
                  jax: Any, jnp: Any, mix: Any = 1.0, n_students: int | None = None) -> tuple[Any, Any]:
    """The Markov guide's trajectory (`elbo_loss` with ``max_step``): s_0 ~ TN(loc_0, scale_0)
    and s_t ~ TN(E[update](s_{t−1}) + loc_t, scale_t) — the model's own learning-update
    mean at the drawn globals (``b["tr_gain"]``, ``b["tr_pre"]``), shifted by the encoder's
    head — drawn by inverse CDF at uniforms `u`.  Rows are each student's states in time
    order, ``b["st_t"]`` their timestep (−1 for padding), ``b["st_student"]`` their student
    (< `n_students`, default the largest + 1: pass it under `jax.jit`).
    `mix` (per skill, in [0, 1]; the joint fit learns it): the location is mix·E[update] +
    loc_t, so 0 is the independent guide and 1 the pure Markov one.
    Returns the states and each row's location (for log q).

    One `jax.lax.scan` step per timestep draws that timestep's state of every student
    (a students × timesteps grid of row numbers): max_step + 1 steps over the batch's
    students.  The first form drew every state row at every step and kept the rows of that
    step, (max_step + 1) × rows: on the 25M-row log (≤ 5 steps) the students' posterior
    pass took 326 of the fit's 397 s, and on ASSISTments (hundreds of answers a student,
    each its own step) the amortised fit took 404 s against MAP's 35 s."""
    from jax.scipy.special import ndtr, ndtri

    S_ = loc.shape[0]
    d = loc.shape[1]
    tr_w = b["tr_mask"][:, None]
    st_gain = jnp.zeros((S_, d)).at[b["tr_to"]].add(tr_w * b["tr_gain"])
    st_pre = (jnp.ones((S_, d)).at[b["tr_to"]].add(tr_w * (b["tr_pre"] - 1.0)) if has_prereq else None)
    st_t = b["st_t"]

    def draw(mu: Any, sc: Any, uu: Any) -> Any:
        return jnp.maximum(mu - sc * ndtri(uu * ndtr(mu / sc)), 1e-8)

    def located(prev: Any, lo: Any, sc: Any, gain: Any, pre: Any, later: Any) -> Any:
        m = eq.expected_update(prev, gain, pre, xp=jnp)
        mu = jnp.where(later, mix * m + lo, lo)
        return jnp.maximum(mu, MIN_STANDARDISED_LOC * sc)

    def shifted(s: Any) -> Any:
        return located(jnp.roll(s, 1, axis=0), loc, scale, st_gain, st_pre, (st_t > 0)[:, None])

    # rows outside the grid (padding) keep the draw at their own location, as before
    base = draw(shifted(jnp.zeros_like(loc)), scale, u)
    B = int(n_students) if n_students is not None else int(np.asarray(b["st_student"]).max(initial=-1)) + 1
    T = int(max_step) + 1
    valid = st_t >= 0
    rows = jnp.arange(S_)
    # grid[i, t]: the row of student i's state at t; S_ (a benign extra row) where there is none
    grid = jnp.full((B + 1, T), S_, dtype=rows.dtype).at[
        jnp.where(valid, b["st_student"], B), jnp.where(valid, st_t, 0)].set(rows)[:B]

    def pad(a: Any, fill: float) -> Any:
        return jnp.concatenate([a, jnp.full((1, d), fill, dtype=a.dtype)])

    loc_e, scale_e, u_e, gain_e = pad(loc, 0.0), pad(scale, 1.0), pad(u, 0.5), pad(st_gain, 0.0)
    pre_e = pad(st_pre, 1.0) if has_prereq else None

    def step(prev: Any, t: Any) -> tuple[Any, Any]:
        r = grid[:, t]
        sc = scale_e[r]
        mu = located(prev, loc_e[r], sc, gain_e[r], pre_e[r] if has_prereq else None, t > 0)
        s_t = draw(mu, sc, u_e[r])
        return s_t, s_t

    _, per_t = jax.lax.scan(step, jnp.zeros((B, d), dtype=loc.dtype), jnp.arange(T))
    s = jnp.concatenate([base, jnp.zeros((1, d), dtype=base.dtype)]).at[grid.T.reshape(-1)].set(
        per_t.reshape(-1, d))[:S_]
    s = jnp.where(valid[:, None], s, base)
    return s, shifted(s)


def elbo_loss(params: dict[str, Any], stats: dict[str, Any], b: dict[str, Any], key: Any, d: int, bias: bool,
              has_prereq: bool, priors: dict[str, Any], jax: Any, jnp: Any, segment_sum: Callable[..., Any],
              max_step: int | None = None) -> Any:
    """−ELBO per student, one reparameterised sample: q(s_0..s_T, g | y) = Π_t TN(s_t |
    state head at t) × N(g | bias head), against the model's joint density of the
    student's states, bias and answers given its module draw — the initial-state and bias
    priors, the learning update's truncated normal, the pass logit (all from
    `model.terms`, with jax.numpy).

    `max_step` (the cohort's largest timestep): the *Markov* guide instead (the joint fit's
    default), q(s_t | s_{t−1}) = TN(E[update](s_{t−1}; the drawn gain, prerequisite) + head_t,
    scale_t) (`markov_states`): the head says how the answers move each state off the
    model's own transition, so a trajectory follows the lessons and the gains get a
    gradient from every later answer.  With the independent guide the jointly fitted gains
    collapsed towards 0 on short histories (0.04 of the true norm; in-sample pass rates
    0.42 → 0.61 over five steps where the data rise 0.37 → 0.75) and held-out AUC trailed
    full-batch ADVI by 0.018; the Markov guide: 0.39 → 0.73, +0.004 (docs/benchmarks.md)."""
    from jax.scipy.special import log_ndtr, ndtr, ndtri

    z = _context(params, stats, b, jnp, segment_sum)
    B = z.shape[0]
    allp = {**params, **stats}
    loc, scale = state_distribution(state_head(allp, z[b["st_student"]], b["st_sf"], jnp), allp, d, jnp)
    k1, k2 = jax.random.split(key)
    u = jax.random.uniform(k1, loc.shape, minval=1e-6, maxval=1.0)
    if max_step is None:
        # inverse CDF of N(loc, scale²) restricted to (0, ∞): loc − scale·Φ⁻¹(u·Φ(loc/scale))
        s = jnp.maximum(loc - scale * ndtri(u * ndtr(loc / scale)), 1e-8)
    else:
        mix = jax.nn.sigmoid(params["markov_mix"]) if "markov_mix" in params else 1.0
        s, loc = markov_states(loc, scale, u, b, max_step, has_prereq, jax, jnp, mix, n_students=B)
    mask = b["st_mask"]
    log_q = jnp.sum(mask[:, None] * eq.truncated_normal_logpdf(s, loc, scale, jnp, log_ndtr))
    log_p = jnp.sum((mask * b["st_first"])[:, None] * eq.prior_log_density("initial_state", s, priors, jnp))
    g_u = jnp.zeros(B)
    if bias:
        bl, bs = bias_distribution(allp, z, allp, d, jnp)
        g_u = bl + bs * jax.random.normal(k2, (B,))
        log_q = log_q + jnp.sum(eq.normal_logpdf(g_u, bl, bs, jnp))
        log_p = log_p + jnp.sum(eq.prior_log_density("student_bias", g_u, priors, jnp))
    s_from = s[b["tr_from"]]
    mu = eq.expected_update(s_from, b["tr_gain"], b["tr_pre"] if has_prereq else None, xp=jnp)
    sig = b["tr_noise"][:, None]
    log_p = log_p + jnp.sum(b["tr_mask"][:, None] * eq.truncated_normal_logpdf(s[b["tr_to"]], mu, sig, jnp, log_ndtr))
    logit = eq.pass_logit(s[b["an_state"]], b["an_req"], g_u[b["an_student"]], b["an_ab"], xp=jnp)
    log_p = log_p - jnp.sum(b["an_mask"] * jnp.logaddexp(0.0, -b["an_sign"] * logit))
    return -(log_p - log_q) / B


def init_params(shapes: dict[str, tuple[int, ...]], key: Any, jax: Any, jnp: Any) -> tuple[dict[str, Any], Any]:
    """Initial encoder weights (`PARAM_NAMES`, `layer_shapes`) and the key left after them:
    weight matrices N(0, 1/fan-in), biases 0; the two output layers (W4, W6) scaled by 0.1
    so training starts near the heads' zero output."""
    params = {}
    for name in PARAM_NAMES:
        shape = shapes[name]
        if name.startswith("W"):
            key, sub = jax.random.split(key)
            params[name] = jax.random.normal(sub, shape) * np.sqrt(1.0 / shape[0])
        else:
            params[name] = jnp.zeros(shape)
    params["W4"] = params["W4"] * 0.1
    params["W6"] = params["W6"] * 0.1
    return params, key


def train_encoder(
    source: ModuleSource,
    *,
    objective: str = "npe",
    hidden: int = 64,
    steps: int = 3000,
    batch_size: int = 256,
    learning_rate: float = 3e-3,
    pool_size: int = 8192,
    seed: int | None = 0,
    fit_id: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Encoder:
    """Train an encoder on students simulated from `source` (see the module docstring).

    `objective`: "npe" (default; E[−log q(true s_T, g | y)]) or "elbo" (the amortised
    ELBO over the whole trajectory with the reparameterisation trick, `elbo_loss`).
    Students are simulated in pools of `pool_size` (a fresh pool when one is used up, so
    the encoder never sees a student twice in a short run: no overfitting to a fixed
    set), `steps` Adam steps of `batch_size` students, the learning rate decayed by
    cosine to 5 % of `learning_rate`. `fit_id`: what ties the encoder to its fit
    (config hash, ...), kept in its spec.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    jax, jnp, optim = import_jax()
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    tables = source.tables
    d = tables.n_skills
    bias = bool(source.biases)
    elbo = objective == "elbo"
    sizes = {"rows": batch_size * (source.max_answers + 1) * source.max_steps,
             "states": batch_size * source.max_steps, "answers": batch_size * source.max_steps * source.max_answers,
             "transitions": batch_size * max(source.max_steps - 1, 1)}
    pool_size = int(min(pool_size, max(steps * batch_size, batch_size)))
    # standardisation from a first pool
    first = source.simulate(pool_size, rng)
    h0 = histories_of(first)
    x0, g0, t0_ = row_features(h0, tables), student_features(h0, tables), targets_of(first, bias)
    stats = {
        "x_mean": x0.mean(0), "x_std": x0.std(0) + 1e-6, "g_mean": g0.mean(0), "g_std": g0.std(0) + 1e-6,
        "t_mean": t0_.mean(0), "t_std": t0_.std(0) + 1e-6,
    }
    shapes = layer_shapes(x0.shape[1], g0.shape[1], hidden, d, bias)
    params, key = init_params(shapes, jax.random.PRNGKey(int(rng.integers(2**31))), jax, jnp)
    jstats = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in stats.items()}

    def segsum(a: Any, sg: Any, n: int) -> Any:
        return jax.ops.segment_sum(a, sg, num_segments=n + 1)[:n]

    has_prereq = source.prerequisite is not None
    priors = source.priors

    def loss_fn(p: dict[str, Any], b: dict[str, Any], k: Any) -> Any:
        if elbo:
            return elbo_loss(p, jstats, b, k, d, bias, has_prereq, priors, jax, jnp, segsum)
        return npe_loss(p, jstats, b, d, bias, jnp, segsum)

    schedule = lambda i: learning_rate * (0.05 + 0.95 * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(i / steps, 1.0))))  # noqa: E731
    opt = optim.Adam(schedule)
    state = opt.init(params)

    @jax.jit
    def step(st: Any, b: dict[str, Any], k: Any) -> tuple[Any, Any]:
        p = opt.get_params(st)
        value, grads = jax.value_and_grad(loss_fn)(p, b, k)
        return opt.update(grads, st), value

    pool: SimulatedStudents | None = first
    used = 0
    losses = []
    for i in range(steps):
        if pool is None or used + batch_size > pool.n_students:
            pool, used = source.simulate(pool_size, rng), 0
        idx = np.arange(used, used + batch_size)
        keep = np.isin(pool.student, idx)
        sub = SimulatedStudents(pool.student[keep] - used, pool.kind[keep], pool.code[keep],
                                pool.outcome[keep], pool.step[keep], pool.p[keep], pool.draw[idx],
                                pool.states[idx], pool.bias[idx], pool.last[idx])
        used += batch_size
        b = batch_arrays(sub, source, bias, sizes, elbo)
        key, sub_key = jax.random.split(key)
        state, value = step(state, b, sub_key)
        losses.append(float(value))
        if progress is not None and (i + 1) % max(1, steps // 10) == 0:
            progress(f"step {i + 1}/{steps}: loss {np.mean(losses[-50:]):.3f}")
    final = {k: np.asarray(v, dtype=float) for k, v in opt.get_params(state).items()}
    final.update({k: np.asarray(v, dtype=float) for k, v in stats.items()})
    spec = {
        "format": ENCODER_FORMAT,
        "kind": "deep-sets encoder, truncated-normal states and normal bias at the current timestep",
        "objective": objective,
        "objective_text": ("E[-log q(s_T, g | y)] on students simulated from the fit (amortised posterior estimation)"
                           if not elbo else "amortised ELBO over the trajectory and bias, reparameterised, on "
                           "students simulated from the fit"),
        "n_skills": d,
        "bias": bias,
        "hidden": int(hidden),
        "n_row_features": int(x0.shape[1]),
        "n_student_features": int(g0.shape[1]),
        "activation": "tanh",
        "module_fingerprint": tables.fingerprint(),
        "training": {
            "steps": int(steps), "batch_size": int(batch_size), "learning_rate": float(learning_rate),
            "pool_size": int(pool_size), "seed": seed, "max_steps": int(source.max_steps),
            "max_answers": int(source.max_answers), "final_loss": float(np.mean(losses[-100:])),
            "seconds": round(time.perf_counter() - t0, 2), "library": f"jax {jax.__version__}, numpyro.optim.Adam",
        },
        **({"fit": fit_id} if fit_id else {}),
    }
    enc = Encoder(spec=spec, params=final)
    enc.check()
    return enc


def jax_forward(enc: Encoder, h: Histories, tables: ModuleTables) -> tuple[np.ndarray, ...]:
    """The encoder's outputs computed by JAX (what training differentiates): for the
    test that the numpy placement computes the same thing."""
    jax, jnp, _ = import_jax()
    p = {k: jnp.asarray(v) for k, v in enc.params.items()}
    x = (row_features(h, tables) - enc.params["x_mean"]) / enc.params["x_std"]
    g = (student_features(h, tables) - enc.params["g_mean"]) / enc.params["g_std"]
    n = h.n_students

    def segsum(a: Any, sg: Any, m: int) -> Any:
        return jax.ops.segment_sum(a, sg, num_segments=m)

    z = network(p, jnp.asarray(x), jnp.asarray(h.student), n, jnp.asarray(g), xp=jnp, segment_sum=segsum)
    out = current_posterior(p, z, enc.n_skills, enc.has_bias, xp=jnp)
    return tuple(None if a is None else np.asarray(a) for a in out)
