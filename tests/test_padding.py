"""Padding: pooled values, generations and perplexity do not depend on the tokenizer's padding side.

The tokenizer of the model under test is configured with ``padding_side: left`` in its
``tokenizer_config.json`` (``save_pretrained`` in transformers 5 does not write it, so the file is
edited by hand and the test checks that the setting took). Oracles: each sentence alone, unpadded,
through plain ``transformers`` with torch hooks.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from aura_stream.data import load_labelled
from aura_stream.evaluation.pipeline import text_nll
from aura_stream.extract import extract
from aura_stream.generate import generate
from aura_stream.hookpoints import all_hook_points
from aura_stream.model import PooledCapture, load_model
from aura_stream.store import ActivationStore
from tests.test_extract import oracle_pooled

HOOKS = ["blocks.0.mlp.hook_pre", "blocks.1.hook_mlp_out", "blocks.2.mlp.hook_post"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread


def left_padded_copy(model_dir: Path, dest: Path) -> Path:
    """A copy of ``model_dir`` whose tokenizer pads on the left when loaded."""
    shutil.copytree(model_dir, dest)
    config_path = dest / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["padding_side"] = "left"
    config_path.write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(dest).padding_side == "left"  # the setting is real
    return dest


@pytest.fixture(scope="module")
def left_dirs(tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("left")
    return {kind: left_padded_copy(tiny_model_dirs[kind], root / kind) for kind in ("gpt2", "llama")}


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_extract_with_left_padding_tokenizer_equals_unpadded(kind: str, left_dirs: dict[str, Path],
                                                             jigsaw_csv: Path, tmp_path: Path) -> None:
    model_dir = left_dirs[kind]
    out = tmp_path / "s.zarr"
    texts = load_labelled(jigsaw_csv).texts
    # batch size 5 and row blocks of 6: several length buckets, rows of unequal length in every batch
    extract(model=str(model_dir), data=jigsaw_csv, out=out, hooks=HOOKS, pooling=["max", "mean", "last"],
            batch_size=5, row_block=6, store_dtype="float32", progress=False)
    store = ActivationStore.open(out)
    oracle = oracle_pooled(model_dir, texts, HOOKS)
    for (op, hook), want in oracle.items():
        np.testing.assert_allclose(store.activations(op, hook)[:], want, rtol=1e-4, atol=1e-4,
                                   err_msg=f"{kind} {hook} {op}")


def test_pooled_capture_left_padded_batch_equals_single(left_dirs: dict[str, Path]) -> None:
    loaded = load_model(str(left_dirs["gpt2"]))
    points = all_hook_points(loaded.model)
    capture = PooledCapture(loaded.model, [points[h] for h in HOOKS], ["max", "last"])
    texts = ["a short one", "a much longer sentence with many more tokens than the first one has"]
    enc = loaded.tokenizer(texts, padding=True, return_tensors="pt")
    assert int(enc["attention_mask"][0, 0]) == 0  # really left-padded
    batched = capture.run(enc["input_ids"], enc["attention_mask"])
    for row, text in enumerate(texts):
        one = loaded.tokenizer([text], return_tensors="pt")
        single = capture.run(one["input_ids"], one["attention_mask"])
        for key, values in single.items():
            np.testing.assert_allclose(batched[key][row], values[0], rtol=1e-4, atol=1e-4, err_msg=str(key))


def test_generate_with_left_padding_is_batch_independent(left_dirs: dict[str, Path]) -> None:
    """transformers' generate derives positions from the mask: checked, not assumed."""
    loaded = load_model(str(left_dirs["gpt2"]))
    prompts = ["Hi", "You are such a horrible and", "The weather in Paris today is very"]
    opts = {"do_sample": False, "max_new_tokens": 6, "progress": False}
    batched = generate(loaded, prompts, batch_size=3, **opts)  # type: ignore[arg-type]
    single = generate(loaded, prompts, batch_size=1, **opts)  # type: ignore[arg-type]
    assert [g.continuation for g in batched] == [g.continuation for g in single]
    # and each equals plain transformers greedy decoding of the prompt alone
    model = AutoModelForCausalLM.from_pretrained(left_dirs["gpt2"]).eval()
    for g, prompt in zip(batched, prompts, strict=True):
        ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                                 pad_token_id=0)
        new = out[0, ids.shape[1]:].tolist()
        cut = next((i for i, t in enumerate(new) if t == 0), len(new))
        assert g.continuation == loaded.tokenizer.decode(new[:cut], skip_special_tokens=True)


def test_perplexity_with_left_padding_tokenizer_equals_unpadded(left_dirs: dict[str, Path]) -> None:
    loaded = load_model(str(left_dirs["gpt2"]))
    texts = ["A module is a file.", "The interpreter reads a statement and executes it, one at a time."]
    nll, n_tokens = text_nll(loaded, texts, batch_size=2)
    for i, text in enumerate(texts):
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            loss = float(loaded.model(ids, labels=ids).loss)
        assert n_tokens[i] == ids.shape[1] - 1
        assert nll[i] / n_tokens[i] == pytest.approx(loss, rel=1e-5)
    assert math.isfinite(float(nll.sum()))
