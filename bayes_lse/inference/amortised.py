"""Training the amortised placement encoder (issue 16), with JAX (extra ``jax``).

What is learned.  For a fitted model, the posterior of a *new* student's current state
s_T and bias g given its interactions y, with the modules held at their posterior:
p(s_T, g | y) = ∫ p(s_T, g | y, θ) p(θ | data) dθ — what `recommend.sequences.place_student`
computes by a particle filter per posterior draw θ.  The encoder q_φ(s_T, g | y)
(`inference.encoder`: per skill a normal truncated to (0, ∞), a normal bias) is trained on
students simulated from the fitted model itself (`model.simulate.simulate_students`: a
posterior draw θ per student, then the student's initial state, bias, trajectory and
answers from the model's priors and terms), by minimising

    E_{θ ~ posterior, (s, g, y) ~ p(· | θ)} [ −log q_φ(s_T, g | y) ]

i.e. the expected KL(p(s_T, g | y) ‖ q_φ) up to a constant: amortised *neural posterior
estimation* (the objective of BayesFlow / sbi), not the reverse-KL ELBO.  Why this and
not the ELBO: the quantity placed is the state at the *last* timestep with the
trajectory's learning noise integrated out; an ELBO needs the joint density of what q
covers, i.e. a variational family over the whole trajectory (every s_t), whereas this
objective targets the marginal of (s_T, g) directly and, being mass-covering, gives
intervals that cover (the issue's 88–92 % target) where a reverse-KL fit is known to be
too narrow.  The gradient is taken through the encoder only (the simulator needs none),
so no reparameterisation of the model's truncated normals is required.  Both objectives
are amortised variational inference in the sense of issue 16; this one is measured in
`benchmarks/bench_placement.py`.

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
    layer_shapes,
    network,
    row_features,
    split_outputs,
    student_features,
)
from bayes_lse.model.simulate import SimulatedStudents, simulate_students

JAX_HINT = (
    "training the amortised encoder needs JAX and numpyro: pip install 'bayes-lse[jax]' "
    "(placing students with a trained encoder needs numpy only)"
)


def _import_jax() -> tuple[Any, Any, Any]:
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


def _batch(sim: SimulatedStudents, tables: ModuleTables, bias: bool, rows: int) -> tuple[np.ndarray, ...]:
    """Features of one simulated batch, padded to `rows` rows (padding rows go to a
    dummy segment n, which the loss never reads) so that every step has one shape;
    `rows` bounds what a batch can hold (`train_encoder`)."""
    h = histories_of(sim)
    x = row_features(h, tables)
    seg = h.student
    pad = rows - len(x)
    x = np.vstack([x, np.zeros((pad, x.shape[1]))])
    seg = np.concatenate([seg, np.full(pad, h.n_students)])
    return x, seg, student_features(h, tables), targets_of(sim, bias)


def npe_loss(params: dict[str, Any], stats: dict[str, Any], x: Any, seg: Any, g: Any, target: Any,
             d: int, bias: bool, jnp: Any, segment_sum: Callable[..., Any]) -> Any:
    """Mean of −log q(target | y) over the batch: truncated-normal states, normal bias."""
    from jax.scipy.special import log_ndtr

    n = g.shape[0]
    xs = (x - stats["x_mean"]) / stats["x_std"]
    gs = (g - stats["g_mean"]) / stats["g_std"]
    out = network(params, xs, seg, n, gs, xp=jnp, segment_sum=segment_sum)
    loc, scale, bl, bs = split_outputs(out, stats, d, bias, xp=jnp)
    z = (target[:, :d] - loc) / scale
    nll = jnp.sum(0.5 * z * z + jnp.log(scale) + log_ndtr(loc / scale), axis=1)
    if bias:
        zb = (target[:, d] - bl) / bs
        nll = nll + 0.5 * zb * zb + jnp.log(bs)
    return jnp.mean(nll) + 0.5 * np.log(2 * np.pi) * (d + bias)


def train_encoder(
    source: ModuleSource,
    *,
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

    Students are simulated in pools of `pool_size` (a fresh pool when one is used up, so
    the encoder never sees a student twice in a short run: no overfitting to a fixed
    set), `steps` Adam steps of `batch_size` students, the learning rate decayed by
    cosine to 5 % of `learning_rate`. `fit_id`: what ties the encoder to its fit
    (config hash, ...), kept in its spec.
    """
    jax, jnp, optim = _import_jax()
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    tables = source.tables
    d = tables.n_skills
    bias = bool(source.biases)
    rows = batch_size * (source.max_answers + 1) * source.max_steps
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
    key = jax.random.PRNGKey(int(rng.integers(2**31)))
    params = {}
    for name in PARAM_NAMES:
        shape = shapes[name]
        if name.startswith("W"):
            key, sub = jax.random.split(key)
            params[name] = jax.random.normal(sub, shape) * np.sqrt(1.0 / shape[0])
        else:
            params[name] = jnp.zeros(shape)
    params["W4"] = params["W4"] * 0.1
    jstats = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in stats.items()}

    def segsum(a: Any, s: Any, n: int) -> Any:
        return jax.ops.segment_sum(a, s, num_segments=n + 1)[:n]

    def loss_fn(p: dict[str, Any], x: Any, seg: Any, g: Any, target: Any) -> Any:
        return npe_loss(p, jstats, x, seg, g, target, d, bias, jnp, segsum)

    schedule = lambda i: learning_rate * (0.05 + 0.95 * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(i / steps, 1.0))))  # noqa: E731
    opt = optim.Adam(schedule)
    state = opt.init(params)

    @jax.jit
    def step(st: Any, x: Any, seg: Any, g: Any, target: Any) -> tuple[Any, Any]:
        p = opt.get_params(st)
        value, grads = jax.value_and_grad(loss_fn)(p, x, seg, g, target)
        return opt.update(grads, st), value

    pool: SimulatedStudents | None = first
    used = 0
    losses = []
    for i in range(steps):
        if pool is None or used + batch_size > pool.n_students:
            pool, used = source.simulate(pool_size, rng), 0
        idx = np.arange(used, used + batch_size)
        used += batch_size
        keep = np.isin(pool.student, idx)
        sub = SimulatedStudents(pool.student[keep] - used + batch_size, pool.kind[keep], pool.code[keep],
                                pool.outcome[keep], pool.step[keep], pool.p[keep], pool.draw[idx],
                                pool.states[idx], pool.bias[idx], pool.last[idx])
        x, seg, g, target = _batch(sub, tables, bias, rows)
        state, value = step(state, x, seg, g, target)
        losses.append(float(value))
        if progress is not None and (i + 1) % max(1, steps // 10) == 0:
            progress(f"step {i + 1}/{steps}: loss {np.mean(losses[-50:]):.3f}")
    final = {k: np.asarray(v, dtype=float) for k, v in opt.get_params(state).items()}
    final.update({k: np.asarray(v, dtype=float) for k, v in stats.items()})
    spec = {
        "format": ENCODER_FORMAT,
        "kind": "deep-sets encoder, truncated-normal states and normal bias at the current timestep",
        "objective": "amortised posterior estimation: E[-log q(s_T, g | y)] on students simulated from the fit",
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
    jax, jnp, _ = _import_jax()
    p = {k: jnp.asarray(v) for k, v in enc.params.items()}
    x = (row_features(h, tables) - enc.params["x_mean"]) / enc.params["x_std"]
    g = (student_features(h, tables) - enc.params["g_mean"]) / enc.params["g_std"]
    n = h.n_students

    def segsum(a: Any, s: Any, m: int) -> Any:
        return jax.ops.segment_sum(a, s, num_segments=m)

    out = network(p, jnp.asarray(x), jnp.asarray(h.student), n, jnp.asarray(g), xp=jnp, segment_sum=segsum)
    return tuple(None if a is None else np.asarray(a) for a in split_outputs(out, p, enc.n_skills, enc.has_bias, xp=jnp))
