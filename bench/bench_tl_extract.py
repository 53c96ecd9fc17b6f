"""Benchmark ``extract`` through the TransformerLens backend against the default Hugging Face backend.

Same model, same data, same options, one process, repeats interleaved; prints throughput of each
backend and the ratio TL / HF (no wall-clock thresholds), the extra cost of booting the bridge, and
the largest difference between the two stores (float32), as a check that both measured the same thing.

    python bench/bench_tl_extract.py --samples 64 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import gpt2_small, synthetic_csv, table


def run(backend: str, model_dir: Path, data: Path, out: Path, args: argparse.Namespace) -> float:
    """Seconds of extract's forward passes and writes (model loading and bridge boot excluded)."""
    from aura_stream.extract import extract

    result = extract(model=str(model_dir), data=data, out=out, batch_size=args.batch_size, max_length=args.max_length,
                     store_dtype="float32", overwrite=True, progress=False, backend=backend)
    return result.seconds


def load_seconds(model_dir: Path) -> tuple[float, float]:
    """Seconds to load the model (HF backend) and to load it and boot the bridge (TL backend)."""
    from aura_stream.backends.tl import load_bridge
    from aura_stream.model import load_model

    start = time.perf_counter()
    load_model(str(model_dir))
    hf = time.perf_counter() - start
    start = time.perf_counter()
    load_bridge(str(model_dir))
    return hf, time.perf_counter() - start


def max_relative_difference(a: Path, b: Path) -> float:
    from aura_stream.store import ActivationStore

    sa, sb = ActivationStore.open(a), ActivationStore.open(b)
    worst = 0.0
    for pooling, hook, arr in sa.iter_arrays():
        x, y = np.asarray(arr[:]), np.asarray(sb.activations(pooling, hook)[:])
        worst = max(worst, float(np.abs(x - y).max() / max(np.abs(x).max(), 1e-30)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4, help="blocks of the GPT-2-small-wide (768) model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tl-extract-"))
    model_dir = gpt2_small(work / "gpt2", n_layer=args.layers)
    data = synthetic_csv(work / "data.csv", args.samples)
    warm = synthetic_csv(work / "warm.csv", 8)
    for backend in ("hf", "transformer-lens"):  # imports, allocator and caches warm for both
        run(backend, model_dir, warm, work / f"warm-{backend}.zarr", args)
    seconds: dict[str, list[float]] = {"hf": [], "transformer-lens": []}
    for r in range(args.repeats):
        order = ("hf", "transformer-lens") if r % 2 == 0 else ("transformer-lens", "hf")
        for backend in order:
            seconds[backend].append(run(backend, model_dir, data, work / f"{backend}.zarr", args))
    hf_load, tl_load = load_seconds(model_dir)
    hf_s, tl_s = statistics.median(seconds["hf"]), statistics.median(seconds["transformer-lens"])
    rows = [
        {"backend": "hf", "samples/s (median)": f"{args.samples / hf_s:.1f}", "load s": f"{hf_load:.2f}",
         "runs s": ", ".join(f"{s:.1f}" for s in seconds["hf"])},
        {"backend": "transformer-lens", "samples/s (median)": f"{args.samples / tl_s:.1f}",
         "load s": f"{tl_load:.2f}", "runs s": ", ".join(f"{s:.1f}" for s in seconds["transformer-lens"])},
    ]
    print(f"GPT-2-small width, {args.layers} blocks, {args.samples} samples x {args.max_length} tokens, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads, default hooks, max pooling, float32 store")
    print(table(rows))
    print(f"throughput ratio TL / HF: {hf_s / tl_s:.2f} (TL takes {tl_s / hf_s:.2f}x the time)")
    print(f"max |TL - HF| / max |HF| over every stored array: "
          f"{max_relative_difference(work / 'hf.zarr', work / 'transformer-lens.zarr'):.1e}")


if __name__ == "__main__":
    main()
