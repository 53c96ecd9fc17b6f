"""Exact per-neuron AUROC of pooled activations, in memory or out of core.

For every neuron (column) the AUROC of its activation as a score for the positive (toxic, label 1)
class is the Mann-Whitney statistic ``U / (n_pos * n_neg)`` with ties counted one half, which is
exactly what ``sklearn.metrics.roc_auc_score`` returns. AUROC is a rank statistic, so it cannot be
averaged over row chunks: each block handed to the kernel holds *all* samples and a block of neurons.

Kernels (numba, parallel over tiles of columns, one workspace per thread):

- float16: each value becomes an order-preserving ``uint16`` key (integer operations only, -0.0
  mapped to +0.0), a ``(key, label)`` histogram is counted and only occupied blocks of 256 keys are
  scanned, so the work is ``O(n_samples)`` per neuron.
- float32/float64: positives and negatives are sorted separately and merged with a tie-group sweep.

Both accumulate ``2 U`` in int64 and divide once in float64, so the result is exact.
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

_TILE_BYTES = 1 << 19  # a thread's transposed tile of columns: about half an L2 cache
_MAX_TILE = 64
_WORKSPACE = 3  # bytes held per input byte of a block (block, its source chunks, kernel tiles)
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
# The kernels run on all numba threads; concurrent dask tasks in one process take turns.
_KERNEL_LOCK = threading.Lock()


@numba.njit(parallel=True, cache=True, nogil=True)
def _u2_half(bits, order, n_pos, tile, n_threads, u2, bad):  # type: ignore[no-untyped-def]
    """Doubled U of every column of float16 bit patterns ``bits [n_samples, n_cols]``."""
    n, n_cols = order.shape[0], bits.shape[1]
    n_tiles = (n_cols + tile - 1) // tile
    n_chunks = min(n_tiles, n_threads)
    for chunk in prange(n_chunks):
        keys = np.empty((tile, n), np.uint16)  # [tile, n_samples], positives first
        hist = np.zeros(2 * 65536, np.int32)  # [key, label]; zeroed again while scanning
        occupied = np.zeros(256, np.uint8)  # which blocks of 256 keys hold any count
        flag = np.zeros(tile, np.uint8)
        for ti in range(chunk, n_tiles, n_chunks):
            c0 = ti * tile
            width = min(tile, n_cols - c0)
            flag[:] = 0
            for i in range(n):  # rows outer: each read is one contiguous run of `width` values
                row = order[i]
                for t in range(width):
                    b = np.int32(bits[row, c0 + t])
                    flag[t] |= (b & 0x7C00) == 0x7C00  # exponent all ones: inf or NaN
                    b = b * (b != 0x8000)  # -0.0 -> +0.0
                    # negatives: flip all bits; positives: set the sign bit
                    keys[t, i] = b ^ ((b >> 15) * 0x7FFF | 0x8000)
            for t in range(width):
                if flag[t]:
                    bad[c0 + t] = True
                    continue
                for i in range(n_pos):
                    k = np.int64(keys[t, i])
                    hist[2 * k + 1] += 1
                    occupied[k >> 8] = 1
                for i in range(n_pos, n):
                    k = np.int64(keys[t, i])
                    hist[2 * k] += 1
                    occupied[k >> 8] = 1
                s = np.int64(0)
                neg_below = np.int64(0)
                for blk in range(256):
                    if occupied[blk]:
                        occupied[blk] = 0
                        for k in range(2 * 256 * blk, 2 * 256 * (blk + 1), 2):
                            n_neg, n_posk = np.int64(hist[k]), np.int64(hist[k + 1])
                            s += n_posk * (2 * neg_below + n_neg)
                            neg_below += n_neg
                            hist[k] = 0
                            hist[k + 1] = 0
                u2[c0 + t] = s


@numba.njit(parallel=True, cache=True, nogil=True)
def _u2_sort(values, order, n_pos, tile, n_threads, u2, bad):  # type: ignore[no-untyped-def]
    """Doubled U of every column of float32/float64 ``values [n_samples, n_cols]``."""
    n, n_cols = order.shape[0], values.shape[1]
    n_tiles = (n_cols + tile - 1) // tile
    n_chunks = min(n_tiles, n_threads)
    for chunk in prange(n_chunks):
        buf = np.empty((tile, n), values.dtype)  # [tile, n_samples], positives first
        flag = np.zeros(tile, np.uint8)
        for ti in range(chunk, n_tiles, n_chunks):
            c0 = ti * tile
            width = min(tile, n_cols - c0)
            flag[:] = 0
            for i in range(n):
                row = order[i]
                for t in range(width):
                    v = values[row, c0 + t]
                    flag[t] |= (v - v) != 0  # NaN for inf and NaN only
                    buf[t, i] = v
            for t in range(width):
                if flag[t]:
                    bad[c0 + t] = True
                    continue
                pos = buf[t, :n_pos]
                neg = buf[t, n_pos:]
                pos.sort()
                neg.sort()
                # -0.0 == +0.0 under comparison, so signed zeros fall into one tie group
                s = np.int64(0)
                i = np.int64(0)
                j = np.int64(0)
                n_neg = n - n_pos
                while i < n_pos:
                    v = pos[i]
                    i_end = i + 1
                    while i_end < n_pos and pos[i_end] == v:
                        i_end += 1
                    while j < n_neg and neg[j] < v:
                        j += 1
                    j_end = j
                    while j_end < n_neg and neg[j_end] == v:
                        j_end += 1
                    s += (i_end - i) * (j + j_end)  # 2 * (below + ties / 2) per positive
                    i, j = i_end, j_end
                u2[c0 + t] = s


def _prefix(name: str) -> str:
    return f"{name}: " if name else ""


def _check_labels(labels: Any, n_samples: int, name: str) -> tuple[np.ndarray, int]:
    """Validate 0/1 labels; return the row order (positives first) and the positive count."""
    y = np.asarray(labels)
    problems = []
    if y.ndim != 1:
        problems.append(f"be 1-D; got shape {y.shape}")
    elif y.shape[0] != n_samples:
        problems.append(f"have one entry per sample ({n_samples}); got {y.shape[0]}")
    if y.dtype.kind not in "biu":
        problems.append(f"have an integer or bool dtype; got {y.dtype}")
    elif y.size and not np.isin(np.unique(y), (0, 1)).all():
        problems.append(f"hold only 0 and 1; got values {np.unique(y)[:6].tolist()}")
    if problems:
        raise InputError(f"{_prefix(name)}`labels` must " + " and ".join(problems) + ".")
    positive = y.astype(bool).ravel()
    n_pos = int(positive.sum())
    if n_pos in (0, positive.size):
        raise InputError(
            f"{_prefix(name)}`labels` must hold both classes (0 and 1); got only "
            f"{int(positive[0]) if positive.size else 'no'} ({positive.size} samples). "
            "AUROC needs toxic and non-toxic examples."
        )
    order = np.concatenate([np.flatnonzero(positive), np.flatnonzero(~positive)])
    return order.astype(np.int64), n_pos


def _check_activations(shape: tuple[int, ...], dtype: np.dtype[Any], name: str) -> None:
    """Validate the shape and dtype of an activation matrix."""
    problems = []
    if len(shape) != 2:
        problems.append(f"be 2-D [n_samples, n_neurons]; got shape {shape}")
    if dtype not in _FLOAT_DTYPES:
        problems.append(f"have dtype float16, float32 or float64; got {dtype} (cast it first)")
    if problems:
        raise InputError(f"{_prefix(name)}`activations` must " + " and ".join(problems) + ".")


def _raise_if_bad(bad: np.ndarray, offset: int, name: str) -> None:
    """Raise one NumericalError that names the first non-finite neurons."""
    idx = np.flatnonzero(bad) + offset
    if idx.size:
        who = f"{name} neuron {idx[0]}" if name else f"neuron {idx[0]}"
        listed = ", ".join(map(str, idx[:10].tolist())) + (", ..." if idx.size > 10 else "")
        raise NumericalError(
            f"{who} has NaN or inf activations ({idx.size} neuron(s): {listed}); AUROC needs "
            "finite values. Check the model for overflow, or extract in float32."
        )


def _u2(values: np.ndarray, order: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """Run the kernel for ``values``' dtype; return doubled U and the non-finite mask per column."""
    values = np.ascontiguousarray(values)
    n_cols = values.shape[1]
    u2 = np.zeros(n_cols, np.int64)
    bad = np.zeros(n_cols, np.bool_)
    if n_cols == 0:
        return u2, bad
    if values.dtype == np.float16:
        tile = _TILE_BYTES // (2 * order.size)
        kernel, data = _u2_half, values.view(np.uint16)
    else:
        tile = _TILE_BYTES // (values.itemsize * order.size)
        kernel, data = _u2_sort, values
    tile = min(max(tile, 1), _MAX_TILE)
    with _KERNEL_LOCK:
        kernel(data, order, n_pos, tile, numba.get_num_threads(), u2, bad)
    return u2, bad


def auroc_block(values: np.ndarray, labels: np.ndarray, *, name: str = "") -> np.ndarray:
    """Exact AUROC of every column of one in-memory block.

    Parameters
    ----------
    values : ndarray of shape (n_samples, n_neurons), float16, float32 or float64
        Pooled activations; every row is one sample. -0.0 and +0.0 are equal.
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
        Wrong shapes or dtypes, labels other than 0/1, or only one class.
    NumericalError
        A column holds NaN or inf; the message names the neuron.

    Examples
    --------
    >>> auroc_block(np.array([[0.1, 3.0], [0.9, 3.0], [0.8, 3.0]]), np.array([0, 1, 1]))
    array([1. , 0.5])
    """
    values = np.asarray(values)
    _check_activations(values.shape, values.dtype, name)
    order, n_pos = _check_labels(labels, values.shape[0], name)
    u2, bad = _u2(values, order, n_pos)
    _raise_if_bad(bad, 0, name)
    return u2 / (2.0 * n_pos * (order.size - n_pos))


_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(b?)\s*", re.IGNORECASE)


def parse_memory(size: str | int) -> int:
    """Parse a memory size such as ``"2GB"``, ``"512MiB"``, ``"1.5GB"`` or ``1000000`` into bytes.

    KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024; a bare number is bytes.

    Raises
    ------
    InputError
        Anything that is not a positive size.

    Examples
    --------
    >>> parse_memory("512MiB"), parse_memory("1.5GB")
    (536870912, 1500000000)
    """
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    match = _SIZE.fullmatch(size) if isinstance(size, str) else None
    if match is not None and not (match[3] and not match[2]):
        number, prefix, binary = match[1], match[2].lower(), match[3]
        scale = 1024 ** "kmgt".index(prefix) * 1024 if binary else _UNITS[prefix]
        value = int(float(number) * scale)
        if value > 0:
            return value
    raise InputError(f"`--memory-budget` must be a size like 2GB or 512MiB; got {size!r}.")


def _block_size(
    n_samples: int, itemsize: int, memory_budget: str | int, chunk_width: int, n_neurons: int
) -> int:
    """Columns per block that fit the budget, aligned to the source's column chunks."""
    cols = max(1, parse_memory(memory_budget) // max(1, n_samples * itemsize * _WORKSPACE))
    if chunk_width > 1 and cols >= chunk_width:
        cols -= cols % chunk_width  # whole source chunks: no chunk is split between blocks
    elif chunk_width > 1:
        cols = max(d for d in range(1, cols + 1) if chunk_width % d == 0)  # even split
    return max(1, min(cols, n_neurons))


def _check_block_size(block_size: int | None, name: str) -> None:
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
    ):
        raise InputError(f"{_prefix(name)}`block_size` must be a positive integer; got {block_size!r}.")


def auroc(
    activations: Any,
    labels: Any,
    *,
    block_size: int | None = None,
    memory_budget: str | int = "1GB",
    name: str = "",
) -> np.ndarray:
    """Exact AUROC of every neuron, for a NumPy or a dask array.

    Parameters
    ----------
    activations : ndarray or dask.array.Array of shape (n_samples, n_neurons)
        Pooled activations, float16, float32 or float64. Zarr-like arrays (with ``.chunks``) are
        read through dask, so they never need to fit in memory.
    labels : array-like of shape (n_samples,), int or bool
        1 = toxic (positive), 0 = non-toxic.
    block_size : int, optional
        Neurons per block; by default the largest that fits ``memory_budget``. The result does
        not depend on it.
    memory_budget : str or int, default "1GB"
        Memory one block may use, e.g. ``"2GB"``, ``"512MiB"`` or bytes.
    name : str, optional
        Prefix for error messages, e.g. ``"hook blocks.3.mlp.hook_pre"``.

    Returns
    -------
    ndarray of shape (n_neurons,), float64
        Equal to ``sklearn.metrics.roc_auc_score(labels, activations[:, j])`` for every ``j``.

    Raises
    ------
    InputError
        Bad shapes, dtypes, labels, ``block_size`` or ``memory_budget``; labels of one class.
    NumericalError
        NaN or inf activations; the message names the neurons.

    Examples
    --------
    >>> auroc(np.array([[0.0], [1.0], [1.0], [2.0]], np.float16), [0, 0, 1, 1])
    array([0.875])
    """
    if not isinstance(activations, np.ndarray):
        import dask.array as da

        if not isinstance(activations, da.Array) and hasattr(activations, "chunks"):
            activations = da.from_array(activations, chunks=activations.chunks)
        if isinstance(activations, da.Array):
            kwargs = {"block_size": block_size, "memory_budget": memory_budget, "name": name}
            result: np.ndarray = auroc_dask(activations, labels, **kwargs).compute()
            return result
        activations = np.asarray(activations)
    _check_activations(activations.shape, activations.dtype, name)
    _check_block_size(block_size, name)
    n_samples, n_neurons = activations.shape
    order, n_pos = _check_labels(labels, n_samples, name)
    if block_size is None:
        itemsize = activations.itemsize
        block_size = _block_size(n_samples, itemsize, memory_budget, 1, n_neurons)
    u2 = np.zeros(n_neurons, np.int64)
    bad = np.zeros(n_neurons, np.bool_)
    for c0 in range(0, n_neurons, block_size):
        block = activations[:, c0 : c0 + block_size]  # a view; copied only if not contiguous
        u2[c0 : c0 + block.shape[1]], bad[c0 : c0 + block.shape[1]] = _u2(block, order, n_pos)
    _raise_if_bad(bad, 0, name)
    return u2 / (2.0 * n_pos * (n_samples - n_pos))


def _auroc_task(
    block: np.ndarray, labels: np.ndarray, name: str, block_info: dict[Any, Any] | None = None
) -> np.ndarray:
    """One dask task: ``block [n_samples, cols]``, ``labels [n_samples, 1]`` -> auroc ``[cols]``."""
    offset = block_info[0]["array-location"][1][0] if block_info else 0
    order, n_pos = _check_labels(labels[:, 0], block.shape[0], name)
    u2, bad = _u2(block, order, n_pos)
    _raise_if_bad(bad, offset, name)
    result: np.ndarray = u2 / (2.0 * n_pos * (order.size - n_pos))
    return result


def auroc_dask(
    activations: da.Array,
    labels: Any,
    *,
    block_size: int | None = None,
    memory_budget: str | int = "1GB",
    name: str = "",
) -> da.Array:
    """Lazy exact AUROC of every neuron of a dask array, block of neurons by block of neurons.

    The input is rechunked so that each block holds all ``n_samples`` rows and ``block_size``
    neurons, and the kernel is mapped over the blocks. Memory per task follows from the block
    size, never from ``n_neurons``. Labels are checked now, before any work is scheduled.

    Parameters
    ----------
    activations : dask.array.Array of shape (n_samples, n_neurons)
        Pooled activations, float16, float32 or float64, e.g. ``da.from_zarr(store_array)``.
    labels : array-like of shape (n_samples,), int or bool
        1 = toxic (positive), 0 = non-toxic.
    block_size : int, optional
        Neurons per block. By default ``memory_budget / (n_samples * itemsize * 3)``, rounded
        down to a multiple of the input's column chunk width (or to an even split of one chunk),
        so reading a chunked store never splits a chunk between blocks.
    memory_budget : str or int, default "1GB"
        Memory one block may use.
    name : str, optional
        Prefix for error messages, e.g. ``"hook blocks.3.mlp.hook_pre"``.

    Returns
    -------
    dask.array.Array of shape (n_neurons,), float64
        One chunk per block of neurons.

    Raises
    ------
    InputError
        Bad shapes, dtypes, labels (checked eagerly), ``block_size`` or ``memory_budget``.
    NumericalError
        At compute time, for NaN or inf activations, naming the neuron.
    """
    import dask.array as da

    _check_activations(activations.shape, activations.dtype, name)
    _check_block_size(block_size, name)
    n_samples, n_neurons = activations.shape
    if math.isnan(n_samples) or math.isnan(n_neurons):
        raise InputError(
            f"{_prefix(name)}`activations` must have known chunk sizes; got {activations.shape}. "
            "Call `.compute_chunk_sizes()` first."
        )
    order, n_pos = _check_labels(labels, n_samples, name)
    if block_size is None:
        chunk_width = activations.chunks[1][0] if activations.chunks[1] else 1
        itemsize = activations.dtype.itemsize
        block_size = _block_size(n_samples, itemsize, memory_budget, chunk_width, n_neurons)
    y = np.zeros((n_samples, 1), np.uint8)
    y[order[:n_pos], 0] = 1
    y_dask = da.from_array(y, chunks=(n_samples, 1))
    blocks = activations.rechunk(
        {0: n_samples, 1: block_size},
        method="tasks",
        block_size_limit=n_samples * block_size * activations.dtype.itemsize,
    )
    return da.map_blocks(
        _auroc_task, blocks, y_dask, name, drop_axis=0, dtype=np.float64, meta=np.empty(0)
    )
