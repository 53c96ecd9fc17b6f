"""fold: folded checkpoints compute what the hooked model computes; Conv1D orientation; errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from aura_stream_cli.main import app
from click.testing import CliRunner
from torch import nn
from transformers import AutoModelForCausalLM

from aura_stream.errors import InputError, InterventionError
from aura_stream.fold import PROVENANCE_FILE, fold
from aura_stream.generate import dampened
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import Intervention, load_intervention, make_intervention, save_intervention
from aura_stream.model import LoadedModel, load_model

TEXTS = ["You are such a", "The weather in Paris is usually quite nice in"]
DEFAULT_KINDS = ("mlp.hook_pre", "mlp.hook_pre_linear", "hook_mlp_out")
ALL_KINDS = (*DEFAULT_KINDS, "mlp.hook_post")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread


def intervention(alphas: dict[str, np.ndarray]) -> Intervention:
    aurocs = {n: np.full(a.shape, 0.5) for n, a in alphas.items()}
    return Intervention({n: a.astype(np.float32) for n, a in alphas.items()}, aurocs,
                        {"method": "test"})


def random_alphas(model: nn.Module, kinds: tuple[str, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """Alphas in [0, 1] on the hooks of ``kinds``, a quarter exactly 0."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in all_hook_points(model).items():
        if name.split(".", 2)[2] in kinds:
            a = rng.uniform(0, 1, p.width)
            a[rng.uniform(size=p.width) < 0.25] = 0.0
            out[name] = a
    return out


def logits(model: nn.Module, loaded: LoadedModel) -> torch.Tensor:
    enc = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**enc).logits  # type: ignore[no-any-return]


@pytest.mark.parametrize(("kind", "kinds"), [
    ("gpt2", DEFAULT_KINDS), ("gpt2", ALL_KINDS),
    ("llama", DEFAULT_KINDS), ("llama", ALL_KINDS),
    ("falcon", DEFAULT_KINDS), ("falcon", ALL_KINDS),
    ("falcon7b", ALL_KINDS), ("neox", ALL_KINDS),
])
def test_folded_logits_equal_hooked(kind: str, kinds: tuple[str, ...],
                                    tiny_model_dirs: dict[str, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_model(str(tiny_model_dirs[kind]))
    iv = intervention(random_alphas(loaded.model, kinds))
    plain = logits(loaded.model, loaded)
    with dampened(loaded.model, iv):
        hooked = logits(loaded.model, loaded)
    assert not torch.allclose(hooked, plain)
    out = fold(loaded, iv, tmp_path / "folded")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folded = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(logits(folded, loaded), hooked, rtol=1e-5, atol=1e-5)
    provenance = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert provenance["intervention_fingerprint"] == iv.fingerprint
    assert provenance["source_model"] == str(tiny_model_dirs[kind])
    assert {f["hook"] for f in provenance["folded"]} == set(iv.alphas)
    assert (out / "tokenizer.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["folded"]  # no temporary directory left


def test_gpt2_conv1d_orientation(gpt2_dir: Path, tmp_path: Path) -> None:
    """Conv1D stores [in, out]: output neuron j is column j; input feature j is row j."""
    loaded = load_model(str(gpt2_dir))
    mlp = loaded.model.transformer.h[1].mlp
    c_fc_w, c_fc_b = mlp.c_fc.weight.detach().clone(), mlp.c_fc.bias.detach().clone()
    c_proj_w, c_proj_b = mlp.c_proj.weight.detach().clone(), mlp.c_proj.bias.detach().clone()
    wte = loaded.model.transformer.wte.weight.detach().clone()
    d_mlp = c_fc_w.shape[1]
    pre, post = np.ones(d_mlp), np.ones(d_mlp)
    pre[5], post[7] = 0.0, 0.5
    fold(loaded, intervention({"blocks.1.mlp.hook_pre": pre, "blocks.1.mlp.hook_post": post}),
         tmp_path / "out")
    assert not mlp.c_fc.weight[:, 5].any() and mlp.c_fc.bias[5] == 0
    keep = [j for j in range(d_mlp) if j != 5]
    assert torch.equal(mlp.c_fc.weight[:, keep], c_fc_w[:, keep])
    assert torch.equal(mlp.c_fc.bias[keep], c_fc_b[keep])
    assert torch.equal(mlp.c_proj.weight[7], c_proj_w[7] * 0.5)
    assert torch.equal(mlp.c_proj.bias, c_proj_b)  # an input scaling leaves the bias alone
    assert torch.equal(loaded.model.transformer.wte.weight, wte)  # embeddings (tied) untouched


def test_strength_zero_writes_original_weights(gpt2_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(str(gpt2_dir))
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    iv = intervention(random_alphas(loaded.model, ALL_KINDS))
    fold(loaded, iv, tmp_path / "out", strength=0.0)
    folded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for key, value in folded.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_bfloat16_fold_keeps_dtype(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    loaded = load_model(str(tiny_model_dirs["llama"]), dtype="bfloat16")
    fold(loaded, intervention(random_alphas(loaded.model, ALL_KINDS)), tmp_path / "out")
    folded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert folded.model.layers[0].mlp.down_proj.weight.dtype == torch.bfloat16


def test_folded_model_refuses_hooks(gpt2_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(str(gpt2_dir))
    iv = intervention(random_alphas(loaded.model, DEFAULT_KINDS))
    fold(loaded, iv, tmp_path / "out")
    with pytest.raises(InterventionError, match="already hold an intervention"), \
            dampened(loaded.model, iv):
        pass


def test_out_dir_rules(gpt2_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(str(gpt2_dir))
    iv = intervention(random_alphas(loaded.model, DEFAULT_KINDS))
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InputError, match=r"`--out` must be a new or empty directory; .* holds 1 "):
        fold(loaded, iv, full)
    a_file = tmp_path / "file"
    a_file.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"`--out` must be a directory; .* is a file"):
        fold(loaded, iv, a_file)
    wrong = intervention({"blocks.0.mlp.hook_pre": np.ones(3)})
    with pytest.raises(InterventionError, match="widths must match"):
        fold(loaded, wrong, tmp_path / "never")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]
    assert (full / "keep.txt").read_text(encoding="utf-8") == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fold(loaded, iv, empty) == empty and (empty / "config.json").is_file()


@pytest.fixture
def gpt2_intervention_file(gpt2_dir: Path, tmp_path: Path) -> Path:
    model = load_model(str(gpt2_dir)).model
    rng = np.random.default_rng(1)
    aurocs = {n: rng.uniform(0.2, 1.0, p.width) for n, p in all_hook_points(model).items()
              if not n.endswith("hook_post")}
    iv = make_intervention(aurocs, method="det0", num_experts=10)
    return save_intervention(iv, tmp_path / "det0.safetensors")


def test_cli_fold(gpt2_dir: Path, gpt2_intervention_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "folded"
    args = ["fold", "--model", str(gpt2_dir), "--intervention", str(gpt2_intervention_file),
            "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"folded 10 dampened neurons (det0) into {out}"
    provenance = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert provenance["method"] == "det0" and provenance["config"]["command"].endswith("fold")
    again = runner.invoke(app, args)  # out is no longer empty
    assert again.exit_code == 1 and len(again.output.strip().splitlines()) == 1
    assert "must be a new or empty directory" in again.output
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(["harmless"]))
    bad = runner.invoke(app, ["fold", "--model", str(gpt2_dir), "--intervention", str(evil),
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and len(bad.output.strip().splitlines()) == 1
    assert "not a safetensors file" in bad.output
    strength = runner.invoke(app, [*args[:-1], str(tmp_path / "y"), "--strength", "-1"])
    assert strength.exit_code == 1 and "`--strength` must be in [0, 1]" in strength.output


# --------------------------------------------------------------------------- folding twice


@pytest.fixture
def folded_dir(gpt2_dir: Path, gpt2_intervention_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "folded"
    result = CliRunner().invoke(app, ["fold", "--model", str(gpt2_dir), "--intervention",
                                      str(gpt2_intervention_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_fold_of_a_folded_checkpoint_is_refused(folded_dir: Path, gpt2_intervention_file: Path,
                                                tmp_path: Path) -> None:
    from tests.test_reliability import assert_one_line_error

    again = tmp_path / "twice"
    result = CliRunner().invoke(app, ["fold", "--model", str(folded_dir), "--intervention",
                                      str(gpt2_intervention_file), "--out", str(again)])
    assert_one_line_error(result, "must not already hold a folded intervention for `fold`",
                          "(det0), folded from", "Pass the original model")
    assert not again.exists()
    loaded = load_model(str(folded_dir))  # the library refuses too, whatever the caller
    with pytest.raises(InterventionError, match="would apply the alphas twice"):
        fold(loaded, load_intervention(gpt2_intervention_file), again)
    assert not again.exists()


@pytest.mark.parametrize("command", ["generate", "eval"])
def test_intervention_on_a_folded_checkpoint_is_refused(command: str, folded_dir: Path,
                                                        gpt2_intervention_file: Path, tmp_path: Path) -> None:
    from tests.test_reliability import assert_one_line_error

    out = tmp_path / "out"
    extra = ["--prompt", "Hello", "--output", str(out)] if command == "generate" else \
        ["--out", str(out), "--limit-prompts", "1", "--samples-per-prompt", "1"]
    result = CliRunner().invoke(app, [command, "--model", str(folded_dir), "--intervention",
                                      str(gpt2_intervention_file), "--quiet", *extra])
    assert_one_line_error(result, "must not already hold a folded intervention for `--intervention`")
    assert not out.exists()


def test_generate_api_refuses_intervention_on_folded_checkpoint(folded_dir: Path,
                                                                gpt2_intervention_file: Path) -> None:
    from aura_stream.generate import generate

    loaded = load_model(str(folded_dir))
    assert generate(loaded, ["Hi"], max_new_tokens=2, progress=False)  # the folded model alone is fine
    with pytest.raises(InterventionError, match="would apply the alphas twice"):
        generate(loaded, ["Hi"], intervention=load_intervention(gpt2_intervention_file), progress=False)


def test_unreadable_fold_record_still_counts_as_folded(folded_dir: Path, gpt2_intervention_file: Path) -> None:
    (folded_dir / PROVENANCE_FILE).write_text('{"intervention_fingerprint": 7, "method": []}')
    loaded = load_model(str(folded_dir))
    with pytest.raises(InterventionError, match="is unreadable"), \
            dampened(loaded.model, load_intervention(gpt2_intervention_file)):
        pass
