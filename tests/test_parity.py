"""The deliberate differences from the original research code (``docs/parity.md``), as mechanisms.

The figures in ``docs/parity.md`` come from ``bench/bench_parity.py`` on the demo model; these tests
check on the tiny GPT-2 that each difference exists and goes the documented way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aura_stream.errors import InputError
from aura_stream.extract import extract
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import make_intervention
from aura_stream.model import attach, load_model
from aura_stream.pooling import pool
from aura_stream.score import score
from aura_stream.store import ActivationStore

HOOK = "blocks.1.mlp.hook_pre"


def test_original_left_padding_without_positions_moves_values_ours_does_not(
        gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    from aura_stream.data import load_labelled

    texts = load_labelled(jigsaw_csv).texts
    loaded = load_model(str(gpt2_dir))
    point = all_hook_points(loaded.model)[HOOK]
    seen: list[np.ndarray] = []
    enc = loaded.tokenizer(texts, padding=True, padding_side="left", pad_to_multiple_of=2, truncation=True,
                           max_length=128, return_tensors="pt")
    mask = enc["attention_mask"].bool()
    with torch.inference_mode(), attach(loaded.model, [point], lambda p, a: seen.append(pool(a, mask, "max").numpy())):
        loaded.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], use_cache=False)
    alone = []
    with torch.inference_mode(), attach(loaded.model, [point], lambda p, a: alone.append(a[0].amax(0).numpy())):
        for text in texts:
            loaded.model(**loaded.tokenizer(text, truncation=True, max_length=128, return_tensors="pt"))
    original, unpadded = seen[0], np.stack(alone)
    assert np.abs(original - unpadded).max() > 1e-2  # the original's values depend on padding
    extract(model=str(gpt2_dir), data=jigsaw_csv, out=tmp_path / "s.zarr", hooks=[HOOK], store_dtype="float32",
            batch_size=16, progress=False)
    ours = ActivationStore.open(tmp_path / "s.zarr").activations("max", HOOK)[:]
    np.testing.assert_allclose(ours, unpadded, rtol=1e-4, atol=1e-4)  # ours do not


def test_float16_store_moves_aurocs_little_float32_is_exact(gpt2_dir: Path, jigsaw_csv: Path,
                                                            tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    stores = {}
    for dtype in ("float16", "float32"):
        extract(model=str(gpt2_dir), data=jigsaw_csv, out=tmp_path / dtype, hooks=[HOOK], store_dtype=dtype,
                progress=False)
        stores[dtype] = score(tmp_path / dtype, progress=False).intervention.aurocs[HOOK]
    st = ActivationStore.open(tmp_path / "float32")
    values, labels = st.activations("max", HOOK)[:], st.labels
    oracle = np.array([roc_auc_score(labels, values[:, j]) for j in range(values.shape[1])])
    np.testing.assert_allclose(stores["float32"], oracle, atol=1e-12)
    assert np.abs(stores["float16"] - stores["float32"]).max() <= 0.05  # 16 samples: a tie moves 1/64


def test_det0_takes_exactly_k_where_a_strict_threshold_takes_fewer_on_ties() -> None:
    aurocs = {"blocks.0.mlp.hook_pre": np.array([0.9, 0.8, 0.8, 0.8, 0.6, 0.4])}
    masks = make_intervention(aurocs, method="det0", num_experts=3).alphas["blocks.0.mlp.hook_pre"] == 0
    assert masks.sum() == 3 and masks.tolist() == [True, True, True, False, False, False]  # earlier wins ties
    flat = aurocs["blocks.0.mlp.hook_pre"]
    assert (flat > np.sort(flat)[::-1][3]).sum() == 1  # the original's strict threshold: 1 of the 3


def test_num_experts_is_required_for_det0_and_damp(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    extract(model=str(gpt2_dir), data=jigsaw_csv, out=tmp_path / "s.zarr", hooks=[HOOK], progress=False)
    for method in ("det0", "damp"):
        with pytest.raises(InputError, match="`--num-experts` must be >= 1 for method"):
            score(tmp_path / "s.zarr", method=method, progress=False)
