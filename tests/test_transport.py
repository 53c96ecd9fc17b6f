"""Transport (Linear-AcT, Mean-AcT, Gaussian-AcT): known answers, a NumPy oracle on real zarr stores,
out of core, unequal counts, the format-2 intervention file, strength, the pure map, bad inputs, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from aura_stream_cli.main import app
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from aura_stream.errors import InputError, InterventionError, NumericalError
from aura_stream.interventions import (
    load_intervention,
    make_intervention,
    make_transport_intervention,
    save_intervention,
)
from aura_stream.score import score
from aura_stream.store import ActivationStore, StoreSpec
from aura_stream.transport import transport_block, transport_dask, transport_estimate
from aura_stream.transport_fn import transport

H0, H1 = "blocks.0.mlp.hook_pre", "blocks.1.hook_mlp_out"


# -- an oracle written independently of the package ----------------------------------------
def oracle(values: np.ndarray, labels: np.ndarray, method: str) -> np.ndarray:
    """[4, d] omega, beta, lo, hi in plain NumPy float64, one neuron at a time."""
    out = np.empty((4, values.shape[1]))
    for j in range(values.shape[1]):
        x = np.sort(values[labels == 1, j].astype(np.float64))
        y = np.sort(values[labels == 0, j].astype(np.float64))
        if method == "mean-act":
            omega, beta = 1.0, y.mean() - x.mean()
        elif method == "gaussian-act":
            omega = 1.0 if x.std() == 0 else y.std() / x.std()
            beta = y.mean() - omega * x.mean()
        else:
            q = y if y.size == x.size else np.quantile(y, (np.arange(x.size) + 0.5) / x.size, method="hazen")
            if x[0] == x[-1]:
                omega, beta = 1.0, q.mean() - x.mean()
            else:
                dx = x - x.mean()
                omega = np.sum(dx * (q - q.mean())) / np.sum(dx * dx)
                beta = q.mean() - omega * x.mean()
        out[:, j] = omega, beta, x[0], x[-1]
    return out


def make_store(path: Path, labels: np.ndarray, arrays: dict[tuple[str, str], np.ndarray], *,
               dtype: str = "float16", row_block: int = 4) -> Path:
    """A real zarr store written by ActivationStore, with the given (pooling, hook) -> [n, d] values."""
    poolings = sorted({p for p, _ in arrays})
    hooks = {h: a.shape[1] for (_, h), a in arrays.items()}
    n = labels.size
    identity = {"model": "test/toy", "revision": None, "model_dtype": "float32", "tokenizer": "none",
                "max_length": 8, "poolings": poolings, "hooks": hooks, "dataset_fingerprint": "toy",
                "n_samples": n, "store_dtype": dtype, "row_block": row_block, "n_shards": 1}
    spec = StoreSpec(n_samples=n, row_block=row_block, hooks=hooks, poolings=poolings, store_dtype=dtype,
                     identity=identity, provenance={"model_type": "toy"}, labels=labels.astype(np.int8),
                     sample_ids=[f"s{i}" for i in range(n)])
    store = ActivationStore.create_or_open(path, spec)
    for block in range(store.n_blocks):
        rows = store.block_rows(block)
        store.write_block(block, {k: v[rows].astype(np.float32) for k, v in arrays.items()})
    return path


# -- known answers --------------------------------------------------------------------------
def test_equal_counts_are_sorted_pairs_by_hand() -> None:
    values: np.ndarray
    # toxic 3, 1, 2 -> sorted 1, 2, 3; non-toxic 10, 30, 20 -> sorted 10, 20, 30: q = 10 x, omega 10, beta 0
    values = np.array([[3.0], [10.0], [1.0], [30.0], [2.0], [20.0]])
    labels = np.array([1, 0, 1, 0, 1, 0])
    np.testing.assert_allclose(transport_block(values, labels), [[10.0], [0.0], [1.0], [3.0]])
    # pairs (0, 1), (1, 5), (2, 6): mean x 1, mean y 4; sxy = (-1)(-3) + 0 + 1 * 2 = 5, sxx = 2
    values = np.array([[0.0], [1.0], [2.0], [6.0], [5.0], [1.0]], np.float16)
    labels = np.array([1, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(transport_block(values, labels)[:, 0], [2.5, 4.0 - 2.5, 0.0, 2.0])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_constant_toxic_neuron_gets_omega_one(dtype: type) -> None:
    values: np.ndarray = np.array([[2.0, 1.0], [2.0, 1.0], [0.0, 5.0], [4.0, 3.0]], dtype)
    labels = np.array([1, 1, 0, 0])
    for method in ("linear-act", "gaussian-act"):
        out = transport_block(values, labels, method=method)
        assert out[0].tolist() == [1.0, 1.0]
        assert out[1].tolist() == [0.0, 3.0]  # mean y - mean x
        assert out[2].tolist() == out[3].tolist() == [2.0, 1.0]


def test_mean_act_and_gaussian_act_by_hand() -> None:
    values = np.array([[0.0], [2.0], [10.0], [14.0]])  # toxic 0, 2 (mean 1, std 1); clean 10, 14 (12, 2)
    labels = np.array([1, 1, 0, 0])
    np.testing.assert_allclose(transport_block(values, labels, method="mean-act")[:, 0], [1.0, 11.0, 0.0, 2.0])
    np.testing.assert_allclose(transport_block(values, labels, method="gaussian-act")[:, 0], [2.0, 10.0, 0.0, 2.0])


def test_unequal_counts_quantile_matching_by_hand() -> None:
    # toxic 0, 1 at positions 0.25, 0.75; non-toxic 0, 10, 20, 30: Hazen indices 0.5 and 2.5 -> q = 5, 25
    values = np.array([[0.0], [1.0], [0.0], [10.0], [20.0], [30.0]])
    labels = np.array([1, 1, 0, 0, 0, 0])
    np.testing.assert_allclose(transport_block(values, labels)[:, 0], [20.0, 5.0, 0.0, 1.0])
    # more toxic than non-toxic: the ends clamp to the non-toxic extremes
    values = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [20.0]])
    labels = np.array([1, 1, 1, 1, 0, 0])
    q = np.quantile([10.0, 20.0], (np.arange(4) + 0.5) / 4, method="hazen")
    assert q.tolist() == [10.0, 12.5, 17.5, 20.0]
    np.testing.assert_allclose(transport_block(values, labels), oracle(values, labels, "linear-act"), rtol=1e-13)


# -- property tests against the oracle, on real zarr stores ---------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_pos=st.integers(1, 17), n_neg=st.integers(1, 17), width=st.integers(1, 9),
       dtype=st.sampled_from(["float16", "float32"]), ties=st.booleans(),
       method=st.sampled_from(["linear-act", "mean-act", "gaussian-act"]), seed=st.integers(0, 2**31))
def test_store_matches_numpy_oracle(tmp_path_factory: pytest.TempPathFactory, n_pos: int, n_neg: int, width: int,
                                    dtype: str, ties: bool, method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)])
    values = rng.standard_normal((labels.size, width)) * 3
    if ties:
        values = np.round(values)
    values = values.astype(dtype)
    path = make_store(tmp_path_factory.mktemp("p") / "s.zarr", labels, {("mean", H0): values}, dtype=dtype)
    store = ActivationStore.open(path)
    stored = np.asarray(store.activations("mean", H0)[:])
    got = transport_estimate(store.activations("mean", H0), store.labels, method=method, block_size=2)
    np.testing.assert_allclose(got, oracle(stored, labels, method), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got, transport_block(stored, labels, method=method))


@pytest.mark.parametrize("method", ["linear-act", "mean-act", "gaussian-act"])
def test_numbers_do_not_depend_on_the_block_layout(tmp_path: Path, method: str) -> None:
    # a neuron estimated alone (a block one column wide) and among others gets the same float64 numbers;
    # NumPy's axis-0 mean of a one-column block sums pairwise, of a wider block row by row
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.r_[np.ones(37, int), np.zeros(91, int)])
    values = np.round(rng.standard_normal((labels.size, 5)) * 3, 1).astype(np.float16)
    store = ActivationStore.open(make_store(tmp_path / "s.zarr", labels, {("mean", H0): values}, dtype="float16"))
    runs = [transport_estimate(store.activations("mean", H0), store.labels, method=method, block_size=b)
            for b in (1, 2, 5)]
    for got in runs[1:]:
        np.testing.assert_array_equal(got, runs[0])


# both float16 sorts: radix below 5000 samples, histogram above; equal and unequal classes
@pytest.mark.parametrize("n, balanced", [(600, False), (5001, False), (6000, True), (5002, True)])
def test_float16_kernel_matches_float64_path(n: int, balanced: bool) -> None:
    rng = np.random.default_rng(n)
    values = rng.standard_normal((n, 40)).astype(np.float16)
    values[:, :10] = np.maximum(values[:, :10], 0)  # ReLU'd: long runs of ties
    labels = rng.permutation(np.arange(n) < n // 2).astype(int) if balanced else (rng.random(n) < 0.45).astype(int)
    values[:, 10] = 1.5  # constant: omega 1
    values[labels == 1, 11] = -0.25  # constant toxic values, spread non-toxic ones
    values[:, 12] = np.round(values[:, 12] * 2) / 2  # few distinct values: long overlapping runs
    np.testing.assert_allclose(transport_block(values, labels), transport_block(values.astype(np.float64), labels),
                               rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(transport_block(values, labels), oracle(values, labels, "linear-act"),
                               rtol=1e-12, atol=1e-12)


# far from zero: a large common offset and a small spread (the fit centres each class at its median,
# so nothing cancels); across the radix/histogram cut-off, both class balances, every dtype
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("n, balanced", [(777, True), (5003, False), (5200, True)])
def test_offset_columns_match_the_oracle(dtype: str, n: int, balanced: bool) -> None:
    rng = np.random.default_rng(n)
    labels = rng.permutation(np.arange(n) < n // 2).astype(int) if balanced else (rng.random(n) < 0.3).astype(int)
    spread = rng.standard_normal((n, 6))
    values = np.stack([1000 + np.round(spread[:, 0] * 4) / 2,  # float16 steps of 0.5 near 1000
                       -300 + spread[:, 1] * 0.25, 4 + spread[:, 2] * 1e-2,
                       spread[:, 3] * 1e-4, 2048 + np.abs(np.round(spread[:, 4])),
                       1e4 + spread[:, 5] * 8 * (1 - labels)], axis=1).astype(dtype)  # constant toxic values
    got, want = transport_block(values, labels), oracle(values, labels, "linear-act")
    scale = np.abs(values.astype(np.float64)).max(axis=0)  # beta = mean q - omega mean x: a difference at this scale
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    assert np.all(np.abs(got[1] - want[1]) <= 1e-12 * np.abs(want[1]) + 4 * np.finfo(np.float64).eps * scale)
    np.testing.assert_array_equal(got[2:], want[2:])
    assert got[0, 5] == 1.0



# Hazen interpolation between neighbours of very different size (or either side of zero): the float16
# kernel keeps its sorted values in float32, so the step between them must be taken in float64
@pytest.mark.parametrize("n_pos", [3, 600, 5004])  # radix and histogram paths
def test_hazen_steps_between_distant_neighbours_in_float64(n_pos: int) -> None:
    values = np.array([[0.0], [1.0], [2.0], [-0.001], [30.0]], np.float16)
    labels = np.array([1, 1, 1, 0, 0])
    np.testing.assert_array_equal(transport_block(values, labels), transport_block(values.astype(np.float64), labels))
    rng = np.random.default_rng(n_pos)
    size = (n_pos + 2, 5)
    wide = (np.sign(rng.standard_normal(size)) * 10.0 ** rng.uniform(-4, 4, size)).astype(np.float16)
    labels = np.r_[np.ones(n_pos, int), 0, 0]
    want = oracle(wide, labels, "linear-act")
    got = transport_block(wide, labels)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(wide.astype(np.float64)).max())
    np.testing.assert_array_equal(got, transport_block(wide.astype(np.float64), labels))


def test_out_of_core_tiny_budget_equals_in_memory(tmp_path: Path) -> None:
    import dask.array as da

    rng = np.random.default_rng(3)
    labels = rng.permutation(np.r_[np.ones(20, int), np.zeros(20, int)])
    values = rng.standard_normal((40, 300)).astype(np.float16)
    store = ActivationStore.open(make_store(tmp_path / "s.zarr", labels, {("mean", H0): values}, row_block=8))
    arr = da.from_zarr(store.activations("mean", H0))
    lazy = transport_dask(arr, labels, memory_budget=40 * 2 * 3 * 7)  # 7 columns per block
    assert lazy.numblocks[1] >= 40 and lazy.shape == (4, 300)
    stored = np.asarray(store.activations("mean", H0)[:])
    np.testing.assert_array_equal(lazy.compute(), transport_block(stored, labels))


# -- the intervention file --------------------------------------------------------------------
def _estimates() -> dict[str, np.ndarray]:
    return {H0: np.array([[1.5, 1.0, 0.5], [0.25, -1.0, 0.0], [-1.0, 0.0, 2.0], [1.0, 0.0, 3.0]]),
            H1: np.array([[2.0], [3.0], [0.0], [4.0]])}


@pytest.mark.parametrize("support", ["source-range", "all"])
def test_transport_file_round_trip_and_fingerprint(tmp_path: Path, support: str) -> None:
    iv = make_transport_intervention(_estimates(), method="linear-act", support=support, metadata={"model": "m"})
    back = load_intervention(save_intervention(iv, tmp_path / "t.safetensors"))
    assert back.is_transport and back.support == support and back.metadata["format"] == "aura-stream-intervention/2"
    assert back.fingerprint == iv.fingerprint and back.widths == {H0: 3, H1: 1}
    omega, beta, lo, hi = back.affine(H0)
    assert omega.dtype == beta.dtype == np.float32
    assert omega.tolist() == [1.5, 1.0, 0.5] and beta.tolist() == [0.25, -1.0, 0.0]
    if support == "all":
        assert lo is None and hi is None
    else:
        assert lo is not None and hi is not None
        assert lo.tolist() == [-1.0, 0.0, 2.0] and hi.tolist() == [1.0, 0.0, 3.0]
    est = _estimates()
    est[H0][1, 2] = 0.5  # another beta: another fingerprint
    assert make_transport_intervention(est, method="linear-act", support=support).fingerprint != iv.fingerprint
    other = make_transport_intervention(_estimates(), method="linear-act",
                                        support="all" if support == "source-range" else "source-range")
    assert other.fingerprint != iv.fingerprint


def test_old_format_file_still_loads(tmp_path: Path) -> None:
    meta = {"format": "aura-stream-intervention/1", "method": "aura", "hooks": [H0], "widths": {H0: 3},
            "parameters": {"strength": 1.0}}
    save_file({f"{H0}.alpha": np.array([1.0, 0.5, 0.0], np.float32), f"{H0}.auroc": np.array([0.4, 0.75, 1.0])},
              str(tmp_path / "v1.safetensors"), metadata={"aura_stream": json.dumps(meta)})
    iv = load_intervention(tmp_path / "v1.safetensors")
    assert not iv.is_transport and iv.support == "all" and iv.alphas[H0].tolist() == [1.0, 0.5, 0.0]
    omega, beta, lo, hi = iv.affine(H0)
    assert omega.tolist() == [1.0, 0.5, 0.0] and beta.tolist() == [0.0, 0.0, 0.0] and lo is None and hi is None
    # an alpha file hashes as before format 2 (folded checkpoints and eval arms record it)
    import hashlib

    want = hashlib.sha256(H0.encode() + np.array([1.0, 0.5, 0.0], np.float32).tobytes()).hexdigest()
    assert iv.fingerprint == want
    aura = make_intervention({H0: np.array([0.4, 0.75, 1.0])}, method="aura")
    assert aura.fingerprint == want and aura.metadata["format"] == "aura-stream-intervention/2"
    assert load_intervention(save_intervention(aura, tmp_path / "v2.safetensors")).fingerprint == want


def test_strength_formula_and_the_pure_map() -> None:
    s = 0.3
    iv = make_transport_intervention(_estimates(), method="linear-act", support="source-range")
    scaled = iv.with_strength(s)
    omega, beta, lo, hi = (torch.from_numpy(a) for a in iv.affine(H0))
    s_omega, s_beta, s_lo, s_hi = (torch.from_numpy(a) for a in scaled.affine(H0))
    np.testing.assert_allclose(s_omega.numpy(), 1 - s + s * omega.numpy(), rtol=1e-6)
    np.testing.assert_allclose(s_beta.numpy(), s * beta.numpy(), rtol=1e-6)
    assert torch.equal(s_lo, lo) and torch.equal(s_hi, hi)
    z = torch.tensor([[[-0.5, 0.0, 2.5], [0.9, 5.0, 9.0]]])  # [batch 1, pos 2, d 3]
    got = transport(z, s_omega, s_beta, s_lo, s_hi)
    inside = (z >= lo) & (z <= hi)
    want = torch.where(inside, s * (omega * z + beta) + (1 - s) * z, z)
    torch.testing.assert_close(got, want)
    assert made_strength_zero_identity(iv, z)


def made_strength_zero_identity(iv: object, z: torch.Tensor) -> bool:
    from aura_stream.interventions import Intervention

    assert isinstance(iv, Intervention)
    omega, beta, lo, hi = (None if a is None else torch.from_numpy(a) for a in iv.with_strength(0.0).affine(H0))
    assert omega is not None and beta is not None
    return bool(torch.equal(transport(z, omega, beta, lo, hi), z))


def test_transport_source_range_dtype_and_no_in_place() -> None:
    omega, beta = torch.tensor([2.0, 3.0]), torch.tensor([1.0, -1.0])
    lo, hi = torch.tensor([0.0, -1.0]), torch.tensor([1.0, 1.0])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        z = torch.tensor([[-0.5, -1.0], [0.0, 1.0], [1.0, 1.5], [2.0, -2.0]], dtype=dtype)
        before = z.clone()
        out = transport(z, omega, beta, lo, hi)
        assert out.dtype == dtype and out.shape == z.shape and torch.equal(z, before)
        assert out.float().tolist() == [[-0.5, -4.0], [1.0, 2.0], [3.0, 1.5], [2.0, -2.0]]  # outside: unchanged
        everywhere = transport(z, omega, beta)
        torch.testing.assert_close(everywhere, (z.float() * omega + beta).to(dtype))
    flat = torch.zeros(6, 2)  # OPT's [batch * pos, d]
    assert transport(flat, omega, beta, lo, hi)[:, 0].tolist() == [1.0] * 6


def test_transport_bad_shapes() -> None:
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"`omega` must have shape \[3\]"):
        transport(z, torch.ones(4), torch.zeros(3))
    with pytest.raises(ValueError, match="`lo` and `hi` must be given together"):
        transport(z, torch.ones(3), torch.zeros(3), torch.zeros(3), None)


# -- bad inputs -----------------------------------------------------------------------------
def test_bad_estimation_inputs() -> None:
    v = np.zeros((4, 2), np.float32)
    with pytest.raises(InputError, match="`method` must be one of linear-act, mean-act, gaussian-act; got 'x'"):
        transport_block(v, [1, 0, 1, 0], method="x")
    with pytest.raises(InputError, match="`labels` must hold both classes"):
        transport_block(v, [1, 1, 1, 1])
    with pytest.raises(InputError, match=r"`labels` must have shape \(4,\)"):
        transport_block(v, [1, 0])
    with pytest.raises(InputError, match="`activations` must be float16, float32 or float64"):
        transport_block(v.astype(np.int32), [1, 0, 1, 0])
    for dtype in (np.float16, np.float32):
        bad = v.astype(dtype)
        bad[2, 1] = np.inf
        for method in ("linear-act", "mean-act"):
            with pytest.raises(NumericalError, match=r"hook h neuron 1 has NaN or inf"):
                transport_block(bad, [1, 0, 1, 0], method=method, name="hook h")


def test_bad_transport_intervention_inputs_and_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="`--support` must be one of all, source-range; got 'some'"):
        make_transport_intervention(_estimates(), method="linear-act", support="some")
    est = _estimates()
    est[H0][2, 0] = 5.0  # lo > hi
    with pytest.raises(NumericalError, match=f"finite with lo <= hi; hook {H0} neuron 0"):
        make_transport_intervention(est, method="linear-act")
    good = {f"{H0}.omega": np.ones(2, np.float32), f"{H0}.beta": np.zeros(2, np.float32),
            f"{H0}.lo": np.zeros(2, np.float32), f"{H0}.hi": np.ones(2, np.float32)}
    meta: dict[str, object] = {"format": "aura-stream-intervention/2", "method": "linear-act",
                               "support": "source-range", "hooks": [H0], "widths": {H0: 2}}
    cases: dict[str, tuple[dict[str, np.ndarray], dict[str, object], str]] = {
        "lo-above-hi": ({**good, f"{H0}.lo": np.array([0.0, 2.0], np.float32)}, meta, r"lo <= hi; .* neuron 1"),
        "nan-beta": ({**good, f"{H0}.beta": np.array([np.nan, 0], np.float32)}, meta, "must be finite"),
        "no-bounds": ({k: v for k, v in good.items() if not k.endswith(("lo", "hi"))}, meta, "lacks tensors"),
        "bounds-with-all": (good, {**meta, "support": "all"}, "not in its metadata"),
        "v1-transport": (good, {**meta, "format": "aura-stream-intervention/1"}, "must be format"),
        "wrong-dtype": ({**good, f"{H0}.omega": np.ones(2, np.float64)}, meta, "must have float32 omega"),
        "bad-width": (good, {**meta, "widths": {H0: 3}}, "width 3, the data has 2"),
    }
    for name, (tensors, m, match) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata={"aura_stream": json.dumps(m)})
        with pytest.raises(InterventionError, match=match):
            load_intervention(path)


# -- score and the CLI ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(7)
    labels = rng.permutation(np.r_[np.ones(9, int), np.zeros(12, int)])
    arrays = {(p, h): rng.standard_normal((21, w)) + labels[:, None] * (p == "mean")
              for p in ("max", "mean") for h, w in ((H0, 12), (H1, 5))}
    return make_store(tmp_path_factory.mktemp("toy") / "s.zarr", labels, arrays)


def test_score_transport_methods(toy_store: Path, tmp_path: Path) -> None:
    store = ActivationStore.open(toy_store)
    for method in ("linear-act", "mean-act", "gaussian-act"):
        out = tmp_path / f"{method}.safetensors"
        r = score(toy_store, method=method, out=out, strength=0.5, progress=False)
        iv = load_intervention(out)
        assert iv.metadata["pooling"] == "mean" and iv.metadata["method"] == method and iv.support == "source-range"
        assert iv.metadata["n_toxic"] == 9 and iv.metadata["n_non_toxic"] == 12
        for h in (H0, H1):
            want = oracle(np.asarray(store.activations("mean", h)[:]), store.labels, method)
            omega, beta, lo, hi = iv.affine(h)
            np.testing.assert_allclose(omega, 1 - 0.5 + 0.5 * want[0], rtol=1e-6)
            np.testing.assert_allclose(beta, 0.5 * want[1], rtol=1e-6, atol=1e-7)
            assert lo is not None and hi is not None
            np.testing.assert_allclose(np.stack([lo, hi]), want[2:], rtol=1e-6)
        assert [s.hook_name for s in r.transport] == [H0, H1] and r.summary == []
    every = score(toy_store, method="linear-act", support="all", pooling="max", progress=False).intervention
    assert every.support == "all" and every.bounds == {} and every.metadata["pooling"] == "max"
    assert "quantile matching" in every.metadata["pairing"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "linear-act", "num_experts": 3}, "`--num-experts` must not be given with `--method linear-act`"),
    ({"method": "mean-act", "recompute": True}, "`--recompute` must not be given with `--method mean-act`"),
    ({"method": "aura", "support": "all"}, "`--support` must not be given with `--method aura`"),
    ({"method": "linear-act", "support": "half"}, "`--support` must be one of all, source-range"),
    ({"method": "linear-act", "strength": 1.5}, r"`--strength` must be in \[0, 1\]"),
])
def test_score_transport_refusals(toy_store: Path, tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        score(toy_store, out=tmp_path / "x.safetensors", progress=False, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "x.safetensors").exists()


def test_score_transport_needs_a_pooling_without_mean(tmp_path: Path) -> None:
    labels = np.array([1, 0, 1, 0, 1, 0])
    path = make_store(tmp_path / "s.zarr", labels, {("max", H0): np.arange(12.0).reshape(6, 2)})
    with pytest.raises(InputError, match=r"`--pooling` must be given for `--method linear-act`.*holds max"):
        score(path, method="linear-act", progress=False)
    assert score(path, method="linear-act", pooling="max", progress=False).intervention.is_transport


def test_extract_then_linear_act(gpt2_dir: Path, tmp_path: Path) -> None:
    from aura_stream.extract import extract
    from tests.conftest import jigsaw_sample

    out = tmp_path / "s.zarr"
    extract(model=str(gpt2_dir), data=jigsaw_sample(), out=out, pooling=("mean",), row_block=5, progress=False)
    iv = score(out, method="linear-act", progress=False).intervention
    store = ActivationStore.open(out)
    for h in store.hooks:
        want = oracle(np.asarray(store.activations("mean", h)[:]), store.labels, "linear-act")
        np.testing.assert_allclose(np.stack([a for a in iv.affine(h) if a is not None]), want, rtol=2e-6, atol=1e-6)


def test_cli_linear_act(toy_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "l.safetensors"
    r = CliRunner().invoke(app, ["score", str(toy_store), "--method", "linear-act", "--support", "all",
                                 "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "mean omega" in r.output and "mean |beta|" in r.output and H0 in r.output
    assert "support all" in r.output and "quantile matching" in r.output
    assert load_intervention(out).support == "all"
    r = CliRunner().invoke(app, ["score", str(toy_store), "--method", "linear-act", "--plot", str(tmp_path / "p.png")])
    assert r.exit_code != 0 and "`--plot` must not be given with `--method linear-act`" in r.output
    r = CliRunner().invoke(app, ["score", str(toy_store), "--method", "mean-act", "--num-experts", "3"])
    assert r.exit_code != 0 and "`--num-experts` must not be given" in r.output
    r = CliRunner().invoke(app, ["score", "--help"])
    assert "--method linear-act" in r.output and "--support" in r.output
