"""Benchmark ``extract`` against a bare forward pass of the same model over the same batches.

Prints ratios (not wall-clock thresholds): throughput of extract / bare forward; peak RSS of
extract at 1x and 8x the samples; files per store and bytes per stored value.

    python bench/bench_extract.py --samples 64 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import gpt2_small, synthetic_csv, table


def bare_forward(model_dir: Path, data: Path, batch_size: int, max_length: int) -> float:
    """Seconds for plain ``model(...)`` over the batches extract would run (no hooks, no store)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aura_stream.data import load_labelled

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = load_labelled(data).texts
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
            model(**enc, use_cache=False)
    return time.perf_counter() - start


def ours(model_dir: Path, data: Path, out: Path, batch_size: int, max_length: int) -> float:
    """Seconds of extract's forward passes and writes (model loading excluded, as for the bare pass)."""
    from aura_stream.extract import extract

    result = extract(model=str(model_dir), data=data, out=out, batch_size=batch_size, max_length=max_length,
                     overwrite=True, progress=False)
    return result.seconds


def peak_rss_mb(model_dir: Path, data: Path, out: Path) -> float:
    """Peak RSS (MB) of a separate `aura-stream extract` process."""
    code = (
        "import resource,sys; from aura_stream.extract import extract; "
        f"extract(model={str(model_dir)!r}, data={str(data)!r}, out={str(out)!r}, overwrite=True, progress=False); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(res.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rss-samples", type=int, default=256, help="1x for the RSS check (8x is also run)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    model_dir = gpt2_small(work / "gpt2-small")
    data = synthetic_csv(work / "data.csv", args.samples)
    warm = synthetic_csv(work / "warm.csv", 8)
    ours(model_dir, warm, work / "warm.zarr", args.batch_size, args.max_length)  # warm caches and imports
    rows = []
    for r in range(args.repeats):  # interleaved to spread machine noise over both
        t_bare = bare_forward(model_dir, data, args.batch_size, args.max_length)
        t_ours = ours(model_dir, data, work / f"s{r}.zarr", args.batch_size, args.max_length)
        rows.append({"repeat": r, "bare forward s": f"{t_bare:.2f}", "extract s": f"{t_ours:.2f}",
                     "extract/bare throughput": f"{t_bare / t_ours:.3f}"})
    ratios = sorted(float(r["extract/bare throughput"]) for r in rows)
    store = work / "s0.zarr"
    files = [f for f in store.rglob("*") if f.is_file()]
    values = args.samples * 12 * (3072 + 768)
    data_bytes = sum(f.stat().st_size for f in files if "/activations/" in str(f))
    # RSS growth is about the pipeline, not the model: a 2-layer model of the same width keeps it quick
    rss_model = gpt2_small(work / "gpt2-2layer", n_layer=2)
    small = synthetic_csv(work / "x1.csv", args.rss_samples)
    large = synthetic_csv(work / "x8.csv", 8 * args.rss_samples)
    rss1, rss8 = peak_rss_mb(rss_model, small, work / "r1.zarr"), peak_rss_mb(rss_model, large, work / "r8.zarr")
    print(table(rows))
    summary = {
        "median extract/bare throughput": round(ratios[len(ratios) // 2], 3),
        "samples": args.samples, "batch x tokens": f"{args.batch_size} x {args.max_length}",
        "files per store": len(files), "bytes per stored value": round(data_bytes / values, 3),
        f"peak RSS MB at {args.rss_samples} samples": round(rss1),
        f"peak RSS MB at {8 * args.rss_samples} samples": round(rss8),
        "RSS 8x / 1x": round(rss8 / rss1, 3),
    }
    print(table([summary]))
    print(json.dumps(summary))
    _ = resource  # keeps the import visible for the subprocess code above


if __name__ == "__main__":
    main()
