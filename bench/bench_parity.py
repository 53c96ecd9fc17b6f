"""Measured differences from the original research code (apple/ml-aura), for ``docs/parity.md``.

On the demo model and demo data shipped with aura-stream (offline), this script measures:

1. padding: pooled values as the original computes them (left padding to a multiple of 2, no
   position ids) against ours (independent of padding), and how many AurA selections change;
2. the float16 store: AUROCs from a float16 store against a float32 store;
3. ties: Det0/Damp take exactly k neurons; a strict threshold at the (k+1)-th AUROC, as the
   original applies it, takes fewer when AUROCs tie there;
4. without k, the original takes every neuron with AUROC > 0.5.

Usage::

    python bench/bench_parity.py --out bench/results/parity.json [--per-class 200]

Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aura_stream.data import load_labelled
from aura_stream.extract import extract
from aura_stream.hookpoints import all_hook_points, default_patterns, match_hooks
from aura_stream.interventions import aura_alpha, top_k
from aura_stream.model import attach, demo_model_dir, load_model
from aura_stream.pooling import pool
from aura_stream.score import score
from aura_stream.store import ActivationStore


def original_style_pooled(model_dir: Path, texts: list[str], hooks: list[str], *, batch_size: int,
                          max_length: int) -> dict[str, np.ndarray]:
    """Max-pooled activations with left padding to a multiple of 2 and no position ids."""
    loaded = load_model(str(model_dir))
    points = all_hook_points(loaded.model)
    chosen = [points[h] for h in hooks]
    out: dict[str, list[np.ndarray]] = {h: [] for h in hooks}
    mask_box: list[torch.Tensor] = []

    def hook(point: Any, act: torch.Tensor) -> None:
        out[point.name].append(pool(act, mask_box[0], "max").numpy())

    with torch.inference_mode(), attach(loaded.model, chosen, hook):
        for start in range(0, len(texts), batch_size):
            enc = loaded.tokenizer(texts[start:start + batch_size], padding=True, padding_side="left",
                                   pad_to_multiple_of=2, truncation=True, max_length=max_length,
                                   return_tensors="pt")
            mask_box[:] = [enc["attention_mask"].bool()]
            loaded.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], use_cache=False)
    return {h: np.concatenate(v) for h, v in out.items()}


def auroc_columns(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from sklearn.metrics import roc_auc_score

    return np.array([roc_auc_score(labels, values[:, j]) for j in range(values.shape[1])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--per-class", type=int, default=None, help="cap sentences per class (default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model_dir = demo_model_dir()
    data = load_labelled(None, per_class=args.per_class)
    max_length = 128
    result: dict[str, Any] = {"model": "aura-stream demo model", "n_samples": len(data),
                              "n_toxic": int(data.labels.sum())}
    with tempfile.TemporaryDirectory() as tmp:
        f32, f16 = Path(tmp) / "f32.zarr", Path(tmp) / "f16.zarr"
        common = {"model": None, "data": None, "per_class": args.per_class, "batch_size": args.batch_size,
                  "max_length": max_length, "progress": False}
        extract(out=f32, store_dtype="float32", **common)  # type: ignore[arg-type]
        extract(out=f16, store_dtype="float16", **common)  # type: ignore[arg-type]
        a32 = score(f32, progress=False).intervention.aurocs
        a16 = score(f16, progress=False).intervention.aurocs
        store = ActivationStore.open(f32)
        hooks = list(store.hooks)
        ours = {h: np.asarray(store.activations("max", h)[:]) for h in hooks}
        labels = store.labels

    # 1. padding
    loaded = load_model(str(model_dir))
    assert hooks == match_hooks(default_patterns(all_hook_points(loaded.model)), all_hook_points(loaded.model))
    theirs = original_style_pooled(model_dir, data.texts, hooks, batch_size=args.batch_size, max_length=max_length)
    diff = max(float(np.abs(theirs[h] - ours[h]).max()) for h in hooks)
    their_alpha = {h: aura_alpha(auroc_columns(theirs[h], labels)) for h in hooks}
    our_alpha = {h: aura_alpha(a32[h]) for h in hooks}
    n_neurons = sum(v.shape[0] for v in our_alpha.values())
    flips = sum(int(((their_alpha[h] < 1) != (our_alpha[h] < 1)).sum()) for h in hooks)
    result["padding"] = {"max_abs_pooled_diff": diff, "aura_selection_changes": flips, "n_neurons": n_neurons,
                         "aura_selection_changes_fraction": flips / n_neurons}
    # 2. float16 store
    result["float16_store"] = {"max_abs_auroc_diff": max(float(np.abs(a16[h] - a32[h]).max()) for h in hooks),
                               "aura_selection_changes": sum(int(((aura_alpha(a16[h]) < 1)
                                                                  != (aura_alpha(a32[h]) < 1)).sum())
                                                             for h in hooks)}
    # 3. ties at the k-th AUROC (float16 store: the default)
    flat = np.concatenate([a16[h] for h in hooks])
    ties = {}
    for k in (10, 50, 100, 500, 1000):
        if k >= flat.size:
            continue
        ours_k = sum(int(m.sum()) for m in top_k(a16, k).values())
        threshold = np.sort(flat)[::-1][k]  # the (k+1)-th largest
        ties[str(k)] = {"ours": ours_k, "strict_threshold": int((flat > threshold).sum())}
    result["det0_ties"] = ties
    # 4. no k
    result["above_half"] = {"n_above_0.5": int((flat > 0.5).sum()), "n_neurons": int(flat.size)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
