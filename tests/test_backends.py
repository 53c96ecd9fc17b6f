"""backends: the registry, the interface on the Hugging Face backend, and the import graph.

Oracles: fresh interpreters (each module of the package imported first in its own process, so any
import cycle shows), ``sys.modules`` after importing the dampening primitives, the hook points of
:func:`aura_stream.hookpoints.all_hook_points`, and the source text of ``cli/``.
"""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import aura_stream
from aura_stream.backends import BACKENDS, backend_for, check_backend, get_backend
from aura_stream.backends.base import Backend
from aura_stream.backends.hf import HFBackend
from aura_stream.dampening import AlphaHook, check_alphas, check_intervention
from aura_stream.errors import InputError, InterventionError
from aura_stream.hookpoints import HookPoint, all_hook_points
from aura_stream.interventions import Intervention
from aura_stream.model import LoadedModel, PooledCapture, load_model

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(m.name for m in pkgutil.walk_packages(aura_stream.__path__, "aura_stream."))


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)


# --------------------------------------------------------------------------- import graph


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_module_imports_first_in_a_fresh_process() -> None:
    # one interpreter loads the third-party libraries once, then forks a process per module; each
    # child imports its aura_stream module with no aura_stream module loaded, so a cycle fails there
    code = f"""
import importlib, os, sys, traceback
import numpy, torch, zarr
assert not any(m.startswith("aura_stream") for m in sys.modules)
failed = []
for name in {MODULES!r}:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
        failed.append(name)
print("failed:", failed)
"""
    assert "aura_stream.backends.tl" in MODULES and "aura_stream.generate" in MODULES
    res = run_python(code)
    assert res.returncode == 0 and res.stdout.strip() == "failed: []", res.stdout + res.stderr


@pytest.mark.parametrize("order", [("aura_stream.generate", "aura_stream.backends.tl"),
                                   ("aura_stream.backends.tl", "aura_stream.generate"),
                                   ("aura_stream.tl_hooks", "aura_stream.dampening")])
def test_generate_and_tl_import_in_either_order(order: tuple[str, str]) -> None:
    res = run_python(f"import {order[0]}, {order[1]}; print('ok')")
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_dampening_imports_no_model_code() -> None:
    res = run_python("import sys, aura_stream.dampening; "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'transformer_lens') "
                     "or m == 'aura_stream.model' "
                     "or m.startswith('aura_stream.backends')))")
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def test_backends_package_is_light() -> None:
    res = run_python("import sys, aura_stream.backends as b; b.check_backend('transformer-lens'); "
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformer_lens')))")
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def test_cli_has_no_backend_branches() -> None:
    for path in sorted((ROOT / "cli").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"backend\s*[!=]=", text), path.name
        assert not re.search(r"""["']transformer-lens["']""", text), path.name
        assert ".bridge" not in text and "aura_stream.tl" not in text, path.name


def test_no_backend_probes_outside_backends() -> None:
    for path in sorted((ROOT / "aura_stream").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""getattr\([^)]*["'](bridge|kv_cache)["']""", text), path.name
        assert "BridgeModel" not in text, path.name


# --------------------------------------------------------------------------- registry


def test_registry_names_and_one_line_error() -> None:
    assert BACKENDS == ("hf", "transformer-lens")
    assert get_backend("hf") is HFBackend and get_backend(None) is HFBackend and check_backend(None) == "hf"
    assert get_backend("transformer-lens").name == "transformer-lens"
    with pytest.raises(InputError, match=r"^`--backend` must be one of hf, transformer-lens; got 'tl'\. ") as info:
        get_backend("tl")
    assert "\n" not in str(info.value)
    assert backend_for("./some/dir", None) is HFBackend and backend_for(Path("x"), "hf") is HFBackend


def test_dampened_entry_points_are_one() -> None:
    from aura_stream import backends, generate, tl_hooks

    assert aura_stream.dampened is backends.dampened is tl_hooks.dampened
    assert generate.dampened is __import__("aura_stream.backends.hf", fromlist=["x"]).dampened


# --------------------------------------------------------------------------- the interface on hf


@pytest.fixture(scope="module")
def loaded(tiny_model_dirs: dict[str, Path]) -> LoadedModel:
    return load_model(str(tiny_model_dirs["gpt2"]))


def test_hf_backend_interface(loaded: LoadedModel) -> None:
    backend = loaded.backend
    assert isinstance(backend, HFBackend) and backend.name == "hf" and backend.kv_cache
    assert backend.generation_model is loaded.model and backend.describe() == {"backend": "hf"}
    points = backend.hook_points()
    assert points == all_hook_points(loaded.model)
    chosen = backend.resolve_hooks(["blocks.1.mlp.*"])
    assert [p.name for p in chosen] == [n for n in points if n.startswith("blocks.1.mlp.")]
    capture = backend.capture(chosen, ["max"])
    assert isinstance(capture, PooledCapture)
    ids = torch.tensor([[1, 2, 3, 4]])
    pooled = capture.run(ids, torch.ones_like(ids))
    capture.check_first_batch(pooled, 1)
    assert HFBackend.wrap(loaded) is loaded and HFBackend.load is not None


def test_hf_backend_dampened_yields_names_and_validates(loaded: LoadedModel) -> None:
    widths = {n: p.width for n, p in loaded.backend.hook_points().items()}
    name = "blocks.0.mlp.hook_post"
    iv = Intervention({name: np.full(widths[name], 0.5, np.float32)}, {name: np.ones(widths[name])})
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        base = loaded.model(ids).logits
        with loaded.backend.dampened(iv) as names:
            got = loaded.model(ids).logits
        after = loaded.model(ids).logits
    assert names == [name] and not torch.equal(got, base) and torch.equal(after, base)
    assert loaded.backend.check_intervention(iv, 0.0).alphas[name].tolist() == [1.0] * widths[name]
    bad = Intervention({name: np.full(widths[name], 2.0, np.float32)}, {name: np.ones(widths[name])})
    with pytest.raises(InterventionError, match=r"alphas must be 1-D arrays of finite values in \[0, 1\]"):
        loaded.backend.check_intervention(bad)


# --------------------------------------------------------------------------- primitives


def test_check_alphas_is_the_one_range_check() -> None:
    check_alphas({"blocks.0.mlp.hook_pre": np.array([0.0, 1.0])})
    for bad in (np.array([np.nan]), np.array([1.5]), np.array([-0.1]), np.ones((2, 2))):
        with pytest.raises(InterventionError, match=r"blocks\.0\.mlp\.hook_pre hold\(s\) NaN/inf"):
            check_alphas({"blocks.0.mlp.hook_pre": bad})
    iv = Intervention({"blocks.0.mlp.hook_pre": np.ones(3, np.float32)}, {"blocks.0.mlp.hook_pre": np.ones(3)})
    with pytest.raises(InterventionError, match="must not already hold an intervention; they hold X"):
        check_intervention(iv, {"blocks.0.mlp.hook_pre": 3}, folded="X")


def test_alpha_hook_keeps_dtype_and_input() -> None:
    hook = AlphaHook("blocks.0.mlp.hook_pre", np.array([1.0, 0.5], np.float32))
    act = torch.ones(2, 3, 2, dtype=torch.bfloat16)
    out = hook(act)
    assert out.dtype == torch.bfloat16 and act.eq(1).all() and out[0, 0].tolist() == [1.0, 0.5]


class _ExtractOnly(Backend):
    """A backend that only extracts, as the streamed one does."""

    name = "extract-only"

    @classmethod
    def load(cls, model: Any, **load_kwargs: Any) -> LoadedModel:
        raise NotImplementedError

    def hook_points(self) -> dict[str, HookPoint]:
        return {}

    def capture(self, points: Sequence[HookPoint], poolings: Sequence[str]) -> Any:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}


def test_extract_only_backend_refuses_generation_in_one_line() -> None:
    backend = _ExtractOnly()
    iv = Intervention({}, {})
    for call in (lambda: backend.check_intervention(iv), lambda: backend.dampened(iv),
                 lambda: backend.generation_model, lambda: _ExtractOnly.wrap(None)):  # type: ignore[arg-type]
        with pytest.raises(InputError, match="extract-only") as info:
            call()
        assert "\n" not in str(info.value)
