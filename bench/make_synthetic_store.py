"""Write a synthetic but valid aura-stream store without a model, for benchmarking ``score``.

The store is created with ``ActivationStore.create_or_open`` and a ``StoreSpec`` and filled with
``write_block`` one row block at a time, so its layout (zarr v3, one shard per row block and array,
~1 MiB inner chunks, crc32c, progress flags, ``aura_stream`` attributes) is exactly what ``extract``
writes. Memory is one row block of every array (float16), independent of ``--n-samples``.

Values: standard normal, float16. A fixed fraction of each hook's neurons (``--shift-frac``) is
shifted by ``+--shift`` on toxic rows, so those neurons discriminate (AUROC ~0.7); a fraction
(``--relu-frac``) of the neurons is ReLU'd (half their values are exact zeros: ties). Which neurons
are shifted/ReLU'd follows from ``--seed`` alone (:func:`neuron_roles`), so a benchmark can check
the scores without a side file. Labels: exactly half toxic, shuffled.

    python bench/make_synthetic_store.py --out /tmp/falcon40b-like.zarr --n-samples 1500 --hooks-like falcon40b

``falcon40b``: 60 layers x (hook_pre 32768 + hook_mlp_out 8192) = 2,457,600 neurons;
1500 samples -> 7.37 GB of float16.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from aura_stream.store import ActivationStore, StoreSpec

# name -> (layers, {hook kind: width}) in forward order; the default (paper) hook set of each family
PRESETS: dict[str, tuple[int, dict[str, int]]] = {
    "falcon40b": (60, {"mlp.hook_pre": 32768, "hook_mlp_out": 8192}),
    "llama1b": (16, {"mlp.hook_pre": 5632, "mlp.hook_pre_linear": 5632, "hook_mlp_out": 2048}),
    "gpt2": (12, {"mlp.hook_pre": 3072, "hook_mlp_out": 768}),
    "tiny": (2, {"mlp.hook_pre": 256, "hook_mlp_out": 64}),
}


def hook_widths(preset: str, layers: int | None = None) -> dict[str, int]:
    """Hook name -> width in forward order for a preset (optionally with fewer/more layers)."""
    n_layers, kinds = PRESETS[preset]
    return {f"blocks.{i}.{k}": w for i in range(layers or n_layers) for k, w in kinds.items()}


def neuron_roles(seed: int, hook_index: int, width: int, shift_frac: float, relu_frac: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(shifted, relu) sorted neuron indices of one hook; a pure function of its arguments."""
    rng = np.random.default_rng([seed, 1_000_003, hook_index])
    perm = rng.permutation(width)
    n_shift = max(1, round(shift_frac * width)) if shift_frac > 0 else 0
    relu = rng.random(width) < relu_frac
    return np.sort(perm[:n_shift]), np.flatnonzero(relu)


def make_labels(n: int, seed: int) -> np.ndarray:
    """Exactly ``n // 2`` toxic (1) labels, shuffled."""
    labels = np.zeros(n, np.int8)
    labels[: n // 2] = 1
    np.random.default_rng([seed, 7]).shuffle(labels)
    return labels


def block_values(seed: int, block: int, hook_index: int, labels: np.ndarray, width: int,
                 shift: float, shift_frac: float, relu_frac: float) -> np.ndarray:
    """float16 ``[rows, width]`` values of one (row block, hook)."""
    rng = np.random.default_rng([seed, block, hook_index])
    x = rng.standard_normal((labels.size, width), dtype=np.float32)
    shifted, relu = neuron_roles(seed, hook_index, width, shift_frac, relu_frac)
    if shifted.size:
        x[:, shifted] += np.float32(shift) * labels[:, None].astype(np.float32)
    if relu.size:
        x[:, relu] = np.maximum(x[:, relu], 0)
    return x.astype(np.float16)


def spec_for(n_samples: int, hooks: dict[str, int], *, row_block: int, seed: int, preset: str,
             shift: float, shift_frac: float, relu_frac: float) -> StoreSpec:
    """A StoreSpec with every identity key set (model "synthetic/<preset>")."""
    labels = make_labels(n_samples, seed)
    identity = {
        "model": f"synthetic/{preset}", "revision": None, "model_dtype": "float16", "tokenizer": "none",
        "max_length": 128, "poolings": ["max"], "hooks": hooks,
        "dataset_fingerprint": f"synthetic-seed{seed}-shift{shift}-{shift_frac}-relu{relu_frac}",
        "n_samples": n_samples, "store_dtype": "float16", "row_block": row_block, "n_shards": 1,
    }
    provenance = {
        "model_type": "synthetic",
        "selection": {"format": "synthetic", "seed": seed, "class_counts": {"0": int((labels == 0).sum()),
                                                                             "1": int((labels == 1).sum())}},
        "config": {"generator": "bench/make_synthetic_store.py", "preset": preset, "shift": shift,
                   "shift_frac": shift_frac, "relu_frac": relu_frac},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {},
    }
    return StoreSpec(n_samples=n_samples, row_block=row_block, hooks=hooks, poolings=["max"],
                     store_dtype="float16", identity=identity, provenance=provenance, labels=labels,
                     sample_ids=[f"syn{i}" for i in range(n_samples)])


def write_store(out: Path, n_samples: int, hooks: dict[str, int], *, row_block: int = 256, seed: int = 0,
                preset: str = "custom", shift: float = 0.75, shift_frac: float = 0.01, relu_frac: float = 0.5,
                overwrite: bool = False, progress: bool = True) -> ActivationStore:
    """Create (or resume) the store and write every row block that is not complete yet."""
    spec = spec_for(n_samples, hooks, row_block=row_block, seed=seed, preset=preset, shift=shift,
                    shift_frac=shift_frac, relu_frac=relu_frac)
    store = ActivationStore.create_or_open(out, spec, overwrite=overwrite)
    done = store.completed()
    start = time.perf_counter()
    for block in range(store.n_blocks):
        if done[block]:
            continue
        rows = store.block_rows(block)
        y = spec.labels[rows]
        data = {("max", name): block_values(seed, block, i, y, width, shift, shift_frac, relu_frac)
                for i, (name, width) in enumerate(hooks.items())}
        store.write_block(block, data)
        del data
        if progress:
            print(f"block {block + 1}/{store.n_blocks} written, {time.perf_counter() - start:.1f} s",
                  file=sys.stderr, flush=True)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="store directory (.zarr)")
    parser.add_argument("--n-samples", type=int, default=1500)
    parser.add_argument("--hooks-like", choices=sorted(PRESETS), default="falcon40b")
    parser.add_argument("--layers", type=int, default=None, help="override the preset's layer count")
    parser.add_argument("--row-block", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", type=float, default=0.75, help="added to shifted neurons on toxic rows")
    parser.add_argument("--shift-frac", type=float, default=0.01, help="fraction of neurons shifted")
    parser.add_argument("--relu-frac", type=float, default=0.5, help="fraction of neurons ReLU'd (ties)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    hooks = hook_widths(args.hooks_like, args.layers)
    n_bytes = args.n_samples * sum(hooks.values()) * 2
    parent = args.out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(parent).free
    print(f"{len(hooks)} arrays, {sum(hooks.values()):,} neurons, {args.n_samples} samples: "
          f"{n_bytes / 1e9:.2f} GB of float16; {free / 1e9:.1f} GB free on {parent}", file=sys.stderr)
    if free < 1.2 * n_bytes:
        sys.exit(f"not enough free disk on {parent}: need ~{1.2 * n_bytes / 1e9:.1f} GB, have {free / 1e9:.1f} GB")
    start = time.perf_counter()
    store = write_store(args.out, args.n_samples, hooks, row_block=args.row_block, seed=args.seed,
                        preset=args.hooks_like, shift=args.shift, shift_frac=args.shift_frac,
                        relu_frac=args.relu_frac, overwrite=args.overwrite)
    os.sync()
    secs = time.perf_counter() - start
    on_disk = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {store.path}: {store.n_blocks} row blocks, {on_disk / 1e9:.2f} GB on disk, "
          f"{secs:.1f} s ({n_bytes / secs / 1e6:.0f} MB/s incl. generation)", file=sys.stderr)


if __name__ == "__main__":
    main()
