"""What same-seed reproducibility costs: the log density and its gradient compiled with
and without Numba's fastmath, timed side by side.

PyTensor's numba backend compiles with LLVM fast-math flags by default (``reassoc``,
``contract``, ...).  Those let LLVM reorder floating-point sums, and the order it picks
depends on how the kernels were put together: a graph compiled from scratch and the same
graph loaded from the compile cache gave log densities that differ in the last bit, so
PyMC's NUTS with the same seed drew different chains on the first run of a machine and on
every later one (issue 19, item 5; -150.64338450904575 vs -150.64338450904577).
`bayes_lse.inference.engine.run_fit` therefore compiles with fastmath off.  This script
measures what that costs per gradient evaluation.

    python -m benchmarks.bench_fastmath [--quick]
"""

from __future__ import annotations

import argparse
import time


def _timer(model, fastmath: bool, point, repeats: int):
    import numpy as np
    import pytensor

    with pytensor.config.change_flags(numba__fastmath=fastmath):
        fn = model.logp_dlogp_function(ravel_inputs=True)
        fn.set_extra_values({})
    x = np.concatenate([np.ravel(point[v.name]) for v in fn._grad_vars])
    fn(x)  # warm up

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(x)
        return (time.perf_counter() - t0) / repeats

    return run, fn(x)[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small cohort (200 students)")
    args = ap.parse_args(argv)
    import numpy as np

    from benchmarks.runner import emit_result
    from bayes_lse import LatentSkillEmbedding, read_interactions, simulate

    n_students = 200 if args.quick else 2000
    log = read_interactions(simulate(n_students=n_students, n_steps=6, n_assessments=40, n_lessons=10,
                                     n_skills=2, seed=0).table)
    model, _ = LatentSkillEmbedding(n_skills=2).build_model(log, parametrization="auto")
    point = model.initial_point(random_seed=0)
    rng = np.random.default_rng(0)
    point = {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in point.items()}
    repeats = 200 if args.quick else 50
    on, lp_on = _timer(model, True, point, repeats)
    off, lp_off = _timer(model, False, point, repeats)
    t_on, t_off = [], []
    for _ in range(5):  # interleaved, best of five: the machine is shared
        t_on.append(on())
        t_off.append(off())
    figures = {
        "rows": len(log.table),
        "fastmath_on_ms": round(1e3 * min(t_on), 3),
        "fastmath_off_ms": round(1e3 * min(t_off), 3),
        "off_over_on": round(min(t_off) / min(t_on), 3),
        "logp_difference": float(lp_off - lp_on),
    }
    print(f"{figures['rows']} rows, log density + gradient per evaluation: fastmath on "
          f"{figures['fastmath_on_ms']} ms, off {figures['fastmath_off_ms']} ms "
          f"(off/on {figures['off_over_on']}); logp differs by {figures['logp_difference']:.3g}")
    emit_result("fastmath", figures=figures,
                targets={"off_over_on": "close to 1: reproducibility should cost little"},
                notes="best of 5 interleaved rounds; shared machine")


if __name__ == "__main__":
    main()
