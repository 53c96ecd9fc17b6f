"""hookpoints: our hooks on Hugging Face modules see what TransformerLens' bridge hooks of the same name see."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aura_stream.errors import HookError, ModelLoadError
from aura_stream.hookpoints import all_hook_points, arch_spec, default_patterns, match_hooks
from aura_stream.model import attach, load_model


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_same_tensors_as_transformer_lens_bridge(kind: str, tiny_model_dirs: dict[str, Path]) -> None:
    bridge_mod = pytest.importorskip("transformer_lens.model_bridge")
    path = tiny_model_dirs[kind]
    bridge = bridge_mod.TransformerBridge.boot_transformers(str(path), device="cpu")
    tokens = torch.tensor([[1, 5, 9, 30, 2, 7]])
    _, cache = bridge.run_with_cache(tokens)
    loaded = load_model(str(path))
    points = all_hook_points(loaded.model)
    seen: dict[str, torch.Tensor] = {}
    with attach(loaded.model, list(points.values()), lambda p, t: seen.__setitem__(p.name, t.clone())), \
            torch.no_grad():
        loaded.model(tokens)
    compared = 0
    for name, tensor in seen.items():
        if name in cache:  # the bridge may lack some names for some architectures
            torch.testing.assert_close(tensor, cache[name], rtol=1e-5, atol=1e-5, msg=name)
            compared += 1
    assert compared >= 3 * 3  # hook_pre, hook_post, hook_mlp_out of every block at least


def test_widths_and_default_sets(tiny_model_dirs: dict[str, Path]) -> None:
    gpt2 = all_hook_points(load_model(str(tiny_model_dirs["gpt2"])).model)
    assert gpt2["blocks.0.mlp.hook_pre"].width == 128 and gpt2["blocks.2.hook_mlp_out"].width == 32
    assert default_patterns(gpt2) == ["blocks.*.mlp.hook_pre", "blocks.*.hook_mlp_out"]
    llama = all_hook_points(load_model(str(tiny_model_dirs["llama"])).model)
    assert llama["blocks.1.mlp.hook_pre_linear"].width == 48
    assert llama["blocks.1.mlp.hook_post"].site == "input"
    assert default_patterns(llama) == ["blocks.*.mlp.hook_pre", "blocks.*.mlp.hook_pre_linear",
                                       "blocks.*.hook_mlp_out"]


def test_match_hooks_order_and_errors() -> None:
    names = ["blocks.0.mlp.hook_pre", "blocks.0.hook_mlp_out", "blocks.1.mlp.hook_pre", "blocks.1.hook_mlp_out"]
    assert match_hooks(["blocks.*.hook_mlp_out", "blocks.0.*"], names) == [*names[:2], names[3]]
    with pytest.raises(HookError, match=r"'x', 'blocks.7.\*' match nothing; available: blocks.\{0..1\}.mlp.hook_pre"):
        match_hooks(["x", "blocks.7.*", "blocks.0.*"], names)
    with pytest.raises(HookError, match="at least one"):
        match_hooks([], names)


def test_unsupported_architecture_lists_supported() -> None:
    with pytest.raises(ModelLoadError, match=r"architecture `bert` is not supported; supported: .*gpt2.*llama"):
        arch_spec("bert")


def test_hooks_removed_even_on_exception(gpt2_dir: Path) -> None:
    loaded = load_model(str(gpt2_dir))
    points = list(all_hook_points(loaded.model).values())
    with pytest.raises(RuntimeError), attach(loaded.model, points, lambda p, t: None):
        raise RuntimeError("boom")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in loaded.model.modules())
