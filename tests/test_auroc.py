"""Tests for aura_stream.auroc: known answers, sklearn as the oracle, dask, zarr and a cluster."""

from __future__ import annotations

import re
from typing import Any

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import roc_auc_score

from aura_stream.auroc import auroc, auroc_block, auroc_dask, parse_memory
from aura_stream.errors import InputError, NumericalError

DTYPES = [np.float16, np.float32, np.float64]
HOOK = "hook blocks.3.mlp.hook_pre"


def oracle(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """sklearn, one neuron at a time, on an exact float64 copy."""
    cols = values.astype(np.float64).T
    with np.errstate(over="ignore", invalid="ignore"):  # np.diff of huge floats
        return np.array([roc_auc_score(labels.astype(int), col) for col in cols])


def relu_data(seed: int, n: int, d: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """ReLU-like pooled activations (many exact zeros, -0.0 included) and unbalanced labels."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int8)
    values = rng.normal(size=(n, d)) + 0.5 * labels[:, None] * rng.random(d)
    values = np.where(values > 0, values, np.where(rng.random((n, d)) < 0.5, -0.0, 0.0))
    return values.astype(dtype), labels


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("dtype", DTYPES)
def test_known_answers(dtype: Any) -> None:
    labels = np.array([0, 0, 0, 1, 1])
    values = np.array(
        [
            [0.0, 3.0, 1.0, 7.0],
            [1.0, 2.0, 1.0, 7.0],
            [2.0, 2.0, 1.0, 7.0],
            [3.0, 1.0, 1.0, 7.0],
            [4.0, 0.0, 1.0, 7.0],
        ],
        dtype=dtype,
    )  # perfect, reversed, all ties, constant
    np.testing.assert_array_equal(auroc(values, labels), [1.0, 0.0, 0.5, 0.5])
    np.testing.assert_array_equal(auroc_block(values, labels), [1.0, 0.0, 0.5, 0.5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_signed_zeros_tie(dtype: Any) -> None:
    labels = np.array([1, 1, 0, 0, 1, 0])
    values = np.array([[-0.0], [-0.0], [0.0], [0.0], [1.0], [-1.0]], dtype=dtype)
    expected = oracle(values, labels)  # -0.0 == +0.0 for sklearn
    np.testing.assert_allclose(auroc(values, labels), expected, rtol=0, atol=1e-12)
    assert auroc(values[:4], labels[:4])[0] == 0.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_ties_unbalanced_match_sklearn(dtype: Any) -> None:
    values, labels = relu_data(0, 3000, 40, dtype)
    np.testing.assert_allclose(auroc(values, labels), oracle(values, labels), rtol=0, atol=1e-12)


def test_many_columns_and_tiles() -> None:
    values, labels = relu_data(1, 60, 700, np.float16)  # several tiles of columns per thread
    result = auroc(values, labels)
    np.testing.assert_array_equal(
        result, [auroc_block(values[:, [j]], labels)[0] for j in range(700)]
    )
    np.testing.assert_allclose(result[::7], oracle(values[:, ::7], labels), rtol=0, atol=1e-12)


def test_float16_counts_beyond_uint16() -> None:
    rng = np.random.default_rng(2)
    labels = (rng.random(70_000) < 0.5).astype(bool)
    values = rng.integers(0, 3, size=(70_000, 2)).astype(np.float16)  # > 65,535 ties per key
    np.testing.assert_allclose(auroc(values, labels), oracle(values, labels), rtol=0, atol=1e-12)


def test_extreme_values() -> None:
    labels = np.array([0, 1, 0, 1, 0, 1])
    f16 = np.finfo(np.float16)
    column = [-f16.max, f16.max, -f16.smallest_subnormal, f16.smallest_subnormal, 0.0, -0.0]
    values = np.array(column, dtype=np.float16)[:, None]
    np.testing.assert_allclose(auroc(values, labels), oracle(values, labels), rtol=0, atol=1e-12)
    for dtype in (np.float32, np.float64):
        info = np.finfo(dtype)
        col = [-info.max, info.max, -info.smallest_subnormal, info.smallest_subnormal, 0.0, -0.0]
        values = np.array(col, dtype=dtype)[:, None]
        np.testing.assert_allclose(auroc(values, labels), oracle(values, labels), atol=1e-12)


def test_no_neurons() -> None:
    result = auroc(np.zeros((4, 0), np.float16), [0, 1, 0, 1])
    assert result.shape == (0,) and result.dtype == np.float64


# ----------------------------------------------------------------------------- properties


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Random shapes, dtypes, unbalanced labels; values from the whole range or a tiny set."""
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(2, 60))
    d = draw(st.integers(1, 5))
    if draw(st.booleans()):  # heavy ties, signed zeros
        elements = st.sampled_from([-0.0, 0.0, 1.0, -1.0, 0.5])
    else:
        width = 8 * np.dtype(dtype).itemsize
        elements = st.floats(width=width, allow_nan=False, allow_infinity=False)
    values = draw(arrays(dtype, (n, d), elements=elements))
    n_pos = draw(st.integers(1, n - 1))
    order = draw(st.permutations(range(n)))
    labels = np.zeros(n, draw(st.sampled_from([np.int8, np.uint8, np.int64, np.bool_])))
    labels[list(order[:n_pos])] = 1
    return values, labels


@settings(max_examples=100, deadline=None, derandomize=True)
@given(problems())
def test_matches_sklearn(problem: tuple[np.ndarray, np.ndarray]) -> None:
    values, labels = problem
    np.testing.assert_allclose(auroc(values, labels), oracle(values, labels), rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(problems(), st.integers(1, 6))
def test_block_size_and_layout_do_not_matter(
    problem: tuple[np.ndarray, np.ndarray], block_size: int
) -> None:
    values, labels = problem
    expected = auroc_block(values, labels)
    np.testing.assert_array_equal(auroc(values, labels, block_size=block_size), expected)
    np.testing.assert_array_equal(auroc(np.asfortranarray(values), labels), expected)
    read_only = values.copy()
    read_only.flags.writeable = False
    np.testing.assert_array_equal(auroc(read_only, labels, block_size=block_size), expected)
    np.testing.assert_array_equal(auroc(values.tolist(), labels.tolist()), auroc(values, labels))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("labels", [[1, 1, 1, 1], [0, 0, 0, 0], np.zeros(4, bool)])
def test_one_class_raises(labels: Any) -> None:
    values = np.ones((4, 3), np.float16)
    with pytest.raises(InputError, match=r"^`labels` must hold both classes .*; got [04] positive"):
        auroc(values, labels)
    with pytest.raises(InputError, match=f"^{re.escape(HOOK)}: `labels` must hold both classes"):
        auroc_dask(da.ones((4, 3), dtype=np.float16), labels, name=HOOK)


@pytest.mark.parametrize(
    ("values", "labels", "match"),
    [
        (np.ones((4, 2)), [0, 1, 2, 1], r"`labels` must hold only 0 and 1; got \[2\]"),
        (np.ones((4, 2)), [0.0, 1.0, 1.0, 0.0], "integer or bool dtype; got float64"),
        (np.ones((4, 2)), [0, 1, 1], r"`labels` must have shape \(4,\)"),
        (np.ones((4, 2)), [[0, 1, 1, 0]], r"`labels` must have shape \(4,\)"),
        (np.ones(4), [0, 1, 1, 0], r"`activations` must be 2-D"),
        (np.ones((4, 2), np.int32), [0, 1, 1, 0], "float16, float32 or float64; got int32"),
    ],
)
def test_bad_inputs_raise(values: Any, labels: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        auroc(values, labels)


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(
        InputError, match=r"^x: `activations` must be float16.*; `labels` must hold"
    ):
        auroc(np.ones((3, 2), np.int64), [0, 1, 5], name="x")


def test_bad_options_raise() -> None:
    values, labels = np.ones((4, 2), np.float32), [0, 1, 1, 0]
    with pytest.raises(InputError, match="`block_size` must be a positive integer; got 0"):
        auroc(values, labels, block_size=0)
    with pytest.raises(InputError, match="`--memory-budget` must be a size like 2GB"):
        auroc(values, labels, memory_budget="lots")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_raises_naming_neuron(dtype: Any, bad: float) -> None:
    values, labels = relu_data(3, 50, 30, dtype)
    values[7, 17] = bad
    values[0, 29] = bad
    with pytest.raises(
        NumericalError, match=f"^{re.escape(HOOK)} neuron 17 has NaN or inf .*17, 29"
    ):
        auroc(values, labels, name=HOOK, block_size=8)
    with pytest.raises(NumericalError, match=r"^neuron 17 has NaN or inf"):
        auroc_block(values, labels)
    chunked = da.from_array(values, chunks=(16, 10))  # the first failing block raises
    with pytest.raises(NumericalError, match=f"^{re.escape(HOOK)} neuron (17|29) has NaN"):
        auroc(chunked, labels, name=HOOK, block_size=10)


def test_float16_overflow_is_inf() -> None:
    with np.errstate(over="ignore"):
        values = np.array([[1.0, 7e4], [2.0, 1.0]], np.float32).astype(np.float16)  # 7e4 -> inf
    with pytest.raises(NumericalError, match=r"^neuron 1 has NaN or inf"):
        auroc(values, [0, 1])


# ----------------------------------------------------------------------------- memory sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2GB", 2_000_000_000),
        ("512MiB", 512 * 2**20),
        ("1.5GB", 1_500_000_000),
        (" 64 kib ", 65_536),
        ("100", 100),
        ("3M", 3_000_000),
        (4096, 4096),
    ],
)
def test_parse_memory(text: str | int, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("junk", ["abc", "", "1.5XB", "-2GB", "0", "GB", "2 G B", 0, True, 1.5])
def test_parse_memory_rejects(junk: Any) -> None:
    with pytest.raises(InputError, match=r"^`--memory-budget` must be a size like 2GB or 512MiB"):
        parse_memory(junk)


def test_parse_memory_message() -> None:
    expected = "`--memory-budget` must be a size like 2GB or 512MiB; got 'abc'."
    with pytest.raises(InputError) as info:
        parse_memory("abc")
    assert str(info.value) == expected


# ----------------------------------------------------------------------------- dask, zarr


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_size", [None, 1, 7, 40])
def test_dask_equals_numpy(dtype: Any, block_size: int | None) -> None:
    values, labels = relu_data(4, 200, 33, dtype)
    lazy = auroc_dask(da.from_array(values, chunks=(13, 5)), labels, block_size=block_size)
    assert isinstance(lazy, da.Array) and lazy.shape == (33,) and lazy.dtype == np.float64
    np.testing.assert_array_equal(lazy.compute(), auroc(values, labels))


def test_dask_blocks_follow_budget_and_chunks() -> None:
    values, labels = relu_data(5, 300, 70, np.float16)
    x = da.from_array(values, chunks=(37, 16))
    col_cost = 300 * 2 * 3  # n_samples * itemsize * workspace
    assert auroc_dask(x, labels, memory_budget=40 * col_cost).chunks == ((32, 32, 6),)
    assert auroc_dask(x, labels, memory_budget=10 * col_cost).chunks == ((8,) * 8 + (6,),)
    assert auroc_dask(x, labels).chunks == ((70,),)


def test_zarr_store_matches_sklearn(tmp_path: Any) -> None:
    zarr = pytest.importorskip("zarr")
    values, labels = relu_data(6, 300, 70, np.float16)
    store = tmp_path / "acts.zarr"
    array = zarr.create_array(
        store=str(store),
        shape=values.shape,
        chunks=(37, 16),
        dtype="float16",
        compressors=zarr.codecs.ZstdCodec(level=1),
    )
    array[:] = values
    lazy = da.from_zarr(str(store))
    expected = oracle(values, labels)
    result = auroc(lazy, labels, memory_budget=32 * 300 * 2 * 3)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)
    opened = zarr.open_array(str(store), mode="r")
    np.testing.assert_array_equal(auroc(opened, labels, block_size=16), result)


def test_distributed_cluster_matches_local() -> None:
    distributed = pytest.importorskip("distributed")
    values, labels = relu_data(7, 400, 64, np.float16)
    lazy = auroc_dask(da.from_array(values, chunks=(50, 8)), labels, block_size=16)
    local = lazy.compute(scheduler="threads")
    bad = values.copy()
    bad[3, 40] = np.nan
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = client.compute(lazy).result()
        failing = auroc_dask(da.from_array(bad, chunks=(50, 8)), labels, block_size=16, name=HOOK)
        with pytest.raises(NumericalError, match=f"{re.escape(HOOK)} neuron 40 has NaN"):
            client.compute(failing).result()
    np.testing.assert_array_equal(remote, local)
    np.testing.assert_allclose(local, oracle(values, labels), rtol=0, atol=1e-12)
