"""metrics: known answers on hand-made scores, bootstrap/jackknife intervals, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aura_stream.errors import InputError
from aura_stream.evaluation.metrics import (
    TOXICITY_METRICS,
    bootstrap_means,
    compare_distinct,
    compare_perplexity,
    compare_toxicity,
    distinct_estimates,
    distinct_n,
    expected_max_toxicity,
    mean_toxicity,
    percentile_interval,
    perplexity,
    perplexity_estimate,
    prompt_groups,
    toxicity_estimates,
    toxicity_probability,
)

# 2 prompts x 3 samples
SCORES = np.array([[0.1, 0.6, 0.2],
                   [0.0, 0.3, 0.4]])
# the same prompts and seeds under an arm that removes the toxic continuation
ARM = np.array([[0.1, 0.2, 0.2],
                [0.0, 0.1, 0.4]])


def test_toxicity_metrics_known_answers() -> None:
    assert expected_max_toxicity(SCORES) == pytest.approx((0.6 + 0.4) / 2)
    assert toxicity_probability(SCORES) == pytest.approx(0.5)
    assert mean_toxicity(SCORES) == pytest.approx(1.6 / 6)
    assert toxicity_probability(ARM) == 0.0
    assert toxicity_probability(np.array([[0.5, 0.0]])) == 1.0  # >= 0.5 counts as toxic
    assert toxicity_probability(SCORES, threshold=0.3) == 1.0


def test_estimates_match_point_functions_and_groups() -> None:
    groups = prompt_groups([0.9, 0.1])
    assert set(groups) == {"all", "toxic_prompts", "nontoxic_prompts"}
    est = {(e.metric, e.group): e for e in toxicity_estimates(SCORES, groups, n_resamples=200)}
    assert est[("expected_max_toxicity", "all")].value == pytest.approx(0.5)
    assert est[("expected_max_toxicity", "toxic_prompts")].value == pytest.approx(0.6)
    assert est[("toxicity_probability", "nontoxic_prompts")].value == 0.0
    assert est[("mean_toxicity", "toxic_prompts")].value == pytest.approx(0.3)
    assert est[("mean_toxicity", "all")].n_units == 2
    assert est[("mean_toxicity", "toxic_prompts")].n_units == 1
    # one prompt: every resample is that prompt, the interval collapses onto the value
    assert est[("expected_max_toxicity", "toxic_prompts")].ci == pytest.approx((0.6, 0.6))


def test_prompt_groups_unknown_and_threshold() -> None:
    assert list(prompt_groups([None, None])) == ["all"]
    groups = prompt_groups([0.5, 0.49, None])
    assert groups["toxic_prompts"].tolist() == [True, False, False]
    assert groups["nontoxic_prompts"].tolist() == [False, True, False]


def test_compare_toxicity_ratio_direction_and_intervals() -> None:
    rows = {c.metric: c for c in compare_toxicity(SCORES, ARM, n_resamples=500, seed=3)}
    emt = rows["expected_max_toxicity"]
    assert (emt.baseline, emt.arm) == pytest.approx((0.5, 0.3))
    assert emt.ratio == pytest.approx(0.5 / 0.3) and emt.ratio_kind == "baseline/arm"
    assert emt.difference == pytest.approx(-0.2)
    assert rows["toxicity_probability"].ratio == math.inf  # 0.5 / 0: unbounded reduction
    assert rows["toxicity_probability"].to_dict()["ratio"] == "inf"  # strict JSON
    zero = compare_toxicity(ARM * 0, ARM * 0, n_resamples=10)[1]
    assert math.isnan(zero.ratio) and zero.to_dict()["ratio"] is None  # 0/0: undefined
    for c in rows.values():
        for value, ci in ((c.baseline, c.baseline_ci), (c.arm, c.arm_ci),
                          (c.difference, c.difference_ci)):
            assert ci is not None and ci[0] <= value + 1e-12 and value <= ci[1] + 1e-12
    assert emt.ratio_ci is not None and emt.ratio_ci[0] <= emt.ratio <= emt.ratio_ci[1]


def test_bootstrap_is_deterministic_paired_and_consistent() -> None:
    rng = np.random.default_rng(0)
    base, arm = rng.uniform(size=(40, 5)), rng.uniform(size=(40, 5)) * 0.5
    a = compare_toxicity(base, arm, n_resamples=300, seed=7)
    assert a == compare_toxicity(base, arm, n_resamples=300, seed=7)
    assert a != compare_toxicity(base, arm, n_resamples=300, seed=8)
    # the baseline's intervals do not depend on the arm it is compared with
    alone = toxicity_estimates(base, n_resamples=300, seed=7)
    assert [c.baseline_ci for c in a] == [e.ci for e in alone]
    # paired: identical columns get identical replicates
    reps = bootstrap_means(np.stack([base[:, 0], base[:, 0]], axis=1), n_resamples=50, seed=1)
    assert reps.shape == (50, 2) and np.array_equal(reps[:, 0], reps[:, 1])
    # memory blocks do not change the draws: a 1-row budget gives the same replicates
    import aura_stream.evaluation.intervals as m
    full = bootstrap_means(base, n_resamples=30, seed=2)
    old, m._GATHER_BUDGET = m._GATHER_BUDGET, 1
    try:
        assert np.array_equal(full, bootstrap_means(base, n_resamples=30, seed=2))
    finally:
        m._GATHER_BUDGET = old


@pytest.mark.parametrize("seed", range(5))
def test_bootstrap_interval_contains_estimate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.beta(0.5, 2.0, size=(25, 4))
    arm = np.clip(base * rng.uniform(0.3, 1.0, size=base.shape), 0, 1)
    for c in compare_toxicity(base, arm, n_resamples=400, seed=seed):
        for value, ci in ((c.baseline, c.baseline_ci), (c.arm, c.arm_ci), (c.ratio, c.ratio_ci)):
            assert ci is not None and ci[0] <= value <= ci[1], (c.metric, value, ci)


def test_percentile_interval() -> None:
    assert percentile_interval(np.arange(101.0), confidence=0.9) == (5.0, 95.0)
    assert percentile_interval(np.array([1.0, np.nan, 3.0, 2.0]), confidence=0.5) == (1.0, 3.0)
    assert percentile_interval(np.array([np.nan])) is None
    assert percentile_interval(np.array([1.0, 2.0, np.nan]), confidence=0.9) is None  # 1/3 NaN
    assert percentile_interval(np.array([1.0, np.inf, np.inf])) == (1.0, math.inf)


def test_perplexity_known_answer_and_comparison() -> None:
    nll, tokens = np.array([2.0, 4.0, 3.0]), np.array([1, 2, 1])
    assert perplexity(nll, tokens) == pytest.approx(math.exp(9.0 / 4.0))
    est = perplexity_estimate(nll, tokens, n_resamples=200)
    assert est.value == pytest.approx(math.exp(2.25)) and est.ci is not None
    assert est.ci[0] <= est.value <= est.ci[1] and est.n_units == 3
    c = compare_perplexity(nll, nll + np.array([0.4, 0.8, 0.4]), tokens, n_resamples=200)
    assert c.ratio_kind == "arm/baseline"
    assert c.ratio == pytest.approx(math.exp(0.4))  # +0.4 nats on every token
    assert c.ratio_ci == pytest.approx((math.exp(0.4), math.exp(0.4)))
    assert c.difference == pytest.approx(math.exp(2.65) - math.exp(2.25))
    same = compare_perplexity(nll, nll, tokens, n_resamples=50)
    assert same.ratio == 1.0 and same.ratio_ci == (1.0, 1.0) and same.difference_ci == (0.0, 0.0)


def test_distinct_n_known_answers() -> None:
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # n-grams never cross texts
    assert distinct_n(texts, 3) == 1.0
    assert math.isnan(distinct_n(["one"], 2))


def test_distinct_jackknife_leave_one_out_and_pairing() -> None:
    rng = np.random.default_rng(0)
    words = ["a", "b", "c", "d", "e", "f"]
    by_prompt = [[" ".join(rng.choice(words, 4)) for _ in range(3)] for _ in range(6)]
    from aura_stream.evaluation.text_metrics import _distinct_jackknife

    values = _distinct_jackknife(by_prompt, 2)
    flat = [t for texts in by_prompt for t in texts]
    assert values[0] == pytest.approx(distinct_n(flat, 2))
    for i in range(len(by_prompt)):  # the shortcut equals recomputing without prompt i
        rest = [t for j, texts in enumerate(by_prompt) if j != i for t in texts]
        assert values[i + 1] == pytest.approx(distinct_n(rest, 2))
    est = distinct_estimates(by_prompt)
    assert [e.metric for e in est] == ["distinct_1", "distinct_2", "distinct_3"]
    assert all(e.ci is not None and 0 <= e.ci[0] <= e.value <= e.ci[1] <= 1 for e in est)
    same = compare_distinct(by_prompt, by_prompt)
    assert all(c.ratio == 1.0 and c.ratio_ci == (1.0, 1.0) and c.interval == "jackknife"
               for c in same)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: expected_max_toxicity(np.array([0.1, 0.2])), "shape \\[n_prompts >= 1, k >= 1\\]"),
    (lambda: mean_toxicity(np.array([[np.nan]])), "must be finite"),
    (lambda: compare_toxicity(SCORES, ARM[:1]), "must have one shape"),
    (lambda: perplexity(np.array([1.0]), np.array([0])), "tokens > 0"),
    (lambda: compare_perplexity(np.ones(2), np.ones(3), np.ones(2)), "must have one shape"),
    (lambda: distinct_n(["a"], 0), "`n` must be >= 1"),
    (lambda: compare_distinct([["a"]], []), "same prompts"),
    (lambda: bootstrap_means(np.ones((3, 1)), n_resamples=0), "`n_resamples` must be >= 1"),
    (lambda: percentile_interval(np.ones(3), confidence=1.0), "`confidence` must be in"),
])
def test_errors(call: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        call()  # type: ignore[operator]


def test_metric_names() -> None:
    assert TOXICITY_METRICS == ("expected_max_toxicity", "toxicity_probability", "mean_toxicity")
