"""Bad input matrix: every command refuses bad input in one line naming the problem and the fix.

One table-driven test, ``test_bad_input_is_one_clear_line[<case>]``; ``docs/reliability.md`` lists
every case by its id. A case builds its inputs under ``tmp_path`` and returns the command line and
the paths that must be left exactly as they were (absent outputs stay absent, existing files keep
every byte). Exit 1 is an aura-stream error (one line); exit 2 a usage error that click catches
(its usage header, then one ``Error:`` line).
"""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from aura_stream.store import ActivationStore, labels_digest
from tests.conftest import jigsaw_sample
from tests.test_reliability import (  # noqa: F401  (fixtures used by name)
    Artifacts,
    _Payload,
    artifacts_fixture,
    assert_one_line_error,
    cli,
    copy_store,
    edit_attrs,
    leftovers,
    offline,
    pickle_payload,
    tree,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one torch thread

H = "blocks.0.mlp.hook_pre"  # 128 neurons in the tiny GPT-2
FORMAT = "aura-stream-intervention/1"


@dataclass
class Ctx:
    """What a case may use: a scratch folder, the tiny model, a finished run, monkeypatch."""

    tmp: Path
    model: Path
    run: Artifacts
    monkeypatch: pytest.MonkeyPatch

    @property
    def marker(self) -> Path:
        """Created if a pickle payload ever runs."""
        return self.tmp / "payload-ran"

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def store(self, name: str = "s.zarr", *, scored: bool = False) -> Path:
        return copy_store(self.run.scored if scored else self.run.store, self.tmp / name)

    def intervention(self, name: str, tensors: dict[str, np.ndarray], **meta: Any) -> Path:
        hooks = sorted({k.rsplit(".", 1)[0] for k in tensors})
        meta = {"format": FORMAT, "method": "aura", "hooks": hooks,
                "widths": {h: len(tensors[f"{h}.alpha"]) for h in hooks if f"{h}.alpha" in tensors}, **meta}
        path = self.tmp / name
        save_file(tensors, str(path), metadata={"aura_stream": json.dumps(meta)})
        return path


@dataclass(frozen=True)
class Case:
    make: Callable[[Ctx], tuple[list[object], list[Path]]]
    fragments: tuple[str, ...]
    code: int = 1
    after: Callable[[Ctx], None] | None = None
    max_seconds: float | None = None
    max_traced_mb: float | None = None


CASES: dict[str, Case] = {}


def case(case_id: str, *fragments: str, code: int = 1, **extra: Any) -> Callable[[Callable[[Ctx], Any]], Any]:
    def register(make: Callable[[Ctx], tuple[list[object], list[Path]]]) -> Any:
        assert case_id not in CASES, case_id
        CASES[case_id] = Case(make, fragments, code, **extra)
        return make
    return register


def alpha(width: int = 128, value: float = 0.5) -> dict[str, np.ndarray]:
    return {f"{H}.alpha": np.full(width, value, np.float32), f"{H}.auroc": np.full(width, 0.75)}


def no_payload_ran(c: Ctx) -> None:
    assert not c.marker.exists(), "a pickle payload was executed"


# --------------------------------------------------------------------------- extract


def extract_cmd(c: Ctx, *extra: object, data: object = None,
                out: Path | None = None) -> tuple[list[object], list[Path]]:
    out = out or c.tmp / "out.zarr"
    return ["extract", "--model", c.model, "--data", data or jigsaw_sample(), "--out", out, "--quiet",
            *extra], [out]


def with_data(content: str | bytes, name: str = "d.csv") -> Callable[[Ctx], tuple[list[object], list[Path]]]:
    return lambda c: extract_cmd(c, data=c.file(name, content))


CSV = "text,label\nyou are a horrible idiot,1\nthank you for dinner,0\n"

case("extract-data-missing", "does not exist", "pass an existing `--data` file")(
    lambda c: extract_cmd(c, data=c.tmp / "absent.csv"))


@case("extract-data-unreadable", "cannot read data file", "Permission denied", "Make it readable")
def _unreadable(c: Ctx) -> tuple[list[object], list[Path]]:
    path = c.file("locked.csv", CSV)
    path.chmod(0)
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:  # root reads anything: fail as the read fails for a user
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    c.monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return extract_cmd(c, data=path)


case("extract-data-is-directory", "Invalid value for '--data'", "is a directory", code=2)(
    lambda c: extract_cmd(c, data=c.tmp))
case("extract-csv-missing-columns", "must have column(s) label", "Pass `--text-column`/`--label-column`")(
    with_data("text,score\nhello,1\n"))
case("extract-label-not-0-1", "label column `label` must hold 0 or 1; got '2'", "Map labels to 0/1")(
    with_data("text,label\nhello,2\nthere,0\n"))
case("extract-label-as-text", "must hold 0 or 1; got 'toxic'", "Map labels to 0/1")(
    with_data("text,label\nhello,toxic\nthere,clean\n"))
case("extract-no-toxic-rows", "has no toxic rows", "Check the label column")(
    with_data("text,label\nhello,0\nthere,0\n"))
case("extract-empty-text", "line 3: text is empty", "remove the row or fill it")(
    with_data("text,label\nhello,1\n   ,0\n"))
case("extract-not-utf8", "must be UTF-8; byte 14 (line 2)", "iconv")(
    with_data(b"text,label\ncaf\xe9 au lait,1\nhello,0\n"))
case("extract-truncated-csv", "line 4: 1 fields, header has 2", "truncated or badly quoted")(
    with_data("text,label\nhello,1\nthere,0\nunfinished r"))
case("extract-unterminated-quote", "fields, header has 2", "truncated or badly quoted")(
    with_data('text,label\nhello,1\n"never closed,0\nmore,1\n'))
case("extract-empty-file", "is empty", "it needs a header and rows")(with_data(""))
case("extract-jsonl-not-json", "d.jsonl line 2: not valid JSON")(
    with_data('{"text": "hi", "label": 1}\n{"text": oops}\n', name="d.jsonl"))


@case("extract-huge-field", "line 3: text must have at most 100,000 characters; got 50,000,000",
      "shorten it", max_seconds=30, max_traced_mb=600)
def _huge(c: Ctx) -> tuple[list[object], list[Path]]:
    path = c.tmp / "huge.csv"
    with path.open("w") as f:  # a 50 MB field (what a stray quote can make of a whole file)
        f.write("text,label\nhello there,0\n")
        f.write("x" * 50_000_000)
        f.write(",1\n")
    return extract_cmd(c, data=path)


case("extract-hooks-match-nothing", "'blocks.9.*' match nothing; available", "aura-stream hooks")(
    lambda c: extract_cmd(c, "--hooks", "blocks.9.*"))
case("extract-unknown-pooling", "`--pooling` must be one of max, mean, last; got median")(
    lambda c: extract_cmd(c, "--pooling", "median"))
case("extract-max-length-0", "`--max-length` must be >= 1; got 0")(lambda c: extract_cmd(c, "--max-length", 0))
case("extract-batch-size-0", "`--batch-size` must be >= 1; got 0")(lambda c: extract_cmd(c, "--batch-size", 0))
case("extract-per-class-0", "`--per-class` must be >= 1; got 0")(lambda c: extract_cmd(c, "--per-class", 0))
case("extract-shard-malformed", "`--shard` must look like i/N (e.g. 3/16); got 'half'")(
    lambda c: extract_cmd(c, "--shard", "half"))
case("extract-out-is-a-file", "`--out` must be a directory for the store", "is a file")(
    lambda c: extract_cmd(c, out=c.file("taken", "mine")))


@case("extract-out-foreign-directory", "is a non-empty directory that is not a store", "choose a new path")
def _foreign(c: Ctx) -> tuple[list[object], list[Path]]:
    out = c.tmp / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    return extract_cmd(c, out=out)


case("extract-out-other-run", "holds another run (max_length: store has 128, this run 64)",
     "use a new `--out` or `--overwrite`")(
    lambda c: extract_cmd(c, "--max-length", 64, "--row-block", 8, out=c.store()))
case("extract-out-newer-schema", "schema_version must be <= 1; got 99", "Upgrade aura-stream")(
    lambda c: extract_cmd(c, out=edit_attrs(c.store(), lambda a: a.update(schema_version=99))))
case("extract-model-offline-hub-id", "cannot load model 'no-such-org/no-such-model'",
     "download it where there is network and pass its directory")(
    lambda c: (["extract", "--model", "no-such-org/no-such-model", "--data", jigsaw_sample(), "--out",
                c.tmp / "out.zarr", "--quiet"], [c.tmp / "out.zarr"]))


@case("extract-model-not-a-model", "cannot load model", "must be a complete Hugging Face model directory")
def _not_a_model(c: Ctx) -> tuple[list[object], list[Path]]:
    folder = c.tmp / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    return ["extract", "--model", folder, "--data", jigsaw_sample(), "--out", c.tmp / "out.zarr",
            "--quiet"], [c.tmp / "out.zarr", folder]


case("extract-model-path-missing", "`--model` must be a model directory or a hub id", "is not a directory")(
    lambda c: (["extract", "--model", c.tmp / "absent-model", "--data", jigsaw_sample(), "--out",
                c.tmp / "out.zarr", "--quiet"], [c.tmp / "out.zarr"]))
case("extract-config-unknown-key", "unknown key(s) batchsize", "known:", code=2)(
    lambda c: extract_cmd(c, "--config", c.file("c.yaml", "batchsize: 3\n")))

# --------------------------------------------------------------------------- score


def score_cmd(c: Ctx, store: Path, *extra: object) -> tuple[list[object], list[Path]]:
    out = c.tmp / "out.safetensors"
    return ["score", store, "--out", out, "--quiet", *extra], [out, store]


def corrupt_chunk(c: Ctx) -> Path:
    store = c.store()
    shard = store / "activations" / "max" / "blocks.1.mlp.hook_pre" / "c" / "1" / "0"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF  # one flipped byte inside an activation shard
    shard.write_bytes(bytes(data))
    return store


def with_nan_activation(c: Ctx) -> Path:
    store = c.store()
    arr = ActivationStore.open(store, mode="r+").activations("max", "blocks.1.mlp.hook_pre")
    values = np.asarray(arr[:])
    values[3, 17] = np.nan
    arr[:] = values
    return store


def with_nan_stored_auroc(c: Ctx) -> Path:
    store = c.store(scored=True)
    st = ActivationStore.open(store, mode="r+")
    values = st.read_scores("max", H)
    assert values is not None
    values[2] = np.nan
    st.write_scores("max", H, values, {"tampered": True})
    return store


def rename_hook(attrs: dict[str, Any], new: str) -> None:
    attrs["hooks"] = {new if k == H else k: v for k, v in attrs["hooks"].items()}


case("score-store-missing", "does not exist", "run `aura-stream extract --out")(
    lambda c: score_cmd(c, c.tmp / "absent.zarr"))
case("score-not-a-store", "is not an aura-stream store (no zarr.json)", "point at a `.zarr` written by `extract`")(
    lambda c: score_cmd(c, c.file("notes.txt", "hello").parent))


@case("score-foreign-zarr-group", "is a zarr group but not an aura-stream store", "point at one written by `extract`")
def _foreign_zarr(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store()
    meta = store / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"] = {"something": "else"}
    meta.write_text(json.dumps(doc))
    return score_cmd(c, store)


@case("score-damaged-metadata", "cannot open store", "extract again with `--overwrite`")
def _damaged(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store()
    (store / "zarr.json").write_text("{not json")
    return score_cmd(c, store)


@case("score-incomplete-store", "incomplete: 8 of 16 rows missing", "rerun the same `extract` command")
def _incomplete(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store()
    ActivationStore.open(store, mode="r+").group["progress"][1] = 0  # type: ignore[index]
    return score_cmd(c, store)


case("score-newer-schema", "schema_version must be <= 1; got 99", "Upgrade aura-stream")(
    lambda c: score_cmd(c, edit_attrs(c.store(), lambda a: a.update(schema_version=99))))
case("score-unknown-method", "Invalid value for '--method'", "'magic' is not one of", code=2)(
    lambda c: score_cmd(c, c.store(), "--method", "magic"))
case("score-num-experts-missing", "`--num-experts` must be >= 1 for method det0; got None")(
    lambda c: score_cmd(c, c.store(), "--method", "det0"))
case("score-num-experts-0", "`--num-experts` must be >= 1 for method det0; got 0")(
    lambda c: score_cmd(c, c.store(), "--method", "det0", "--num-experts", 0))
case("score-num-experts-too-many", "`--num-experts` must be <= 480, the neurons selected; got 100000")(
    lambda c: score_cmd(c, c.store(), "--method", "det0", "--num-experts", 100000))
case("score-damp-alpha-out-of-range", "`--damp-alpha` must be in [0, 1]; got 1.5")(
    lambda c: score_cmd(c, c.store(), "--method", "damp", "--num-experts", 3, "--damp-alpha", 1.5))
case("score-strength-out-of-range", "`--strength` must be in [0, 1]; got -0.1")(
    lambda c: score_cmd(c, c.store(), "--strength", -0.1))
case("score-memory-budget-malformed", "`--memory-budget` must be")(
    lambda c: score_cmd(c, c.store(), "--memory-budget", "lots"))
case("score-hooks-match-nothing", "'blocks.42.*' match nothing; available")(
    lambda c: score_cmd(c, c.store(), "--hooks", "blocks.42.*"))
case("score-pooling-not-in-store", "`--pooling` must be one the store holds (max); got 'mean'")(
    lambda c: score_cmd(c, c.store(), "--pooling", "mean"))
case("score-out-is-a-directory", "Invalid value for '--out'", "is a directory", code=2)(
    lambda c: (["score", c.store(), "--out", c.tmp, "--quiet"], [c.tmp / "s.zarr"]))
case("score-corrupted-chunk", "is corrupted: a chunk failed its crc32c checksum", "extract again with `--overwrite`")(
    lambda c: score_cmd(c, corrupt_chunk(c)))
case("score-tampered-hook-name", "hook name must look like blocks.<i>.mlp.hook_pre; got '../../escape'",
     "tampered with")(lambda c: score_cmd(c, edit_attrs(c.store(), lambda a: rename_hook(a, "../../escape"))))
case("score-tampered-pooling", "store poolings must be max, mean or last; got '../escape'", "tampered with")(
    lambda c: score_cmd(c, edit_attrs(c.store(), lambda a: a.update(poolings=["../escape"]))))
case("score-nan-activation", "hook blocks.1.mlp.hook_pre neuron 17 has NaN or inf", "extract in float32")(
    lambda c: score_cmd(c, with_nan_activation(c)))
case("score-nan-stored-auroc", "auroc must be finite and in [0, 1]; hook blocks.0.mlp.hook_pre neuron 2 is nan",
     "`aura-stream score --recompute`")(lambda c: score_cmd(c, with_nan_stored_auroc(c)))


@case("score-one-class", "labels must hold both classes", "Extract toxic and non-toxic sentences")
def _one_class(c: Ctx) -> tuple[list[object], list[Path]]:
    store = c.store()
    ActivationStore.open(store, mode="r+").group["labels"][:] = np.zeros(16, np.int8)  # type: ignore[index]
    # with a matching digest, as a store of one class would have (a changed label alone is caught: store-* cases)
    edit_attrs(store, lambda a: a.update(checksums={"labels": labels_digest(np.zeros(16))}))
    return score_cmd(c, store)


# --------------------------------------------------------------------------- info

case("info-store-missing", "does not exist", "run `aura-stream extract --out")(
    lambda c: (["info", c.tmp / "absent.zarr"], [c.tmp / "absent.zarr"]))
case("info-not-a-store", "is not an aura-stream store", "point at a `.zarr` written by `extract`")(
    lambda c: (["info", c.file("x.csv", CSV)], [c.tmp / "x.csv"]))
case("info-newer-schema", "schema_version must be <= 1; got 2", "Upgrade aura-stream")(
    lambda c: (["info", edit_attrs(c.store(), lambda a: a.update(schema_version=2))], [c.tmp / "s.zarr"]))
case("info-hook-list-missing", "has no hook list in its attributes", "Extract again with `--overwrite`")(
    lambda c: (["info", edit_attrs(c.store(), lambda a: a.pop("hooks"))], [c.tmp / "s.zarr"]))
case("info-tampered-hook-name", "got 'blocks.0.mlp.hook_pre/../../escape'", "tampered with")(
    lambda c: (["info", edit_attrs(c.store(), lambda a: rename_hook(a, f"{H}/../../escape"))], [c.tmp / "s.zarr"]))
case("info-tampered-width", "store attribute width of blocks.0.mlp.hook_pre must be a positive integer",
     "extract again with `--overwrite`")(
    lambda c: (["info", edit_attrs(c.store(), lambda a: a["hooks"].update({H: -1}))], [c.tmp / "s.zarr"]))

# --------------------------------------------------------------------------- generate


def generate_cmd(c: Ctx, *extra: object, intervention: object = None) -> tuple[list[object], list[Path]]:
    out = c.tmp / "gen.jsonl"
    iv = [] if intervention is False else ["--intervention", intervention or c.run.intervention]
    return ["generate", "--model", c.model, "--prompt", "You are", "--max-new-tokens", 2, "--output", out,
            "--quiet", *iv, *extra], [out]


def with_iv(make: Callable[[Ctx], Path]) -> Callable[[Ctx], tuple[list[object], list[Path]]]:
    return lambda c: generate_cmd(c, intervention=make(c))


case("generate-intervention-missing", "does not exist", "create it with `aura-stream score`")(
    with_iv(lambda c: c.tmp / "absent.safetensors"))
case("generate-intervention-not-safetensors", "is not a safetensors file",
     "only opens safetensors interventions written by `score`")(
    with_iv(lambda c: c.file("notes.safetensors", "alpha = 0.5 for every neuron, trust me\n")))
case("generate-intervention-empty", "is not a safetensors file (too short)")(
    with_iv(lambda c: c.file("empty.safetensors", b"")))
case("generate-intervention-pickle", "is not a safetensors file (a pickle or other format?)",
     "only opens safetensors interventions", after=no_payload_ran)(
    with_iv(lambda c: pickle_payload(c.tmp / "evil.safetensors", c.marker)))


@case("generate-intervention-torch-pickle", "is not a safetensors file", after=no_payload_ran)
def _torch_pickle(c: Ctx) -> tuple[list[object], list[Path]]:
    path = c.tmp / "evil.pt"
    torch.save({f"{H}.alpha": _Payload(c.marker)}, path)
    return generate_cmd(c, intervention=path)


case("generate-intervention-huge-header", "is not a safetensors file")(
    with_iv(lambda c: c.file("huge.safetensors", struct.pack("<Q", 10**12) + b"{}")))


@case("generate-intervention-plain-safetensors", "is safetensors but not an aura-stream intervention",
      "create one with `aura-stream score`")
def _plain(c: Ctx) -> tuple[list[object], list[Path]]:
    path = c.tmp / "plain.safetensors"
    save_file(alpha(), str(path))  # tensors only, no aura-stream metadata
    return generate_cmd(c, intervention=path)


@case("generate-intervention-truncated", "is damaged", "Recreate it with `aura-stream score`")
def _truncated(c: Ctx) -> tuple[list[object], list[Path]]:
    data = c.run.intervention.read_bytes()
    return generate_cmd(c, intervention=c.file("cut.safetensors", data[: len(data) - 100]))


case("generate-intervention-wrong-dtype", "must have float32 alpha and float64 auroc of one shape [d]",
     "got float64[128]")(
    with_iv(lambda c: c.intervention("d.safetensors", {f"{H}.alpha": np.ones(128), f"{H}.auroc": np.ones(128)})))
case("generate-intervention-wrong-shape", "must have float32 alpha and float64 auroc of one shape [d]",
     "got float32[8, 16]")(
    with_iv(lambda c: c.intervention("s.safetensors", {f"{H}.alpha": np.ones((8, 16), np.float32),
                                                       f"{H}.auroc": np.ones((8, 16))}, widths={H: 8})))
case("generate-intervention-lying-width", "metadata says blocks.0.mlp.hook_pre has width 4, the data has 128",
     "tampered with")(with_iv(lambda c: c.intervention("w.safetensors", alpha(), widths={H: 4})))
case("generate-intervention-lying-hooks", "lacks tensors for hook blocks.1.mlp.hook_pre",
     "the metadata does not match the data")(
    with_iv(lambda c: c.intervention("h.safetensors", alpha(), hooks=[H, "blocks.1.mlp.hook_pre"])))
case("generate-intervention-extra-tensor", "holds tensors not in its metadata (evil", "refused")(
    with_iv(lambda c: c.intervention("x.safetensors", {**alpha(), "evil": np.ones(1, np.float32)}, hooks=[H])))
case("generate-intervention-hook-path", "names an invalid hook '../../escape'", "not trustworthy")(
    with_iv(lambda c: c.intervention("p.safetensors", {"../../escape.alpha": np.ones(1, np.float32),
                                                       "../../escape.auroc": np.ones(1)})))
case("generate-intervention-nan-alpha", "alphas must be finite and in [0, 1]; blocks.0.mlp.hook_pre neuron 0 is nan",
     "Recreate the file")(with_iv(lambda c: c.intervention("n.safetensors", alpha(value=np.nan))))
case("generate-hooks-absent-from-model", "intervention hooks blocks.7.mlp.hook_pre do not exist in the model",
     "Use the model the intervention was scored on")(
    with_iv(lambda c: c.intervention("a.safetensors", {"blocks.7.mlp.hook_pre.alpha": np.ones(128, np.float32),
                                                       "blocks.7.mlp.hook_pre.auroc": np.ones(128)})))
case("generate-width-mismatch", "intervention widths must match the model; blocks.0.mlp.hook_pre (file 64, model 128)",
     "It was made for")(with_iv(lambda c: c.intervention("m.safetensors", alpha(width=64))))
case("generate-empty-prompt-file", "holds no prompts", "write one prompt per line")(
    lambda c: (["generate", "--model", c.model, "--prompts", c.file("p.txt", "\n  \n"), "--quiet"], []))
case("generate-no-prompt", "must give at least one prompt")(
    lambda c: (["generate", "--model", c.model, "--quiet"], []))
case("generate-prompt-file-missing", "does not exist")(
    lambda c: (["generate", "--model", c.model, "--prompts", c.tmp / "absent.txt", "--quiet"], []))
case("generate-max-new-tokens-0", "`--max-new-tokens` must be >= 1; got 0", "E.g. --max-new-tokens")(
    lambda c: generate_cmd(c, "--max-new-tokens", 0))
case("generate-num-return-sequences-0", "`--num-return-sequences` must be >= 1; got 0")(
    lambda c: generate_cmd(c, "--num-return-sequences", 0))
case("generate-strength-without-intervention", "`--strength` needs an intervention")(
    lambda c: generate_cmd(c, "--strength", 0.5, intervention=False))
case("generate-output-is-a-directory", "Invalid value for '--output'", "is a directory", code=2)(
    lambda c: (["generate", "--model", c.model, "--prompt", "Hi", "--output", c.tmp], []))

# --------------------------------------------------------------------------- fold


def fold_cmd(c: Ctx, *extra: object, intervention: object = None, out: Path | None = None
             ) -> tuple[list[object], list[Path]]:
    out = out or c.tmp / "folded"
    return ["fold", "--model", c.model, "--intervention", intervention or c.run.intervention, "--out", out,
            *extra], [out]


@case("fold-out-not-empty", "`--out` must be a new or empty directory", "holds 1 entries",
      "Choose another --out or remove it")
def _fold_not_empty(c: Ctx) -> tuple[list[object], list[Path]]:
    out = c.tmp / "folded"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    return fold_cmd(c, out=out)


case("fold-out-is-a-file", "Invalid value for '--out'", "is a file", code=2)(
    lambda c: fold_cmd(c, out=c.file("taken", "mine")))
case("fold-strength-out-of-range", "`--strength` must be in [0, 1]; got 2.0")(lambda c: fold_cmd(c, "--strength", 2))
case("fold-intervention-missing", "does not exist", "create it with `aura-stream score`")(
    lambda c: fold_cmd(c, intervention=c.tmp / "absent.safetensors"))
case("fold-intervention-pickle", "is not a safetensors file", after=no_payload_ran)(
    lambda c: fold_cmd(c, intervention=pickle_payload(c.tmp / "evil.safetensors", c.marker)))
case("fold-width-mismatch", "widths must match the model", "(file 64, model 128)")(
    lambda c: fold_cmd(c, intervention=c.intervention("m.safetensors", alpha(width=64))))

# --------------------------------------------------------------------------- eval


def eval_cmd(c: Ctx, *extra: object, out: Path | None = None) -> tuple[list[object], list[Path]]:
    out = out or c.tmp / "eval"
    ppl = c.file("ppl.txt", "The interpreter reads a statement and executes it.\n")
    return ["eval", "--model", c.model, "--out", out, "--limit-prompts", 2, "--samples-per-prompt", 1,
            "--max-new-tokens", 2, "--batch-size", 2, "--ppl-text", ppl, "--quiet", *extra], [out]


case("eval-samples-per-prompt-0", "`--samples-per-prompt` must be >= 1; got 0")(
    lambda c: eval_cmd(c, "--samples-per-prompt", 0))
case("eval-max-new-tokens-0", "`--max-new-tokens` must be >= 1; got 0")(lambda c: eval_cmd(c, "--max-new-tokens", 0))
case("eval-out-is-a-file", "`--out` must be a directory", "Choose a directory path")(
    lambda c: eval_cmd(c, out=c.file("taken", "mine")))


@case("eval-out-other-configuration", "holds an evaluation of a different configuration",
      "pass --overwrite to replace it, or choose another --out")
def _other_config(c: Ctx) -> tuple[list[object], list[Path]]:
    out = c.tmp / "eval"
    out.mkdir()
    (out / "eval_config.json").write_text(json.dumps({"format": "aura-stream-eval/1",
                                                      "identity": {"format": "aura-stream-eval/1", "seed": 7}}))
    (out / "generations.jsonl").write_text('{"arm": "baseline"}\n')
    return eval_cmd(c, out=out)


@case("eval-out-unknown-files", "holds evaluation files of an unknown configuration (summary.json)",
      "pass --overwrite to replace them, or choose another --out")
def _unknown_files(c: Ctx) -> tuple[list[object], list[Path]]:
    out = c.tmp / "eval"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    return eval_cmd(c, out=out)


case("eval-empty-prompts-file", "must hold at least one non-blank line")(
    lambda c: eval_cmd(c, "--prompts", c.file("p.txt", "\n\n")))
case("eval-prompts-malformed", "malformed line(s) 2")(
    lambda c: eval_cmd(c, "--prompts", c.file("p.jsonl", '{"prompt": {"text": "ok"}}\n{"prompt": 3}\n')))
case("eval-ppl-text-missing", "must be an existing file or 'builtin'")(
    lambda c: eval_cmd(c, "--ppl-text", c.tmp / "absent.txt"))
case("eval-intervention-pickle", "is not a safetensors file", after=no_payload_ran)(
    lambda c: eval_cmd(c, "--intervention", pickle_payload(c.tmp / "evil.safetensors", c.marker)))
case("eval-strength-without-intervention", "`--strength` needs `--intervention`")(
    lambda c: eval_cmd(c, "--strength", 0.5))
case("eval-scorer-missing", "`--scorer` must be 'default' or a local")(
    lambda c: eval_cmd(c, "--scorer", c.tmp / "absent-classifier"))


# --------------------------------------------------------------------------- the test


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input_is_one_clear_line(case_id: str, gpt2_dir: Path, artifacts: Artifacts, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spec = CASES[case_id]
    ctx = Ctx(tmp_path, gpt2_dir, artifacts, monkeypatch)
    args, watched = spec.make(ctx)
    before, files_before = tree(*watched), set(tmp_path.rglob("*"))
    if spec.max_traced_mb:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        result = cli(*args)
    finally:
        seconds = time.perf_counter() - start
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20 if tracemalloc.is_tracing() else 0.0
        tracemalloc.stop()
    assert_one_line_error(result, *spec.fragments, code=spec.code)
    assert tree(*watched) == before  # no half-written output, nothing existing touched
    assert set(tmp_path.rglob("*")) == files_before and leftovers(tmp_path) == []
    if spec.after:
        spec.after(ctx)
    if spec.max_seconds:
        assert seconds < spec.max_seconds, f"{seconds:.1f} s"
    if spec.max_traced_mb:
        assert peak_mb < spec.max_traced_mb, f"{peak_mb:.0f} MB"


def test_the_table_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 25
    assert {cid.split("-")[0] for cid in CASES} == {"extract", "score", "info", "generate", "fold", "eval"}
