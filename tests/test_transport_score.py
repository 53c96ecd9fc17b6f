"""``score --method linear-act|mean-act|gaussian-act`` against a NumPy oracle on the stored values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aura_stream.extract import extract
from aura_stream.score import score
from aura_stream.store import ActivationStore

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mean_store(tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("transport")
    texts = [f"sentence number {i} with some words {'you idiot' if i % 2 else 'thank you'}" for i in range(40)]
    csv = root / "d.csv"
    csv.write_text("text,label\n" + "".join(f'"{t}",{i % 2}\n' for i, t in enumerate(texts)), encoding="utf-8")
    out = root / "s.zarr"
    extract(model=str(tiny_model_dirs["gpt2"]), data=csv, out=out, text_column="text", label_column="label",
            pooling=("mean", "max"), hooks=["blocks.*.mlp.hook_pre", "blocks.1.hook_mlp_out"], batch_size=8,
            progress=False)
    return out


def _oracle(values: np.ndarray, labels: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron: sorted toxic x against sorted non-toxic y (equal counts), float64."""
    x = np.sort(values[labels == 1].astype(np.float64), axis=0)
    y = np.sort(values[labels == 0].astype(np.float64), axis=0)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    if method == "mean-act":
        omega = np.ones_like(mx)
    elif method == "gaussian-act":
        sx, sy = x.std(axis=0), y.std(axis=0)
        omega = np.where(sx > 0, sy / np.where(sx > 0, sx, 1), 1.0)
    else:
        den = ((x - mx) ** 2).sum(axis=0)
        omega = np.where(den > 0, ((x - mx) * (y - my)).sum(axis=0) / np.where(den > 0, den, 1), 1.0)
    return omega, my - omega * mx


@pytest.mark.parametrize("method", ["linear-act", "mean-act", "gaussian-act"])
def test_transport_equals_numpy_on_stored_values(mean_store: Path, method: str) -> None:
    result = score(mean_store, method=method, support="source-range", progress=False)
    iv = result.intervention
    store = ActivationStore.open(mean_store)
    labels = np.asarray(store.labels)
    assert (labels == 1).sum() == (labels == 0).sum()
    for hook in store.hooks:
        values = np.asarray(store.activations("mean", hook)[:])
        omega, beta, lo, hi = iv.affine(hook)
        want_omega, want_beta = _oracle(values, labels, method)
        np.testing.assert_allclose(omega, want_omega, rtol=1e-5, atol=1e-5, err_msg=hook)
        np.testing.assert_allclose(beta, want_beta, rtol=1e-5, atol=1e-4, err_msg=hook)
        toxic = values[labels == 1].astype(np.float64)
        np.testing.assert_allclose(lo, toxic.min(axis=0), rtol=1e-6)
        np.testing.assert_allclose(hi, toxic.max(axis=0), rtol=1e-6)


def test_support_all_drops_the_bounds(mean_store: Path, tmp_path: Path) -> None:
    from aura_stream.interventions import load_intervention

    result = score(mean_store, method="linear-act", support="all", out=tmp_path / "t.safetensors", progress=False)
    loaded = load_intervention(tmp_path / "t.safetensors")
    assert loaded.support == "all" and not loaded.bounds and loaded.is_transport
    assert loaded.fingerprint == result.intervention.fingerprint
    hook = next(iter(loaded.alphas))
    np.testing.assert_array_equal(loaded.affine(hook).beta, result.intervention.affine(hook).beta)
