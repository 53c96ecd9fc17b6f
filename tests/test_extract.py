"""extract: pooled activations against an independent transformers + torch-hook oracle; resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from aura_stream.data import load_labelled
from aura_stream.errors import HookError, InputError, StoreError
from aura_stream.extract import extract, parse_shard
from aura_stream.store import ActivationStore

# hook name kind -> (HF module path inside block i, "output" or "input") per architecture: the oracle's
# own table, written independently of aura_stream.hookpoints.
ORACLE = {
    "gpt2": ("transformer.h.{i}", {"mlp.hook_pre": ("mlp.c_fc", "output"), "mlp.hook_post": ("mlp.act", "output"),
                                    "hook_mlp_out": ("mlp.c_proj", "output")}),
    "llama": ("model.layers.{i}", {"mlp.hook_pre": ("mlp.gate_proj", "output"),
                                   "mlp.hook_pre_linear": ("mlp.up_proj", "output"),
                                   "mlp.hook_post": ("mlp.down_proj", "input"),
                                   "hook_mlp_out": ("mlp.down_proj", "output")}),
    "falcon": ("transformer.h.{i}", {"mlp.hook_pre": ("mlp.dense_h_to_4h", "output"),
                                     "mlp.hook_post": ("mlp.act", "output"),
                                     "hook_mlp_out": ("mlp.dense_4h_to_h", "output")}),
    "neox": ("gpt_neox.layers.{i}", {"mlp.hook_pre": ("mlp.dense_h_to_4h", "output"),
                                     "mlp.hook_post": ("mlp.act", "output"),
                                     "hook_mlp_out": ("mlp.dense_4h_to_h", "output")}),
}


def oracle_pooled(model_dir: Path, texts: list[str], hooks: list[str], max_length: int = 128
                  ) -> dict[tuple[str, str], np.ndarray]:
    """Run each sentence alone (no padding) through plain transformers; pool by hand.

    Returns (pooling, hook) -> [n_texts, d].
    """
    kind = next(k for k in ORACLE if model_dir.name == k)
    block, table = ORACLE[kind]
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for hook in hooks:
        _, layer, rest = hook.split(".", 2)
        path, site = table[rest]
        module = model.get_submodule(f"{block.format(i=layer)}.{path}")
        if site == "output":
            handles.append(module.register_forward_hook(
                lambda m, a, o, h=hook: seen.__setitem__(h, o.detach().clone())))
        else:
            handles.append(module.register_forward_pre_hook(
                lambda m, a, h=hook: seen.__setitem__(h, a[0].detach().clone())))
    rows: dict[tuple[str, str], list[np.ndarray]] = {}
    with torch.no_grad():
        for text in texts:
            ids = tok(text, truncation=True, max_length=max_length, return_tensors="pt")["input_ids"]
            model(input_ids=ids)
            for hook in hooks:
                act = seen[hook][0]  # [pos, d]
                for op, value in (("max", act.max(0).values), ("mean", act.mean(0)), ("last", act[-1])):
                    rows.setdefault((op, hook), []).append(value.numpy())
    for h in handles:
        h.remove()
    return {key: np.stack(v) for key, v in rows.items()}


@pytest.mark.parametrize("kind", ["gpt2", "llama", "falcon", "neox"])
def test_pooled_values_equal_oracle(kind: str, tiny_model_dirs: dict[str, Path], jigsaw_csv: Path,
                                    tmp_path: Path) -> None:
    model_dir = tiny_model_dirs[kind]
    out = tmp_path / "s.zarr"
    extract(model=str(model_dir), data=jigsaw_csv, out=out, hooks=["blocks.*"], pooling=["max", "mean", "last"],
            batch_size=5, row_block=6, store_dtype="float32", progress=False)
    store = ActivationStore.open(out)
    texts = load_labelled(jigsaw_csv).texts
    assert store.completed().all()
    expected_hooks = {f"blocks.{i}.{k}" for i in range(3) for k in ORACLE[kind][1]}
    assert set(store.hooks) == expected_hooks
    hooks = ["blocks.0.mlp.hook_pre", "blocks.2.mlp.hook_post", "blocks.1.hook_mlp_out"]
    if kind == "llama":
        hooks.append("blocks.1.mlp.hook_pre_linear")
    oracle = oracle_pooled(model_dir, texts, hooks)
    for (op, hook), want in oracle.items():
        got = store.activations(op, hook)[:]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{kind} {hook} {op}")


def test_float16_store_is_float16_of_float32(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    extract(model=str(gpt2_dir), data=jigsaw_csv, out=tmp_path / "h.zarr", progress=False)
    extract(model=str(gpt2_dir), data=jigsaw_csv, out=tmp_path / "f.zarr", store_dtype="float32", progress=False)
    half = ActivationStore.open(tmp_path / "h.zarr").activations("max", "blocks.0.mlp.hook_pre")
    full = ActivationStore.open(tmp_path / "f.zarr").activations("max", "blocks.0.mlp.hook_pre")[:]
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half[:], full.astype(np.float16))


def big_csv(tmp_path: Path, copies: int) -> Path:
    from tests.conftest import jigsaw_sample

    rows = list(csv.DictReader(jigsaw_sample().open(encoding="utf-8")))
    path = tmp_path / "big.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "comment_text", "toxic", "severe_toxic", "obscene", "threat",
                                          "insult", "identity_hate"], extrasaction="ignore")
        w.writeheader()
        for c in range(copies):
            for r in rows:
                w.writerow({**r, "id": f"{r['id']}-{c}", "comment_text": f"{r['comment_text']} {c}"})
    return path


def store_arrays(path: Path) -> dict[str, np.ndarray]:
    st = ActivationStore.open(path)
    out = {f"{p}/{h}": a[:] for p, h, a in st.iter_arrays()}
    out["labels"], out["progress"] = st.labels, st.completed()
    return out


def test_resume_after_sigkill_equals_uninterrupted(gpt2_dir: Path, tmp_path: Path) -> None:
    data = big_csv(tmp_path, copies=24)  # 384 rows, 24 blocks of 16
    args = ["--model", str(gpt2_dir), "--data", str(data), "--row-block", "16", "--batch-size", "8", "--quiet"]
    ref, killed = tmp_path / "ref.zarr", tmp_path / "killed.zarr"
    cli = [sys.executable, "-m", "aura_stream_cli.main", "extract"]
    extract(model=str(gpt2_dir), data=data, out=ref, row_block=16, batch_size=8, progress=False)
    proc = subprocess.Popen([*cli, *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = list((killed / "progress" / "c").glob("*")) if (killed / "progress" / "c").exists() else []
        if len(done) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    if proc.returncode == 0:
        pytest.skip("extraction finished before it could be killed")
    st = ActivationStore.open(killed)
    assert 0 < st.completed().sum() < st.n_blocks
    result = extract(model=str(gpt2_dir), data=data, out=killed, row_block=16, batch_size=8, progress=False)
    assert result.blocks_skipped >= 3
    a, b = store_arrays(ref), store_arrays(killed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_other_run_is_refused_and_overwrite_replaces(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    extract(model=str(gpt2_dir), data=jigsaw_csv, out=out, progress=False)
    with pytest.raises(StoreError, match=r"holds another run \(hooks: .*--overwrite"):
        extract(model=str(gpt2_dir), data=jigsaw_csv, out=out, hooks=["blocks.0.*"], progress=False)
    with pytest.raises(StoreError, match=r"max_length: store has 128, this run 64"):
        extract(model=str(gpt2_dir), data=jigsaw_csv, out=out, max_length=64, progress=False)
    extract(model=str(gpt2_dir), data=jigsaw_csv, out=out, hooks=["blocks.0.*"], overwrite=True, progress=False)
    assert set(ActivationStore.open(out).hooks) == {"blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post",
                                                    "blocks.0.hook_mlp_out"}


def test_overwrite_refuses_foreign_directory(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a store"):
        extract(model=str(gpt2_dir), data=jigsaw_csv, out=foreign, progress=False)
    with pytest.raises(StoreError, match="only replaces aura-stream stores"):
        extract(model=str(gpt2_dir), data=jigsaw_csv, out=foreign, overwrite=True, progress=False)
    assert (foreign / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"hooks": ["blocks.9.*", "nope"]}, HookError, r"'blocks.9.\*', 'nope' match nothing; available: blocks"),
    ({"pooling": ["median"]}, InputError, "`--pooling` must be one of max, mean, last; got median"),
    ({"batch_size": 0}, InputError, "`--batch-size` must be >= 1; got 0"),
    ({"max_length": 0}, InputError, "`--max-length` must be >= 1; got 0"),
    ({"store_dtype": "int8"}, InputError, "`--store-dtype` must be float16 or float32"),
])
def test_bad_options(kwargs: dict[str, object], error: type[Exception], match: str, gpt2_dir: Path,
                     jigsaw_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    with pytest.raises(error, match=match):
        extract(model=str(gpt2_dir), data=jigsaw_csv, out=out, progress=False, **kwargs)  # type: ignore[arg-type]
    assert not out.exists()


def test_out_is_a_file(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        extract(model=str(gpt2_dir), data=jigsaw_csv, out=f, progress=False)


def test_float16_overflow_is_detected(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    big = tmp_path / "big"
    model = AutoModelForCausalLM.from_pretrained(gpt2_dir)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.bias.fill_(1e5)
    model.save_pretrained(big)
    AutoTokenizer.from_pretrained(gpt2_dir).save_pretrained(big)
    from aura_stream.errors import NumericalError

    with pytest.raises(NumericalError, match=r"must fit float16.*--store-dtype float32"):
        extract(model=str(big), data=jigsaw_csv, out=tmp_path / "s.zarr", progress=False)
    extract(model=str(big), data=jigsaw_csv, out=tmp_path / "s.zarr", store_dtype="float32", overwrite=True,
            progress=False)


def test_parse_shard() -> None:
    assert parse_shard("3/16") == (3, 16)
    assert parse_shard(None, env={}) == (0, 1)
    assert parse_shard(None, env={"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4",
                                  "SLURM_ARRAY_TASK_MIN": "1"}) == (3, 4)
    for bad in ("3", "a/b", "16/16", "1/0"):
        with pytest.raises(InputError, match="`--shard`"):
            parse_shard(bad)
