"""Benchmark transport scoring (linear-act, and optionally mean-act/gaussian-act) against AUROC scoring.

Both run the way ``score`` runs them, on the same synthetic store (``bench/make_synthetic_store.py``,
written by the real store code): ``compute_aurocs`` and ``compute_transport`` build the same dask
graph (all samples of a block of neurons per task, the same memory budget, local threads) and
differ only in the kernel. The store is read once first so that both run from the page cache;
the phases alternate (AUROC, linear-act, AUROC, ...) and the median of ``--repeats`` runs is
reported, with the ratio linear-act / AUROC (target <= 1.2). Kernels are compiled before timing.
``--in-memory`` also times the kernels alone on the same values (each hook read into memory once:
``auroc_block`` vs ``transport_block``, alternating), which is the ratio a store on fast storage sees.
Correctness: omega, beta, lo, hi of a sample of neurons against a NumPy oracle (sort both classes,
Hazen quantiles).

    python bench/bench_transport.py --store /tmp/aura-bench/gpt2.zarr --n-samples 1500 --hooks-like gpt2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
sys.path.insert(0, str(ROOT / "bench"))


def oracle(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Linear-AcT of one neuron in plain NumPy (float64)."""
    xs = np.sort(x.astype(np.float64))
    ys = np.sort(y.astype(np.float64))
    q = np.quantile(ys, (np.arange(xs.size) + 0.5) / xs.size, method="hazen")
    if xs[0] == xs[-1]:
        return 1.0, float(q.mean() - xs.mean()), xs[0], xs[-1]
    dx = xs - xs.mean()
    omega = float((dx * (q - q.mean())).sum() / (dx * dx).sum())
    return omega, float(q.mean() - omega * xs.mean()), xs[0], xs[-1]


def print_ratios(times: dict[str, list[float]], suffix: str = "") -> None:
    """One line per phase: median, every run, and the ratio to the first phase's median."""
    base = statistics.median(next(iter(times.values())))
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:14s} {med:9.2f} {' '.join(f'{t:.2f}' for t in ts):>24s} {med / base:6.2f}x{suffix}")


def main() -> None:
    from make_synthetic_store import hook_widths, write_store

    from aura_stream.score import compute_aurocs, compute_transport
    from aura_stream.store import ActivationStore
    from aura_stream.transport import transport_block

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--n-samples", type=int, default=1500)
    parser.add_argument("--hooks-like", default="gpt2")
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-budget", default="2GB")
    parser.add_argument("--methods", default="linear-act", help="comma-separated transport methods to time")
    parser.add_argument("--in-memory", action="store_true", help="also time the kernels alone on the same values")
    args = parser.parse_args()

    hooks = hook_widths(args.hooks_like, args.layers)
    store = write_store(args.store, args.n_samples, hooks, preset=args.hooks_like, progress=False)
    names = list(store.hooks)
    n_values = store.n_samples * sum(store.hooks.values())
    print(f"store {store.path}: {store.n_samples} samples x {sum(store.hooks.values()):,} neurons "
          f"({n_values * 2 / 1e6:.0f} MB float16), {len(names)} hooks", flush=True)
    warm = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float16)
    labels = np.arange(64) % 2
    from aura_stream.auroc import auroc_block

    auroc_block(warm, labels)
    transport_block(warm, labels)  # compile / load cached kernels before timing
    for h in names:  # page cache
        store.activations("max", h)[:]

    times: dict[str, list[float]] = {"auroc": []}
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results = {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        compute_aurocs(store, "max", names, memory_budget=args.memory_budget, progress=False)
        times["auroc"].append(time.perf_counter() - start)
        for method in methods:
            start = time.perf_counter()
            results[method] = compute_transport(store, "max", names, method=method,
                                                memory_budget=args.memory_budget, progress=False)
            times.setdefault(method, []).append(time.perf_counter() - start)
    print(f"{'phase':14s} {'median s':>9s} {'runs':>24s} {'ratio':>7s}")
    print_ratios(times)

    if args.in_memory:  # the kernels alone, on the same values, read into memory once
        blocks = [np.ascontiguousarray(store.activations("max", h)[:]) for h in names]
        y = np.asarray(store.labels)
        kernel: dict[str, list[float]] = {"auroc_block": [], "transport_block": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            for b in blocks:
                auroc_block(b, y)
            kernel["auroc_block"].append(time.perf_counter() - start)
            start = time.perf_counter()
            for b in blocks:
                transport_block(b, y)
            kernel["transport_block"].append(time.perf_counter() - start)
        print_ratios(kernel, "  (in memory)")
        del blocks

    if "linear-act" in results:  # correctness on a sample of neurons
        rng = np.random.default_rng(1)
        st = ActivationStore.open(store.path)
        y = st.labels.astype(bool)
        worst = 0.0
        for h in rng.choice(names, size=min(4, len(names)), replace=False):
            values = np.asarray(st.activations("max", str(h))[:])
            for j in rng.choice(values.shape[1], size=16, replace=False):
                want = np.array(oracle(values[y, j], values[~y, j]), dtype=np.float64)
                got = results["linear-act"][str(h)][:, j]
                worst = max(worst, float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))))
        print(f"linear-act vs NumPy oracle on 64 neurons: max relative difference {worst:.2e}")


if __name__ == "__main__":
    main()
