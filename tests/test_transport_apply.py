"""Transport interventions (Linear-AcT, Mean-AcT) applied at generation, through TransformerLens and in ``fold``.

Oracle: plain ``transformers`` forward passes with torch hooks written here, applying
``omega * z + beta`` (inside ``[lo, hi]`` for source-range) to the Hugging Face modules directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from aura_stream.errors import InterventionError
from aura_stream.fold import fold
from aura_stream.generate import dampened
from aura_stream.hookpoints import all_hook_points
from aura_stream.interventions import Intervention, make_transport_intervention
from aura_stream.model import load_model

pytestmark = pytest.mark.usefixtures("one_thread")
KINDS = ("mlp.hook_pre", "mlp.hook_post", "hook_mlp_out")


def _transport(model: Any, *, seed: int, bounded: bool, kinds: tuple[str, ...] = KINDS) -> Intervention:
    rng = np.random.default_rng(seed)
    est = {}
    for name, p in all_hook_points(model).items():
        if not name.endswith(kinds):
            continue
        omega = rng.uniform(-0.5, 1.5, p.width)
        beta = rng.normal(0, 0.5, p.width)
        lo = rng.uniform(-1.0, 0.0, p.width)
        est[name] = np.stack([omega, beta, lo, lo + rng.uniform(0.5, 2.0, p.width)]).astype(np.float32)
    return make_transport_intervention(est, method="linear-act", support="source-range" if bounded else "all",
                                       metadata={"model": "tiny"})


def _oracle_logits(model: Any, iv: Intervention, ids: torch.Tensor) -> torch.Tensor:
    """Hooks written here from the hook table, independent of aura-stream's hook code."""
    handles = []
    for name, p in all_hook_points(model).items():
        if name not in iv.alphas:
            continue
        omega, beta, lo, hi = (None if a is None else torch.tensor(a) for a in iv.affine(name))

        def apply(z: torch.Tensor, omega: Any = omega, beta: Any = beta, lo: Any = lo, hi: Any = hi) -> torch.Tensor:
            mapped = z * omega + beta
            return mapped if lo is None else torch.where((z >= lo) & (z <= hi), mapped, z)

        module = model.get_submodule(p.module_path)
        if p.site == "output":
            handles.append(module.register_forward_hook(lambda _m, _a, out, f=apply: f(out)))
        else:
            handles.append(module.register_forward_pre_hook(lambda _m, args, f=apply: (f(args[0]), *args[1:])))
    try:
        with torch.no_grad():
            return model(ids).logits
    finally:
        for h in handles:
            h.remove()


IDS = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 11]])


@pytest.mark.parametrize("kind", ["gpt2", "llama", "falcon", "neox"])
@pytest.mark.parametrize("bounded", [False, True])
def test_hooked_transport_equals_oracle(kind: str, bounded: bool, tiny_model_dirs: dict[str, Path]) -> None:
    loaded = load_model(str(tiny_model_dirs[kind]))
    iv = _transport(loaded.model, seed=1, bounded=bounded)
    with torch.no_grad():
        plain = loaded.model(IDS).logits
        with dampened(loaded.model, iv):
            got = loaded.model(IDS).logits
    want = _oracle_logits(loaded.model, iv, IDS)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3  # the transport changed something


def test_strength_zero_is_the_identity(tiny_model_dirs: dict[str, Path]) -> None:
    loaded = load_model(str(tiny_model_dirs["gpt2"]))
    iv = _transport(loaded.model, seed=2, bounded=False)
    with torch.no_grad():
        plain = loaded.model(IDS).logits
        with dampened(loaded.model, iv, strength=0.0):
            torch.testing.assert_close(loaded.model(IDS).logits, plain, rtol=0, atol=0)
        with dampened(loaded.model, iv, strength=0.5):
            half = loaded.model(IDS).logits
    want = _oracle_logits(loaded.model, iv.with_strength(0.5), IDS)
    torch.testing.assert_close(half, want, rtol=1e-5, atol=1e-5)


def test_transformer_lens_bridge_applies_the_same_transport(tiny_model_dirs: dict[str, Path]) -> None:
    pytest.importorskip("transformer_lens")
    from aura_stream.backends.tl import load_bridge

    loaded = load_bridge(str(tiny_model_dirs["gpt2"]))
    iv = _transport(loaded.model, seed=3, bounded=True)
    with torch.no_grad():
        want = _oracle_logits(loaded.model, iv, IDS)
        with loaded.backend.dampened(iv):
            got = loaded.backend.bridge(IDS)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_fold_transport_into_biased_linears_is_exact(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    loaded = load_model(str(tiny_model_dirs["gpt2"]))  # c_fc and c_proj have biases
    iv = _transport(loaded.model, seed=4, bounded=False)
    want = _oracle_logits(loaded.model, iv, IDS)
    fold(loaded, iv, tmp_path / "folded")
    folded = AutoModelForCausalLM.from_pretrained(tmp_path / "folded").eval()
    with torch.no_grad():
        torch.testing.assert_close(folded(IDS).logits, want, rtol=1e-4, atol=1e-4)


def test_fold_refuses_offsets_without_bias_and_source_range(tiny_model_dirs: dict[str, Path],
                                                            tmp_path: Path) -> None:
    loaded = load_model(str(tiny_model_dirs["llama"]))  # gate/up/down projections have no bias
    with pytest.raises(InterventionError, match="a transport offset beta needs a bias"):
        fold(loaded, _transport(loaded.model, seed=5, bounded=False), tmp_path / "a")
    gpt2 = load_model(str(tiny_model_dirs["gpt2"]))
    with pytest.raises(InterventionError, match="a source-range transport must not be folded"):
        fold(gpt2, _transport(gpt2.model, seed=5, bounded=True), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_fold_streamed_refuses_offsets_without_bias(tiny_model_dirs: dict[str, Path], tmp_path: Path) -> None:
    """``fold --stream-weights`` folds offsets as the in-memory fold does (tests/test_fold_streamed.py) and
    refuses what it refuses, before any shard is read."""
    from aura_stream.fold_streamed import fold_streamed

    model = tiny_model_dirs["llama"]
    iv = _transport(load_model(str(model)).model, seed=6, bounded=False)
    with pytest.raises(InterventionError, match="a transport offset beta needs a bias"):
        fold_streamed(model, iv, tmp_path / "out", progress=False)
    gpt2 = tiny_model_dirs["gpt2"]
    with pytest.raises(InterventionError, match="a source-range transport must not be folded"):
        fold_streamed(gpt2, _transport(load_model(str(gpt2)).model, seed=6, bounded=True), tmp_path / "out",
                      progress=False)
    assert not (tmp_path / "out").exists()


def test_non_finite_transport_refused_before_hooks(tiny_model_dirs: dict[str, Path]) -> None:
    loaded = load_model(str(tiny_model_dirs["gpt2"]))
    iv = _transport(loaded.model, seed=7, bounded=False)
    name = next(iter(iv.betas))
    iv.betas[name][0] = np.nan
    with pytest.raises(InterventionError, match="must be finite 1-D arrays"), dampened(loaded.model, iv):
        pass
