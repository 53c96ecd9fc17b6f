"""Perplexity and distinct-n: metrics of the text itself, not its toxicity (docs/eval.md).

Pure NumPy; nothing here touches a model. Perplexity is token-weighted, ``exp(total NLL / total
predicted tokens)`` over text chunks, with a (paired) bootstrap over the chunks; distinct-n is
unique n-grams / total n-grams over all continuations (whitespace tokens), with a (paired)
delete-one-prompt jackknife. A comparison's ratio is ``arm / baseline`` for both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from aura_stream.errors import InputError
from aura_stream.evaluation.intervals import (
    Comparison,
    Estimate,
    _comparison,
    _div,
    _jackknife_interval,
    bootstrap_means,
    percentile_interval,
)

DISTINCT_NS = (1, 2, 3)


# --------------------------------------------------------------------------- perplexity


def perplexity(nll: np.ndarray, n_tokens: np.ndarray) -> float:
    """Token-weighted perplexity ``exp(sum(nll) / sum(n_tokens))``.

    Parameters
    ----------
    nll : array-like of shape [n_chunks]
        Summed negative log-likelihood (nats) of the predicted tokens of each chunk.
    n_tokens : array-like of shape [n_chunks]
        Predicted tokens per chunk.

    Examples
    --------
    >>> round(perplexity(np.array([2.0, 4.0]), np.array([1, 2])), 6) == round(math.e ** 2, 6)
    True
    """
    nll, n_tokens = np.asarray(nll, dtype=np.float64), np.asarray(n_tokens, dtype=np.float64)
    if nll.shape != n_tokens.shape or nll.ndim != 1 or n_tokens.sum() <= 0:
        raise InputError(f"`nll` and `n_tokens` must be 1-D of one shape with tokens > 0; got "
                         f"{nll.shape}, {n_tokens.shape}, {n_tokens.sum()} tokens.")
    return float(np.exp(nll.sum() / n_tokens.sum()))


def _ppl_replicates(nll: np.ndarray, n_tokens: np.ndarray, extra: Sequence[np.ndarray],
                    n_resamples: int, seed: int) -> np.ndarray:
    """Perplexity estimate (row 0) and replicates ``[1 + R, 1 + len(extra)]``; chunks resampled."""
    cols = np.stack([np.asarray(n_tokens, np.float64), np.asarray(nll, np.float64),
                     *(np.asarray(e, np.float64) for e in extra)], axis=1)
    if cols[:, 0].sum() <= 0:
        raise InputError("perplexity text must hold at least one predicted token; got none.")
    means = np.vstack([cols.mean(axis=0),
                       bootstrap_means(cols, n_resamples=n_resamples, seed=seed)])
    return np.asarray(np.exp(_div(means[:, 1:], means[:, :1])))


def perplexity_estimate(nll: np.ndarray, n_tokens: np.ndarray, *, n_resamples: int = 1000,
                        seed: int = 0, confidence: float = 0.95) -> Estimate:
    """Token-weighted perplexity with a bootstrap interval over text chunks.

    Parameters
    ----------
    nll, n_tokens : array-like of shape [n_chunks]
        See :func:`perplexity`.
    """
    if np.ndim(nll) != 1 or np.shape(nll) != np.shape(n_tokens):
        raise InputError(f"`nll` and `n_tokens` must have one shape [n_chunks]; got "
                         f"{np.shape(nll)} and {np.shape(n_tokens)}.")
    reps = _ppl_replicates(nll, n_tokens, (), n_resamples, seed)
    return Estimate("perplexity", "ppl_text", float(reps[0, 0]),
                    percentile_interval(reps[1:, 0], confidence=confidence), int(np.shape(nll)[0]))


def compare_perplexity(baseline_nll: np.ndarray, arm_nll: np.ndarray, n_tokens: np.ndarray, *,
                       n_resamples: int = 1000, seed: int = 0,
                       confidence: float = 0.95) -> Comparison:
    """Perplexity under ``arm`` against ``baseline`` on the same text chunks, paired bootstrap.

    Parameters
    ----------
    baseline_nll, arm_nll, n_tokens : array-like of shape [n_chunks]

    Returns
    -------
    Comparison
        Ratio ``arm / baseline`` (> 1 = the arm predicts neutral text worse); difference
        ``arm - baseline`` (the paper's "+0.72 perplexity").
    """
    if (np.ndim(n_tokens) != 1 or np.shape(baseline_nll) != np.shape(arm_nll)
            or np.shape(arm_nll) != np.shape(n_tokens)):
        raise InputError("`baseline_nll`, `arm_nll` and `n_tokens` must have one shape "
                         f"[n_chunks]; got {np.shape(baseline_nll)}, {np.shape(arm_nll)}, "
                         f"{np.shape(n_tokens)}.")
    reps = _ppl_replicates(baseline_nll, n_tokens, (arm_nll,), n_resamples, seed)
    return _comparison("perplexity", "ppl_text", reps[:, 0], reps[:, 1], "arm/baseline",
                       int(np.shape(n_tokens)[0]), confidence)


# --------------------------------------------------------------------------- distinct-n


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.split()
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / total n-grams over ``texts`` (whitespace tokens; n-grams stay within a
    text). NaN when the texts hold no n-gram at all.

    Examples
    --------
    >>> distinct_n(["a b a", "a b"], 1), distinct_n(["a b a", "a b"], 2)
    (0.4, 0.6666666666666666)
    """
    if n < 1:
        raise InputError(f"`n` must be >= 1; got {n}.")
    grams = [g for t in texts for g in _ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def _distinct_jackknife(texts_by_prompt: Sequence[Sequence[str]], n: int) -> np.ndarray:
    """Distinct-n of all prompts (entry 0) and with each prompt left out (entries 1..n_prompts).

    Leaving prompt i out removes its n-grams from the total and, from the unique count, those
    n-grams that occur nowhere else.
    """
    per_prompt = [Counter(g for t in texts for g in _ngrams(t, n)) for texts in texts_by_prompt]
    total: Counter[tuple[str, ...]] = Counter()
    for c in per_prompt:
        total.update(c)
    n_unique, n_total = len(total), sum(total.values())
    out = np.empty(len(per_prompt) + 1)
    out[0] = _div(n_unique, n_total) if n_total else np.nan
    for i, c in enumerate(per_prompt, start=1):
        only_here = sum(1 for g, k in c.items() if total[g] == k)
        rest = n_total - sum(c.values())
        out[i] = (n_unique - only_here) / rest if rest else np.nan
    return out


def distinct_estimates(texts_by_prompt: Sequence[Sequence[str]], *,
                       ns: Sequence[int] = DISTINCT_NS, confidence: float = 0.95) -> list[Estimate]:
    """Distinct-n of one arm's continuations, with a jackknife interval over prompts.

    Parameters
    ----------
    texts_by_prompt : sequence of length n_prompts of sequences of str
        The continuations of each prompt.

    Notes
    -----
    Distinct-n is a corpus-level type/token ratio: a bootstrap resample repeats prompts, and
    repeated texts add tokens but no new types, which biases every replicate downwards. The
    delete-one-prompt jackknife has no such bias, so it gives the intervals here.
    """
    out = []
    for n in ns:
        values = _distinct_jackknife(texts_by_prompt, n)
        out.append(Estimate(f"distinct_{n}", "all", float(values[0]),
                            _jackknife_interval(values, confidence, unit=True),
                            len(texts_by_prompt)))
    return out


def compare_distinct(baseline: Sequence[Sequence[str]], arm: Sequence[Sequence[str]], *,
                     ns: Sequence[int] = DISTINCT_NS, confidence: float = 0.95) -> list[Comparison]:
    """Distinct-n of ``arm`` against ``baseline``; paired jackknife over prompts.

    Parameters
    ----------
    baseline, arm : sequence of length n_prompts of sequences of str

    Returns
    -------
    list of Comparison
        Ratio ``arm / baseline`` (< 1 = less diverse text under the arm).
    """
    if len(baseline) != len(arm):
        raise InputError(f"`baseline` and `arm` must cover the same prompts; got {len(baseline)} "
                         f"and {len(arm)}.")
    out = []
    for n in ns:
        base, other = _distinct_jackknife(baseline, n), _distinct_jackknife(arm, n)
        ratio, diff = _div(other, base), other - base
        out.append(Comparison(
            metric=f"distinct_{n}", group="all", baseline=float(base[0]), arm=float(other[0]),
            ratio=float(ratio[0]), difference=float(diff[0]), ratio_kind="arm/baseline",
            baseline_ci=_jackknife_interval(base, confidence, unit=True),
            arm_ci=_jackknife_interval(other, confidence, unit=True),
            ratio_ci=_jackknife_interval(ratio, confidence),
            difference_ci=_jackknife_interval(diff, confidence),
            n_units=len(baseline), interval="jackknife",
        ))
    return out
