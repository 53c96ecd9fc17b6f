"""Safetensors checkpoints read tensor by tensor: the shard index, header checks, and cache-free reads.

A model larger than memory cannot be loaded whole, so the streamed backend and the streamed
``fold`` read the tensors of one decoder block (or one shard) at a time.  This module knows the
safetensors layout (an 8-byte little-endian header length, a JSON header of
``{name: {dtype, shape, data_offsets}}``, then the raw bytes) and reads each tensor with
``os.preadv`` straight into a torch buffer, then tells the kernel to drop those pages from the page
cache: under a memory cap the cache would otherwise compete with the weights being computed on.

Nothing is unpickled: a checkpoint that has only ``pytorch_model*.bin`` files is refused with the
command that converts it.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from aura_stream.errors import ModelLoadError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
CONVERT_HINT = ("convert it to safetensors first, where it is trusted: `python -c \"from transformers import "
                "AutoModelForCausalLM as M; M.from_pretrained('DIR').save_pretrained('DIR-st')\"`")


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies: its file, dtype code, shape and absolute byte range."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        """Bytes on disk."""
        return self.end - self.start


def _read_header(path: Path) -> tuple[dict[str, TensorEntry], int]:
    """Entries of one ``.safetensors`` file and its size; a damaged file is one clear error."""
    size = path.stat().st_size

    def damaged(what: str) -> ModelLoadError:
        return ModelLoadError(f"a weights file is damaged ({path.name}: {what}); an interrupted download leaves a "
                              "truncated file: download it again.")
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise damaged("shorter than a header")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise damaged(f"header of {n} bytes in a {size}-byte file")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise damaged("header is not JSON") from None
    if not isinstance(header, dict):
        raise damaged("header is not an object")
    base = 8 + n
    out: dict[str, TensorEntry] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = str(info["dtype"]), tuple(int(d) for d in info["shape"])
            start, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise damaged(f"entry {name!r} is malformed") from None
        if dtype not in DTYPES:
            raise ModelLoadError(f"tensor {name!r} in {path.name} has dtype {dtype}, which aura-stream cannot "
                                 "stream; supported: " + ", ".join(DTYPES) + ".")
        itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
        if end - start != math.prod(shape) * itemsize or base + end > size or start < 0:
            raise damaged(f"tensor {name!r} runs past the end")
        out[name] = TensorEntry(path, dtype, shape, base + start, base + end)
    return out, size


class Checkpoint:
    """The safetensors files of a model directory, indexed by tensor name.

    Use :meth:`open`. ``entries`` maps every checkpoint key to where its bytes lie.
    """

    def __init__(self, directory: Path, entries: dict[str, TensorEntry], files: list[Path]):
        self.directory = directory
        self.entries = entries
        self.files = files

    @classmethod
    def open(cls, directory: str | Path) -> Checkpoint:
        """Index a model directory's safetensors files (headers only; no tensor is read).

        Raises
        ------
        ModelLoadError
            No safetensors weights (pickle ``.bin`` only: convert first), a shard named by the
            index that is missing, or a damaged header.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise ModelLoadError(f"`--model` must be a local model directory to stream its weights; "
                                 f"{str(directory)!r} is not one. Download it first.")
        index = directory / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                shard_names = sorted(set(weight_map.values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                raise ModelLoadError(f"{str(index)!r} must be a safetensors index with a weight_map; it is "
                                     "unreadable. Download it again.") from None
            if any(Path(s).name != s for s in shard_names):
                raise ModelLoadError(f"{str(index)!r} names shards outside the model directory; refusing it.")
            files = [directory / s for s in shard_names]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise ModelLoadError(f"the shard index names {len(missing)} file(s) that are missing: "
                                     f"{', '.join(missing[:5])}. Download the complete checkpoint.")
        elif (directory / SINGLE_FILE).is_file():
            files, weight_map = [directory / SINGLE_FILE], None
        else:
            pickles = sorted(p.name for p in directory.glob("*.bin")) + sorted(p.name for p in directory.glob("*.pt"))
            if pickles:
                raise ModelLoadError(f"{str(directory)!r} holds pickle weights ({pickles[0]}), which are never "
                                     f"loaded here; {CONVERT_HINT}.")
            raise ModelLoadError(f"{str(directory)!r} holds no model.safetensors or {INDEX_FILE}; "
                                 "pass a complete Hugging Face model directory.")
        entries: dict[str, TensorEntry] = {}
        for f in files:
            found, _ = _read_header(f)
            entries.update(found)
        if weight_map is not None:
            absent = [k for k, s in weight_map.items() if entries.get(k) is None or entries[k].file.name != s]
            if absent:
                raise ModelLoadError(f"the shard index lists {len(absent)} tensor(s) that its shards do not hold "
                                     f"(e.g. {absent[0]!r}); download the complete checkpoint.")
        return cls(directory, entries, files)

    @property
    def total_bytes(self) -> int:
        """Bytes of every tensor."""
        return sum(e.nbytes for e in self.entries.values())

    def nbytes(self, keys: Iterable[str]) -> int:
        """Bytes of the named tensors."""
        return sum(self.entries[k].nbytes for k in keys)

    def resolve(self, param_names: Sequence[str], base_model_prefix: str,
                aliases: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
        """Checkpoint key of each model parameter name, and the names with none.

        A checkpoint saved from the bare base model lacks ``base_model_prefix.`` (GPT-2's hub
        files say ``h.0.mlp.c_fc.weight`` for ``transformer.h.0.mlp.c_fc.weight``); both spellings
        are accepted. ``aliases`` maps renamed keys (``transformers``' load-time renames, e.g.
        GPT-NeoX's ``embed_out`` -> ``lm_head``) to the keys in the files.
        """
        lookup = {**(aliases or {}), **{k: k for k in self.entries}}
        keys: dict[str, str] = {}
        missing: list[str] = []
        prefix = f"{base_model_prefix}." if base_model_prefix else ""
        for name in param_names:
            candidates = [name]
            if prefix and name.startswith(prefix):
                candidates.append(name[len(prefix):])
            elif prefix:
                candidates.append(prefix + name)
            key = next((lookup[c] for c in candidates if c in lookup), None)
            if key is None:
                missing.append(name)
            else:
                keys[name] = key
        return keys, missing

    def read(self, keys: Iterable[str], *, pin_memory: bool = False,
             drop_cache: bool = True) -> dict[str, torch.Tensor]:
        """Read the named tensors into fresh CPU tensors (never a view of a mapped file).

        Parameters
        ----------
        keys : iterable of str
            Checkpoint keys.
        pin_memory : bool
            Page-locked buffers, for a fast copy to a GPU.
        drop_cache : bool
            Advise the kernel to drop the read pages from the page cache afterwards.

        Returns
        -------
        dict of str to torch.Tensor
            Each with its checkpoint dtype and shape.
        """
        by_file: dict[Path, list[str]] = {}
        for k in keys:
            by_file.setdefault(self.entries[k].file, []).append(k)
        out: dict[str, torch.Tensor] = {}
        for path, names in by_file.items():
            names.sort(key=lambda k: self.entries[k].start)  # sequential reads
            fd = os.open(path, os.O_RDONLY)
            try:
                for k in names:
                    e = self.entries[k]
                    buf = torch.empty(e.nbytes, dtype=torch.uint8, pin_memory=pin_memory)
                    _pread_into(fd, buf, e.start, path)
                    if drop_cache and hasattr(os, "posix_fadvise"):
                        os.posix_fadvise(fd, e.start, e.nbytes, os.POSIX_FADV_DONTNEED)
                    tensor = buf.view(DTYPES[e.dtype]) if e.nbytes else torch.empty(0, dtype=DTYPES[e.dtype])
                    out[k] = tensor.reshape(e.shape)
            finally:
                os.close(fd)
        return out


def _pread_into(fd: int, buf: torch.Tensor, offset: int, path: Path) -> None:
    """Fill ``buf`` (uint8) from ``offset``; a short read means the file shrank under us."""
    view = memoryview(buf.numpy()).cast("B")  # type: ignore[arg-type]
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise ModelLoadError(f"weights file {str(path)!r} ended early (truncated while reading?); "
                                 "download it again.")
        done += n


def has_safetensors(directory: str | Path) -> bool:
    """Whether ``directory`` holds safetensors weights (a single file or an index)."""
    d = Path(directory)
    return (d / INDEX_FILE).is_file() or (d / SINGLE_FILE).is_file()
