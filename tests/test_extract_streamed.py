"""``extract --stream-weights``: layer-major extraction from safetensors shards equals the in-memory extract."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aura_stream.backends.streamed import MicroBatch, PassBlock, StreamedModel, run_pass
from aura_stream.checkpoint import Checkpoint
from aura_stream.errors import AuraStreamError, InputError, ModelLoadError
from aura_stream.extract import extract
from aura_stream.hookpoints import all_hook_points
from aura_stream.model import PooledCapture, load_model
from aura_stream.store import ActivationStore
from tests.conftest import VOCAB, build_tokenizer, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["hello world, this is a longer sentence that goes on for a while", "you are a stupid idiot", "short",
         "another sentence with more words in it here", "thank you for the lovely dinner", "go away",
         "what a wonderful day it is today", "I hate you so much"]


def _extra_config(kind: str) -> Any:
    import transformers as T

    common: dict[str, Any] = {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    if kind == "opt":
        return T.OPTConfig(num_hidden_layers=3, hidden_size=32, ffn_dim=48, num_attention_heads=4,
                           word_embed_proj_dim=32, max_position_embeddings=128, **common)
    if kind == "qwen2":  # sliding window on some layers: per-layer masks come from the model's own forward
        return T.Qwen2Config(num_hidden_layers=3, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, use_sliding_window=True,
                             sliding_window=4, max_window_layers=1, **common)
    if kind == "gemma":
        return T.GemmaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                             num_key_value_heads=1, head_dim=8, max_position_embeddings=128, **common)
    return tiny_config(kind)


ARCHS = ("gpt2", "llama", "falcon", "falcon7b", "neox", "opt", "qwen2", "gemma")


@pytest.fixture(scope="module")
def sharded_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny models of every architecture saved in several safetensors shards with an index."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("sharded")
    build_tokenizer(root / "tok")
    out = {}
    for i, kind in enumerate(ARCHS):
        torch.manual_seed(2000 + i)
        model = AutoModelForCausalLM.from_config(_extra_config(kind)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(5.0) if p.dim() > 1 else None
        path = root / kind
        model.save_pretrained(path, max_shard_size="30KB")
        for f in (root / "tok").iterdir():
            (path / f.name).write_bytes(f.read_bytes())
        out[kind] = path
    return out


@pytest.fixture(scope="module")
def texts_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "texts.csv"
    rows = ["text,label"] + [f'"{t}",{i % 2}' for i, t in enumerate(TEXTS * 3)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _arrays(path: Path) -> dict[tuple[str, str], np.ndarray]:
    store = ActivationStore.open(path)
    assert store.completed().all()
    return {(p, h): np.asarray(a[:]) for p, h, a in store.iter_arrays()}


KW: dict[str, Any] = {"text_column": "text", "label_column": "label", "batch_size": 3, "row_block": 5,
                      "pooling": ("max", "mean", "last"), "progress": False, "hooks": ["blocks.*.*"]}


@pytest.mark.parametrize("kind", ARCHS)
def test_streamed_store_equals_in_memory(kind: str, sharded_dirs: dict[str, Path], texts_csv: Path,
                                         tmp_path: Path) -> None:
    model = str(sharded_dirs[kind])
    assert len(list(Path(model).glob("*.safetensors"))) > 1  # really sharded
    ref = extract(model=model, data=texts_csv, out=tmp_path / "mem.zarr", **KW)
    got = extract(model=model, data=texts_csv, out=tmp_path / "st.zarr", stream_weights=True, **KW)
    assert got.blocks_written == ref.blocks_written == 5
    a, b = _arrays(tmp_path / "mem.zarr"), _arrays(tmp_path / "st.zarr")
    assert a.keys() == b.keys() and len(a) == 3 * len(ref.hooks)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))
    mem, st = ActivationStore.open(tmp_path / "mem.zarr"), ActivationStore.open(tmp_path / "st.zarr")
    assert mem.attrs["identity"] == st.attrs["identity"]  # same weights fingerprint: either mode resumes the other
    assert st.attrs["backend"] == "streamed"


def test_streamed_resumes_an_in_memory_store(sharded_dirs: dict[str, Path], texts_csv: Path, tmp_path: Path) -> None:
    model = str(sharded_dirs["llama"])
    extract(model=model, data=texts_csv, out=tmp_path / "full.zarr", **KW)
    part = extract(model=model, data=texts_csv, out=tmp_path / "mix.zarr", shard=(0, 2), **KW)
    assert part.blocks_written == 3
    # the same store, other shard index, different n_shards would be another run: reuse 0/2 and 1/2
    rest = extract(model=model, data=texts_csv, out=tmp_path / "mix.zarr", shard=(1, 2), stream_weights=True, **KW)
    assert (rest.blocks_written, rest.blocks_skipped) == (2, 0)
    a, b = _arrays(tmp_path / "full.zarr"), _arrays(tmp_path / "mix.zarr")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_store_started_before_v2_fingerprints(sharded_dirs: dict[str, Path], texts_csv: Path,
                                               tmp_path: Path) -> None:
    import zarr

    from aura_stream.identity import weights_fingerprint

    model = str(sharded_dirs["gpt2"])
    out = tmp_path / "old.zarr"
    extract(model=model, data=texts_csv, out=out, shard=(0, 2), **KW)
    group = zarr.open_group(str(out), mode="r+")
    attrs = dict(group.attrs["aura_stream"])
    assert attrs["identity"]["weights"].startswith("v2:")
    attrs["identity"] = {**attrs["identity"], "weights": weights_fingerprint(load_model(model).model)}  # < v2
    group.attrs["aura_stream"] = attrs
    with pytest.raises(InputError, match="resume it without --stream-weights"):
        extract(model=model, data=texts_csv, out=out, shard=(1, 2), stream_weights=True, **KW)
    rest = extract(model=model, data=texts_csv, out=out, shard=(1, 2), **KW)  # in memory: the old fingerprint
    assert rest.blocks_written == 2


def test_fingerprint_reads_a_few_pages_per_tensor(sharded_dirs: dict[str, Path]) -> None:
    from aura_stream.identity import RUN_LENGTH, RUNS_PER_TENSOR, weights_fingerprint_v2

    sm = StreamedModel(sharded_dirs["llama"])
    assert sm.weights_fingerprint() == weights_fingerprint_v2(load_model(str(sharded_dirs["llama"])).model)
    big = max(sm.checkpoint.entries.values(), key=lambda e: e.nbytes)
    assert big.nbytes > 4 * RUNS_PER_TENSOR * RUN_LENGTH  # the sample is a small part of it


def test_spilled_hidden_states_give_the_same_values(sharded_dirs: dict[str, Path], tmp_path: Path) -> None:
    model = sharded_dirs["gpt2"]
    loaded = load_model(str(model))
    points = list(all_hook_points(loaded.model).values())
    enc = loaded.tokenizer(TEXTS, padding=True, padding_side="right", return_tensors="pt")
    ref = PooledCapture(loaded.model, points, ["max"]).run(enc["input_ids"], enc["attention_mask"])
    batches = [MicroBatch(np.arange(i, i + 2), enc["input_ids"][i:i + 2], enc["attention_mask"][i:i + 2])
               for i in range(0, len(TEXTS), 2)]
    for budget in (0, 10**9, 2 * 32 * enc["input_ids"].shape[1] * 4):  # all spilled, none, some
        got: dict[tuple[str, str], np.ndarray] = {}
        stats = run_pass(StreamedModel(model), points, ["max"], [PassBlock(0, len(TEXTS), batches)],
                         write=lambda _b, d, got=got: got.update(d), hidden_budget=budget,
                         scratch_dir=tmp_path, progress=False)
        assert stats.hidden_spilled == 0 if budget == 10**9 else stats.hidden_spilled > 0
        for key, values in ref.items():
            np.testing.assert_array_equal(values, got[key])
    assert not list(tmp_path.iterdir())  # the scratch file is unlinked at once


def test_weights_are_read_once_per_pass(sharded_dirs: dict[str, Path]) -> None:
    sm = StreamedModel(sharded_dirs["llama"])
    points = list(sm.hook_points().values())
    enc = sm.tokenizer(TEXTS, padding=True, return_tensors="pt")
    batches = [MicroBatch(np.arange(i, i + 1), enc["input_ids"][i:i + 1], enc["attention_mask"][i:i + 1])
               for i in range(len(TEXTS))]
    stats = run_pass(sm, points, ["max"], [PassBlock(0, len(TEXTS), batches)], write=lambda *_: None,
                     hidden_budget=10**9, progress=False)
    block_bytes = sum(sm.nbytes(sm.layer_names(i), compute=False) for i in range(3))
    resident = sm.nbytes(sm.resident_names, compute=False)
    assert stats.weight_bytes_read == block_bytes + resident  # 8 batches, each block read once
    assert "lm_head.weight" not in sm.resident_names  # the LM head is never read
    assert all(p.device.type == "meta" for n, p in sm.model.named_parameters() if n.startswith("model.layers."))


def test_pickle_only_checkpoint_refused(tmp_path: Path, sharded_dirs: dict[str, Path]) -> None:
    src = sharded_dirs["gpt2"]
    for f in src.iterdir():
        if not f.name.endswith((".safetensors", ".index.json")):
            (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match=r"pickle weights \(pytorch_model.bin\).*convert it to safetensors"):
        Checkpoint.open(tmp_path)


def test_missing_shard_refused_before_any_output(tmp_path: Path, sharded_dirs: dict[str, Path],
                                                 texts_csv: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for f in sharded_dirs["llama"].iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    shard = sorted(model.glob("*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ModelLoadError, match=rf"names 1 file\(s\) that are missing: {shard.name}"):
        extract(model=str(model), data=texts_csv, out=tmp_path / "out.zarr", stream_weights=True, **KW)
    assert not (tmp_path / "out.zarr").exists()


def test_truncated_shard_refused(tmp_path: Path, sharded_dirs: dict[str, Path]) -> None:
    for f in sharded_dirs["gpt2"].iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    shard = sorted(tmp_path.glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(ModelLoadError, match=r"damaged.*runs past the end"):
        Checkpoint.open(tmp_path)
    shard.write_bytes(struct.pack("<Q", 10**12))
    with pytest.raises(ModelLoadError, match="damaged"):
        Checkpoint.open(tmp_path)


def test_checkpoint_reads_exact_tensors_and_resolves_bare_names(sharded_dirs: dict[str, Path]) -> None:
    from safetensors import safe_open

    ckpt = Checkpoint.open(sharded_dirs["gpt2"])
    for f in ckpt.files:
        with safe_open(str(f), framework="pt") as handle:
            keys = list(handle.keys())
            got = ckpt.read(keys)
            for k in keys:
                assert torch.equal(got[k], handle.get_tensor(k))
    keys, missing = ckpt.resolve(["h.0.mlp.c_fc.weight", "transformer.wte.weight", "nope"], "transformer")
    assert keys == {"h.0.mlp.c_fc.weight": "transformer.h.0.mlp.c_fc.weight",
                    "transformer.wte.weight": "transformer.wte.weight"} and missing == ["nope"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"backend": "transformer-lens"}, "runs its own streamed backend"),
    ({"device_map": "auto"}, "must not come with `--device-map`"),
    ({"model": "some/hub-id"}, "needs `--model` to be a local directory"),
])
def test_bad_stream_options(kwargs: dict[str, Any], match: str, sharded_dirs: dict[str, Path],
                            texts_csv: Path, tmp_path: Path) -> None:
    args = {"model": str(sharded_dirs["gpt2"]), **kwargs}
    with pytest.raises(InputError, match=match):
        extract(data=texts_csv, out=tmp_path / "o.zarr", stream_weights=True, **args, **KW)
    assert not (tmp_path / "o.zarr").exists()


def test_budget_too_small_for_one_block_refused(sharded_dirs: dict[str, Path], texts_csv: Path,
                                                tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"`--max-memory` must hold at least .* to stream this model"):
        extract(model=str(sharded_dirs["gpt2"]), data=texts_csv, out=tmp_path / "o.zarr", stream_weights=True,
                memory_budget=1 << 20, **KW)


def test_in_memory_run_that_does_not_fit_names_stream_weights(sharded_dirs: dict[str, Path], texts_csv: Path,
                                                              tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"must fit in memory.*Pass --stream-weights"):
        extract(model=str(sharded_dirs["gpt2"]), data=texts_csv, out=tmp_path / "o.zarr", memory_budget=1 << 20,
                **KW)
    assert not (tmp_path / "o.zarr").exists()


def test_cli_stream_weights_and_dry_run(sharded_dirs: dict[str, Path], texts_csv: Path, tmp_path: Path) -> None:
    from aura_stream_cli.main import app as cli

    model = str(sharded_dirs["neox"])
    base = ["extract", "--model", model, "--data", str(texts_csv), "--text-column", "text", "--label-column",
            "label", "--quiet", "--row-block", "8"]
    res = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "s.zarr"), "--stream-weights",
                                   "--max-memory", "4GiB"])
    assert res.exit_code == 0, res.output
    assert "3 row blocks written" in res.output
    res = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "d.zarr"), "--dry-run", "--max-memory", "2GiB"])
    assert res.exit_code == 0, res.output
    assert "in memory  peak" in res.output and "streamed   peak" in res.output and "1 pass over 3 blocks" in res.output
    res = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "e.zarr"), "--stream-weights", "--max-memory",
                                   "lots"])
    assert res.exit_code != 0 and "`--max-memory` must be a size such as 8GiB" in res.output
    assert not (tmp_path / "e.zarr").exists()


def test_dry_run_falcon_40b_refuses_in_memory_under_its_budget(tmp_path: Path) -> None:
    from aura_stream.estimate import dry_run

    config = Path(__file__).resolve().parents[1] / "bench" / "configs" / "falcon-40b.json"
    (tmp_path / "config.json").write_text(config.read_text())
    text = dry_run(model=str(tmp_path), hooks=None, pooling=["max"], batch_size=16, max_length=64, data=None,
                   per_class=5000, dtype="bfloat16", store_dtype="float16", row_block=256, budget=64 << 30)
    assert "~41.30B parameters" in text
    assert "DOES NOT FIT: pass --stream-weights" in text and "in 1 pass over 60 blocks" in text
    assert json.loads(config.read_text())["num_hidden_layers"] == 60


def test_errors_are_aura_stream_errors() -> None:
    assert issubclass(ModelLoadError, AuraStreamError) and issubclass(InputError, AuraStreamError)
