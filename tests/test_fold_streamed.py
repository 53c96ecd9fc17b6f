"""fold --stream-weights: tensor-for-tensor equal to the in-memory fold, shard by shard, in about one shard of RAM."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from aura_stream_cli.main import app
from click.testing import CliRunner, Result
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM

from aura_stream.checkpoint import INDEX_FILE, Checkpoint
from aura_stream.errors import InputError, InterventionError, ModelLoadError, NumericalError
from aura_stream.fold import PROVENANCE_FILE, fold
from aura_stream.fold_streamed import fold_streamed
from aura_stream.generate import dampened
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import Intervention, make_intervention, make_transport_intervention, save_intervention
from aura_stream.model import LoadedModel, load_model
from tests.conftest import VOCAB, tiny_config

TEXTS = ["You are such a", "The weather in Paris is usually quite nice in"]
KINDS = ("gpt2", "llama", "falcon", "falcon7b", "neox", "opt", "qwen2", "gemma")
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread


def extra_config(kind: str) -> Any:
    """Tiny OPT, Qwen2 and Gemma configs, shaped like conftest's."""
    import transformers as T

    common: dict[str, Any] = {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
    if kind == "opt":
        return T.OPTConfig(num_hidden_layers=3, hidden_size=32, ffn_dim=48, num_attention_heads=4,
                           word_embed_proj_dim=32, max_position_embeddings=128, **common)
    if kind == "qwen2":
        return T.Qwen2Config(num_hidden_layers=3, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, **common)
    if kind == "gemma":
        return T.GemmaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=8, max_position_embeddings=128, **common)
    return tiny_config(kind)


def copy_tokenizer(src: Path, dst: Path) -> None:
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, dst / f.name)


def save_model(kind: str, path: Path, tokenizer_from: Path, seed: int, **save: Any) -> Path:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(extra_config(kind)).eval()
    with torch.no_grad():  # bigger weights, as conftest does: dampening changes the logits clearly
        for p in model.parameters():
            p.mul_(5.0) if p.dim() > 1 else p.add_(0.1)
    model.save_pretrained(path, **save)
    copy_tokenizer(tokenizer_from, path)
    return path


@pytest.fixture(scope="module")
def model_dirs(tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """conftest's five tiny models (one model.safetensors each) plus tiny OPT, Qwen2 and Gemma."""
    root = tmp_path_factory.mktemp("stream_models")
    out = dict(tiny_model_dirs)
    for i, kind in enumerate(("opt", "qwen2", "gemma")):
        out[kind] = save_model(kind, root / kind, tiny_model_dirs["gpt2"], 2000 + i)
    return out


@pytest.fixture(scope="module")
def sharded_dirs(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny model again, saved in shards of 20 KB with an index."""
    root = tmp_path_factory.mktemp("stream_sharded")
    out = {}
    for kind, src in model_dirs.items():
        model = AutoModelForCausalLM.from_pretrained(src)
        model.save_pretrained(root / kind, max_shard_size="20KB")
        copy_tokenizer(src, root / kind)
        out[kind] = root / kind
    return out


def random_intervention(model: nn.Module, seed: int = 0) -> Intervention:
    """Alphas in [0, 1] on every hook point (every hook kind the model has), a quarter exactly 0."""
    rng = np.random.default_rng(seed)
    alphas = {}
    for name, p in all_hook_points(model).items():
        a = rng.uniform(0, 1, p.width)
        a[rng.uniform(size=p.width) < 0.25] = 0.0
        alphas[name] = a.astype(np.float32)
    aurocs = {n: np.full(a.shape, 0.5) for n, a in alphas.items()}
    return Intervention(alphas, aurocs, {"method": "test"})


def tensors_of(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file in ``directory``."""
    out: dict[str, torch.Tensor] = {}
    for f in sorted(directory.glob("*.safetensors")):
        found = load_file(f)
        assert not set(found) & set(out), f"a key in two shards: {f}"
        out.update(found)
    return out


def assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = tensors_of(a), tensors_of(b)
    assert set(ta) == set(tb)
    for key in ta:
        assert ta[key].dtype == tb[key].dtype and torch.equal(ta[key], tb[key]), key


def logits(model: nn.Module, loaded: LoadedModel) -> torch.Tensor:
    enc = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**enc).logits  # type: ignore[no-any-return]


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name)


# --------------------------------------------------------------------------- the oracle


@pytest.mark.parametrize("sharded", [False, True], ids=["one-file", "sharded"])
@pytest.mark.parametrize("kind", KINDS)
def test_streamed_equals_in_memory_fold(kind: str, sharded: bool, model_dirs: dict[str, Path],
                                        sharded_dirs: dict[str, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = (sharded_dirs if sharded else model_dirs)[kind]
    loaded = load_model(str(src))
    iv = random_intervention(loaded.model)
    plain = logits(loaded.model, loaded)
    with dampened(loaded.model, iv):
        hooked = logits(loaded.model, loaded)
    assert not torch.allclose(hooked, plain)
    streamed = fold_streamed(src, iv, tmp_path / "streamed", progress=False)
    in_memory = fold(loaded, iv, tmp_path / "in-memory")
    assert_same_tensors(streamed, in_memory)
    source = tensors_of(src)
    out = tensors_of(streamed)
    record = json.loads((streamed / PROVENANCE_FILE).read_text(encoding="utf-8"))
    scaled = {f"{f['module']}.{s}" for f in record["folded"] for s in ("weight", "bias")}
    for key, value in out.items():  # only the MLP tensors a step names change; embeddings (tied) never
        if key not in scaled:
            assert torch.equal(value, source[key]), key
    assert any(not torch.equal(out[k], source[k]) for k in scaled if k in out)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folded = AutoModelForCausalLM.from_pretrained(streamed)
    torch.testing.assert_close(logits(folded, loaded), hooked, rtol=1e-5, atol=1e-5)
    memory_record = json.loads((in_memory / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert record["streamed"] is True and "streamed" not in memory_record
    for field in ("format", "intervention_fingerprint", "method", "strength", "folded", "dtype"):
        assert record[field] == memory_record[field], field
    assert record["source_model"] == str(src)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (streamed / name).read_bytes() == (src / name).read_bytes(), name
    if sharded:  # the same index, the same shard names, each shard with the same keys
        assert (streamed / INDEX_FILE).read_bytes() == (src / INDEX_FILE).read_bytes()
        assert sorted(p.name for p in streamed.glob("*.safetensors")) == \
            sorted(p.name for p in src.glob("*.safetensors"))
        untouched = 0
        for f in src.glob("*.safetensors"):
            keys = set(load_file(f))
            assert keys == set(load_file(streamed / f.name)), f.name
            if not keys & scaled:  # nothing to fold there: copied byte for byte
                assert (streamed / f.name).read_bytes() == f.read_bytes(), f.name
                untouched += 1
        assert untouched >= 1
    else:
        assert [p.name for p in streamed.glob("*.safetensors")] == ["model.safetensors"]
    assert leftovers(tmp_path) == []


def transport_intervention(model: nn.Module, seed: int = 0) -> Intervention:
    """A Linear-AcT (support all) on every hook point: omega and a non-zero beta per neuron."""
    rng = np.random.default_rng(seed)
    est = {}
    for name, p in all_hook_points(model).items():
        omega, beta = rng.uniform(-0.5, 1.5, p.width), rng.normal(0, 0.5, p.width)
        est[name] = np.stack([omega, beta, np.full(p.width, -1.0), np.full(p.width, 1.0)]).astype(np.float32)
    return make_transport_intervention(est, method="linear-act", support="all", metadata={"model": "tiny"})


@pytest.mark.parametrize("sharded", [False, True], ids=["one-file", "sharded"])
@pytest.mark.parametrize("kind", ["gpt2", "opt"])  # every MLP Linear has a bias: Conv1D and nn.Linear
def test_streamed_transport_equals_in_memory_fold(kind: str, sharded: bool, model_dirs: dict[str, Path],
                                                  sharded_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Output side: omega * b + beta; input side (hook_post): b + W beta, from the weight as the earlier
    steps left it (GPT-2's c_proj is folded twice: hook_post's input side, then hook_mlp_out's output)."""
    src = (sharded_dirs if sharded else model_dirs)[kind]
    loaded = load_model(str(src))
    iv = transport_intervention(loaded.model, seed=11)
    with dampened(loaded.model, iv):
        hooked = logits(loaded.model, loaded)
    streamed = fold_streamed(src, iv, tmp_path / "streamed", progress=False)
    in_memory = fold(loaded, iv, tmp_path / "in-memory")
    assert_same_tensors(streamed, in_memory)  # bit-equal, weights and shifted biases
    record = json.loads((streamed / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert {f["shifted"] for f in record["folded"]} == {"bias + beta", "bias + W beta"}
    assert record["folded"] == json.loads((in_memory / PROVENANCE_FILE).read_text(encoding="utf-8"))["folded"]
    if sharded:  # some bias lies in another shard than its weight: the shift was read across shards
        entries = Checkpoint.open(src).entries
        modules = {f["module"] for f in record["folded"] if f["shifted"] == "bias + W beta"}
        files = {m: {entries[k].file.name for k in entries if k.endswith((f"{m}.weight", f"{m}.bias"))}
                 for m in modules}
        assert any(len(f) == 2 for f in files.values()), files
    folded = AutoModelForCausalLM.from_pretrained(streamed)
    torch.testing.assert_close(logits(folded, loaded), hooked, rtol=1e-4, atol=1e-4)


def test_gpt2_conv1d_is_scaled_on_its_transposed_axes(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Conv1D stores [in, out]: hook_pre neuron j is column j of c_fc; hook_post neuron j is row j of c_proj."""
    src = model_dirs["gpt2"]
    d_mlp = load_file(src / "model.safetensors")["transformer.h.1.mlp.c_fc.weight"].shape[1]
    pre, post = np.ones(d_mlp, np.float32), np.ones(d_mlp, np.float32)
    pre[5], post[7] = 0.0, 0.5
    iv = Intervention({"blocks.1.mlp.hook_pre": pre, "blocks.1.mlp.hook_post": post},
                      {"blocks.1.mlp.hook_pre": np.full(d_mlp, 0.5), "blocks.1.mlp.hook_post": np.full(d_mlp, 0.5)},
                      {"method": "test"})
    before, after = tensors_of(src), tensors_of(fold_streamed(src, iv, tmp_path / "out", progress=False))
    w = "transformer.h.1.mlp."
    assert not after[w + "c_fc.weight"][:, 5].any() and after[w + "c_fc.bias"][5] == 0
    keep = [j for j in range(d_mlp) if j != 5]
    assert torch.equal(after[w + "c_fc.weight"][:, keep], before[w + "c_fc.weight"][:, keep])
    assert torch.equal(after[w + "c_proj.weight"][7], before[w + "c_proj.weight"][7] * 0.5)
    assert torch.equal(after[w + "c_proj.bias"], before[w + "c_proj.bias"])  # an input scaling: bias unchanged
    assert torch.equal(after["transformer.wte.weight"], before["transformer.wte.weight"])  # tied embedding


def test_strength(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    src = model_dirs["llama"]
    loaded = load_model(str(src))
    iv = random_intervention(loaded.model, seed=3)
    half = fold_streamed(src, iv, tmp_path / "half", strength=0.5, progress=False)
    assert_same_tensors(half, fold(loaded, iv, tmp_path / "half-in-memory", strength=0.5))
    assert json.loads((half / PROVENANCE_FILE).read_text(encoding="utf-8"))["strength"] == 0.5
    none = fold_streamed(src, iv, tmp_path / "none", strength=0.0, progress=False)
    assert_same_tensors(none, src)  # strength 0: the original weights
    with pytest.raises(InputError, match=r"`--strength` must be in \[0, 1\]; got 1.5"):
        fold_streamed(src, iv, tmp_path / "never", strength=1.5, progress=False)
    assert not (tmp_path / "never").exists()


def test_bfloat16_checkpoint_keeps_dtype(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(model_dirs["llama"], dtype=torch.bfloat16).save_pretrained(
        src, max_shard_size="20KB")
    copy_tokenizer(model_dirs["llama"], src)
    loaded = load_model(str(src))
    iv = random_intervention(loaded.model, seed=4)
    out = fold_streamed(src, iv, tmp_path / "out", progress=False)
    assert_same_tensors(out, fold(loaded, iv, tmp_path / "in-memory"))
    assert tensors_of(out)["model.layers.0.mlp.down_proj.weight"].dtype == torch.bfloat16


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def no_weight_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any tensor is read: refusals must come before the first weight."""
    def read(*_: Any, **__: Any) -> Any:
        raise AssertionError("a weight was read before the refusal")

    monkeypatch.setattr(Checkpoint, "read", read)


@pytest.mark.usefixtures("no_weight_read")
def test_refusals_come_before_any_weight_is_read(model_dirs: dict[str, Path], sharded_dirs: dict[str, Path],
                                                 tmp_path: Path) -> None:
    src = model_dirs["gpt2"]
    iv = random_intervention(load_model(str(src)).model)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InputError, match=r"`--out` must be a new or empty directory; .* holds 1 "):
        fold_streamed(src, iv, full, progress=False)
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"`--out` must be a directory; .* is a file"):
        fold_streamed(src, iv, tmp_path / "file", progress=False)
    wrong = Intervention({"blocks.0.mlp.hook_pre": np.ones(3, np.float32)},
                         {"blocks.0.mlp.hook_pre": np.full(3, 0.5)}, {"method": "test"})
    with pytest.raises(InterventionError, match="widths must match"):
        fold_streamed(src, wrong, tmp_path / "never", progress=False)
    absent = Intervention({"blocks.9.mlp.hook_pre": np.ones(3, np.float32)},
                          {"blocks.9.mlp.hook_pre": np.full(3, 0.5)}, {"method": "test"})
    with pytest.raises(InterventionError, match="do not exist in the model"):
        fold_streamed(src, absent, tmp_path / "never", progress=False)
    bad_alpha = random_intervention(load_model(str(src)).model)
    bad_alpha.alphas["blocks.0.mlp.hook_pre"][0] = np.nan
    with pytest.raises(InterventionError):
        fold_streamed(src, bad_alpha, tmp_path / "never", progress=False)
    with pytest.raises(ModelLoadError, match="must be a local model directory to stream its weights"):
        fold_streamed("gpt2", iv, tmp_path / "never", progress=False)
    # a missing shard: refused in one line before anything is written
    broken = tmp_path / "broken"
    shutil.copytree(sharded_dirs["gpt2"], broken)
    shard = sorted(broken.glob("model-*.safetensors"))[3]
    shard.unlink()
    with pytest.raises(ModelLoadError, match=rf"missing: {shard.name}\. Download the complete checkpoint") as info:
        fold_streamed(broken, iv, tmp_path / "never", progress=False)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "file", "full"]
    assert (full / "keep.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.usefixtures("no_weight_read")
def test_pickle_only_model_is_refused_naming_conversion(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "pickled"
    src.mkdir()
    shutil.copy(model_dirs["gpt2"] / "config.json", src / "config.json")
    (src / "pytorch_model.bin").write_bytes(b"PK\x03\x04 never opened")  # never unpickled, never opened
    iv = random_intervention(load_model(str(model_dirs["gpt2"])).model)
    with pytest.raises(ModelLoadError, match=r"holds pickle weights \(pytorch_model.bin\), which are never loaded "
                                             r"here; convert it to safetensors first") as info:
        fold_streamed(src, iv, tmp_path / "out", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_folded_checkpoint_is_refused(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    src = model_dirs["gpt2"]
    iv = random_intervention(load_model(str(src)).model)
    once = fold_streamed(src, iv, tmp_path / "once", progress=False)
    with pytest.raises(InterventionError, match="must not already hold a folded intervention for `fold`"):
        fold_streamed(once, iv, tmp_path / "twice", progress=False)
    assert not (tmp_path / "twice").exists()


def test_failure_midway_leaves_nothing(sharded_dirs: dict[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    src = sharded_dirs["llama"]
    iv = random_intervention(load_model(str(src)).model)
    calls: list[str] = []
    real: Callable[..., None] = safetensors.torch.save_file

    def flaky(tensors: dict[str, torch.Tensor], path: str, **kw: Any) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(tensors, path, **kw)

    monkeypatch.setattr(safetensors.torch, "save_file", flaky)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"cannot write the checkpoint to .*: No space left on device\. Choose"):
        fold_streamed(src, iv, out, progress=False)
    assert len(calls) == 3 and not out.exists() and list(tmp_path.iterdir()) == []
    out.mkdir()  # an empty --out given by the user stays (empty) after a failure
    calls.clear()
    with pytest.raises(InputError):
        fold_streamed(src, iv, out, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not any(out.iterdir())


def test_non_finite_weight_in_a_late_shard_leaves_nothing(sharded_dirs: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(sharded_dirs["gpt2"], src)
    key = "transformer.h.2.mlp.c_proj.weight"
    shard = src / json.loads((src / INDEX_FILE).read_text(encoding="utf-8"))["weight_map"][key]
    tensors = load_file(shard)
    tensors[key][0, 0] = float("inf")
    save_file(tensors, shard, metadata={"format": "pt"})
    iv = random_intervention(load_model(str(sharded_dirs["gpt2"])).model)
    with pytest.raises(NumericalError, match=rf"folded weights must be finite; {key} hold NaN or inf"):
        fold_streamed(src, iv, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_other_files_are_copied_and_other_weight_formats_are_not(model_dirs: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(model_dirs["neox"], src)
    (src / "README.md").write_text("card", encoding="utf-8")
    (src / "extra").mkdir()
    (src / "extra" / "notes.txt").write_text("n", encoding="utf-8")
    (src / "extra" / "consolidated.pth").write_bytes(b"old weights")
    (src / "pytorch_model.bin").write_bytes(b"unfolded weights, never opened")
    iv = random_intervention(load_model(str(model_dirs["neox"])).model)
    out = fold_streamed(src, iv, tmp_path / "out", progress=False)
    assert (out / "README.md").read_text(encoding="utf-8") == "card"
    assert (out / "extra" / "notes.txt").is_file() and not (out / "extra" / "consolidated.pth").exists()
    assert not (out / "pytorch_model.bin").exists()
    assert json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))["not_copied"] == ["pytorch_model.bin"]


def test_progress_bar_over_shards(sharded_dirs: dict[str, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = sharded_dirs["gpt2"]
    iv = random_intervention(load_model(str(src)).model)
    capsys.readouterr()
    fold_streamed(src, iv, tmp_path / "quiet", progress=False)
    assert capsys.readouterr().err == ""
    fold_streamed(src, iv, tmp_path / "bar", progress=True)
    n = len(list(src.glob("*.safetensors")))
    assert f"{n}/{n}" in capsys.readouterr().err


# --------------------------------------------------------------------------- peak memory

MEMORY_SCRIPT = """
import json, resource, sys
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
import safetensors.torch, tqdm.auto
from aura_stream.fold import fold
from aura_stream.fold_streamed import build_skeleton, fold_streamed
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import Intervention
from aura_stream.model import load_model
mode, model_dir, out = sys.argv[1:4]
skeleton = build_skeleton(Path(model_dir))  # imports the model's modules before the baseline
rng = np.random.default_rng(0)
alphas = {n: rng.uniform(0, 1, p.width).astype(np.float32) for n, p in all_hook_points(skeleton).items()}
iv = Intervention(alphas, {n: np.full(a.shape, 0.5) for n, a in alphas.items()}, {"method": "test"})
del skeleton
x = torch.ones(4096, 64)  # and the torch ops and writer used, so their first-call setup is in the baseline
x.float().mul_(torch.ones(1, 64)).to(torch.float32)
bool(torch.isfinite(x).all())
safetensors.torch.save_file({"x": x}, out + ".warm-up")
Path(out + ".warm-up").unlink()
del x
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if mode == "streamed":
    fold_streamed(model_dir, iv, out, progress=False)
else:
    fold(load_model(model_dir), iv, out)
print(json.dumps({"base": base, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def peak_increase(mode: str, model_dir: Path, out: Path) -> int:
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(ROOT)}
    # Linux carries the parent's peak RSS into ru_maxrss across fork + exec (the baseline would be pytest's
    # own RSS): a small trampoline process starts the measured one, which then inherits only ~10 MB.
    trampoline = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", trampoline, sys.executable, "-c", MEMORY_SCRIPT, mode,
                           str(model_dir), str(out)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return int(result["peak"]) - int(result["base"])


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_peak_memory_is_about_one_shard(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    import transformers as T

    config = T.LlamaConfig(num_hidden_layers=8, hidden_size=384, intermediate_size=1024, num_attention_heads=4,
                           num_key_value_heads=4, max_position_embeddings=128, vocab_size=VOCAB, bos_token_id=0,
                           eos_token_id=0, pad_token_id=0, tie_word_embeddings=True)
    src = tmp_path / "big"
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(src, max_shard_size="8MB")  # ~one layer a shard
    copy_tokenizer(model_dirs["llama"], src)
    checkpoint = Checkpoint.open(src)
    total = checkpoint.total_bytes
    largest = max(f.stat().st_size for f in checkpoint.files)
    assert len(checkpoint.files) >= 8 and total > 50e6 and largest < 8e6
    streamed = peak_increase("streamed", src, tmp_path / "streamed")
    in_memory = peak_increase("in-memory", src, tmp_path / "in-memory")
    print(f"weights {total / 1e6:.1f} MB in {len(checkpoint.files)} shards (largest {largest / 1e6:.1f} MB); "
          f"peak RSS increase: streamed {streamed / 1e6:.1f} MB, in-memory {in_memory / 1e6:.1f} MB")
    assert streamed < 2.5 * largest + 10e6
    assert in_memory >= total
    assert_same_tensors(tmp_path / "streamed", tmp_path / "in-memory")


# --------------------------------------------------------------------------- CLI


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit 1, a single ``Error: `` line holding every fragment, no traceback (as tests/test_reliability.py)."""
    assert result.exit_code == 1, f"exit {result.exit_code}: {result.output!r} {result.exception!r}"
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert all(f in lines[0] for f in fragments), lines[0]


@pytest.fixture
def det0_file(model_dirs: dict[str, Path], tmp_path: Path) -> Path:
    model = load_model(str(model_dirs["gpt2"])).model
    rng = np.random.default_rng(1)
    aurocs = {n: rng.uniform(0.2, 1.0, p.width) for n, p in all_hook_points(model).items()}
    return save_intervention(make_intervention(aurocs, method="det0", num_experts=10),
                             tmp_path / "det0.safetensors")


def test_cli_fold_stream_weights(sharded_dirs: dict[str, Path], det0_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    src = sharded_dirs["gpt2"]
    out = tmp_path / "streamed"
    args = ["fold", "--model", str(src), "--intervention", str(det0_file), "--out", str(out)]
    result = runner.invoke(app, [*args, "--stream-weights", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"folded 10 dampened neurons (det0) into {out}"
    record = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert record["streamed"] is True and record["config"]["stream_weights"] is True
    assert record["method"] == "det0" and record["config"]["command"].endswith("fold")
    in_memory = runner.invoke(app, [*args[:-1], str(tmp_path / "in-memory")])
    assert in_memory.exit_code == 0, in_memory.output
    assert_same_tensors(out, tmp_path / "in-memory")
    assert_one_line_error(runner.invoke(app, [*args, "--stream-weights"]), "must be a new or empty directory")
    assert_one_line_error(
        runner.invoke(app, ["fold", "--model", "some-org/some-model", "--intervention", str(det0_file),
                            "--out", str(tmp_path / "x"), "--stream-weights"]),
        "`--model` must be a local model directory to stream its weights", "Download it first")
    assert_one_line_error(
        runner.invoke(app, [*args[:-1], str(tmp_path / "y"), "--stream-weights", "--dtype", "float16"]),
        "`--dtype` and `--device` must keep their defaults with `--stream-weights`", "got --dtype float16")
    assert_one_line_error(
        runner.invoke(app, [*args[:-1], str(tmp_path / "z"), "--stream-weights", "--strength", "2"]),
        "`--strength` must be in [0, 1]")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(src / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"never opened")
    assert_one_line_error(
        runner.invoke(app, ["fold", "--model", str(pickled), "--intervention", str(det0_file),
                            "--out", str(tmp_path / "w"), "--stream-weights"]),
        "holds pickle weights", "convert it to safetensors first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det0.safetensors", "in-memory", "pickled", "streamed"]


def test_cli_help_shows_stream_weights() -> None:
    result = CliRunner().invoke(app, ["fold", "--help"])
    assert result.exit_code == 0 and "--stream-weights" in result.output
    assert "aura-stream fold --stream-weights --model" in result.output
