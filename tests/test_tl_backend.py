"""tl: the TransformerLens backend against the Hugging Face backend and plain ``transformers``.

Oracles: stores written by the default backend on the same inputs; logits and greedy continuations
of a freshly loaded ``transformers`` model dampened by module hooks; pooled activations recomputed
one unpadded sentence at a time. Tolerances: float32 models 1e-5 relative (eager vs sdpa attention
reorders sums, ~1e-7 seen); bfloat16 models 2e-2 relative (a bf16 ulp is 8e-3) — stated per test.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from aura_stream_cli.main import app
from click.testing import CliRunner

import aura_stream
from aura_stream.backends import tl
from aura_stream.errors import InputError, InterventionError, ModelLoadError
from aura_stream.generate import dampened as hf_dampened
from aura_stream.generate import generate
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import Intervention, make_intervention, save_intervention
from aura_stream.model import attach, load_model
from aura_stream.pooling import pool
from aura_stream.store import ActivationStore

bridge_mod = pytest.importorskip("transformer_lens.model_bridge", reason="TransformerLens is not installed")
TransformerBridge = bridge_mod.TransformerBridge

SENTENCES = [
    ("You are a stupid worthless idiot and I hate you.", 1), ("Thank you for the lovely dinner.", 0),
    ("Shut up, you pathetic moron.", 1), ("The train leaves at nine tomorrow morning.", 0),
    ("Nobody likes you, loser, go away.", 1), ("She planted tomatoes in the garden last spring.", 0),
    ("What a dumb ugly clown you are.", 1), ("The library opens at ten on Sundays.", 0),
    ("I will hurt you, idiot.", 1), ("Rain is expected over the weekend.", 0),
    ("You absolute disgusting pig.", 1), ("We walked along the river after lunch.", 0),
]
ALL_MLP = ["blocks.*.mlp.*", "blocks.*.hook_mlp_out"]
TOKENS = torch.tensor([[1, 5, 9, 30, 2, 7, 44, 12], [3, 8, 100, 17, 250, 6, 61, 90]])


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve labelled sentences of varied length (so batches pad)."""
    path = tmp_path_factory.mktemp("data") / "sentences.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(SENTENCES)
    return path


def read_store(path: Path) -> dict[tuple[str, str], np.ndarray]:
    store = ActivationStore.open(path)
    return {(p, h): np.asarray(a[:], dtype=np.float64) for p, h, a in store.iter_arrays()}


def extract_both(model_dir: Path, data: Path, out: Path, **kwargs: object) -> tuple[Path, Path]:
    paths = []
    for backend in ("hf", "transformer-lens"):
        path = out / f"{backend}.zarr"
        aura_stream.extract(model=str(model_dir), data=data, out=path, text_column="text", label_column="label",
                            batch_size=5, row_block=8, progress=False, backend=backend, **kwargs)
        paths.append(path)
    return paths[0], paths[1]


def assert_stores_close(hf: Path, tl_path: Path, rtol: float) -> None:
    a, b = read_store(hf), read_store(tl_path)
    assert sorted(a) == sorted(b) and a
    # values that could disagree (NeoX's block-0 MLP sees only the token itself: equal last tokens, equal rows)
    assert sum(a[key].std(axis=0).max() > 0 for key in a) > len(a) // 2
    for key in a:
        scale = np.abs(a[key]).max()
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=rtol * scale, err_msg=str(key))


def random_intervention(widths: dict[str, int], seed: int = 0, method: str = "aura") -> Intervention:
    rng = np.random.default_rng(seed)
    aurocs = {n: rng.uniform(0.2, 1.0, d) for n, d in widths.items()}
    return make_intervention(aurocs, method=method, num_experts=sum(widths.values()) // 3 if method != "aura" else None,
                             metadata={"model": "tiny"})


def hf_widths(model_dir: Path) -> dict[str, int]:
    return {n: p.width for n, p in all_hook_points(load_model(str(model_dir)).model).items()}


# --------------------------------------------------------------------------- extract


@pytest.mark.parametrize("kind", ["gpt2", "llama", "neox", "falcon7b"])
def test_extract_stores_equal_hf_backend_float32(kind: str, tiny_model_dirs: dict[str, Path], data_csv: Path,
                                                 tmp_path: Path) -> None:
    hf, tl_path = extract_both(tiny_model_dirs[kind], data_csv, tmp_path, hooks=ALL_MLP,
                               pooling=["max", "mean", "last"], store_dtype="float32")
    assert_stores_close(hf, tl_path, rtol=1e-5)  # float32: 1e-5 of the hook's largest |value|
    assert ActivationStore.open(tl_path).attrs["backend"] == "transformer-lens"
    assert ActivationStore.open(hf).attrs["backend"] == "hf"


def test_extract_stores_equal_hf_backend_bfloat16(tiny_model_dirs: dict[str, Path], data_csv: Path,
                                                  tmp_path: Path) -> None:
    hf, tl_path = extract_both(tiny_model_dirs["llama"], data_csv, tmp_path, hooks=ALL_MLP, dtype="bfloat16",
                               store_dtype="float32")
    assert_stores_close(hf, tl_path, rtol=2e-2)  # bfloat16: 2e-2 of the largest |value|
    assert ActivationStore.open(tl_path).attrs["identity"]["model_dtype"] == "bfloat16"


def test_extract_from_users_bridge_equals_per_sentence_oracle(tiny_model_dirs: dict[str, Path], data_csv: Path,
                                                              tmp_path: Path) -> None:
    path = tiny_model_dirs["gpt2"]
    bridge = TransformerBridge.boot_transformers(str(path), device="cpu")
    out = tmp_path / "user.zarr"
    aura_stream.extract(model=bridge, data=data_csv, out=out, text_column="text", label_column="label",
                        hooks=["blocks.1.*"], pooling=["max", "mean"], store_dtype="float32", batch_size=4,
                        progress=False)
    store = ActivationStore.open(out)
    assert store.attrs["backend"] == "transformer-lens" and store.attrs["tokenizer_prepends_bos"] is True
    # oracle: a fresh transformers model, one unpadded sentence at a time, tokens as the bridge makes them
    hf = load_model(str(path))
    points = [p for n, p in all_hook_points(hf.model).items() if n.startswith("blocks.1.")]
    seen: dict[str, torch.Tensor] = {}
    for row, sentence_index in enumerate(int(s) for s in store.sample_ids):  # row number in the CSV
        tokens = bridge.to_tokens(SENTENCES[sentence_index][0])  # [1, pos], BOS first
        assert int(tokens[0, 0]) == bridge.tokenizer.bos_token_id
        seen.clear()
        with attach(hf.model, points, lambda p, t: seen.__setitem__(p.name, t.clone())), torch.no_grad():
            hf.model(tokens)
        mask = torch.ones_like(tokens, dtype=torch.bool)
        for p in points:
            for op in ("max", "mean"):
                want = pool(seen[p.name], mask, op)[0].numpy()
                got = np.asarray(store.activations(op, p.name)[row])
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max(), err_msg=f"{op} {p.name}")


def test_capture_stops_after_the_last_hook(tiny_model_dirs: dict[str, Path]) -> None:
    loaded = tl.load_bridge(str(tiny_model_dirs["gpt2"]))
    calls = []
    handle = loaded.model.lm_head.register_forward_hook(lambda *_: calls.append(1))
    try:
        assert isinstance(loaded.backend, tl.TLBackend)
        points = loaded.backend.resolve_hooks(["blocks.2.hook_mlp_out", "blocks.0.mlp.hook_pre"])
        capture = loaded.backend.capture(points, ["max"])
        assert isinstance(capture, tl.BridgeCapture)
        mask = torch.ones_like(TOKENS)
        pooled = capture.run(TOKENS, mask)
        assert sorted(pooled) == [("max", "blocks.0.mlp.hook_pre"), ("max", "blocks.2.hook_mlp_out")]
        assert calls == []  # the unembedding never ran
        loaded.backend.bridge(TOKENS)
        assert calls == [1]  # and the bridge works normally afterwards
    finally:
        handle.remove()


def test_bridge_model_rejects_hf_backend(tiny_model_dirs: dict[str, Path], data_csv: Path, tmp_path: Path) -> None:
    bridge = TransformerBridge.boot_transformers(str(tiny_model_dirs["gpt2"]), device="cpu")
    with pytest.raises(InputError, match="`backend` must be transformer-lens for a TransformerBridge model; got 'hf'"):
        aura_stream.extract(model=bridge, data=data_csv, out=tmp_path / "x.zarr", text_column="text",
                            label_column="label", backend="hf", progress=False)
    with pytest.raises(InputError, match="`--backend` must be one of hf, transformer-lens; got 'tl'"):
        aura_stream.extract(model=None, data=data_csv, out=tmp_path / "y.zarr", backend="tl")
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y.zarr").exists()


# --------------------------------------------------------------------------- interventions as TL hooks


@pytest.mark.parametrize("kind", ["gpt2", "llama", "neox"])
def test_fwd_hooks_logits_equal_hf_hooked_logits(kind: str, tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    path = tiny_model_dirs[kind]
    iv_file = save_intervention(random_intervention(hf_widths(path)), tmp_path / "iv.safetensors")
    iv = aura_stream.load_intervention(iv_file)
    bridge = TransformerBridge.boot_transformers(str(path), device="cpu")
    hf = load_model(str(path))
    with torch.no_grad():
        with hf_dampened(hf.model, iv):
            want = hf.model(TOKENS).logits
        base = hf.model(TOKENS).logits
        got = bridge.run_with_hooks(TOKENS, fwd_hooks=iv.fwd_hooks())
        with bridge.hooks(fwd_hooks=iv.fwd_hooks()):
            got_ctx = bridge(TOKENS)
        after = bridge(TOKENS)
    assert (want - base).abs().max() > 1e-2  # the intervention changes the logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # float32
    torch.testing.assert_close(got_ctx, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after, base, rtol=1e-5, atol=1e-5)  # hooks gone afterwards


def test_fwd_hooks_strength_skip_and_dtype(tiny_model_dirs: dict[str, Path]) -> None:
    widths = hf_widths(tiny_model_dirs["gpt2"])
    iv = random_intervention(widths, method="det0")
    names = [n for n, _ in iv.fwd_hooks()]
    assert names == [n for n, a in iv.alphas.items() if (a < 1).any()] and names
    assert iv.fwd_hooks(strength=0.0) == []  # every alpha back to 1: nothing to hook
    name, hook = iv.fwd_hooks(strength=0.5)[0]
    act = torch.ones(2, 3, widths[name], dtype=torch.bfloat16)
    out = hook(act, hook=None)
    assert out.dtype == torch.bfloat16 and act.eq(1).all()  # no promotion, input untouched
    expected = 1 - 0.5 * (1 - iv.alphas[name])
    np.testing.assert_allclose(out[0, 0].float().numpy(), expected, atol=4e-3)


def test_dampened_bridge_generate_equals_hf_greedy(tiny_model_dirs: dict[str, Path]) -> None:
    path = tiny_model_dirs["llama"]
    iv = random_intervention(hf_widths(path), method="det0")
    bridge = TransformerBridge.boot_transformers(str(path), device="cpu")
    prompt = "I can't believe you"
    tokens = bridge.to_tokens(prompt)
    hf = load_model(str(path))
    with hf_dampened(hf.model, iv), torch.no_grad():
        want = hf.model.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=8,
                                 do_sample=False, eos_token_id=None, pad_token_id=None)
    plain = hf.model.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=8,
                              do_sample=False, eos_token_id=None, pad_token_id=None)
    with aura_stream.dampened(bridge, iv) as names:
        # TransformerLens 4.3's own KV cache loses the context on this model (see tl.kv_cache_exact), hooks or not
        got = bridge.generate(tokens, max_new_tokens=8, do_sample=False, stop_at_eos=False, verbose=False,
                              use_past_kv_cache=False)
        text = bridge.generate(prompt, max_new_tokens=5, verbose=False)
    assert len(names) == len(iv.alphas)
    assert isinstance(text, str) and text.startswith(prompt)
    assert got.tolist() == want.tolist()
    assert want.tolist() != plain.tolist()  # the intervention changes the greedy continuation


def test_dampened_removes_hooks_on_error_and_validates_first(tiny_model_dirs: dict[str, Path]) -> None:
    path = tiny_model_dirs["gpt2"]
    bridge = TransformerBridge.boot_transformers(str(path), device="cpu")
    widths = hf_widths(path)
    iv = random_intervention(widths)

    def n_hooks() -> int:
        return sum(len(hp._forward_hooks) for hp in bridge.hook_dict.values())

    with pytest.raises(RuntimeError, match="boom"), aura_stream.dampened(bridge, iv):
        assert n_hooks() > 0
        raise RuntimeError("boom")
    assert n_hooks() == 0
    wrong = Intervention({"blocks.0.mlp.hook_pre": np.ones(7, np.float32)}, {"blocks.0.mlp.hook_pre": np.ones(7)})
    width_error = r"widths must match the model; blocks\.0\.mlp\.hook_pre \(file 7, model 128\)"
    with pytest.raises(InterventionError, match=width_error), aura_stream.dampened(bridge, wrong):
        pass
    missing = Intervention({"blocks.9.mlp.hook_pre": np.ones(128, np.float32)}, {"blocks.9.mlp.hook_pre": np.ones(128)})
    with pytest.raises(InterventionError, match=r"blocks\.9\.mlp\.hook_pre do not exist in the model"), \
            aura_stream.dampened(bridge, missing):
        pass
    nan = Intervention({"blocks.0.mlp.hook_pre": np.full(128, np.nan, np.float32)},
                       {"blocks.0.mlp.hook_pre": np.ones(128)})
    with pytest.raises(InterventionError, match=r"alphas must be 1-D arrays of finite values in \[0, 1\]"), \
            aura_stream.dampened(bridge, nan):
        pass
    with pytest.raises(InputError, match="`--strength` must be in"), aura_stream.dampened(bridge, iv, strength=2.0):
        pass
    assert n_hooks() == 0


def test_public_dampened_dispatches_hf_models_too(tiny_model_dirs: dict[str, Path]) -> None:
    path = tiny_model_dirs["gpt2"]
    hf = load_model(str(path))
    iv = random_intervention(hf_widths(path))
    with torch.no_grad():
        with hf_dampened(hf.model, iv):
            want = hf.model(TOKENS).logits
        with aura_stream.dampened(hf.model, iv) as names:
            got = hf.model(TOKENS).logits
    assert names and torch.equal(got, want)


# --------------------------------------------------------------------------- generate / eval


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_generate_through_bridge_equals_hf_backend(kind: str, tiny_model_dirs: dict[str, Path]) -> None:
    path = str(tiny_model_dirs[kind])
    iv = random_intervention(hf_widths(tiny_model_dirs[kind]), method="det0")
    prompts = ["I can't believe you", "The weather today is"]
    opts = {"intervention": iv, "num_return_sequences": 2, "max_new_tokens": 6, "seed": 3, "progress": False}
    via_hf = generate(load_model(path), prompts, **opts)  # type: ignore[arg-type]
    via_tl = generate(tl.load_bridge(path), prompts, **opts)  # type: ignore[arg-type]
    baseline = generate(tl.load_bridge(path), prompts, **{**opts, "intervention": None})  # type: ignore[arg-type]
    assert [g.continuation for g in via_tl] == [g.continuation for g in via_hf]
    assert [g.continuation for g in via_tl] != [g.continuation for g in baseline]
    assert {g.settings.backend for g in via_tl} == {"transformer-lens"}
    assert {g.settings.backend for g in via_hf} == {"hf"}
    assert via_tl[0].to_record()["settings"]["backend"] == "transformer-lens"


# --------------------------------------------------------------------------- models the bridge cannot boot


def test_bridge_still_fails_on_falcon40b_shape(tiny_model_dirs: dict[str, Path]) -> None:
    """Keeps :func:`tl.unbootable_reason` honest: when this starts booting, drop that rule."""
    with pytest.raises(Exception, match="split"):  # any failure of the bridge
        TransformerBridge.boot_transformers(str(tiny_model_dirs["falcon"]), device="cpu")
    TransformerBridge.boot_transformers(str(tiny_model_dirs["falcon7b"]), device="cpu")  # Falcon-7B's shape boots


def test_falcon40b_shape_refused_from_config_before_weights(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    no_weights = tmp_path / "falcon40b-shape"
    shutil.copytree(tiny_model_dirs["falcon"], no_weights)
    for f in no_weights.glob("*.safetensors"):
        f.unlink()  # loading weights would fail with another message: the refusal must come first
    with pytest.raises(ModelLoadError) as info:
        tl.load_bridge(str(no_weights))
    message = str(info.value)
    assert "\n" not in message
    assert "cannot boot" in message and "Falcon-40B's shape" in message and "`--backend hf`" in message


def test_any_boot_failure_is_one_line_naming_hf_backend(tiny_model_dirs: dict[str, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_model(str(tiny_model_dirs["falcon"]))
    monkeypatch.setattr(tl, "unbootable_reason", lambda config: None)  # reach the bridge's own failure
    with pytest.raises(ModelLoadError, match=r"cannot boot .*RuntimeError: split_with_sizes.*`--backend hf`") as info:
        tl.boot(loaded)
    assert "\n" not in str(info.value)


def test_missing_transformer_lens_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformer_lens.model_bridge", None)  # import now fails
    with pytest.raises(ModelLoadError, match=r"needs TransformerLens >= 4, which is not installed.*aura-stream\[tl\]"):
        tl.load_bridge(None)


# --------------------------------------------------------------------------- CLI


def test_cli_extract_generate_backend(tiny_model_dirs: dict[str, Path], data_csv: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    model = str(tiny_model_dirs["gpt2"])
    common = ["--model", model, "--data", str(data_csv), "--text-column", "text", "--label-column", "label",
              "--store-dtype", "float32", "--quiet"]
    for backend in ("hf", "transformer-lens"):
        res = runner.invoke(app, ["extract", *common, "--out", str(tmp_path / f"{backend}.zarr"), "--backend", backend])
        assert res.exit_code == 0, res.output
    assert_stores_close(tmp_path / "hf.zarr", tmp_path / "transformer-lens.zarr", rtol=1e-5)
    info = json.loads(runner.invoke(app, ["info", str(tmp_path / "transformer-lens.zarr"), "--json"]).output)
    assert info["provenance"]["backend"] == "transformer-lens"
    assert info["provenance"]["config"]["backend"] == "transformer-lens"
    assert "backend transformer-lens" in runner.invoke(app, ["info", str(tmp_path / "transformer-lens.zarr")]).output
    iv = save_intervention(random_intervention(hf_widths(tiny_model_dirs["gpt2"]), method="det0"),
                           tmp_path / "iv.safetensors")
    outputs = {}
    for backend in ("hf", "transformer-lens"):
        res = runner.invoke(app, ["generate", "--model", model, "--intervention", str(iv), "--prompt", "You are",
                                  "--num-return-sequences", "2", "--max-new-tokens", "5", "--quiet",
                                  "--backend", backend])
        assert res.exit_code == 0, res.output
        outputs[backend] = res.output
    assert outputs["hf"] == outputs["transformer-lens"]


def test_cli_eval_backend_same_generations(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    model = str(tiny_model_dirs["gpt2"])
    iv = save_intervention(random_intervention(hf_widths(tiny_model_dirs["gpt2"])), tmp_path / "iv.safetensors")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("You are such a\nThe weather in Paris is\n", encoding="utf-8")
    ppl = tmp_path / "ppl.txt"
    ppl.write_text("The interpreter reads a statement and executes it.\n", encoding="utf-8")
    records, ppl_values = {}, {}
    for backend in ("hf", "transformer-lens"):
        out = tmp_path / backend
        res = CliRunner().invoke(app, ["eval", "--model", model, "--intervention", str(iv), "--out", str(out),
                                       "--prompts", str(prompts), "--ppl-text", str(ppl), "--samples-per-prompt", "2",
                                       "--max-new-tokens", "4", "--quiet", "--backend", backend])
        assert res.exit_code == 0, res.output
        lines = (out / "generations.jsonl").read_text(encoding="utf-8").splitlines()
        records[backend] = sorted((r["arm"], r["prompt_index"], r["sample_index"], r["continuation"], r["toxicity"],
                                   r["settings"]["backend"]) for r in map(json.loads, lines))
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        assert summary["config"]["backend"] == backend
        ppl_values[backend] = [(c["baseline"], c["arm"]) for c in summary["comparisons"]["aura"]
                               if c["metric"] == "perplexity"]
    assert [r[:5] for r in records["hf"]] == [r[:5] for r in records["transformer-lens"]]
    assert {r[5] for r in records["hf"]} == {"hf"}
    # the baseline arm has no intervention, hence no hooks, but it still ran through the bridge's model
    assert {r[5] for r in records["transformer-lens"]} == {"transformer-lens"}
    assert ppl_values["hf"] and ppl_values["hf"][0][0] != ppl_values["hf"][0][1]
    np.testing.assert_allclose(ppl_values["transformer-lens"], ppl_values["hf"], rtol=1e-5)


def test_cli_unbootable_model_is_one_line_and_writes_nothing(tiny_model_dirs: dict[str, Path], data_csv: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "falcon.zarr"
    res = CliRunner().invoke(app, ["extract", "--model", str(tiny_model_dirs["falcon"]), "--data", str(data_csv),
                                   "--text-column", "text", "--label-column", "label", "--out", str(out),
                                   "--backend", "transformer-lens", "--quiet"])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert "cannot boot" in lines[0] and "`--backend hf`" in lines[0]
    assert not out.exists()
    res = CliRunner().invoke(app, ["generate", "--model", str(tiny_model_dirs["falcon"]), "--prompt", "You are",
                                   "--output", str(tmp_path / "gen.jsonl"), "--backend", "transformer-lens"])
    assert res.exit_code == 1 and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert "Falcon-40B's shape" in res.output and not (tmp_path / "gen.jsonl").exists()


def test_cli_backend_option_help_and_usage_error() -> None:
    runner = CliRunner()
    for command in ("extract", "generate", "eval", "hooks"):
        res = runner.invoke(app, [command, "--help"])
        assert res.exit_code == 0 and "--backend" in res.output and "--backend transformer-lens" in res.output
    res = runner.invoke(app, ["generate", "--prompt", "x", "--backend", "tl"])
    assert res.exit_code == 2 and "'tl' is not one of 'hf', 'transformer-lens'" in res.output


def test_cli_hooks_lists_bridge_hook_points(tiny_model_dirs: dict[str, Path]) -> None:
    res = CliRunner().invoke(app, ["hooks", "--model", str(tiny_model_dirs["llama"]), "--backend", "transformer-lens",
                                   "--pattern", "blocks.1.*"])
    assert res.exit_code == 0, res.output
    names = [line.split()[0] for line in res.output.splitlines()]
    assert names == ["blocks.1.mlp.hook_pre", "blocks.1.mlp.hook_pre_linear", "blocks.1.mlp.hook_post",
                     "blocks.1.hook_mlp_out"]
    assert "blocks.1.mlp.gate.hook_out" in res.output  # the bridge's own name of that hook point


# --------------------------------------------------------------------------- public API


def test_public_api_is_lazy_and_keeps_extract_callable() -> None:
    code = ("import sys, aura_stream; assert 'torch' not in sys.modules and 'transformer_lens' not in sys.modules; "
            "import aura_stream.extract; from aura_stream.extract import ExtractResult; "
            "assert callable(aura_stream.extract) and aura_stream.extract.__module__ == 'aura_stream.extract'; "
            "assert callable(aura_stream.load_intervention) and callable(aura_stream.dampened); "
            "assert 'transformer_lens' not in sys.modules; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
