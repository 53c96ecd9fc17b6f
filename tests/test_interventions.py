"""interventions: golden formulas, top-k ties, file round trip, and hostile files refused."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from aura_stream.errors import InputError, InterventionError, MissingFileError
from aura_stream.interventions import (
    aura_alpha,
    check_matches_model,
    load_intervention,
    make_intervention,
    save_intervention,
    top_k,
)

AUROCS = {"blocks.0.mlp.hook_pre": np.array([0.2, 0.9, 0.6, 0.5]),
          "blocks.1.hook_mlp_out": np.array([0.9, 0.95, 0.1])}


def test_aura_golden() -> None:
    assert aura_alpha(np.array([0.0, 0.3, 0.5, 0.6, 0.75, 0.9, 1.0])).tolist() == pytest.approx(
        [1.0, 1.0, 1.0, 0.8, 0.5, 0.2, 0.0])
    iv = make_intervention(AUROCS, method="aura", strength=0.5)
    # 1 - s (1 - alpha): alpha 0.2 -> 0.6; alpha 1 stays 1
    assert iv.alphas["blocks.0.mlp.hook_pre"].tolist() == pytest.approx([1.0, 0.6, 0.9, 1.0])
    assert iv.alphas["blocks.1.hook_mlp_out"].dtype == np.float32


def test_det0_damp_golden_and_tie_break() -> None:
    det0 = make_intervention(AUROCS, method="det0", num_experts=2)
    # 0.95 first; then 0.9 ties between hook 0 neuron 1 and hook 1 neuron 0: the earlier hook wins
    assert det0.alphas["blocks.0.mlp.hook_pre"].tolist() == [1, 0, 1, 1]
    assert det0.alphas["blocks.1.hook_mlp_out"].tolist() == [1, 0, 1]
    masks = top_k({"a": np.array([0.9]), "b": np.array([0.95, 0.9])}, 2)
    assert masks["a"].tolist() == [True] and masks["b"].tolist() == [True, False]
    damp = make_intervention(AUROCS, method="damp", num_experts=3, damp_alpha=0.3)
    assert damp.alphas["blocks.0.mlp.hook_pre"].tolist() == pytest.approx([1, 0.3, 1, 1])
    assert damp.n_dampened() == 3


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "x"}, "`--method` must be one of"),
    ({"method": "det0"}, "`--num-experts` is required"),
    ({"method": "det0", "num_experts": 8}, r"`--num-experts` must be in 1..7"),
    ({"method": "aura", "strength": 2.0}, r"`--strength` must be in \[0, 1\]"),
])
def test_bad_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        make_intervention(AUROCS, **kwargs)  # type: ignore[arg-type]


def test_round_trip(tmp_path: Path) -> None:
    iv = make_intervention(AUROCS, method="aura", metadata={"model": "m", "store_fingerprint": "abc"})
    path = save_intervention(iv, tmp_path / "sub" / "i.safetensors")
    back = load_intervention(path)
    assert back.fingerprint == iv.fingerprint
    for k in AUROCS:
        np.testing.assert_array_equal(back.alphas[k], iv.alphas[k])
        np.testing.assert_array_equal(back.aurocs[k], AUROCS[k])
    assert back.metadata["model"] == "m" and back.metadata["widths"] == {k: len(v) for k, v in AUROCS.items()}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["i.safetensors"]  # no temp file left


def test_check_matches_model() -> None:
    iv = make_intervention(AUROCS, method="aura", metadata={"model": "gpt2"})
    check_matches_model(iv, {"blocks.0.mlp.hook_pre": 4, "blocks.1.hook_mlp_out": 3, "other": 1})
    with pytest.raises(InterventionError, match="do not exist in the model; it was made for 'gpt2'"):
        check_matches_model(iv, {"blocks.0.mlp.hook_pre": 4})
    with pytest.raises(InterventionError, match=r"blocks.1.hook_mlp_out \(file 3, model 5\)"):
        check_matches_model(iv, {"blocks.0.mlp.hook_pre": 4, "blocks.1.hook_mlp_out": 5})


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pickle payload executed",))


def _write_raw(path: Path, tensors: dict[str, np.ndarray], meta: dict[str, object]) -> Path:
    save_file(tensors, str(path), metadata={"aura_stream": json.dumps(meta)})
    return path


def _meta(hooks: list[str], widths: dict[str, int]) -> dict[str, object]:
    return {"format": "aura-stream-intervention/1", "hooks": hooks, "widths": widths, "method": "aura"}


def test_hostile_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = "blocks.0.mlp.hook_pre"
    ok = {f"{h}.alpha": np.ones(3, np.float32), f"{h}.auroc": np.full(3, 0.5)}
    cases = {
        "pickle": (lambda p: p.write_bytes(pickle.dumps(_Boom())), "not a safetensors file"),
        "empty": (lambda p: p.write_bytes(b""), "too short"),
        "hugeheader": (lambda p: p.write_bytes(struct.pack("<Q", 10**12) + b"{}"), "not a safetensors file"),
        "no-meta": (lambda p: save_file(ok, str(p)), "not an aura-stream intervention"),
        "wrong-dtype": (lambda p: _write_raw(p, {f"{h}.alpha": np.ones(3, np.float64), f"{h}.auroc": np.ones(3)},
                                             _meta([h], {h: 3})), "must have float32 alpha"),
        "lying-width": (lambda p: _write_raw(p, ok, _meta([h], {h: 4})), "metadata says .* width 4, the data has 3"),
        "missing-tensor": (lambda p: _write_raw(p, ok, _meta([h, "blocks.1.mlp.hook_pre"], {h: 3})), "lacks tensors"),
        "path-hook": (lambda p: _write_raw(p, {"../../etc.alpha": np.ones(1, np.float32)},
                                           _meta(["../../etc"], {})), "invalid hook"),
        "extra-tensor": (lambda p: _write_raw(p, {**ok, "evil": np.ones(1, np.float32)}, _meta([h], {h: 3})),
                         "not in its metadata"),
        "nan": (lambda p: _write_raw(p, {f"{h}.alpha": np.array([1, np.nan, 1], np.float32),
                                         f"{h}.auroc": np.full(3, 0.5)}, _meta([h], {h: 3})),
                r"alphas must be finite and in \[0, 1\]; blocks.0.mlp.hook_pre neuron 1 is nan"),
    }
    for name, (make, match) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        make(path)
        with pytest.raises(InterventionError, match=match):
            load_intervention(path)
    assert "pickle payload executed" not in capsys.readouterr().out
    with pytest.raises(MissingFileError, match="does not exist"):
        load_intervention(tmp_path / "absent.safetensors")
