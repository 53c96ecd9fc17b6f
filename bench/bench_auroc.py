"""Benchmark exact per-neuron AUROC: the reference approach against aura-stream's kernels.

One run, one data set (float16 pooled activations, labels ~50/50):

(a) the reference approach: ``sklearn.metrics.roc_auc_score`` neuron by neuron, over 10-column
    chunks, in a ``ProcessPoolExecutor`` with ``--workers`` processes;
(b) ``aura_stream.auroc.auroc`` on the same neurons (compile/cache-load time reported apart),
    and a NumPy-only sort baseline on a few of them;
(c) a float16 zarr v3 array on disk (zstd level 1): a plain dask read of it in column blocks
    against ``auroc_dask(...).compute()`` on it.

Not a test. Prints ratios and a markdown table for docs/performance.md. Example::

    python bench/bench_auroc.py --n-samples 20000 --n-neurons 2000 --zarr-neurons 8192
"""

from __future__ import annotations

import argparse
import atexit
import concurrent.futures
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
if "--cold-compile" in sys.argv:  # before numba is imported: an empty cache forces a compile
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_auroc_numba_")
    atexit.register(shutil.rmtree, os.environ["NUMBA_CACHE_DIR"], ignore_errors=True)
from aura_stream.auroc import _u2_half, auroc, auroc_dask


def make_activations(rng: np.random.Generator, labels: np.ndarray, n_neurons: int) -> np.ndarray:
    """Pooled-activation-like float16 ``[n_samples, n_neurons]``: a weak label effect on some
    neurons, every other neuron ReLU'd (many exact zeros)."""
    x = rng.standard_normal((labels.size, n_neurons), dtype=np.float32)
    x += (0.3 * rng.random(n_neurons, dtype=np.float32)) * labels[:, None].astype(np.float32)
    x[:, ::2] = np.maximum(x[:, ::2], 0)
    return x.astype(np.float16)


def sklearn_chunk(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The reference: ``roc_auc_score`` one neuron at a time."""
    from sklearn.metrics import roc_auc_score

    return np.array([roc_auc_score(labels, values[:, j]) for j in range(values.shape[1])])


def reference(values: np.ndarray, labels: np.ndarray, workers: int) -> tuple[np.ndarray, float]:
    """sklearn per neuron over 10-column chunks in a process pool; pool start-up not timed."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(sklearn_chunk, [values[:, :2]] * workers, [labels] * workers))  # warm up
        chunks = [values[:, j : j + 10] for j in range(0, values.shape[1], 10)]
        start = time.perf_counter()
        result = np.concatenate(list(pool.map(sklearn_chunk, chunks, [labels] * len(chunks))))
        return result, time.perf_counter() - start


def numpy_sort(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """NumPy-only baseline: sort each column, mid-ranks from searchsorted, rank-sum U."""
    positive = labels.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    out = np.empty(values.shape[1])
    for j in range(values.shape[1]):
        col = values[:, j].astype(np.float32)
        ordered = np.sort(col)
        ranks = np.searchsorted(ordered, col, "left") + np.searchsorted(ordered, col, "right")
        out[j] = (ranks[positive].sum() / 2 + n_pos / 2 - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return out


def best_of(repeats: int, fn: Any) -> float:
    """Smallest wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def write_zarr(
    path: Path,
    rng: np.random.Generator,
    labels: np.ndarray,
    n_neurons: int,
    chunks: tuple[int, int],
) -> Any:
    """A float16 zarr v3 array ``[n_samples, n_neurons]``, zstd level 1, written block by block."""
    import zarr

    array = zarr.create_array(
        store=str(path),
        shape=(labels.size, n_neurons),
        chunks=chunks,
        dtype="float16",
        compressors=zarr.codecs.ZstdCodec(level=1),
    )
    for c0 in range(0, n_neurons, chunks[1]):
        array[:, c0 : c0 + chunks[1]] = make_activations(
            rng, labels, min(chunks[1], n_neurons - c0)
        )
    return array


def time_read_and_auroc(
    path: Path, labels: np.ndarray, budget: str, block: int, repeats: int
) -> tuple[float, float]:
    """Best times of a plain dask read of ``path`` in column blocks and of ``auroc_dask`` on it,
    alternated so that both see the same machine load."""
    import dask.array as da

    def read() -> None:  # the same column blocks auroc_dask reads, nothing computed
        x = da.from_zarr(str(path)).rechunk({0: -1, 1: block}, method="tasks")
        x.map_blocks(lambda b: b[:1], dtype=x.dtype).compute()

    def score() -> None:
        auroc_dask(da.from_zarr(str(path)), labels, memory_budget=budget).compute()

    read()  # warm up: file cache, zarr and dask code paths
    t_read = t_auroc = float("inf")
    for _ in range(repeats):
        t_read = min(t_read, best_of(1, read))
        t_auroc = min(t_auroc, best_of(1, score))
    return t_read, t_auroc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, default=20_000)
    parser.add_argument("--n-neurons", type=int, default=2_000, help="neurons for (a) and (b)")
    parser.add_argument(
        "--numpy-neurons", type=int, default=200, help="neurons for the NumPy baseline"
    )
    parser.add_argument("--zarr-neurons", type=int, default=8_192, help="0 skips (c)")
    parser.add_argument(
        "--chunks", type=int, nargs=2, default=(2_048, 1_024), metavar=("ROWS", "COLS")
    )
    parser.add_argument(
        "--memory-budget", nargs="+", default=["1GB", "128MB"], help="auroc_dask budgets for (c)"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes for the reference")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cold-compile", action="store_true", help="time a real compile, not a cache load"
    )
    args = parser.parse_args()

    import numba

    rng = np.random.default_rng(args.seed)
    labels = (rng.random(args.n_samples) < 0.5).astype(np.int8)
    values = make_activations(rng, labels, args.n_neurons)
    load = os.getloadavg()[0]
    print(
        f"N={args.n_samples} float16, {args.n_neurons} neurons, {os.cpu_count()} CPUs, "
        f"numba threads {numba.get_num_threads()}, load average {load:.1f} at start"
    )

    # (a) the reference, before any numba thread exists (the pool forks)
    expected, t_ref = reference(values, labels, args.workers)
    ref_rate = args.n_neurons / t_ref
    print(
        f"(a) sklearn per neuron, {args.workers} processes: {t_ref:.2f} s, {ref_rate:.0f} neurons/s"
    )

    # (b) ours: the first call compiles the kernel or loads it from numba's cache
    start = time.perf_counter()
    auroc(values[:, :8], labels)
    t_first = time.perf_counter() - start
    hits = _u2_half.stats.cache_hits
    first = "cache load" if sum(hits.values()) else "compile"
    result = auroc(values, labels)
    t_ours = best_of(args.repeats, lambda: auroc(values, labels))
    ours_rate = args.n_neurons / t_ours
    error = float(np.abs(result - expected).max())
    print(
        f"(b) aura-stream auroc: {t_ours:.3f} s, {ours_rate:.0f} neurons/s, "
        f"{ours_rate / ref_rate:.1f}x the reference; first call ({first}) {t_first:.1f} s; "
        f"max |ours - sklearn| = {error:.1e}"
    )
    k = min(args.numpy_neurons, args.n_neurons)
    t_np = best_of(1, lambda: numpy_sort(values[:, :k], labels))
    np_rate = k / t_np
    print(f"    NumPy sort baseline: {np_rate:.0f} neurons/s ({np_rate / ref_rate:.1f}x)")

    rows = [
        (
            f"sklearn `roc_auc_score` per neuron, {args.workers} processes",
            f"{ref_rate:,.0f} neurons/s",
            "1.0x",
        ),
        (
            "NumPy sort + searchsorted, 1 thread",
            f"{np_rate:,.0f} neurons/s",
            f"{np_rate / ref_rate:.1f}x",
        ),
        (
            f"`auroc()` numba, {numba.get_num_threads()} threads",
            f"{ours_rate:,.0f} neurons/s",
            f"{ours_rate / ref_rate:.1f}x",
        ),
        (f"`auroc()` first call ({first})", f"{t_first:.1f} s", ""),
    ]

    # (c) out of core: zarr v3 on disk, read vs AUROC
    if args.zarr_neurons:
        import dask.array as da

        with tempfile.TemporaryDirectory(prefix="bench_auroc_") as tmp:
            path = Path(tmp) / "acts.zarr"
            start = time.perf_counter()
            write_zarr(path, rng, labels, args.zarr_neurons, tuple(args.chunks))
            t_write = time.perf_counter() - start
            n_bytes = args.n_samples * args.zarr_neurons * 2
            on_disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            for budget in args.memory_budget:
                block = auroc_dask(da.from_zarr(str(path)), labels, memory_budget=budget).chunks
                t_read, t_auroc = time_read_and_auroc(
                    path, labels, budget, block[0][0], args.repeats
                )
                ratio = t_auroc / t_read
                mb_s = n_bytes / t_read / 1e6
                print(
                    f"(c) zarr {args.n_samples}x{args.zarr_neurons} float16, chunks "
                    f"{tuple(args.chunks)}, zstd-1 ({n_bytes / on_disk:.2f}x), written in "
                    f"{t_write:.1f} s; budget {budget}: blocks of {block[0][0]} neurons; read "
                    f"{t_read:.2f} s ({mb_s:.0f} MB/s); auroc_dask {t_auroc:.2f} s = {ratio:.2f}x"
                )
                rows += [
                    (
                        f"zarr read {args.n_samples}x{args.zarr_neurons} float16 zstd-1, "
                        f"column blocks of {block[0][0]}",
                        f"{t_read:.2f} s ({mb_s:,.0f} MB/s)",
                        "",
                    ),
                    (
                        f"`auroc_dask(..., memory_budget={budget!r}).compute()` on it",
                        f"{t_auroc:.2f} s",
                        f"{ratio:.2f}x read",
                    ),
                ]

    print(
        f"\nN = {args.n_samples:,} samples, float16; {os.cpu_count()} CPUs; load average "
        f"{load:.1f} at start, {os.getloadavg()[0]:.1f} at end\n"
    )
    print("| measurement | result | ratio |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
