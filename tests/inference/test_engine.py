"""`inference.engine`: the MAP optimiser's restart after a stall."""

from __future__ import annotations

import numpy as np
from scipy import optimize

from bayes_lse.inference import engine

SCALES = np.geomspace(1.0, 1e3, 40)
MINIMIZE = optimize.minimize  # scipy's own, whatever a test patches


def quadratic(x: np.ndarray) -> tuple[float, np.ndarray]:
    return 0.5 * float(np.sum(SCALES * x**2)), SCALES * x


def _stalling_first_leg(monkeypatch, calls: list[int], legs: int = 1):
    """scipy's minimize, whose first `legs` calls stop after 3 iterations and say they stopped
    on the objective's relative reduction (the stall seen on ASSISTments)."""
    real = MINIMIZE

    def minimize(fun, x, **kw):
        calls.append(kw["options"]["maxiter"])
        if len(calls) <= legs:
            res = real(fun, x, **{**kw, "options": {**kw["options"], "maxiter": 3}})
            res.message = "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"
            return res
        return real(fun, x, **kw)

    monkeypatch.setattr(engine.optimize, "minimize", minimize)


def test_a_stall_with_a_large_gradient_is_restarted_from_where_it_stopped(monkeypatch):
    calls: list[int] = []
    _stalling_first_leg(monkeypatch, calls)
    cfg = {"maxiter": 200, "ftol": 1e-12, "gtol": 1e-8}
    res, restarts, _ = engine.lbfgsb_with_restarts(quadratic, np.full(40, 5.0), np.zeros(40, dtype=bool), cfg, 10, None)
    assert restarts == 1
    assert calls[0] == 200 and calls[1] == 200 - 3  # the second leg gets the iterations left
    assert res.nit > 3 and float(np.max(np.abs(res.x))) < 1e-4  # it went on to the optimum
    # without the restart the first leg's point is far from it
    first = MINIMIZE(quadratic, np.full(40, 5.0), jac=True, method="L-BFGS-B",
                     options={**cfg, "maxiter": 3, "maxcor": 10})
    assert float(np.max(np.abs(first.jac))) > engine.RESTART_GRAD


def test_no_restart_at_an_optimum_at_the_bound_or_past_the_limit(monkeypatch):
    cfg = {"maxiter": 200, "ftol": 1e-12, "gtol": 1e-8}
    # an ordinary convergence: one leg
    res, restarts, _ = engine.lbfgsb_with_restarts(quadratic, np.full(40, 5.0), np.zeros(40, dtype=bool), cfg, 10, None)
    assert restarts == 0 and float(np.max(np.abs(res.x))) < 1e-4
    # a stall whose only large gradient pushes coordinates against their bound at 0 is an optimum

    def pushed(x):
        return float(np.sum(x)), np.ones_like(x)

    calls: list[int] = []
    _stalling_first_leg(monkeypatch, calls)
    res, restarts, _ = engine.lbfgsb_with_restarts(pushed, np.full(5, 2.0), np.ones(5, dtype=bool), cfg, 10, None)
    assert restarts == 0 and len(calls) == 1 and np.allclose(res.x, 0.0)
    # stalls are restarted at most MAX_RESTARTS times
    calls.clear()
    _stalling_first_leg(monkeypatch, calls, legs=10)
    res, restarts, _ = engine.lbfgsb_with_restarts(quadratic, np.full(40, 50.0), np.zeros(40, dtype=bool), cfg, 3, None)
    assert restarts == engine.MAX_RESTARTS and len(calls) == engine.MAX_RESTARTS + 1
    assert res.nit == 3 * len(calls)
