"""Exact per-neuron AUROC of pooled activations, in memory or out of core.

AUROC (toxic = 1 is the positive class) is the Mann-Whitney ``U / (n_pos * n_neg)`` with ties
counted one half, exactly ``sklearn.metrics.roc_auc_score``. A rank statistic cannot be averaged
over row chunks, so every block handed to a kernel holds *all* samples and a block of neurons.

The numba kernels run in parallel over tiles of columns: a thread transposes its tile into
order-preserving unsigned keys (bit operations on the IEEE pattern; -0.0 ties with +0.0; inf and
NaN flagged), positives first; then float16 counts a (key, label) histogram and scans only its
occupied blocks of 256 keys, float32/float64 radix-sort both classes and merge them tie group by
tie group. ``2 U`` is summed in int64 and divided once in float64, so the result is exact.
"""

from __future__ import annotations

import math
import re
import threading
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
from numba import prange

from aura_stream.errors import InputError, NumericalError

if TYPE_CHECKING:
    import dask.array as da

__all__ = ["auroc", "auroc_block", "auroc_dask", "parse_memory"]

_TILE_BYTES = 8 << 20  # keys of one thread's tile of transposed columns [tile, n_samples]
_MAX_TILE = 256
_MIN_THREAD_WORK = 1 << 20  # values per thread below which fewer threads are faster
_WORKSPACE = 3  # bytes a dask block needs per input byte: the block, its source chunks, keys
_EXPONENT = {2: 0x7C00, 4: 0x7F80_0000, 8: 0x7FF0_0000_0000_0000}  # itemsize -> exponent bits
# The kernels use every numba thread; concurrent calls (dask's threads) take turns.
_KERNEL_LOCK = threading.Lock()


@numba.njit(cache=True, nogil=True)
def _transpose_keys(
    bits: Any, c0: int, width: int, dest: Any, keys: Any, flag: Any, consts: Any
) -> None:
    """``keys[t, dest[r]]`` = order-preserving key of ``bits[r, c0 + t]``; flag inf/NaN columns."""
    sign, low, exponent, shift = consts  # uint64: sign bit, all other bits, exponent bits, width-1
    n = bits.shape[0]
    for r0 in range(0, n, 16):  # 16 rows at a time: their lines stay in L1 for the whole tile
        for t in range(width):
            non_finite = False
            for r in range(r0, min(r0 + 16, n)):
                b = np.uint64(bits[r, c0 + t])
                non_finite |= (b & exponent) == exponent  # exponent all ones: inf or NaN
                key = b ^ ((b >> shift) * low | sign)  # negative: flip all bits; else set sign
                keys[t, dest[r]] = key + np.uint64(key == low)  # key(-0.0) + 1 == key(+0.0)
            flag[t] |= non_finite


@numba.njit(parallel=True, cache=True, nogil=True)
def _u2_half(bits: Any, lo: int, hi: int, dest: Any, n_pos: int, ws: Any, u2: Any) -> None:
    """Doubled U of float16 bit columns ``bits[:, lo:hi]`` from (key, label) counts."""
    keys_ws, hist_ws, consts = ws  # [chunk, tile, n_samples], [chunk, 2 * 65536], bit constants
    n_chunks, tile, n = keys_ws.shape
    n_tiles = (hi - lo + tile - 1) // tile
    for chunk in prange(n_chunks):
        keys, hist = keys_ws[chunk], hist_ws[chunk]  # hist is zeroed again while scanned
        occupied = np.zeros(256, np.bool_)  # blocks of 256 keys that hold any count
        flag = np.zeros(tile, np.bool_)
        for ti in range(chunk, n_tiles, n_chunks):
            c0 = lo + ti * tile
            width = min(tile, hi - c0)
            flag[:] = False
            _transpose_keys(bits, c0, width, dest, keys, flag, consts)
            for t in range(width):
                for i in range(n * (not flag[t])):  # positives first: no label lookups
                    k = int(keys[t, i])
                    hist[2 * k + (i < n_pos)] += 1
                    occupied[k >> 8] = True
                s = neg_below = 0
                for blk in range(256):
                    if occupied[blk]:
                        occupied[blk] = False
                        for k in range(512 * blk, 512 * (blk + 1), 2):
                            n_neg, n_pos_k = int(hist[k]), int(hist[k + 1])
                            s += n_pos_k * (2 * neg_below + n_neg)  # ties count one half
                            neg_below += n_neg
                        hist[512 * blk : 512 * (blk + 1)] = 0
                u2[c0 + t] = -1 if flag[t] else s


@numba.njit(cache=True, nogil=True)
def _radix_sort(a: Any, tmp: Any, count: Any) -> None:
    """Sort unsigned keys ``a`` in place: LSD radix, 8-bit digits, constant digits skipped."""
    src, dst, swapped = a, tmp[: a.size], False
    for p in range(a.itemsize * (a.size > 1)):
        shift, mask = np.uint64(8 * p), np.uint64(255)
        count[:] = 0
        for i in range(a.size):
            count[(np.uint64(src[i]) >> shift) & mask] += 1
        if count[(np.uint64(src[0]) >> shift) & mask] == a.size:
            continue
        count[:] = np.cumsum(count) - count  # first slot of each digit
        for i in range(a.size):
            d = (np.uint64(src[i]) >> shift) & mask
            dst[count[d]] = src[i]
            count[d] += 1
        src, dst, swapped = dst, src, not swapped
    if swapped:
        a[:] = src


@numba.njit(parallel=True, cache=True, nogil=True)
def _u2_sort(bits: Any, lo: int, hi: int, dest: Any, n_pos: int, ws: Any, u2: Any) -> None:
    """Doubled U of float32/float64 bit columns ``bits[:, lo:hi]`` by sorting and merging."""
    keys_ws, tmp_ws, consts = ws  # [chunk, tile, n_samples], [chunk, n_samples], bit constants
    n_chunks, tile, _ = keys_ws.shape
    n_tiles = (hi - lo + tile - 1) // tile
    for chunk in prange(n_chunks):
        keys = keys_ws[chunk]
        count = np.zeros(256, np.int64)
        flag = np.zeros(tile, np.bool_)
        for ti in range(chunk, n_tiles, n_chunks):
            c0 = lo + ti * tile
            width = min(tile, hi - c0)
            flag[:] = False
            _transpose_keys(bits, c0, width, dest, keys, flag, consts)
            for t in range(width):
                pos, neg = keys[t, : n_pos * (not flag[t])], keys[t, n_pos:]
                _radix_sort(pos, tmp_ws[chunk], count)
                _radix_sort(neg, tmp_ws[chunk], count)
                s = i = j = 0
                while i < pos.size:  # one tie group of positives per step
                    i_end = i + 1
                    while i_end < pos.size and pos[i_end] == pos[i]:
                        i_end += 1
                    while j < neg.size and neg[j] < pos[i]:
                        j += 1
                    j_end = j
                    while j_end < neg.size and neg[j_end] == pos[i]:
                        j_end += 1
                    s += (i_end - i) * (j + j_end)  # 2 * (negatives below + ties / 2)
                    i, j = i_end, j_end
                u2[c0 + t] = -1 if flag[t] else s


def _validate(shape: tuple[Any, ...], dtype: np.dtype[Any], labels: Any, name: str) -> np.ndarray:
    """Check activations and 0/1 labels of both classes; return the labels as bool."""
    y = np.asarray(labels)
    n = shape[0] if shape else 0
    problems = []
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
        problems.append(
            f"`labels` must hold both classes (1 = toxic, 0 = non-toxic); got {n_pos} positive "
            f"of {n}. AUROC needs examples of each"
        )
    if problems:
        raise InputError(f"{name}: " * bool(name) + "; ".join(problems) + ".")
    return y.astype(bool)


def _u2(values: np.ndarray, positive: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Doubled U of columns ``lo:hi`` of a C-ordered ``values``; -1 where inf or NaN."""
    n, size = values.shape[0], values.itemsize
    u2 = np.zeros(values.shape[1], np.int64)
    if hi <= lo:
        return u2[lo:hi]
    dest = np.empty(n, np.int64)  # where row r lands in a transposed column: positives first
    dest[np.concatenate([np.flatnonzero(positive), np.flatnonzero(~positive)])] = np.arange(n)
    sign = 1 << 8 * size - 1
    consts = tuple(np.uint64(c) for c in (sign, sign - 1, _EXPONENT[size], 8 * size - 1))
    bits = values.view(f"uint{8 * size}")
    all_threads = numba.get_num_threads()  # small problems stay on one thread: waking the
    n_threads = max(1, min(all_threads, n * (hi - lo) // _MIN_THREAD_WORK))  # others costs ms
    tile = min(_MAX_TILE, max(1, _TILE_BYTES // (n * size)), -(-(hi - lo) // n_threads))
    n_chunks = min(n_threads, -(-(hi - lo) // tile))
    keys_ws = np.empty((n_chunks, tile, n), bits.dtype)  # numpy allocates huge pages
    aux = (
        np.zeros((n_chunks, 2 * 65536), np.int32)
        if size == 2
        else np.empty((n_chunks, n), bits.dtype)
    )
    with _KERNEL_LOCK:
        numba.set_num_threads(n_chunks)
        try:
            kernel = _u2_half if size == 2 else _u2_sort
            kernel(bits, lo, hi, dest, int(positive.sum()), (keys_ws, aux, consts), u2)
        finally:
            numba.set_num_threads(all_threads)
    return u2[lo:hi]


def _kernel_ready(values: np.ndarray) -> np.ndarray:
    """``values`` if C-ordered and writeable (one compiled kernel per dtype), else a copy."""
    ready = values.flags.c_contiguous and values.flags.writeable
    return values if ready else np.array(values, order="C")


def _finish(u2: np.ndarray, positive: np.ndarray, offset: int, name: str) -> np.ndarray:
    """AUROC from doubled U; one NumericalError naming every non-finite neuron."""
    idx = np.flatnonzero(u2 < 0) + offset
    if idx.size:
        listed = ", ".join(map(str, idx[:10].tolist())) + (", ..." if idx.size > 10 else "")
        raise NumericalError(
            f"{name + ' ' if name else ''}neuron {idx[0]} has NaN or inf activations "
            f"({idx.size} neuron(s): {listed}); AUROC needs finite values. Check the model for "
            "overflow, or extract in float32."
        )
    n_pos = int(positive.sum())
    return np.asarray(u2 / (2.0 * n_pos * (positive.size - n_pos)))


def auroc_block(values: np.ndarray, labels: np.ndarray, *, name: str = "") -> np.ndarray:
    """Exact AUROC of every column of one in-memory block.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_neurons), float16, float32 or float64
        Pooled activations, one row per sample. -0.0 and +0.0 are equal.
    labels : array-like of shape (n_samples,), int or bool
        1 for the positive (toxic) class, 0 for the negative class; both must occur.
    name : str, optional
        Prefix for error messages, e.g. ``"hook blocks.3.mlp.hook_pre"``.

    Returns
    -------
    ndarray of shape (n_neurons,), float64
        ``roc_auc_score(labels, values[:, j])`` for every ``j``; 0.5 for a constant column.

    Raises
    ------
    InputError
        Wrong shape or dtype, labels other than 0/1, or only one class.
    NumericalError
        A column holds NaN or inf; the message names the neuron.

    Examples
    --------
    >>> auroc_block(np.array([[0.1, 3.0], [0.9, 3.0], [0.8, 3.0]]), np.array([0, 1, 1]))
    array([1. , 0.5])
    """
    values = np.asarray(values)
    positive = _validate(values.shape, values.dtype, labels, name)
    u2 = _u2(_kernel_ready(values), positive, 0, values.shape[1])
    return _finish(u2, positive, 0, name)


_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(i?))?b?\s*", re.IGNORECASE)


def parse_memory(size: str | int) -> int:
    """Parse a memory size such as ``"2GB"``, ``"512MiB"``, ``"1.5GB"`` or ``10**9`` into bytes.

    KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024, a bare number is bytes.

    Raises
    ------
    InputError
        Anything that is not a positive size.

    Examples
    --------
    >>> parse_memory("512MiB"), parse_memory("1.5GB")
    (536870912, 1500000000)
    """
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    elif isinstance(size, str) and (match := _SIZE.fullmatch(size)):
        power = "kmgt".index(match[2].lower()) + 1 if match[2] else 0
        value = int(float(match[1]) * (1024 if match[3] else 1000) ** power)
    else:
        value = 0
    if value <= 0:
        raise InputError(f"`--memory-budget` must be a size like 2GB or 512MiB; got {size!r}.")
    return value


def _block_size(given: int | None, budget: str | int, col_bytes: int, chunk: int) -> int:
    """Neurons per block: ``given``, or what fits ``budget`` in whole (or evenly split) chunks."""
    cols = max(1, parse_memory(budget) // max(1, col_bytes * _WORKSPACE))
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise InputError(f"`block_size` must be a positive integer; got {given!r}.")
        return given
    if cols >= chunk:
        return cols - cols % chunk  # whole source chunks: none is read by two blocks
    return max(d for d in range(1, cols + 1) if chunk % d == 0)  # an even split of one chunk


def auroc(
    activations: Any,
    labels: Any,
    *,
    block_size: int | None = None,
    memory_budget: str | int = "1GB",
    name: str = "",
) -> np.ndarray:
    """Exact AUROC of every neuron of a NumPy or dask array.

    Parameters
    ----------
    activations : ndarray or dask.array.Array of shape (n_samples, n_neurons)
        Pooled activations, float16, float32 or float64. Other chunked arrays (zarr, with
        ``.chunks``) are read through dask; other array-likes are converted with NumPy.
    labels : array-like of shape (n_samples,), int or bool
        1 = toxic (positive), 0 = non-toxic.
    block_size : int, optional
        Neurons per block; by default what fits ``memory_budget``. The result does not depend
        on it.
    memory_budget : str or int, default "1GB"
        Memory one block may use, e.g. ``"2GB"``, ``"512MiB"``, or bytes.
    name : str, optional
        Prefix for error messages, e.g. ``"hook blocks.3.mlp.hook_pre"``.

    Returns
    -------
    ndarray of shape (n_neurons,), float64
        ``sklearn.metrics.roc_auc_score(labels, activations[:, j])`` for every ``j``.

    Raises
    ------
    InputError
        Bad shape, dtype, labels, ``block_size`` or ``memory_budget``; labels of one class.
    NumericalError
        NaN or inf activations; the message names the neurons.

    Examples
    --------
    >>> auroc(np.array([[0.0], [1.0], [1.0], [2.0]], np.float16), [0, 0, 1, 1])
    array([0.875])
    """
    if not isinstance(activations, np.ndarray):
        import dask.array

        dask_api: Any = dask.array
        if not isinstance(activations, dask_api.Array) and hasattr(activations, "chunks"):
            activations = dask_api.from_array(activations, chunks=activations.chunks)
        if isinstance(activations, dask_api.Array):
            lazy: Any = auroc_dask(
                activations, labels, block_size=block_size, memory_budget=memory_budget, name=name
            )
            return np.asarray(lazy.compute())
        activations = np.asarray(activations)
    positive = _validate(activations.shape, activations.dtype, labels, name)
    n_samples, n_neurons = activations.shape
    size = _block_size(block_size, memory_budget, n_samples * activations.itemsize, 1)
    in_place = _kernel_ready(activations) is activations
    u2 = np.zeros(n_neurons, np.int64)
    for lo in range(0, n_neurons, size):
        hi = min(lo + size, n_neurons)
        if in_place:  # the kernel reads the block where it is
            u2[lo:hi] = _u2(activations, positive, lo, hi)
        else:  # copy one block at a time
            u2[lo:hi] = _u2(_kernel_ready(activations[:, lo:hi]), positive, 0, hi - lo)
    return _finish(u2, positive, 0, name)


def _auroc_task(
    block: np.ndarray, labels: np.ndarray, name: str, block_info: dict[Any, Any] | None = None
) -> np.ndarray:
    """One dask task: ``block [n_samples, cols]``, ``labels [n_samples, 1]`` -> AUROC ``[cols]``."""
    positive = labels[:, 0].astype(bool)
    u2 = _u2(_kernel_ready(block), positive, 0, block.shape[1])
    return _finish(u2, positive, block_info[0]["array-location"][1][0] if block_info else 0, name)


def auroc_dask(
    activations: da.Array,
    labels: Any,
    *,
    block_size: int | None = None,
    memory_budget: str | int = "1GB",
    name: str = "",
) -> da.Array:
    """Lazy exact AUROC of every neuron of a dask array, one block of neurons per task.

    The input is rechunked so that each block holds all ``n_samples`` rows and ``block_size``
    neurons (one ``[n_samples, block_size]`` array per task), and the kernel is mapped over the
    blocks. Memory per task follows from the block size, never from ``n_neurons``. Shapes and
    labels are checked now, before any work is scheduled.

    Parameters
    ----------
    activations : dask.array.Array of shape (n_samples, n_neurons)
        Pooled activations, float16, float32 or float64, e.g. ``da.from_zarr(array)``.
    labels : array-like of shape (n_samples,), int or bool
        1 = toxic (positive), 0 = non-toxic.
    block_size : int, optional
        Neurons per block. By default ``memory_budget // (n_samples * itemsize * 3)``, rounded
        down to a multiple of the input's column chunk width (or to an even split of one chunk),
        so that no chunk of a store is read by two tasks.
    memory_budget : str or int, default "1GB"
        Memory one task may use; tasks that run at once each use this much.
    name : str, optional
        Prefix for error messages, e.g. ``"hook blocks.3.mlp.hook_pre"``.

    Returns
    -------
    dask.array.Array of shape (n_neurons,), float64
        One chunk per block of neurons.

    Raises
    ------
    InputError
        Bad shape, dtype, labels, ``block_size`` or ``memory_budget`` (raised eagerly).
    NumericalError
        At compute time, for NaN or inf activations, naming the neuron.
    """
    import dask.array

    dask_api: Any = dask.array
    x: Any = activations
    positive = _validate(x.shape, x.dtype, labels, name)
    n_samples, n_neurons = x.shape
    col_bytes = n_samples * x.dtype.itemsize
    size = _block_size(block_size, memory_budget, col_bytes, x.chunks[1][0] if n_neurons else 1)
    size = max(1, min(size, n_neurons))
    limit = col_bytes * size
    blocks = x.rechunk({0: n_samples, 1: size}, method="tasks", block_size_limit=limit)
    y = dask_api.from_array(positive.astype(np.uint8)[:, None], chunks=(n_samples, 1))
    return dask_api.map_blocks(  # type: ignore[no-any-return]
        _auroc_task, blocks, y, name, drop_axis=0, dtype=np.float64, meta=np.empty(0)
    )
