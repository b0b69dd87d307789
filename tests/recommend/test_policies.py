"""Lesson policies over beliefs (issue 18): belief updates against brute force, policies that
respond to what they observe, the simulator's common random numbers.  No fitting."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from bayes_lse.evaluate.policies import designed_cohort, designed_problem, simulate_policies, truths_from_belief
from bayes_lse.model import terms as eq
from bayes_lse.recommend.policies import (
    POLICIES,
    Belief,
    PlanModel,
    decision_tree,
    make_policy,
    plan_pool,
    tree_lines,
    weighted_quantile,
)


def tiny_model(S: int = 4, noise: float = 0.5, prereq: bool = True, seed: int = 0) -> PlanModel:
    rng = np.random.default_rng(seed)
    L, d = 3, 2
    return PlanModel(
        gain=np.abs(rng.normal(0.8, 0.3, (S, L, d))),
        prerequisite=np.abs(rng.normal(0.6, 0.3, (S, L, d))) if prereq else None,
        goal_requirement=np.abs(rng.normal(1.5, 0.3, (S, 1, d))), lesson_ids=["L0", "L1", "L2"], goal_ids=["G"],
        goal_bias=rng.normal(0, 0.3, (S, 1)),
        probe_requirement=np.abs(rng.normal(1.0, 0.5, (S, 2, d))), probe_bias=rng.normal(0, 0.3, (S, 2)),
        probe_ids=["P0", "P1"], noise=noise,
    )


def test_observation_is_bayes_rule_on_the_draws():
    m = tiny_model(S=4)
    rng = np.random.default_rng(1)
    state = np.abs(rng.normal(1.0, 0.5, (4, 2)))
    b = Belief(m, state)
    b.observe("P0", True, resample=False).observe("P1", False, resample=False).observe("P0", True, resample=False)
    # brute force: prior 1/4 per draw, times the likelihood of each answer, normalised
    p0 = [float(eq.pass_probability(state[s], m.probe_requirement[s, 0], 0.0, m.probe_bias[s, 0])) for s in range(4)]
    p1 = [float(eq.pass_probability(state[s], m.probe_requirement[s, 1], 0.0, m.probe_bias[s, 1])) for s in range(4)]
    post = np.array([0.25 * p0[s] * (1 - p1[s]) * p0[s] for s in range(4)])
    np.testing.assert_allclose(b.weights, post / post.sum(), rtol=1e-12)
    assert b.time == pytest.approx(3 * m.assessment_cost)
    assert [e[2] for e in b.events] == [1, 0, 1]


def test_lesson_then_observation_matches_quadrature():
    """d = 1, one module draw: state ~ half-normal, one lesson with noise, then a pass.
    The particle posterior mean of the state equals the integral by quadrature."""
    S = 40_000
    g, q, sig, a, bias = 0.8, 0.5, 0.4, 1.2, -0.2
    m = PlanModel(gain=np.full((S, 1, 1), g), prerequisite=np.full((S, 1, 1), q),
                  goal_requirement=np.full((S, 1, 1), a), lesson_ids=["L"], goal_ids=["A"],
                  goal_bias=np.full((S, 1), bias), noise=sig)
    rng = np.random.default_rng(3)
    b = Belief(m, np.abs(rng.normal(0, 1, (S, 1))))
    b.lesson("L", rng).observe("A", True, resample=False)
    mc = float(b.weights @ b.state[:, 0])

    def mu(s0):
        return float(eq.expected_update(np.array([s0]), np.array([g]), np.array([q]))[0])

    def joint(s1, s0, moment):
        m0 = mu(s0)
        trans = stats.norm.pdf(s1, m0, sig) / stats.norm.sf(0, m0, sig)
        like = float(eq.pass_probability(np.array([s1]), np.array([a]), 0.0, bias))
        return 2 * stats.norm.pdf(s0) * trans * like * s1**moment

    num = integrate.dblquad(lambda s1, s0: joint(s1, s0, 1), 0, 6, 0, 9, epsabs=1e-7)[0]
    den = integrate.dblquad(lambda s1, s0: joint(s1, s0, 0), 0, 6, 0, 9, epsabs=1e-7)[0]
    assert mc == pytest.approx(num / den, abs=0.02)


def test_resampling_keeps_the_weighted_mean():
    m = tiny_model(S=2000, seed=2)
    rng = np.random.default_rng(0)
    b = Belief(m, np.abs(rng.normal(1.0, 0.7, (2000, 2))))
    for _ in range(6):
        b.observe("P0", False, resample=False)
    before = b.weights @ b.state
    b2 = b.copy()
    b2._resample(np.random.default_rng(5))
    assert np.allclose(b2.weights, 1 / 2000)
    np.testing.assert_allclose(b2.state.mean(0), before, atol=0.05)


def test_pool_values_are_the_goal_probability_after_the_sequence():
    m = tiny_model(S=50, noise=0.3)
    b = Belief(m, np.abs(np.random.default_rng(0).normal(0.5, 0.3, (50, 2))))
    pool = plan_pool(b, 3.0, horizon=2, width=10)
    assert [P.shape[1] for P in pool.paths] == [0, 1, 2]
    seq, vals = pool.paths[2][0], pool.values[2][0]
    st = b.state
    for k in seq:
        st = eq.expected_next_state(st, m.gain[:, k], m.prerequisite[:, k], 0.3)
    np.testing.assert_allclose(vals, m.goal_prob(st), rtol=1e-12)
    # no repeats by default, and the budget binds
    assert all(len(set(r)) == len(r) for r in pool.paths[2].tolist())
    assert max(len(P[0]) if len(P) else 0 for P in plan_pool(b, 1.5, horizon=3).paths) == 1


@pytest.fixture(scope="module")
def designed():
    return designed_problem(designed_cohort(20, seed=0), n_draws=300, seed=0)


def test_voi_assesses_and_responds_to_failure_differently_from_success(designed):
    belief, _ = designed
    pol = make_policy("voi", horizon=4, width=4, allow_repeats=True)
    act = pol.next_action(belief, 3.5)
    # the kinds need different lessons (X0 for the strong-in-skill-0, X1 otherwise): the probe pays
    assert act.kind == "assess" and act.module in ("P0", "P1")
    assert act.value > act.value_blind
    assert act.if_pass != act.if_fail
    after = {}
    for y in (True, False):
        b = belief.copy().observe(act.module, y, np.random.default_rng(0))
        after[y] = pol.next_action(b, 3.5 - belief.model.assessment_cost)
    assert after[True].kind == after[False].kind == "lesson"
    assert after[True].module != after[False].module
    assert {after[True].module, after[False].module} == {"X0", "X1"}


def test_decision_tree_branches_on_the_outcome(designed):
    belief, _ = designed
    tree = decision_tree(make_policy("voi", horizon=4, width=4, allow_repeats=True), belief, 3.5, depth=3)
    assert tree["kind"] == "assess"
    assert tree["if_pass"]["module"] != tree["if_fail"]["module"]
    text = "\n".join(tree_lines(tree))
    assert "if they fail" in text and "if they pass" in text


def test_open_loop_executes_its_plan_blind(designed):
    belief, _ = designed
    pol = make_policy("open-loop", allow_repeats=True)
    first = pol.next_action(belief, 3.0)
    assert first.kind == "lesson" and len(first.plan) == 3
    b = belief.copy().observe("P0", False, np.random.default_rng(0))  # it never looks
    rest = [pol.next_action(b, 2.0).module, pol.next_action(b, 1.0).module]
    assert [first.module, *rest] == list(first.plan)


def test_without_information_value_no_policy_assesses():
    """One particle (the state known): an assessment cannot change any plan."""
    m = tiny_model(S=1)
    b = Belief(m, np.array([[0.5, 0.5]]))
    assert make_policy("voi").next_action(b, 3.0).kind == "lesson"


def test_every_policy_returns_an_action_with_a_band():
    m = tiny_model(S=200, seed=4)
    b = Belief(m, np.abs(np.random.default_rng(0).normal(0.5, 0.3, (200, 2))))
    for name in POLICIES:
        a = make_policy(name, rng=0).next_action(b, 3.0)
        assert a.kind in ("lesson", "assess", "stop")
        assert a.band[0] <= a.value + 1e-9 and a.value <= a.band[1] + 1e-9 or a.kind == "assess"
        assert a.to_dict()["policy"] == name
    with pytest.raises(ValueError, match="policy must be one of"):
        make_policy("nope")


def test_weighted_quantile():
    v = np.array([3.0, 1.0, 2.0, 4.0])
    assert weighted_quantile(v, np.ones(4), [0.5])[0] == 2.0
    assert weighted_quantile(v, np.array([0, 0, 0, 1.0]), [0.05, 0.95]).tolist() == [4.0, 4.0]


def test_simulator_uses_common_random_numbers(designed):
    belief, truths = designed
    opts = {"horizon": 3, "width": 3, "allow_repeats": True}
    pols = {"a": make_policy("voi", **opts), "b": make_policy("voi", **opts), "t1": make_policy("thompson", **opts),
            "t2": make_policy("thompson", **opts)}
    res = simulate_policies(belief, truths, pols, budget=3.5, seed=4, oracle=False)
    r = res.records.set_index(["policy", "student"])
    cols = ["final_p", "time", "lessons", "assessments"]
    # two copies of a policy see the same truths, noise and outcomes: identical records
    np.testing.assert_array_equal(r.loc["a"][cols].to_numpy(), r.loc["b"][cols].to_numpy())
    np.testing.assert_array_equal(r.loc["t1"][cols].to_numpy(), r.loc["t2"][cols].to_numpy())
    # and the same seed gives the same run
    again = simulate_policies(belief, truths, {"a": make_policy("voi", **opts)}, budget=3.5, seed=4, oracle=False)
    np.testing.assert_array_equal(again.records[cols].to_numpy(), r.loc["a"][cols].to_numpy())


def test_simulator_summary_has_oracle_and_regret():
    m = tiny_model(S=100, seed=6)
    b = Belief(m, np.abs(np.random.default_rng(0).normal(0.5, 0.3, (100, 2))))
    truths = truths_from_belief(b, 6, seed=1)
    res = simulate_policies(b, truths, {"open-loop": make_policy("open-loop"), "voi": make_policy("voi")},
                            budget=2.0, seed=0)
    tab = res.summary().set_index("policy")
    assert set(tab.index) == {"open-loop", "voi", "oracle", "oracle-start"}
    assert tab.loc["oracle", "regret"] == 0.0
    assert (tab["final_p"].between(0, 1)).all()
    assert tab.loc["open-loop", "vs_open_loop"] == 0.0


# --------------------------------------------------------------------------- #
# expectimax: the Bayes-optimal policy on the particles, by exhaustive tree search
# --------------------------------------------------------------------------- #
def test_expectimax_value_bounds_every_other_policy_at_the_root():
    """With the same (expected) lesson update, every other policy's planned value is the value of
    one strategy inside expectimax's tree (a pool sequence; one assessment, then a pool
    sequence): the exhaustive tree can only be worth as much or more."""
    m = tiny_model(S=30, seed=5)
    b = Belief(m, np.abs(np.random.default_rng(1).normal(0.5, 0.3, (30, 2))))
    ex = make_policy("expectimax", horizon=3, update="expected", max_assess=None, rng=0).next_action(b, 3.0)
    for name in POLICIES:
        if name == "expectimax":
            continue
        v = make_policy(name, horizon=3, width=10, rng=0).next_action(b, 3.0).value
        assert ex.value >= v - 1e-12, name
    # one particle (the state known): nothing to learn; the value is the best of all sequences
    one = Belief(m, np.array([[0.4, 0.6]]))
    a = make_policy("expectimax", horizon=3, update="expected", max_assess=None).next_action(one, 3.0)
    pool = plan_pool(one, 3.0, horizon=3, width=1000)
    seqs, V, _ = pool.stacked()
    assert a.kind == "lesson" and a.value == pytest.approx(V[:, 0].max(), rel=1e-12)
    assert list(a.plan) == [m.lesson_ids[k] for k in seqs[int(V[:, 0].argmax())]]


def test_expectimax_probe_value_is_the_outcome_average():
    """The tree's value of an assessment = Σ_y P(y) × (value of the best subtree after y), with
    P(y) from the particles: recomputed here from the two observed beliefs."""
    m = tiny_model(S=20, seed=7)
    b = Belief(m, np.abs(np.random.default_rng(2).normal(0.5, 0.4, (20, 2))))
    opts = {"horizon": 2, "update": "expected", "max_assess": 1}
    pol = make_policy("expectimax", **opts)
    for j in ("P0", "P1"):
        pp = float(b.weights @ m.probe_prob(b.state, b.draw)[:, m.probe_ids.index(j)])
        after = [make_policy("expectimax", **{**opts, "max_assess": 0}).next_action(
            b.copy().observe(j, y, resample=False), 2.0 - m.assessment_cost).value for y in (True, False)]
        both = pp * after[0] + (1 - pp) * after[1]
        assert pol.next_action(b, 2.0).value >= both - 1e-12
    blind = make_policy("expectimax", **{**opts, "max_assess": 0}).next_action(b, 2.0)
    assert pol.next_action(b, 2.0).value >= blind.value - 1e-12


def test_expectimax_assesses_and_responds_to_failure_differently_from_success(designed):
    belief, _ = designed
    pol = make_policy("expectimax", horizon=4, allow_repeats=True, max_assess=None, rng=0)
    act = pol.next_action(belief, 3.5)
    # the kinds need different lessons: the probe that tells them apart is worth its time
    assert act.kind == "assess" and act.module in ("P0", "P1")
    assert act.value > act.value_blind
    assert act.if_pass != act.if_fail
    after = {y: pol.next_action(belief.copy().observe(act.module, y, np.random.default_rng(0)),
                                3.5 - belief.model.assessment_cost) for y in (True, False)}
    assert after[True].kind == after[False].kind == "lesson"
    assert {after[True].module, after[False].module} == {"X0", "X1"}
    # without prerequisites an answer changes the best lessons little: at budget 3 (an assessment
    # costs a lesson) it does not pay
    nb, _ = designed_problem(designed_cohort(20, seed=0, prerequisites=False), n_draws=100, seed=0)
    assert pol.next_action(nb, 3.0).kind == "lesson"


def test_expectimax_pruning_options():
    m = tiny_model(S=40, seed=3)
    b = Belief(m, np.abs(np.random.default_rng(0).normal(0.5, 0.3, (40, 2))))
    full = make_policy("expectimax", horizon=3, max_assess=None, rng=0)
    a = full.next_action(b, 3.0)
    small = make_policy("expectimax", horizon=3, top_lessons=2, top_probes=1, max_assess=1, rng=0)
    s = small.next_action(b, 3.0)
    assert small.last_nodes < full.last_nodes
    assert s.value <= a.value + 1e-12  # the same noise (rng 0): a sub-tree of the full one
    with pytest.raises(ValueError, match="update"):
        make_policy("expectimax", update="mode")
