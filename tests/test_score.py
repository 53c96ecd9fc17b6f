"""score: extract-then-score equals sklearn; stored AUROCs reused; LocalCluster equals local; errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from aura_stream_cli.main import app
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from aura_stream.errors import InputError, NumericalError, StoreError
from aura_stream.extract import extract
from aura_stream.interventions import load_intervention
from aura_stream.score import score
from aura_stream.store import ActivationStore, labels_digest


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory, gpt2_dir: Path) -> Path:
    from tests.conftest import jigsaw_sample

    out = tmp_path_factory.mktemp("score") / "s.zarr"
    extract(model=str(gpt2_dir), data=jigsaw_sample(), out=out, row_block=5, progress=False)
    return out


def fresh_copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_extract_then_score_equals_sklearn(store_path: Path, tmp_path: Path) -> None:
    path = fresh_copy(store_path, tmp_path / "s.zarr")
    result = score(path, out=tmp_path / "aura.safetensors", progress=False)
    store = ActivationStore.open(path)
    labels = store.labels
    for hook in store.hooks:
        acts = store.activations("max", hook)[:].astype(np.float64)
        want = np.array([roc_auc_score(labels, acts[:, j]) for j in range(acts.shape[1])])
        np.testing.assert_allclose(result.intervention.aurocs[hook], want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(store.read_scores("max", hook), want, rtol=0, atol=1e-12)
        alpha = np.where(want > 0.5, 1 - 2 * (want - 0.5), 1.0)
        np.testing.assert_allclose(result.intervention.alphas[hook], alpha, rtol=1e-6)
    assert sorted(result.computed) == sorted(store.hooks)
    iv = load_intervention(tmp_path / "aura.safetensors")
    assert iv.metadata["method"] == "aura" and iv.metadata["n_samples"] == 16
    assert iv.metadata["store_fingerprint"] == store.attrs["identity"]["dataset_fingerprint"]


def test_second_score_reuses_stored_aurocs(store_path: Path, tmp_path: Path) -> None:
    path = fresh_copy(store_path, tmp_path / "s.zarr")
    first = score(path, progress=False)
    det0 = score(path, method="det0", num_experts=7, out=tmp_path / "d.safetensors", progress=False)
    assert det0.computed == []  # nothing recomputed
    alphas = np.concatenate(list(det0.intervention.alphas.values()))
    assert (alphas == 0).sum() == 7 and ((alphas == 0) | (alphas == 1)).all()
    top = np.sort(np.concatenate(list(first.intervention.aurocs.values())))[::-1]
    chosen = np.concatenate([det0.intervention.aurocs[h][det0.intervention.alphas[h] == 0]
                             for h in det0.intervention.alphas])
    assert np.sort(chosen)[::-1].tolist() == top[:7].tolist()
    damp = score(path, method="damp", num_experts=7, damp_alpha=0.25, strength=0.5, progress=False)
    alphas = np.concatenate(list(damp.intervention.alphas.values()))
    assert (np.isclose(alphas, 1 - 0.5 * 0.75)).sum() == 7


def test_local_cluster_equals_local_scheduler(store_path: Path, tmp_path: Path) -> None:
    a = score(fresh_copy(store_path, tmp_path / "a.zarr"), progress=False)
    b = score(fresh_copy(store_path, tmp_path / "b.zarr"), workers=2, progress=False)
    for hook in a.intervention.aurocs:
        np.testing.assert_array_equal(a.intervention.aurocs[hook], b.intervention.aurocs[hook])


def test_hook_selection_and_plot(store_path: Path, tmp_path: Path) -> None:
    path = fresh_copy(store_path, tmp_path / "s.zarr")
    r = CliRunner().invoke(app, ["score", str(path), "--hooks", "blocks.1.*", "--out", str(tmp_path / "i.safetensors"),
                                 "--plot", str(tmp_path / "p.png"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "blocks.1.mlp.hook_pre" in r.output and "blocks.0.mlp.hook_pre" not in r.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert list(load_intervention(tmp_path / "i.safetensors").alphas) == ["blocks.1.mlp.hook_pre",
                                                                         "blocks.1.hook_mlp_out"]


def test_incomplete_store_refused_with_missing_rows(store_path: Path, tmp_path: Path) -> None:
    path = fresh_copy(store_path, tmp_path / "s.zarr")
    store = ActivationStore.open(path, mode="r+")
    store.group["progress"][1] = 0
    with pytest.raises(StoreError, match=r"incomplete: 5 of 16 rows missing; rerun the same `extract`"):
        score(path, out=tmp_path / "x.safetensors", progress=False)
    assert not (tmp_path / "x.safetensors").exists()


def test_nan_in_activations_names_hook_and_neuron(store_path: Path, tmp_path: Path) -> None:
    path = fresh_copy(store_path, tmp_path / "s.zarr")
    store = ActivationStore.open(path, mode="r+")
    arr = store.activations("max", "blocks.1.mlp.hook_pre")
    values = arr[:]
    values[3, 17] = np.nan
    arr[:] = values
    with pytest.raises(NumericalError, match=r"blocks.1.mlp.hook_pre.*neuron 17"):
        score(path, progress=False)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"method": "magic"}, InputError,
     "`--method` must be one of aura, det0, damp, linear-act, mean-act, gaussian-act; got 'magic'"),
    ({"method": "det0", "num_experts": 0}, InputError, "`--num-experts` must be >= 1"),
    ({"method": "det0", "num_experts": 10**6}, InputError, r"`--num-experts` must be <= 480"),
    ({"method": "damp", "num_experts": 3, "damp_alpha": 1.5}, InputError, r"`--damp-alpha` must be in \[0, 1\]"),
    ({"strength": -0.1}, InputError, r"`--strength` must be in \[0, 1\]"),
    ({"hooks": ["blocks.42.*"]}, Exception, "match nothing"),
    ({"memory_budget": "lots"}, InputError, "`--memory-budget` must be"),
    ({"pooling": "mean"}, InputError, "`--pooling` must be one the store holds"),
    ({"workers": 1, "scheduler": "tcp://127.0.0.1:1"}, InputError, "exclude each other"),
])
def test_bad_input(kwargs: dict[str, object], error: type[Exception], match: str, store_path: Path,
                   tmp_path: Path) -> None:
    with pytest.raises(error, match=match):
        score(store_path, out=tmp_path / "x.safetensors", progress=False, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "x.safetensors").exists()


def test_dead_scheduler_is_a_clear_timeout(store_path: Path, tmp_path: Path) -> None:
    path = fresh_copy(store_path, tmp_path / "s.zarr")
    with pytest.raises(InputError, match=r"`--scheduler` tcp://127.0.0.1:9 did not answer within"):
        score(path, scheduler="tcp://127.0.0.1:9", recompute=True, progress=False)


def test_one_class_store_refused(gpt2_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("text,label\nhello,0\nworld,1\n")
    out = tmp_path / "s.zarr"
    extract(model=str(gpt2_dir), data=data, out=out, progress=False)
    store = ActivationStore.open(out, mode="r+")
    store.group["labels"][:] = np.array([0, 0], dtype=np.int8)
    with pytest.raises(StoreError, match="labels must match the digest recorded at creation"):
        score(out, progress=False)  # a changed label is caught ...
    attrs = dict(store.group.attrs["aura_stream"])  # type: ignore[arg-type]
    attrs["checksums"] = {"labels": labels_digest(np.array([0, 0]))}
    store.group.attrs["aura_stream"] = attrs
    with pytest.raises(InputError, match="labels must hold both classes"):
        score(out, progress=False)


def test_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(StoreError, match="not an aura-stream store"):
        score(tmp_path / "d", progress=False)
