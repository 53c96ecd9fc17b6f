"""Intervals for the evaluation metrics, and the records that carry them (docs/eval.md).

Pure NumPy. :func:`bootstrap_means` resamples units (prompts or text chunks) with replacement and
applies one resample to every column, which is what makes a comparison *paired*;
:func:`percentile_interval` turns its replicates into an interval. Distinct-n uses a delete-one
jackknife with a normal interval instead (see :func:`aura_stream.evaluation.text_metrics.distinct_estimates`).
:class:`Estimate` holds one arm's value and :class:`Comparison` an arm against the baseline.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from aura_stream.errors import InputError

RatioKind = Literal["baseline/arm", "arm/baseline"]
Interval = tuple[float, float]
_GATHER_BUDGET = 1 << 23  # float64 elements gathered per bootstrap block (64 MB)


# --------------------------------------------------------------------------- intervals


def bootstrap_means(columns: np.ndarray, *, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Column means of ``n_resamples`` resamples of the rows, drawn with replacement.

    Row ``r`` of the result uses the same resampled rows for every column, which is what makes
    a bootstrap *paired*: put the baseline's and an arm's per-unit values side by side.
    Deterministic for a given (number of rows, ``n_resamples``, ``seed``).

    Parameters
    ----------
    columns : array-like of shape [n_units, n_columns]
    n_resamples : int
    seed : int

    Returns
    -------
    np.ndarray of shape [n_resamples, n_columns]
    """
    cols = np.asarray(columns, dtype=np.float64)
    if cols.ndim != 2 or cols.shape[0] < 1:
        raise InputError(f"`columns` must have shape [n_units >= 1, n_columns]; got {cols.shape}.")
    if n_resamples < 1:
        raise InputError(f"`n_resamples` must be >= 1; got {n_resamples}.")
    n, m = cols.shape
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, m))
    block = max(1, _GATHER_BUDGET // (n * max(m, 1)))
    for start in range(0, n_resamples, block):  # blocks bound memory; draws stay in one stream
        rows = min(block, n_resamples - start)
        idx = rng.integers(0, n, size=(rows, n))  # [rows, n_units]
        out[start:start + rows] = cols[idx].mean(axis=1)  # [rows, n_units, m] -> [rows, m]
    return out


def percentile_interval(samples: np.ndarray, *, confidence: float = 0.95) -> Interval | None:
    """Percentile interval of bootstrap replicates, by order statistics (inf-safe).

    NaN replicates (a 0/0 ratio) are left out; None when they are more than ``1 - confidence``
    of all, as the statistic is then undefined too often for an interval to mean anything.

    Examples
    --------
    >>> percentile_interval(np.arange(101.0), confidence=0.9)
    (5.0, 95.0)
    """
    if not 0 < confidence < 1:
        raise InputError(f"`confidence` must be in (0, 1); got {confidence}.")
    values = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    n_all = values.size
    values = values[~np.isnan(values)]
    if values.size == 0 or n_all - values.size > (1 - confidence) * n_all:
        return None
    tail = (1 - confidence) / 2
    low = values[math.floor(tail * (values.size - 1) + 1e-9)]
    high = values[math.ceil((1 - tail) * (values.size - 1) - 1e-9)]
    return float(low), float(high)


def _jackknife_interval(values: np.ndarray, confidence: float, *,
                        unit: bool = False) -> Interval | None:
    """Normal interval ``estimate ± z * SE_jackknife`` (``values[0]`` the estimate), clipped
    to [0, 1] for a ``unit`` quantity such as distinct-n itself."""
    est, loo = values[0], values[1:]
    if not np.isfinite(est) or loo.size < 2 or not np.isfinite(loo).all():
        return None
    se = math.sqrt((loo.size - 1) / loo.size * float(((loo - loo.mean()) ** 2).sum()))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    low, high = float(est - z * se), float(est + z * se)
    return (max(low, 0.0), min(high, 1.0)) if unit else (low, high)


def _div(a: np.ndarray | float, b: np.ndarray | float) -> Any:
    """Division where x/0 is inf and 0/0 NaN, without warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(a, b)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Estimate:
    """One metric of one arm on its own, with its interval."""

    metric: str
    group: str
    value: float
    ci: Interval | None
    n_units: int  # prompts (or text chunks, for perplexity) behind the value

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: inf becomes "inf", NaN None."""
        out: dict[str, Any] = _json_safe(asdict(self))
        return out


@dataclass(frozen=True)
class Comparison:
    """One metric of an arm against the baseline, on the same prompts (or text chunks).

    ``ratio`` is ``baseline / arm`` for toxicity (> 1 = less toxic under the arm) and
    ``arm / baseline`` otherwise (``ratio_kind`` says which); ``difference`` is always
    ``arm - baseline``. Intervals come from one paired resample (``interval`` names the method).
    """

    metric: str
    group: str
    baseline: float
    arm: float
    ratio: float
    difference: float
    ratio_kind: RatioKind
    baseline_ci: Interval | None
    arm_ci: Interval | None
    ratio_ci: Interval | None
    difference_ci: Interval | None
    n_units: int
    interval: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: inf (a ratio over 0) becomes "inf", NaN (0/0) None."""
        out: dict[str, Any] = _json_safe(asdict(self))
        return out


def _json_safe(obj: Any) -> Any:
    """Strict JSON: inf -> "inf" (a ratio over 0), -inf -> "-inf", NaN (0/0) -> None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None if math.isnan(obj) else str(obj)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _comparison(metric: str, group: str, base: np.ndarray, arm: np.ndarray, kind: RatioKind,
                n_units: int, confidence: float, interval: str = "bootstrap") -> Comparison:
    """A Comparison from replicates ``[1 + n_resamples]``, the estimate first."""
    ratio = _div(base, arm) if kind == "baseline/arm" else _div(arm, base)
    diff = arm - base
    return Comparison(
        metric=metric, group=group, baseline=float(base[0]), arm=float(arm[0]),
        ratio=float(ratio[0]), difference=float(diff[0]), ratio_kind=kind,
        baseline_ci=percentile_interval(base[1:], confidence=confidence),
        arm_ci=percentile_interval(arm[1:], confidence=confidence),
        ratio_ci=percentile_interval(ratio[1:], confidence=confidence),
        difference_ci=percentile_interval(diff[1:], confidence=confidence),
        n_units=n_units, interval=interval,
    )
