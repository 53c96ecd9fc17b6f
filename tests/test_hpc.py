"""HPC: concurrent shard processes build the same store as one process; SLURM templates; dry-run numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aura_stream.errors import InputError, ModelLoadError, StoreError
from aura_stream.estimate import Shape, estimate, n_params, read_shape
from aura_stream.extract import extract
from aura_stream.store import ActivationStore
from tests.test_extract import big_csv, store_arrays

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "aura_stream_cli.main"]


def shard_cmd(model: Path, data: Path, out: Path, shard: str) -> list[str]:
    return [*CLI, "extract", "--model", str(model), "--data", str(data), "--out", str(out), "--row-block", "16",
            "--batch-size", "8", "--quiet", "--shard", shard]


def test_three_concurrent_shards_equal_one_process(gpt2_dir: Path, tmp_path: Path) -> None:
    data = big_csv(tmp_path, copies=12)  # 192 rows, 12 blocks
    single = tmp_path / "single.zarr"
    extract(model=str(gpt2_dir), data=data, out=single, row_block=16, batch_size=8, progress=False)
    sharded = tmp_path / "sharded.zarr"
    procs = [subprocess.Popen(shard_cmd(gpt2_dir, data, sharded, f"{i}/3"), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for i in range(3)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out.decode()
    a, b = store_arrays(single), store_arrays(sharded)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # byte for byte: every data shard file is identical
    shards = [f for f in (single / "activations").rglob("*") if f.is_file() and "/c/" in str(f)]
    assert len(shards) == 12 * 6  # 12 row blocks x 6 arrays, one file each
    for f in shards:
        assert f.read_bytes() == (sharded / f.relative_to(single)).read_bytes(), f
    assert not list(tmp_path.glob(".sharded.zarr.creating-*"))  # losers cleaned their temp dirs


def test_killed_shard_rerun_gives_identical_store(gpt2_dir: Path, tmp_path: Path) -> None:
    data = big_csv(tmp_path, copies=12)  # 192 rows, 12 blocks; shard 1/2 owns 6
    single = tmp_path / "single.zarr"
    extract(model=str(gpt2_dir), data=data, out=single, row_block=16, batch_size=8, progress=False)
    sharded = tmp_path / "sharded.zarr"
    extract(model=str(gpt2_dir), data=data, out=sharded, row_block=16, batch_size=8, shard=(0, 2), progress=False)
    victim = subprocess.Popen(shard_cmd(gpt2_dir, data, sharded, "1/2"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and victim.poll() is None:
        flags = ActivationStore.open(sharded).completed() if (sharded / "zarr.json").exists() else np.zeros(1)
        if flags[1::2].sum() >= 2:
            os.kill(victim.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    victim.wait()
    subprocess.run(shard_cmd(gpt2_dir, data, sharded, "1/2"), check=True, capture_output=True)
    a, b = store_arrays(single), store_arrays(sharded)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_shard_count_must_match_store(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    extract(model=str(gpt2_dir), data=jigsaw_csv, out=out, shard=(0, 2), row_block=4, progress=False)
    with pytest.raises(StoreError, match="n_shards: store has 2, this run 3"):
        extract(model=str(gpt2_dir), data=jigsaw_csv, out=out, shard=(1, 3), row_block=4, progress=False)
    info = subprocess.run([*CLI, "info", str(out)], check=True, capture_output=True, text=True).stdout
    assert "shards     0/2: 2/2, 1/2: 0/2" in info and "INCOMPLETE: 8 rows missing" in info


def test_slurm_templates_run_locally(gpt2_dir: Path, jigsaw_csv: Path, tmp_path: Path) -> None:
    store, iv = tmp_path / "store.zarr", tmp_path / "aura.safetensors"
    env = {**os.environ, "MODEL": str(gpt2_dir), "DATA": str(jigsaw_csv), "STORE": str(store), "DEVICE": "cpu",
           "PER_CLASS": "8", "ROW_BLOCK": "4", "BATCH_SIZE": "4", "SLURM_ARRAY_TASK_COUNT": "2",
           "SLURM_ARRAY_TASK_MIN": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    procs = [subprocess.Popen(["bash", str(ROOT / "scripts/slurm/extract_array.sbatch")],
                              env={**env, "SLURM_ARRAY_TASK_ID": str(i)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for i in (1, 2)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out.decode()
    assert ActivationStore.open(store).completed().all()
    r = subprocess.run(["bash", str(ROOT / "scripts/slurm/score.sbatch")], env={**env, "INTERVENTION": str(iv)},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert iv.is_file() and "intervention written" in r.stdout


FALCON_40B = {"model_type": "falcon", "hidden_size": 8192, "ffn_hidden_size": 32768, "num_hidden_layers": 60,
              "num_attention_heads": 128, "num_kv_heads": 8, "new_decoder_architecture": True, "vocab_size": 65024}


def test_dry_run_numbers_for_falcon_40b(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(FALCON_40B))
    shape = read_shape(tmp_path)
    assert shape == Shape("falcon", 60, 8192, 32768, 128, 8, 65024, gated=False)
    est = estimate(shape, hooks=None, n_poolings=1, n_samples=4000, batch_size=32, max_length=128,
                   dtype="bfloat16", store_dtype="float16", row_block=256)
    # by hand: per layer hook_pre 32768 + hook_mlp_out 8192 = 40960; x 60 = 2,457,600 neurons
    assert sum(est.hooks.values()) == 2_457_600 and len(est.hooks) == 120
    assert est.store_bytes == 4000 * 2_457_600 * 2 == 19_660_800_000
    assert est.n_forward == 125 + 1  # ceil(4000 / 32) + the probe batch
    # 120 arrays x 16 blocks of shards + 120 array metadata + 16 progress chunks + the rest
    assert 120 * 16 + 120 + 16 <= est.n_files <= 120 * 16 + 120 + 16 + 12
    assert est.host_bytes == 3 * 256 * 2_457_600 * 4
    # parameters by hand: embeddings 65024*8192; per layer q,o 2*8192^2 + k,v 2*8192*512 + MLP 2*8192*32768
    assert n_params(shape) == 65024 * 8192 + 60 * (2 * 8192**2 + 2 * 8192 * 512 + 2 * 8192 * 32768)
    assert 41e9 < n_params(shape) < 42e9  # Falcon-40B has 41.8B parameters


def test_dry_run_cli_and_errors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(FALCON_40B))
    r = subprocess.run([*CLI, "extract", "--model", str(tmp_path), "--dry-run", "--per-class", "2000",
                        "--out", str(tmp_path / "x.zarr")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "2,457,600 per pooling" in r.stdout and "19,660,800,000 bytes" in r.stdout
    assert not (tmp_path / "x.zarr").exists()
    bad = tmp_path / "bert"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match=r"`bert` is not supported; supported: .*falcon"):
        read_shape(bad)
    from aura_stream.estimate import dry_run

    with pytest.raises(InputError, match="needs the number of samples"):
        dry_run(model=str(tmp_path), hooks=None, pooling=["max"], batch_size=1, max_length=8, data=None,
                per_class=None, dtype="auto", store_dtype="float16", row_block=4)
