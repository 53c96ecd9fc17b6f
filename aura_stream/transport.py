"""Per-neuron activation transport (Linear-AcT, Mean-AcT, Gaussian-AcT), in memory or out of core.

For every neuron, ``x`` are the pooled activations of the toxic samples (the source) and ``y``
those of the non-toxic samples (the target). The estimated map is ``z -> omega * z + beta``:

``linear-act``
    1-D optimal transport pairs the sorted values: ``x_(i)`` with ``q_i``, the non-toxic quantile
    at the same plotting position. Then ``omega = sum((x - mean x)(q - mean q)) / sum((x - mean
    x)^2)`` and ``beta = mean q - omega * mean x`` (least squares of ``q`` on ``x``).
``mean-act``
    ``omega = 1``, ``beta = mean y - mean x``.
``gaussian-act``
    ``omega = std y / std x`` (population std, ddof 0), ``beta = mean y - omega * mean x``.

A neuron whose toxic values are all equal gets ``omega = 1``, ``beta = mean q - mean x`` (for
``gaussian-act`` ``mean y - mean x``). ``lo``/``hi`` are the toxic minimum and maximum (the
source range).

**Pairing rule (unequal class counts): quantile matching.** With ``n_t`` toxic and ``n_y``
non-toxic values, toxic rank ``i`` (0-based) sits at the plotting position ``p_i = (i + 0.5) /
n_t``; ``q_i`` is the non-toxic empirical quantile at ``p_i`` with Hazen's definition: the
0-based fractional index ``h = p_i * n_y - 0.5 = ((2i + 1) n_y - n_t) / (2 n_t)`` (computed in
integers), clamped to ``[0, n_y - 1]``, linear interpolation between ``y_(floor h)`` and
``y_(floor h + 1)``: ``numpy.quantile(y, p_i, method="hazen")``. For ``n_t == n_y`` every ``h``
is the integer ``i``, so ``q_i = y_(i)`` exactly: plain sorted pairs, nothing truncated.

The kernels work on all samples of a block of neurons at once (a sort needs the whole column),
like :mod:`aura_stream.auroc`: float16 columns are counting-sorted through a (key, label)
histogram (numba, threads over tiles of columns); float32/float64 columns are sorted with NumPy.
The fit sums values centred at each class's median in float64: in vector lanes within blocks of
256 (the compiler may reassociate there, as NumPy's pairwise sum does in its blocks of 128), the
block totals compensated (TwoSum), so the result equals NumPy on the stored values to a few
float64 ulps (tested to 1e-13 relative) on any machine; the last bits may differ between CPUs of
different vector widths, never between runs or block sizes on one machine.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, get_args

import numba
import numpy as np
from numba import prange

from aura_stream.auroc import (
    _EXPONENT,
    _KERNEL_LOCK,
    _MAX_TILE,
    _TILE_BYTES,
    _block_size,
    _radix_sort,
    _transpose_keys,
)
from aura_stream.errors import InputError, NumericalError

if TYPE_CHECKING:
    import dask.array as da

__all__ = [
    "TRANSPORT_METHODS",
    "TransportMethod",
    "transport_block",
    "transport_dask",
    "transport_estimate",
]

TransportMethod = Literal["linear-act", "mean-act", "gaussian-act"]
TRANSPORT_METHODS: tuple[str, ...] = get_args(TransportMethod)
ROWS = ("omega", "beta", "lo", "hi")  # rows of every result array [4, n_neurons]
_MIN_THREAD_WORK = 1 << 20  # values per thread below which fewer threads are faster
_SUB_BYTES = 8 << 20  # float64 working copy of one sub-block (NumPy paths)
_RADIX_MAX = 5000  # float16 columns of fewer samples are radix-sorted, longer ones counted in a histogram


def _half_table() -> np.ndarray:
    """Value (float32, exact) of every order-preserving float16 key, as ``auroc._transpose_keys`` makes them.

    Non-finite keys (never looked up) read 0. float32 holds every float16 exactly, and the table
    (256 KB) stays in a core's L2 cache beside the (key, label) histogram.
    """
    keys = np.arange(65536, dtype=np.uint32)
    bits = np.where(keys & 0x8000, keys ^ 0x8000, ~keys & 0xFFFF).astype(np.uint16)
    values = bits.view(np.float16).astype(np.float32)
    values[0x8000] = 0.0  # -0.0 and +0.0 share key 0x8000
    values[~np.isfinite(values)] = 0.0
    return values


_HALF = _half_table()
_LANE_BLOCK = 256  # values per block of the vector-lane sums; block totals compensated


@numba.njit(cache=True, nogil=True, inline="always")
def _two_sum(s: float, c: float, v: float) -> tuple[float, float]:
    """Compensated ``s + v``: the new sum and the running compensation (Knuth's TwoSum, branch-free)."""
    t = s + v
    bp = t - s
    return t, c + ((s - (t - bp)) + (v - bp))


@numba.njit(cache=True, nogil=True)
def _hazen(y: Any, q: Any) -> None:
    """``q[i]`` = Hazen quantile of sorted ``y [n_y]`` at ``(i + 0.5) / n_t`` for ``q [n_t]``.

    The 0-based fractional index is ``num / den`` with ``num = (2i + 1) n_y - n_t``, ``den = 2 n_t``;
    its integer part ``k`` and remainder ``r`` are stepped exactly from ``i`` to ``i + 1`` (no
    division; the carry without a branch), the fraction ``r / den`` taken as ``r * (1 / den)``.
    """
    n_t, n_y = q.size, y.size
    den = 2 * n_t
    inv = 1.0 / den
    step_k, step_r = (2 * n_y) // den, (2 * n_y) % den
    k, r = (n_y - n_t) // den, (n_y - n_t) % den  # floor division: r in [0, den)
    last = n_y - 1
    for i in range(n_t):
        if k < 0:
            q[i] = y[0]
        elif k >= last:
            q[i] = y[last]
        else:
            lo = np.float64(y[k])  # float64 whatever y's dtype: the float16 kernel's y is float32
            q[i] = lo + (r * inv) * (np.float64(y[k + 1]) - lo)
        k += step_k
        r += step_r
        carry = r >= den
        r -= carry * den
        k += carry


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _block_sums(x: Any, q: Any, b0: int, b1: int, cx: float, cq: float) -> tuple[float, float, float, float]:
    """Sums of dx^2, dx dq, dx, dq over ``[b0, b1)`` (``dx = x - cx``, ``dq = q - cq``).

    The one place the compiler may reassociate: it adds in vector lanes (as NumPy's pairwise sum
    does in its 128-element blocks), which is what makes the fit cost a fraction of the sort.
    """
    a = e = f = g = 0.0
    cx, cq = np.float64(cx), np.float64(cq)  # float64 arithmetic whatever the arrays' and centres' dtype
    for i in range(b0, b1):
        d = np.float64(x[i]) - cx
        h = np.float64(q[i]) - cq
        a += d * d
        e += d * h
        f += d
        g += h
    return a, e, f, g


@numba.njit(cache=True, nogil=True)
def _fit(x: Any, q: Any, cx: float, cq: float) -> tuple[float, float]:
    """(omega, beta) of the least-squares line of ``q [n]`` on sorted ``x [n]``.

    ``cx`` and ``cq`` are centres within the data (a median; for Hazen quantiles the median of
    the values they were interpolated from): the sums are of the centred values and corrected for the offset
    of each centre from the mean, so a centre changes nothing but rounding. A median is within one
    standard deviation of the mean, so the correction cancels at most one bit. Sums over blocks of
    ``_LANE_BLOCK`` in vector lanes, the block totals compensated. Constant ``x``: omega 1, beta
    ``mean q - mean x``.
    """
    n = x.size
    sxx = cxx = sxq = cxq = sx = cx_ = sq = cq_ = 0.0
    for b0 in range(0, n, _LANE_BLOCK):
        a, e, f, g = _block_sums(x, q, b0, min(b0 + _LANE_BLOCK, n), cx, cq)
        sxx, cxx = _two_sum(sxx, cxx, a)
        sxq, cxq = _two_sum(sxq, cxq, e)
        sx, cx_ = _two_sum(sx, cx_, f)
        sq, cq_ = _two_sum(sq, cq_, g)
    dx, dq = (sx + cx_) / n, (sq + cq_) / n  # mean x - cx, mean q - cq
    mx, mq = cx + dx, cq + dq
    vxx = (sxx + cxx) - n * dx * dx
    if x[0] == x[n - 1] or vxx <= 0.0:  # constant (or squares that underflow): a shift
        return 1.0, mq - mx
    omega = ((sxq + cxq) - n * dx * dq) / vxx
    return omega, mq - omega * mx


@numba.njit(cache=True, nogil=True)
def _fit_sorted(x: Any, y: Any, q: Any, cx: float, cy: float) -> tuple[float, float]:
    """(omega, beta) of sorted toxic ``x [n_t]`` onto sorted non-toxic ``y [n_y]``, centred at ``cx``, ``cy``.

    ``q [n_t]`` is scratch for the Hazen quantiles when ``n_y != n_t``, centred at ``cy`` too (the
    quantiles average close to the mean of ``y``, within a standard deviation of its median).
    """
    if y.size == x.size:  # sorted pairs
        return _fit(x, y, cx, cy)
    _hazen(y, q)
    return _fit(x, q, cx, cy)


@numba.njit(parallel=True, cache=True, nogil=True)
def _linear_half(bits: Any, lo: int, hi: int, dest: Any, n_pos: int, ws: Any, values: Any, out: Any) -> None:
    """Linear-AcT of float16 bit columns ``bits[:, lo:hi]`` into ``out[4, hi - lo]`` (NaN: non-finite).

    Each column's keys (toxic first) are sorted per class into float32 values: by LSD radix for
    fewer than ``_RADIX_MAX`` samples; otherwise a counting sort, the (key, label) histogram of
    ``auroc`` turned into first slots by one scan of its occupied blocks, then every sample placed.
    """
    keys_ws, hist_ws, sort_ws, q_ws, tmp_ws, consts = ws  # [chunk, tile, n], [chunk, 2 * 65536] (only
    # for n >= _RADIX_MAX), [chunk, 2, n] float32, [chunk, n] float64, [chunk, n]: transposed keys,
    # histogram, sorted values of both classes, Hazen quantiles, radix scratch
    n_chunks, tile, n = keys_ws.shape
    n_neg = n - n_pos
    n_tiles = (hi - lo + tile - 1) // tile
    radix = n < _RADIX_MAX
    for chunk in prange(n_chunks):
        keys, hist = keys_ws[chunk], hist_ws[chunk]
        xs, ys, q = sort_ws[chunk, 0, :n_pos], sort_ws[chunk, 1, :n_neg], q_ws[chunk, :n_pos]
        count = np.zeros(256, np.int64)
        occupied = np.zeros(256, np.bool_)
        flag = np.zeros(tile, np.bool_)
        for ti in range(chunk, n_tiles, n_chunks):
            c0 = lo + ti * tile
            width = min(tile, hi - c0)
            flag[:] = False
            _transpose_keys(bits, c0, width, dest, keys, flag, consts)
            for t in range(width):
                j = c0 + t - lo
                if flag[t]:
                    out[:, j] = np.nan
                    continue
                if radix:
                    pos, neg = keys[t, :n_pos], keys[t, n_pos:]
                    _radix_sort(pos, tmp_ws[chunk], count)
                    _radix_sort(neg, tmp_ws[chunk], count)
                    for i in range(n_pos):
                        xs[i] = values[pos[i]]
                    for i in range(n_neg):
                        ys[i] = values[neg[i]]
                else:
                    for i in range(n):  # positives (toxic) first
                        k = int(keys[t, i])
                        hist[2 * k + (i < n_pos)] += 1
                        occupied[k >> 8] = True
                    ix = iy = 0
                    for blk in range(256):  # counts -> first slot of each (key, label)
                        if occupied[blk]:
                            for k in range(256 * blk, 256 * (blk + 1)):
                                c_neg, c_pos = hist[2 * k], hist[2 * k + 1]
                                hist[2 * k], hist[2 * k + 1] = iy, ix
                                iy += c_neg
                                ix += c_pos
                    for i in range(n_pos):  # place every sample at its slot
                        k = 2 * int(keys[t, i]) + 1
                        p = hist[k]
                        xs[p] = values[k >> 1]
                        hist[k] = p + 1
                    for i in range(n_pos, n):
                        k = 2 * int(keys[t, i])
                        p = hist[k]
                        ys[p] = values[k >> 1]
                        hist[k] = p + 1
                    for blk in range(256):
                        if occupied[blk]:
                            occupied[blk] = False
                            hist[512 * blk : 512 * (blk + 1)] = 0
                omega, beta = _fit_sorted(xs, ys, q, np.float64(xs[n_pos // 2]), np.float64(ys[n_neg // 2]))
                out[0, j], out[1, j], out[2, j], out[3, j] = omega, beta, xs[0], xs[n_pos - 1]


@numba.njit(parallel=True, cache=True, nogil=True)
def _linear_sorted(xs: Any, ys: Any, out: Any, off: int) -> None:
    """Linear-AcT of pre-sorted rows ``xs [m, n_t]``, ``ys [m, n_y]`` into ``out[:, off:off + m]``."""
    for r in prange(xs.shape[0]):
        q = np.empty(xs.shape[1])
        omega, beta = _fit_sorted(xs[r], ys[r], q, xs[r, xs.shape[1] // 2], ys[r, ys.shape[1] // 2])
        out[0, off + r], out[1, off + r] = omega, beta
        out[2, off + r], out[3, off + r] = xs[r, 0], xs[r, -1]


def _check(shape: tuple[Any, ...], dtype: np.dtype[Any], labels: Any, method: str, name: str) -> np.ndarray:
    """Check the method, activations and 0/1 labels of both classes; return the labels as bool."""
    y = np.asarray(labels)
    n = shape[0] if shape else 0
    problems = []
    if method not in TRANSPORT_METHODS:
        problems.append(f"`method` must be one of {', '.join(TRANSPORT_METHODS)}; got {method!r}")
    if len(shape) != 2 or any(math.isnan(d) for d in shape):
        problems.append(f"`activations` must be 2-D [n_samples, n_neurons]; got shape {shape}")
    if dtype not in (np.float16, np.float32, np.float64):
        problems.append(f"`activations` must be float16, float32 or float64; got {dtype}")
    if y.shape != (n,):
        problems.append(f"`labels` must have shape ({n},), one per sample; got {y.shape}")
    if y.dtype.kind not in "biu":
        problems.append(f"`labels` must have an integer or bool dtype; got {y.dtype}")
    elif not np.isin(y, (0, 1)).all():
        problems.append(f"`labels` must hold only 0 and 1; got {np.setdiff1d(y, (0, 1))[:5]}")
    n_pos = int(np.count_nonzero(y)) if not problems else 0
    if not problems and n_pos in (0, n):
        problems.append(f"`labels` must hold both classes (1 = toxic, 0 = non-toxic); got {n_pos} toxic of {n}. "
                        "Transport maps toxic onto non-toxic activations and needs examples of each")
    if problems:
        raise InputError(f"{name}: " * bool(name) + "; ".join(problems) + ".")
    return y.astype(bool)


def _linear_half_block(values: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Linear-AcT of a C-ordered float16 block through the counting kernel; ``[4, n_neurons]``."""
    n, cols = values.shape
    out = np.empty((4, cols))
    if cols == 0:
        return out
    dest = np.empty(n, np.int64)  # where row r lands in a transposed column: toxic first
    dest[np.concatenate([np.flatnonzero(positive), np.flatnonzero(~positive)])] = np.arange(n)
    sign = 1 << 15
    consts = tuple(np.uint64(c) for c in (sign, sign - 1, _EXPONENT[2], 15))
    bits = values.view(np.uint16)
    all_threads = numba.get_num_threads()
    n_threads = max(1, min(all_threads, n * cols // _MIN_THREAD_WORK))
    tile = min(_MAX_TILE, max(1, _TILE_BYTES // (n * 2)), -(-cols // n_threads))
    n_chunks = min(n_threads, -(-cols // tile))
    hist = np.zeros((n_chunks, 2 * 65536 if n >= _RADIX_MAX else 1), np.int32)
    ws = (np.empty((n_chunks, tile, n), np.uint16), hist, np.empty((n_chunks, 2, n), np.float32),
          np.empty((n_chunks, n)), np.empty((n_chunks, n), np.uint16), consts)
    with _KERNEL_LOCK:
        numba.set_num_threads(n_chunks)
        try:
            _linear_half(bits, 0, cols, dest, int(positive.sum()), ws, _HALF, out)
        finally:
            numba.set_num_threads(all_threads)
    return out


def _sub_blocks(values: np.ndarray) -> range:
    """Starts of column sub-blocks whose float64 copy stays within ``_SUB_BYTES``."""
    return range(0, values.shape[1], max(1, _SUB_BYTES // max(1, values.shape[0] * 8)))


def _linear_numpy(values: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Linear-AcT of a float32/float64 block: NumPy sorts per column, then the shared fit."""
    n, cols = values.shape
    out = np.empty((4, cols))
    step = max(1, _SUB_BYTES // max(1, n * 8))
    for c in range(0, cols, step):
        sub = np.asarray(values[:, c:c + step], dtype=np.float64)
        xs, ys = np.sort(sub[positive].T, axis=1), np.sort(sub[~positive].T, axis=1)
        bad = ~(np.isfinite(xs).all(axis=1) & np.isfinite(ys).all(axis=1))
        with _KERNEL_LOCK:
            _linear_sorted(np.ascontiguousarray(xs), np.ascontiguousarray(ys), out, c)
        out[:, c + np.flatnonzero(bad)] = np.nan
    return out


def _moments(values: np.ndarray, positive: np.ndarray, method: str) -> np.ndarray:
    """Mean-AcT or Gaussian-AcT of a block (no sort needed); ``[4, n_neurons]``."""
    n, cols = values.shape
    out = np.empty((4, cols))
    step = max(1, _SUB_BYTES // max(1, n * 8))
    for c in range(0, cols, step):
        sub = np.asarray(values[:, c:c + step], dtype=np.float64)
        # one contiguous row per neuron: NumPy sums each row pairwise whatever the block's width, so a
        # neuron's numbers do not depend on which block (or how wide a block) it was estimated in
        x, y = np.ascontiguousarray(sub[positive].T), np.ascontiguousarray(sub[~positive].T)
        mx, my = x.mean(axis=1), y.mean(axis=1)
        lo, hi = x.min(axis=1), x.max(axis=1)
        constant = lo == hi
        if method == "gaussian-act":
            sx = np.sqrt(np.mean((x - mx[:, None]) ** 2, axis=1))
            sy = np.sqrt(np.mean((y - my[:, None]) ** 2, axis=1))
            with np.errstate(divide="ignore", invalid="ignore"):
                omega = np.where(constant | (sx == 0), 1.0, sy / np.where(sx == 0, 1.0, sx))
        else:
            omega = np.ones_like(mx)
        bad = ~(np.isfinite(sub).all(axis=0))
        out[0, c:c + step] = np.where(bad, np.nan, omega)
        out[1, c:c + step] = my - omega * mx
        out[2, c:c + step], out[3, c:c + step] = lo, hi
    return out


def _finish(out: np.ndarray, offset: int, name: str) -> np.ndarray:
    """One NumericalError naming every neuron with non-finite activations (NaN omega)."""
    idx = np.flatnonzero(~np.isfinite(out).all(axis=0)) + offset
    if idx.size:
        listed = ", ".join(map(str, idx[:10].tolist())) + (", ..." if idx.size > 10 else "")
        raise NumericalError(
            f"{name + ' ' if name else ''}neuron {idx[0]} has NaN or inf activations "
            f"({idx.size} neuron(s): {listed}); transport needs finite values. Check the model for "
            "overflow, or extract in float32."
        )
    return out


def _estimate(values: np.ndarray, positive: np.ndarray, method: str) -> np.ndarray:
    """``[4, n_neurons]`` (omega, beta, lo, hi) of one in-memory block, non-finite columns NaN."""
    if method != "linear-act":
        return _moments(values, positive, method)
    if values.dtype == np.float16:
        ready = values.flags.c_contiguous and values.flags.writeable
        return _linear_half_block(values if ready else np.array(values, order="C"), positive)
    return _linear_numpy(values, positive)


def transport_block(values: np.ndarray, labels: Any, *, method: str = "linear-act", name: str = "") -> np.ndarray:
    """Transport estimate of every column of one in-memory block.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_neurons), float16, float32 or float64
        Pooled activations, one row per sample.
    labels : array-like of shape (n_samples,), int or bool
        1 = toxic (the source), 0 = non-toxic (the target); both must occur.
    method : {"linear-act", "mean-act", "gaussian-act"}
    name : str, optional
        Prefix for error messages, e.g. ``"hook blocks.3.mlp.hook_pre"``.

    Returns
    -------
    ndarray of shape (4, n_neurons), float64
        Rows ``omega``, ``beta``, ``lo``, ``hi`` (:data:`ROWS`): the map ``omega * z + beta``
        and the toxic range ``[lo, hi]`` of every neuron.

    Raises
    ------
    InputError
        Unknown method, wrong shape or dtype, labels other than 0/1, or one class only.
    NumericalError
        A column holds NaN or inf; the message names the neuron.

    Examples
    --------
    >>> transport_block(np.array([[0.0], [1.0], [2.0], [4.0]]), [1, 1, 0, 0]).tolist()
    [[2.0], [2.0], [0.0], [1.0]]
    """
    values = np.asarray(values)
    positive = _check(values.shape, values.dtype, labels, method, name)
    return _finish(_estimate(values, positive, method), 0, name)


def transport_estimate(activations: Any, labels: Any, *, method: str = "linear-act", block_size: int | None = None,
                       memory_budget: str | int = "1GB", name: str = "") -> np.ndarray:
    """Transport estimate of every neuron of a NumPy, zarr or dask array.

    Parameters
    ----------
    activations : ndarray, zarr array or dask.array.Array of shape (n_samples, n_neurons)
        Chunked arrays (with ``.chunks``) are read through dask in blocks of neurons holding all
        samples (:func:`transport_dask`); NumPy arrays are estimated block by block in memory.
    labels : array-like of shape (n_samples,), int or bool
        1 = toxic, 0 = non-toxic.
    method : {"linear-act", "mean-act", "gaussian-act"}
    block_size : int, optional
        Neurons per block; by default what fits ``memory_budget``. The result does not depend on it.
    memory_budget : str or int, default "1GB"
        Memory one block may use, e.g. ``"2GB"``, ``"512MiB"``, or bytes.
    name : str, optional
        Prefix for error messages.

    Returns
    -------
    ndarray of shape (4, n_neurons), float64
        Rows ``omega``, ``beta``, ``lo``, ``hi``.
    """
    if not isinstance(activations, np.ndarray) and hasattr(activations, "chunks"):
        import dask.array

        dask_api: Any = dask.array
        if not isinstance(activations, dask_api.Array):
            activations = dask_api.from_array(activations, chunks=activations.chunks)
        lazy: Any = transport_dask(activations, labels, method=method, block_size=block_size,
                                   memory_budget=memory_budget, name=name)
        return np.asarray(lazy.compute())
    values = np.asarray(activations)
    positive = _check(values.shape, values.dtype, labels, method, name)
    size = _block_size(block_size, memory_budget, values.shape[0] * values.itemsize, 1)
    out = np.empty((4, values.shape[1]))
    for c in range(0, values.shape[1], size):
        out[:, c:c + size] = _estimate(values[:, c:c + size], positive, method)
    return _finish(out, 0, name)


def _transport_task(block: np.ndarray, labels: np.ndarray, method: str, name: str,
                    block_info: dict[Any, Any] | None = None) -> np.ndarray:
    """One dask task: ``block [n_samples, cols]``, ``labels [n_samples, 1]`` -> ``[4, cols]``."""
    out = _estimate(block, labels[:, 0].astype(bool), method)
    return _finish(out, block_info[0]["array-location"][1][0] if block_info else 0, name)


def transport_dask(activations: da.Array, labels: Any, *, method: str = "linear-act", block_size: int | None = None,
                   memory_budget: str | int = "1GB", name: str = "") -> da.Array:
    """Lazy transport estimate of every neuron of a dask array, one block of neurons per task.

    As :func:`aura_stream.auroc.auroc_dask`: the input is rechunked so that each task holds all
    ``n_samples`` rows and ``block_size`` neurons, so memory per task follows from the block
    size, never from ``n_neurons``. Inputs are checked now, before any work is scheduled.

    Parameters
    ----------
    activations : dask.array.Array of shape (n_samples, n_neurons)
        float16, float32 or float64, e.g. ``da.from_zarr(store.activations("mean", hook))``.
    labels : array-like of shape (n_samples,), int or bool
        1 = toxic, 0 = non-toxic.
    method : {"linear-act", "mean-act", "gaussian-act"}
    block_size : int, optional
        Neurons per block. By default ``memory_budget // (n_samples * itemsize * 3)``, rounded
        down to whole column chunks of the input (or an even split of one chunk).
    memory_budget : str or int, default "1GB"
        Memory one task may use.
    name : str, optional
        Prefix for error messages.

    Returns
    -------
    dask.array.Array of shape (4, n_neurons), float64
        Rows ``omega``, ``beta``, ``lo``, ``hi``; one chunk per block of neurons.

    Raises
    ------
    InputError
        Bad method, shape, dtype, labels, ``block_size`` or ``memory_budget`` (raised eagerly).
    NumericalError
        At compute time, for NaN or inf activations, naming the neuron.
    """
    import dask.array

    dask_api: Any = dask.array
    x: Any = activations
    positive = _check(x.shape, x.dtype, labels, method, name)
    n_samples, n_neurons = x.shape
    col_bytes = n_samples * x.dtype.itemsize
    size = _block_size(block_size, memory_budget, col_bytes, x.chunks[1][0] if n_neurons else 1)
    size = max(1, min(size, n_neurons))
    blocks = x.rechunk({0: n_samples, 1: size}, method="tasks", block_size_limit=col_bytes * size)
    y = dask_api.from_array(positive.astype(np.uint8)[:, None], chunks=(n_samples, 1))
    return dask_api.map_blocks(  # type: ignore[no-any-return]
        _transport_task, blocks, y, method, name, chunks=((4,), blocks.chunks[1]), dtype=np.float64,
        meta=np.empty((0, 0)),
    )
