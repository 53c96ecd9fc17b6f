"""generate: dampening against independent torch hooks, KV cache, padding, seeds, dtypes, errors."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from aura_stream_cli.main import app
from click.testing import CliRunner
from torch import nn

from aura_stream.errors import DataFileError, InputError, InterventionError
from aura_stream.generate import dampened, generate, read_jsonl, read_prompts
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import Intervention, make_intervention, save_intervention
from aura_stream.model import LoadedModel, load_model

PROMPTS = [
    "You are such a", "The weather in Paris is usually quite nice in", "Hello", "I think that",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread


@pytest.fixture(scope="module")
def models(tiny_model_dirs: dict[str, Path]) -> Iterator[Callable[[str], LoadedModel]]:
    """Float32 tiny models, loaded once per module (tests must not fold them)."""
    cache: dict[str, LoadedModel] = {}

    def get(kind: str) -> LoadedModel:
        if kind not in cache:
            cache[kind] = load_model(str(tiny_model_dirs[kind]))
        return cache[kind]

    yield get


def intervention(model: nn.Module, alphas: dict[str, np.ndarray]) -> Intervention:
    """An in-memory intervention with the given alphas."""
    aurocs = {n: np.full(a.shape, 0.5) for n, a in alphas.items()}
    meta = {"method": "test", "widths": {n: int(a.shape[0]) for n, a in alphas.items()}}
    return Intervention({n: a.astype(np.float32) for n, a in alphas.items()}, aurocs, meta)


def random_alphas(model: nn.Module, seed: int = 0, kinds: tuple[str, ...] | None = None
                  ) -> dict[str, np.ndarray]:
    """Alphas in [0, 1] on every hook (or the given kinds), a quarter of them exactly 0."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in all_hook_points(model).items():
        if kinds is None or name.split(".", 2)[2] in kinds:
            a = rng.uniform(0, 1, p.width)
            a[rng.uniform(size=p.width) < 0.25] = 0.0
            out[name] = a
    return out


def logits(loaded: LoadedModel, texts: list[str]) -> torch.Tensor:
    enc = loaded.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return loaded.model(**enc).logits  # type: ignore[no-any-return]


def n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("kind", ["gpt2", "llama", "falcon"])
def test_alpha_one_is_identity(kind: str, models: Callable[[str], LoadedModel]) -> None:
    loaded = models(kind)
    plain = logits(loaded, PROMPTS)
    ones = {n: np.ones(p.width) for n, p in all_hook_points(loaded.model).items()}
    with dampened(loaded.model, intervention(loaded.model, ones)):
        assert torch.equal(logits(loaded, PROMPTS), plain)
    # strength 0 turns any intervention into the identity
    iv = intervention(loaded.model, random_alphas(loaded.model))
    with dampened(loaded.model, iv, strength=0.0):
        assert torch.equal(logits(loaded, PROMPTS), plain)


# (kind, hook name, HF module path, site): the oracle's own table, independent of hookpoints.py
ZEROING = [
    ("gpt2", "blocks.1.mlp.hook_pre", "transformer.h.1.mlp.c_fc", "output"),
    ("gpt2", "blocks.2.mlp.hook_post", "transformer.h.2.mlp.act", "output"),
    ("gpt2", "blocks.0.hook_mlp_out", "transformer.h.0.mlp.c_proj", "output"),
    ("llama", "blocks.1.mlp.hook_pre", "model.layers.1.mlp.gate_proj", "output"),
    ("llama", "blocks.1.mlp.hook_pre_linear", "model.layers.1.mlp.up_proj", "output"),
    ("llama", "blocks.2.mlp.hook_post", "model.layers.2.mlp.down_proj", "input"),
    ("falcon", "blocks.1.mlp.hook_pre", "transformer.h.1.mlp.dense_h_to_4h", "output"),
    ("falcon", "blocks.0.hook_mlp_out", "transformer.h.0.mlp.dense_4h_to_h", "output"),
]


@pytest.mark.parametrize(("kind", "hook", "path", "site"), ZEROING)
def test_alpha_zero_equals_zeroing_with_torch_hook(kind: str, hook: str, path: str, site: str,
                                                   models: Callable[[str], LoadedModel]) -> None:
    loaded = models(kind)
    width = all_hook_points(loaded.model)[hook].width
    chosen = [0, 3, width - 1]
    alphas = np.ones(width)
    alphas[chosen] = 0.0
    with dampened(loaded.model, intervention(loaded.model, {hook: alphas})) as active:
        assert [p.name for p in active] == [hook]
        ours = logits(loaded, PROMPTS)

    def zero(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        t[..., chosen] = 0.0
        return t

    module = loaded.model.get_submodule(path)
    if site == "output":
        handle = module.register_forward_hook(lambda _m, _a, out: zero(out))
    else:
        handle = module.register_forward_pre_hook(lambda _m, args: (zero(args[0]), *args[1:]))
    try:
        oracle = logits(loaded, PROMPTS)
    finally:
        handle.remove()
    assert torch.equal(ours, oracle)
    assert not torch.equal(ours, logits(loaded, PROMPTS))  # the neurons mattered


@pytest.mark.parametrize("kind", ["gpt2", "llama", "falcon"])
def test_kv_cache_equals_full_recompute(kind: str, models: Callable[[str], LoadedModel]) -> None:
    loaded = models(kind)
    enc = loaded.tokenizer(PROMPTS[:1], return_tensors="pt")
    kwargs: dict[str, Any] = {"max_new_tokens": 10, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        baseline = loaded.model.generate(**enc, **kwargs)
        with dampened(loaded.model, intervention(loaded.model, random_alphas(loaded.model))):
            cached = loaded.model.generate(**enc, use_cache=True, **kwargs)
            recomputed = loaded.model.generate(**enc, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)
    assert not torch.equal(cached, baseline)  # the intervention acted during decoding


@pytest.mark.parametrize("kind", ["gpt2", "llama", "falcon"])
def test_batched_padded_greedy_equals_single(kind: str,
                                             models: Callable[[str], LoadedModel]) -> None:
    loaded = models(kind)
    iv = intervention(loaded.model, random_alphas(loaded.model))
    opts: dict[str, Any] = {"intervention": iv, "do_sample": False, "max_new_tokens": 8,
                            "progress": False}
    batched = generate(loaded, PROMPTS, batch_size=8, **opts)
    single = generate(loaded, PROMPTS, batch_size=1, **opts)
    assert [g.continuation for g in batched] == [g.continuation for g in single]
    assert [(g.prompt_index, g.prompt) for g in batched] == list(enumerate(PROMPTS))


def test_sampling_is_seeded_and_independent_of_batching(
        models: Callable[[str], LoadedModel]) -> None:
    loaded = models("llama")
    iv = intervention(loaded.model, random_alphas(loaded.model))
    opts: dict[str, Any] = {"intervention": iv, "max_new_tokens": 6, "progress": False, "seed": 3}
    a = generate(loaded, PROMPTS, num_return_sequences=2, batch_size=8, **opts)
    b = generate(loaded, PROMPTS, num_return_sequences=2, batch_size=3, **opts)
    first = generate(loaded, PROMPTS, num_return_sequences=1, batch_size=1, **opts)
    other_seed = generate(loaded, PROMPTS, num_return_sequences=1, **{**opts, "seed": 4})
    assert [g.continuation for g in a] == [g.continuation for g in b]
    a0 = [g.continuation for g in a if g.sample_index == 0]
    assert [g.continuation for g in first] == a0
    assert [g.continuation for g in other_seed] != a0
    assert a0 != [g.continuation for g in a if g.sample_index == 1]  # samples differ
    assert {g.settings.seed for g in a} == {3}
    assert all(g.settings.intervention_fingerprint == iv.fingerprint for g in a)


def test_bfloat16_stays_bfloat16(tiny_model_dirs: dict[str, Path]) -> None:
    loaded = load_model(str(tiny_model_dirs["llama"]), dtype="bfloat16")
    model = loaded.model
    iv = intervention(model, random_alphas(model))
    seen: list[torch.dtype] = []
    with dampened(model, iv):
        handles = [  # registered after ours, so they see the dampened tensors
            model.get_submodule("model.layers.0.mlp.gate_proj").register_forward_hook(
                lambda _m, _a, out: seen.append(out.dtype)),
            model.get_submodule("model.layers.0.mlp.up_proj").register_forward_hook(
                lambda _m, _a, out: seen.append(out.dtype)),
            model.get_submodule("model.layers.0.mlp.down_proj").register_forward_pre_hook(
                lambda _m, args: seen.append(args[0].dtype)),
            model.get_submodule("model.layers.0.mlp.down_proj").register_forward_hook(
                lambda _m, _a, out: seen.append(out.dtype)),
        ]
        try:
            enc = loaded.tokenizer(PROMPTS[:2], return_tensors="pt", padding=True,
                                   padding_side="left")
            with torch.no_grad():
                model.generate(**enc, max_new_tokens=3, do_sample=False, pad_token_id=0)
        finally:
            for h in handles:
                h.remove()
    assert len(seen) == 4 * 3 and set(seen) == {torch.bfloat16}
    gens = generate(loaded, PROMPTS, intervention=iv, max_new_tokens=4, progress=False)
    assert len(gens) == len(PROMPTS) and all(g.n_new_tokens <= 4 for g in gens)


def test_hooks_removed_after_exception(models: Callable[[str], LoadedModel]) -> None:
    model = models("gpt2").model
    before = n_hooks(model)
    with pytest.raises(RuntimeError, match="boom"), \
            dampened(model, intervention(model, random_alphas(model))) as active:
        assert n_hooks(model) == before + len(active) > before
        raise RuntimeError("boom")
    assert n_hooks(model) == before


# --- errors ---------------------------------------------------------------------------------


def test_width_mismatch_and_missing_hooks(models: Callable[[str], LoadedModel]) -> None:
    model = models("gpt2").model
    width = all_hook_points(model)["blocks.0.mlp.hook_pre"].width
    with pytest.raises(InterventionError, match=r"widths must match.*blocks\.0\.mlp\.hook_pre"), \
            dampened(model, intervention(model, {"blocks.0.mlp.hook_pre": np.ones(width + 1)})):
        pass
    with pytest.raises(InterventionError, match=r"blocks\.9\.mlp\.hook_pre do not exist"), \
            dampened(model, intervention(model, {"blocks.9.mlp.hook_pre": np.ones(width)})):
        pass
    assert n_hooks(model) == 0


def test_nan_alpha_and_bad_strength(models: Callable[[str], LoadedModel]) -> None:
    model = models("gpt2").model
    alphas = random_alphas(model)
    good = intervention(model, alphas)
    alphas["blocks.1.mlp.hook_pre"][2] = np.nan
    with pytest.raises(InterventionError, match="NaN"), \
            dampened(model, intervention(model, alphas)):
        pass
    for strength in (1.5, -0.1, float("nan")):
        with pytest.raises(InputError, match=r"`--strength` must be in \[0, 1\]"), \
                dampened(model, good, strength=strength):
            pass


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_new_tokens": 0}, r"`--max-new-tokens` must be >= 1; got 0"),
    ({"num_return_sequences": 0}, r"`--num-return-sequences` must be >= 1"),
    ({"batch_size": 0}, r"`--batch-size` must be >= 1"),
    ({"temperature": 0.0}, r"`--temperature` must be > 0"),
    ({"top_p": 0.0}, r"`--top-p` must be in \(0, 1\]"),
    ({"top_k": -1}, r"`--top-k` must be >= 0"),
    ({"seed": -1}, r"`--seed` must be >= 0"),
    ({"strength": 0.5}, r"`--strength` needs an intervention"),
    ({"prompts": []}, r"at least one prompt"),
    ({"prompts": ["ok", "  "]}, r"empty prompt at index 1"),
])
def test_bad_generate_options(kwargs: dict[str, Any], match: str,
                              models: Callable[[str], LoadedModel]) -> None:
    prompts = kwargs.pop("prompts", PROMPTS)
    with pytest.raises(InputError, match=match):
        generate(models("gpt2"), prompts, progress=False, **kwargs)


def test_prompt_longer_than_positions(models: Callable[[str], LoadedModel]) -> None:
    loaded = models("gpt2")  # 128 learned positions
    with pytest.raises(InputError, match=r"must fit the model's 128 positions; prompt 1 has"):
        generate(loaded, ["short", "word " * 120], max_new_tokens=20, progress=False)


def test_read_prompts(tmp_path: Path) -> None:
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\n  second\n", encoding="utf-8")
    assert read_prompts(txt) == ["first prompt", "  second"]
    rtp = tmp_path / "p.jsonl"
    rtp.write_text('{"prompt": {"text": "a"}}\n{"prompt": "b"}\n{"text": "c"}\n', encoding="utf-8")
    assert read_prompts(rtp) == ["a", "b", "c"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataFileError, match="holds no prompts"):
        read_prompts(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match="line 1: must be an object with a non-empty `prompt`"):
        read_prompts(bad)


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2_intervention(tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                      ) -> Path:
    """An AurA intervention file for the tiny GPT-2."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dirs["gpt2"])
    rng = np.random.default_rng(0)
    width = {"mlp.hook_pre": 4 * config.n_embd, "hook_mlp_out": config.n_embd}
    aurocs = {f"blocks.{i}.{k}": rng.uniform(0.2, 1.0, d)
              for i in range(config.n_layer) for k, d in width.items()}
    iv = make_intervention(aurocs, method="aura", metadata={"model": "tiny-gpt2"})
    return save_intervention(iv, tmp_path_factory.mktemp("iv") / "gpt2-aura.safetensors")


def one_line_error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return str(lines[0])


def test_cli_generate_writes_jsonl(gpt2_dir: Path, gpt2_intervention: Path, tmp_path: Path) -> None:
    out = tmp_path / "gens.jsonl"
    args = ["generate", "--model", str(gpt2_dir), "--intervention", str(gpt2_intervention),
            "--prompt", "Hello there", "--prompt", "You are", "--num-return-sequences", "2",
            "--max-new-tokens", "5", "--strength", "0.5", "--output", str(out), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 4 generations (aura " in result.output
    records = read_jsonl(out)
    keys = [(r["prompt_index"], r["sample_index"]) for r in records]
    assert keys == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {r["method"] for r in records} == {"aura"} and {r["strength"] for r in records} == {0.5}
    assert len(records[0]["intervention_fingerprint"]) == 64
    assert records[0]["settings"]["max_new_tokens"] == 5 and records[0]["prompt"] == "Hello there"
    assert isinstance(records[0]["continuation"], str)


def test_cli_generate_prints_baseline(gpt2_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello there\nYou are\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["generate", "--model", str(gpt2_dir), "--prompts",
                                      str(prompts), "--max-new-tokens", "3", "--greedy",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("[0] Hello there\n  0: ") and "[1] You are\n" in result.output


def test_cli_generate_errors(gpt2_dir: Path, gpt2_intervention: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["generate", "--model", str(gpt2_dir), "--quiet"]
    line = one_line_error(runner.invoke(app, [*base, "--prompt", "hi", "--max-new-tokens", "0"]))
    assert "`--max-new-tokens` must be >= 1; got 0" in line
    line = one_line_error(runner.invoke(app, [*base, "--prompt", "hi", "--strength", "2",
                                              "--intervention", str(gpt2_intervention)]))
    assert "`--strength` must be in [0, 1]; got 2.0" in line
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    line = one_line_error(runner.invoke(app, [*base, "--prompts", str(empty)]))
    assert "holds no prompts" in line
    assert "at least one prompt" in one_line_error(runner.invoke(app, base))
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"harmless": [1, 2, 3]}))
    line = one_line_error(runner.invoke(app, [*base, "--prompt", "x", "--intervention", str(evil)]))
    assert "not a safetensors file" in line


def test_cli_help_has_examples() -> None:
    for command in ("generate", "fold"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output
        assert f"aura-stream {command} --model" in result.output


def test_records_are_json_serialisable(models: Callable[[str], LoadedModel]) -> None:
    gens = generate(models("gpt2"), PROMPTS[:1], max_new_tokens=2, progress=False)
    record = gens[0].to_record()
    assert json.loads(json.dumps(record))["settings"]["intervention_fingerprint"] is None
    assert record["method"] is None
