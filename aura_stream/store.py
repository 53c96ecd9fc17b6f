"""The activation store: one zarr v3 group per extraction run (format: ``docs/store-format.md``).

Rows are written in whole row blocks; a block's completion flag is written only after all of
its data, so a killed run resumes by skipping complete blocks and rewriting the others. Each row
block of each array is exactly one zarr shard, owned by exactly one writer (zarr-python has no
locks and corrupts concurrent partial-shard writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from aura_stream._version import __version__
from aura_stream.errors import NumericalError, StoreError

SCHEMA_VERSION = 1
FLOAT16_MAX = float(np.finfo(np.float16).max)
HOOK_NAME = re.compile(r"^blocks\.\d{1,5}\.(mlp\.hook_pre|mlp\.hook_pre_linear|mlp\.hook_post|hook_mlp_out)$")
# Keys whose difference means "another run": resuming into such a store would mix runs.
IDENTITY_KEYS = (
    "model", "revision", "model_dtype", "tokenizer", "max_length", "poolings", "hooks",
    "dataset_fingerprint", "n_samples", "store_dtype", "row_block", "n_shards", "weights",
)
OPTIONAL_IDENTITY_KEYS = ("weights",)  # compared only when the store records them (older stores do not)


def check_hook_name(name: str) -> str:
    """Refuse hook names that are not TransformerLens MLP names (no paths, no ``..``)."""
    if not HOOK_NAME.match(name):
        raise StoreError(
            f"hook name must look like blocks.<i>.mlp.hook_pre; got {name[:80]!r}. "
            "The file was not written by aura-stream or was tampered with."
        )
    return name


def neuron_chunk(width: int, row_block: int, itemsize: int, target_bytes: int = 1 << 20) -> int:
    """Columns per chunk: about ``target_bytes`` per chunk, split evenly so the last chunk is not padded."""
    cap = max(1, min(width, target_bytes // max(1, row_block * itemsize)))
    return -(-width // -(-width // cap))


@dataclass
class StoreSpec:
    """Everything that defines a store's shape and identity."""

    n_samples: int
    row_block: int
    hooks: dict[str, int]  # hook name -> width, in forward order
    poolings: list[str]
    store_dtype: str
    identity: dict[str, Any]  # the IDENTITY_KEYS values
    provenance: dict[str, Any]  # everything else worth recording (config, versions, time)
    labels: np.ndarray  # [n_samples] int8
    sample_ids: list[str]

    @property
    def n_blocks(self) -> int:
        """Number of row blocks."""
        return -(-self.n_samples // self.row_block)


class ActivationStore:
    """An opened store. Use :meth:`create_or_open` or :meth:`open`."""

    def __init__(self, path: Path, group: zarr.Group):
        self.path = path
        self.group = group
        attrs = dict(group.attrs).get("aura_stream")
        if not isinstance(attrs, dict):
            raise StoreError(f"{str(path)!r} is a zarr group but not an aura-stream store; "
                             "point at one written by `extract`.")
        self.attrs: dict[str, Any] = attrs
        version = attrs.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise StoreError(
                f"store schema_version must be <= {SCHEMA_VERSION}; got {version!r}. "
                "Upgrade aura-stream to read this store."
            )
        hooks = attrs.get("hooks")
        if not isinstance(hooks, dict) or not hooks:
            raise StoreError(f"store {str(path)!r} has no hook list in its attributes; it is damaged. "
                             "Extract again with `--overwrite`.")
        self.hooks: dict[str, int] = {check_hook_name(str(k)): _count(v, f"width of {k}", path)
                                      for k, v in hooks.items()}
        self.poolings: list[str] = [str(p) for p in attrs.get("poolings", [])]
        bad = [p for p in self.poolings if p not in ("max", "mean", "last")]  # pooling.POOLINGS, without torch
        if bad:  # a tampered name such as ../x must never become a path
            raise StoreError(f"store poolings must be max, mean or last; got {bad[0][:40]!r}. "
                             "The store was not written by aura-stream or was tampered with.")
        self.n_samples = _count(attrs.get("n_samples"), "n_samples", path)
        self.row_block = _count(attrs.get("row_block"), "row_block", path)

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, mode: str = "r") -> ActivationStore:
        """Open an existing store; one clear error if ``path`` is not one."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"store {str(path)!r} does not exist; run `aura-stream extract --out {path}` first.")
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{str(path)!r} is not an aura-stream store (no zarr.json); "
                             "point at a `.zarr` written by `extract`.")
        try:
            group = zarr.open_group(str(path), mode=mode)  # type: ignore[arg-type]
        except Exception as exc:  # zarr raises a variety of types for bad metadata
            raise StoreError(f"cannot open store {str(path)!r}: {exc}. It is damaged or not a zarr v3 store; "
                             "extract again with `--overwrite`.") from exc
        return cls(path, group)

    @classmethod
    def create_or_open(cls, path: str | Path, spec: StoreSpec, *, overwrite: bool = False) -> ActivationStore:
        """Create the store, or open it for resuming when it holds the same run.

        Creation is race-free: the group is built in a temporary sibling directory and renamed
        into place, so concurrent shard processes see either nothing or a complete store.

        Raises
        ------
        StoreError
            ``path`` is a file, a foreign directory, or a store of another run (named keys differ).
        """
        path = Path(path)
        if path.is_file():
            raise StoreError(f"`--out` must be a directory for the store; {str(path)!r} is a file.")
        if path.exists() and overwrite:
            remove_store(path)
        if path.exists() and any(path.iterdir()) and not (path / "zarr.json").exists():
            raise StoreError(f"`--out` {str(path)!r} is a non-empty directory that is not a store; choose a new path.")
        if not (path / "zarr.json").exists():
            _create_atomically(path, spec)
        store = cls.open(path, mode="r+")
        store.check_same_run(spec.identity)
        return store

    def check_same_run(self, identity: Mapping[str, Any]) -> None:
        """Raise if this store was made by another model, data, selection or hook set."""
        theirs = self.attrs.get("identity", {})
        diffs = [k for k in IDENTITY_KEYS if _canon(theirs.get(k)) != _canon(identity.get(k))
                 and not (k in OPTIONAL_IDENTITY_KEYS and k not in theirs)]
        if diffs:
            detail = "; ".join(f"{k}: store has {_short(theirs.get(k))}, this run {_short(identity.get(k))}"
                               for k in diffs)
            raise StoreError(
                f"store {str(self.path)!r} holds another run ({detail}); "
                "use a new `--out` or `--overwrite` to replace it."
            )

    # -- layout ----------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        """Number of row blocks."""
        return -(-self.n_samples // self.row_block)

    def block_rows(self, block: int) -> slice:
        """Row slice of block ``block``."""
        return slice(block * self.row_block, min(self.n_samples, (block + 1) * self.row_block))

    def activations(self, pooling: str, hook_name: str) -> zarr.Array[Any]:
        """The ``[n_samples, d_hook]`` array of one pooling and hook."""
        check_hook_name(hook_name)
        try:
            arr = self.group[f"activations/{pooling}/{hook_name}"]
        except KeyError:
            raise StoreError(f"store has no activations for pooling {pooling!r} and hook {hook_name!r}; "
                             f"it has poolings {self.poolings}.") from None
        assert isinstance(arr, zarr.Array)
        return arr

    def _read(self, name: str) -> np.ndarray:
        """A small whole array, its crc32c checked; damage is a StoreError, never a silent value."""
        try:
            return np.asarray(self.group[name][:])  # type: ignore[index]
        except KeyError:
            raise StoreError(f"store {str(self.path)!r} has no `{name}` array; it is damaged. "
                             "Extract again with `--overwrite`.") from None
        except ValueError:  # zarr: "Stored and computed checksum do not match"
            raise StoreError(f"store {str(self.path)!r} is damaged: `{name}` fails its crc32c checksum. "
                             "Extract again with `--overwrite`.") from None

    @property
    def labels(self) -> np.ndarray:
        """``[n_samples]`` int8 labels (1 = toxic), checked against the digest recorded at creation."""
        labels = self._read("labels")
        if labels.shape != (self.n_samples,) or not np.isin(labels, (0, 1)).all():
            raise StoreError(f"store labels must be {self.n_samples} values of 0 or 1; got shape {labels.shape} "
                             f"and values {sorted(set(np.unique(labels).tolist()))[:5]}. The store is damaged: "
                             "extract again with `--overwrite`.")
        want = self.attrs.get("checksums", {}).get("labels") if isinstance(self.attrs.get("checksums"), dict) else None
        if want is not None and labels_digest(labels) != want:
            raise StoreError(f"store labels must match the digest recorded at creation; {str(self.path)!r} has "
                             "labels that were changed since. Extract again with `--overwrite`.")
        return labels

    @property
    def sample_ids(self) -> np.ndarray:
        """``[n_samples]`` sample ids."""
        return self._read("sample_id")

    # -- progress --------------------------------------------------------------------------
    def flagged(self) -> np.ndarray:
        """``[n_blocks]`` bool: the completion flags as written (see :meth:`completed`)."""
        progress = self._read("progress")
        if progress.shape != (self.n_blocks,) or not np.isin(progress, (0, 1)).all():
            raise StoreError(f"store progress must be {self.n_blocks} flags of 0 or 1; got shape "
                             f"{progress.shape}. The store is damaged: extract again with `--overwrite`.")
        return progress.astype(bool)

    def block_files(self, block: int) -> list[Path]:
        """The data file of row block ``block`` in every activation array (one zarr shard each)."""
        files = []
        for _, _, arr in self.iter_arrays():
            files.append(self.path / arr.path / arr.metadata.encode_chunk_key((block, 0)))
        return files

    def unbacked_blocks(self) -> dict[int, list[str]]:
        """Flagged blocks whose data file is missing or empty in some array (zarr would read zeros)."""
        out: dict[int, list[str]] = {}
        for block in np.flatnonzero(self.flagged()).tolist():
            bad = [str(f.relative_to(self.path)) for f in self.block_files(block)
                   if not f.is_file() or f.stat().st_size == 0]
            if bad:
                out[block] = bad
        return out

    def completed(self) -> np.ndarray:
        """``[n_blocks]`` bool: which row blocks are flagged complete *and* have every data file.

        A flagged block whose file was deleted or emptied counts as not written: ``score``
        refuses the store and ``extract`` rewrites the block.
        """
        done = self.flagged()
        for block in self.unbacked_blocks():
            done[block] = False
        return done

    def missing_rows(self) -> int:
        """Rows in blocks that are not complete."""
        done = self.completed()
        return sum(self.block_rows(b).stop - self.block_rows(b).start for b in np.flatnonzero(~done).tolist())

    def write_block(self, block: int, data: Mapping[tuple[str, str], np.ndarray], *, complete: bool = True) -> None:
        """Write one row block of the given arrays, then mark it complete (idempotent).

        ``complete=False`` leaves the flag alone: the streamed backend writes a block one decoder
        layer at a time and marks it with :meth:`mark_complete` once every array holds it.

        Parameters
        ----------
        block : int
            Row block index.
        data : mapping of (pooling, hook_name) to np.ndarray of shape [rows_in_block, d_hook]
            Float32 values; converted to the store dtype after an overflow check.
        """
        rows = self.block_rows(block)
        dtype = np.dtype(self.attrs["store_dtype"])
        for (pooling, hook_name), values in data.items():
            if values.shape != (rows.stop - rows.start, self.hooks[hook_name]):
                raise StoreError(f"block {block} of {hook_name} has shape {values.shape}; expected "
                                 f"{(rows.stop - rows.start, self.hooks[hook_name])}.")
            check_finite(values, hook_name, row_offset=rows.start, store_dtype=dtype)
            # all-zero blocks are written too: a missing file must always mean "not written"
            arr = self.activations(pooling, hook_name).with_config({"write_empty_chunks": True})
            arr[rows] = values.astype(dtype, copy=False)
        if complete:
            self.mark_complete(block)

    def mark_complete(self, block: int) -> None:
        """Flag row block ``block`` complete (after every array holds its rows)."""
        self.group["progress"][block] = 1  # type: ignore[index]

    def write_scores(self, pooling: str, hook_name: str, auroc: np.ndarray, provenance: dict[str, Any]) -> None:
        """Store the AUROCs of one hook (``scores/<pooling>/<hook>/auroc``) with provenance."""
        name = f"scores/{pooling}/{check_hook_name(hook_name)}/auroc"
        auroc = np.asarray(auroc, dtype=np.float64)
        try:
            arr = self.group.create_array(name, shape=auroc.shape, dtype="float64", chunks=auroc.shape,
                                          compressors=[Crc32cCodec()], overwrite=True)
            arr[:] = auroc
            # last: marks the scores as complete, with a digest that a later read checks
            arr.attrs["aura_stream"] = {**provenance, "sha256": hashlib.sha256(auroc.tobytes()).hexdigest()}
        except OSError as exc:
            raise StoreError(f"cannot write scores into store {str(self.path)!r}: {exc.strerror or exc}. "
                             "Free space or fix permissions, then rerun `score`.") from exc

    def read_scores(self, pooling: str, hook_name: str) -> np.ndarray | None:
        """Stored AUROCs ``[d_hook]`` of one hook, or None when there are none to reuse.

        None when `score` has not run for the hook, did not finish, or wrote no digest (stores
        scored by aura-stream < 0.2): `score` then recomputes them.

        Raises
        ------
        StoreError
            Stored values that fail their checksum or digest, or have the wrong shape.
        """
        name = f"scores/{pooling}/{check_hook_name(hook_name)}/auroc"
        try:
            arr = self.group[name]
        except KeyError:
            return None
        meta = arr.attrs.get("aura_stream")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            return None  # a write cut short (missing data would read as zeros), or no digest
        try:
            values = np.asarray(arr[:], dtype=np.float64)  # type: ignore[index]
        except ValueError:  # zarr's crc32c mismatch
            values = None
        if (values is None or values.shape != (self.hooks[hook_name],)
                or hashlib.sha256(values.tobytes()).hexdigest() != meta["sha256"]):
            raise StoreError(f"stored AUROCs must match their checksum; `{name}` in {str(self.path)!r} does not "
                             "(changed on disk). Recompute them (`aura-stream score --recompute`).")
        return values

    def iter_arrays(self) -> Iterator[tuple[str, str, zarr.Array[Any]]]:
        """Every (pooling, hook_name, array)."""
        for pooling in self.poolings:
            for hook_name in self.hooks:
                yield pooling, hook_name, self.activations(pooling, hook_name)


def check_finite(values: np.ndarray, hook_name: str, *, row_offset: int, store_dtype: np.dtype[Any]) -> None:
    """NaN/inf are refused; so are values that float16 would turn into inf."""
    finite = np.isfinite(values)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise NumericalError(
            f"activations must be finite; hook {hook_name} neuron {col} sample {row + row_offset} "
            f"is {values[row, col]}. Load the model in float32 (`--dtype float32`)."
        )
    if store_dtype == np.float16:
        peak = float(np.abs(values).max(initial=0.0))
        if peak > FLOAT16_MAX:
            row, col = np.unravel_index(int(np.abs(values).argmax()), values.shape)
            raise NumericalError(
                f"activations must fit float16 (|x| <= 65504); hook {hook_name} neuron {col} sample "
                f"{row + row_offset} is {peak:.6g}. Rerun with `--store-dtype float32 --overwrite`."
            )


def labels_digest(labels: np.ndarray) -> str:
    """sha256 of the labels as int8 bytes (recorded at creation, checked on every read)."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int8).tobytes()).hexdigest()


def remove_store(path: Path) -> None:
    """Delete a store, refusing to delete anything that is not one (``--overwrite`` safety)."""
    meta = path / "zarr.json"
    if path.is_dir() and any(path.iterdir()):
        try:
            attrs = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, ValueError):
            attrs = {}
        if "aura_stream" not in attrs:
            raise StoreError(f"`--overwrite` only replaces aura-stream stores; {str(path)!r} is not one. "
                             "Remove it yourself.")
    shutil.rmtree(path, ignore_errors=False) if path.is_dir() else None


def _create_atomically(path: Path, spec: StoreSpec) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _create(tmp, spec)
        try:
            if path.exists() and not any(path.iterdir()):
                path.rmdir()
            os.rename(tmp, path)
        except OSError:
            if not (path / "zarr.json").exists():  # not a lost race: a real failure
                raise
    except OSError as exc:
        raise StoreError(f"cannot create store {str(path)!r}: {exc.strerror or exc}. "
                         "Check the path and free space.") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _create(path: Path, spec: StoreSpec) -> None:
    group = zarr.open_group(str(path), mode="w-")
    attrs = {
        "schema_version": SCHEMA_VERSION, "package": "aura-stream", "package_version": __version__,
        "n_samples": spec.n_samples, "row_block": spec.row_block, "hooks": spec.hooks,
        "poolings": spec.poolings, "store_dtype": spec.store_dtype, "identity": spec.identity,
        "checksums": {"labels": labels_digest(np.asarray(spec.labels))}, **spec.provenance,
    }
    group.attrs["aura_stream"] = json.loads(json.dumps(attrs, default=str))
    dtype = np.dtype(spec.store_dtype)
    for pooling in spec.poolings:
        for hook_name, width in spec.hooks.items():
            inner = neuron_chunk(width, spec.row_block, dtype.itemsize)
            group.create_array(
                f"activations/{pooling}/{check_hook_name(hook_name)}",
                shape=(spec.n_samples, width), dtype=dtype, chunks=(spec.row_block, inner),
                shards=(spec.row_block, -(-width // inner) * inner), compressors=[Crc32cCodec()],
                fill_value=0, dimension_names=("sample", "neuron"),
            )
    group.create_array("progress", shape=(spec.n_blocks,), dtype="uint8", chunks=(1,), fill_value=0,
                       compressors=[Crc32cCodec()])
    labels = group.create_array("labels", shape=(spec.n_samples,), dtype="int8",
                                chunks=(spec.n_samples,), compressors=[Crc32cCodec()])
    labels[:] = spec.labels
    ids = group.create_array("sample_id", shape=(spec.n_samples,), dtype=str, chunks=(spec.n_samples,),
                             compressors=[Crc32cCodec()])
    ids[:] = np.asarray(spec.sample_ids, dtype=object)


def _count(value: Any, what: str, path: Path) -> int:
    """A positive integer from the store's attributes; anything else means a damaged store."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StoreError(f"store attribute {what} must be a positive integer; got {str(value)[:40]!r}. "
                         f"Store {str(path)!r} is damaged: extract again with `--overwrite`.")
    return value


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any) -> str:
    text = _canon(value)
    return text if len(text) <= 60 else text[:57] + "..."
