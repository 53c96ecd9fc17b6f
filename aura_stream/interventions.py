"""Interventions: AurA / Det0 / Damp alphas from AUROCs, and their safetensors file.

File format: one safetensors file; per hook ``<hook>.alpha`` (float32 ``[d]``) and
``<hook>.auroc`` (float64 ``[d]``); ``__metadata__["aura_stream"]`` is JSON with the method, its
parameters, the model, hook widths, the source store's fingerprint and the package version.
safetensors holds raw tensors only, so opening a file from a stranger executes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from aura_stream._version import __version__
from aura_stream.errors import InputError, InterventionError, MissingFileError, NumericalError
from aura_stream.store import HOOK_NAME

Method = Literal["aura", "det0", "damp"]
METHODS: tuple[str, ...] = get_args(Method)
FORMAT = "aura-stream-intervention/1"


@dataclass(frozen=True)
class Intervention:
    """Per-hook dampening factors.

    Attributes
    ----------
    alphas : dict of str to np.ndarray of shape [d_hook], float32
        Multiplier of each neuron's output; 1 leaves it alone.
    aurocs : dict of str to np.ndarray of shape [d_hook], float64
    metadata : dict
        ``method``, ``parameters``, ``model``, ``widths``, ``store_fingerprint``, ``version``.
    """

    alphas: dict[str, np.ndarray]
    aurocs: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def widths(self) -> dict[str, int]:
        """Hook name -> number of neurons."""
        return {k: int(v.shape[0]) for k, v in self.alphas.items()}

    @property
    def fingerprint(self) -> str:
        """sha256 over hook names and alpha bytes: equal fingerprints, equal intervention."""
        digest = hashlib.sha256()
        for name in sorted(self.alphas):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.alphas[name], dtype=np.float32).tobytes())
        return digest.hexdigest()

    def with_strength(self, strength: float) -> Intervention:
        """Alphas scaled towards 1: ``1 - s * (1 - alpha)`` (s = 1 keeps them, 0 disables)."""
        check_unit("strength", strength)
        alphas = {k: (1.0 - strength * (1.0 - a)).astype(np.float32) for k, a in self.alphas.items()}
        params = {**self.metadata.get("parameters", {}), "strength_applied": strength}
        return replace(self, alphas=alphas, metadata={**self.metadata, "parameters": params})

    def n_dampened(self) -> int:
        """Number of neurons with alpha < 1."""
        return int(sum((a < 1).sum() for a in self.alphas.values()))

    def fwd_hooks(self, *, strength: float | None = None) -> list[tuple[str, Any]]:
        """TransformerLens forward hooks: ``(hook_name, hook_fn)`` pairs, ``activation * alpha``.

        For ``bridge.run_with_hooks(tokens, fwd_hooks=iv.fwd_hooks())`` and ``bridge.hooks(...)``.
        Each ``hook_fn(activation, hook)`` returns a new tensor in the activation's dtype; hooks
        whose alphas are all 1 are left out. Check the hooks against a bridge first with
        ``aura_stream.dampened(bridge, iv)``, which does both.

        Parameters
        ----------
        strength : float in [0, 1], optional
            Use ``1 - strength * (1 - alpha)``; None keeps the alphas.
        """
        from aura_stream.tl_hooks import fwd_hooks

        return list(fwd_hooks(self, strength=strength))


def check_unit(name: str, value: float) -> float:
    """``value`` must lie in [0, 1]."""
    if not (0.0 <= value <= 1.0):
        raise InputError(f"`--{name.replace('_', '-')}` must be in [0, 1]; got {value}.")
    return value


def aura_alpha(auroc: np.ndarray) -> np.ndarray:
    """AurA: ``alpha = 1 - 2 (auroc - 0.5)`` where ``auroc > 0.5``, else 1 (no hyper-parameter).

    Parameters
    ----------
    auroc : np.ndarray of shape [d]

    Returns
    -------
    np.ndarray of shape [d], float32

    Examples
    --------
    >>> aura_alpha(np.array([0.3, 0.5, 0.75, 1.0])).tolist()
    [1.0, 1.0, 0.5, 0.0]
    """
    auroc = np.asarray(auroc, dtype=np.float64)
    return np.where(auroc > 0.5, 1.0 - 2.0 * (auroc - 0.5), 1.0).astype(np.float32)


def top_k(aurocs: Mapping[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Boolean masks of the ``k`` neurons of highest AUROC across all hooks.

    Ties are broken deterministically by (hook order, neuron index): earlier wins.
    """
    total = sum(int(a.shape[0]) for a in aurocs.values())
    if not (1 <= k <= total):
        raise InputError(f"`--num-experts` must be in 1..{total} (the neurons selected); got {k}.")
    names = list(aurocs)
    values = np.concatenate([np.asarray(aurocs[n], dtype=np.float64) for n in names])
    order = np.lexsort((np.arange(total), -values))  # primary: AUROC desc; then position asc
    chosen = np.zeros(total, dtype=bool)
    chosen[order[:k]] = True
    masks, start = {}, 0
    for n in names:
        d = int(aurocs[n].shape[0])
        masks[n] = chosen[start:start + d]
        start += d
    return masks


def make_intervention(
    aurocs: Mapping[str, np.ndarray],
    *,
    method: str,
    num_experts: int | None = None,
    damp_alpha: float = 0.5,
    strength: float = 1.0,
    metadata: Mapping[str, Any] | None = None,
) -> Intervention:
    """Turn per-hook AUROCs into an :class:`Intervention`.

    Parameters
    ----------
    aurocs : mapping of hook name to np.ndarray of shape [d_hook]
    method : {"aura", "det0", "damp"}
        ``aura``: alpha from AUROC; ``det0``: top-k get 0; ``damp``: top-k get ``damp_alpha``.
    num_experts : int, optional
        k for ``det0``/``damp`` (global across hooks).
    strength : float in [0, 1]
        Final alphas are ``1 - strength * (1 - alpha)``.
    """
    if method not in METHODS:
        raise InputError(f"`--method` must be one of {', '.join(METHODS)}; got {method!r}.")
    if method == "aura" and num_experts is not None:
        raise InputError(f"`--num-experts` must not be given with `--method aura`, which ignores it; got "
                         f"{num_experts}. Drop it, or use det0/damp.")
    check_unit("strength", strength)
    check_unit("damp_alpha", damp_alpha)
    aurocs = {k: np.asarray(v, dtype=np.float64) for k, v in aurocs.items()}
    for name, values in aurocs.items():  # NaN would silently become alpha 1 (or sort last in top-k)
        bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
        if bad.size:
            raise NumericalError(f"auroc must be finite and in [0, 1]; hook {name} neuron {int(bad[0])} is "
                                 f"{values[bad[0]]}. Recompute it (`aura-stream score --recompute`).")
    if method == "aura":
        alphas = {k: aura_alpha(v) for k, v in aurocs.items()}
    else:
        if num_experts is None:
            raise InputError(f"`--num-experts` is required for method {method}; e.g. --num-experts 500.")
        value = 0.0 if method == "det0" else damp_alpha
        alphas = {k: np.where(m, value, 1.0).astype(np.float32) for k, m in top_k(aurocs, num_experts).items()}
    params = {"num_experts": num_experts if method != "aura" else None,
              "damp_alpha": damp_alpha if method == "damp" else None, "strength": strength}
    meta = {"format": FORMAT, "method": method, "parameters": params, "version": __version__,
            **dict(metadata or {})}
    iv = Intervention(alphas=alphas, aurocs=aurocs, metadata=meta)
    if strength != 1.0:
        iv = replace(iv.with_strength(strength), metadata=meta)
    meta["widths"] = iv.widths
    return iv


def save_intervention(iv: Intervention, path: str | Path) -> Path:
    """Write ``iv`` as safetensors, atomically (a temporary file renamed into place)."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    path = Path(path)
    if path.is_dir():
        raise InterventionError(f"`--out` must be a file path; {str(path)!r} is a directory.")
    tensors: dict[str, np.ndarray] = {}
    for name in iv.alphas:
        tensors[f"{name}.alpha"] = np.ascontiguousarray(iv.alphas[name], dtype=np.float32)
        tensors[f"{name}.auroc"] = np.ascontiguousarray(iv.aurocs[name], dtype=np.float64)
    meta = {**iv.metadata, "widths": iv.widths, "hooks": list(iv.alphas)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata={"aura_stream": json.dumps(meta, default=str)})
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as SafetensorError
        reason = getattr(exc, "strerror", None) or exc
        raise InterventionError(f"cannot write {str(path)!r}: {reason}. "
                                "Free space or choose a writable `--out`.") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _header(path: Path) -> dict[str, Any]:
    """Parse the safetensors header ourselves first: a pickle or junk never reaches a loader."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InterventionError(f"{str(path)!r} is not a safetensors file (too short).")
        (n,) = struct.unpack("<Q", head)
        size = path.stat().st_size
        if n <= 1 or n > min(size - 8, 100 << 20):
            raise InterventionError(
                f"{str(path)!r} is not a safetensors file (a pickle or other format?); "
                "aura-stream only opens safetensors interventions written by `score`."
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InterventionError(f"{str(path)!r} is not a safetensors file (bad header).") from None
    if not isinstance(header, dict):
        raise InterventionError(f"{str(path)!r} is not a safetensors file (header is not a mapping).")
    return header


def load_intervention(path: str | Path) -> Intervention:
    """Load and validate an intervention file.

    Raises
    ------
    MissingFileError
        The file does not exist.
    InterventionError
        Not safetensors (e.g. a pickle: refused, never executed), metadata missing or lying,
        wrong dtypes or shapes, bad hook names, NaN alphas.
    """
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"intervention file {str(path)!r} does not exist; create it with `aura-stream score`.")
    header = _header(path)
    try:
        meta = json.loads(header.get("__metadata__", {}).get("aura_stream", ""))
    except (json.JSONDecodeError, AttributeError, TypeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InterventionError(f"{str(path)!r} is safetensors but not an aura-stream intervention (no metadata); "
                                "create one with `aura-stream score`.")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type on corruption
        raise InterventionError(f"{str(path)!r} is damaged: {exc}. Recreate it with `aura-stream score`.") from exc
    hooks, widths = meta.get("hooks"), meta.get("widths")
    if (not isinstance(hooks, list) or not isinstance(widths, dict)
            or not isinstance(meta.get("method"), (str, type(None)))
            or not isinstance(meta.get("parameters", {}), (dict, type(None)))):
        raise InterventionError(
            f"{str(path)!r}: metadata must hold `hooks` as a list, `widths` as a mapping and `method` as a string; "
            f"got {type(hooks).__name__}, {type(widths).__name__} and {type(meta.get('method')).__name__}. "
            "Recreate it with `aura-stream score`.")
    alphas, aurocs = {}, {}
    for name in hooks:
        if not isinstance(name, str) or not HOOK_NAME.match(name):
            raise InterventionError(f"{str(path)!r} names an invalid hook {str(name)[:60]!r}; "
                                    "the file is not trustworthy.")
        alpha, auroc = tensors.get(f"{name}.alpha"), tensors.get(f"{name}.auroc")
        if alpha is None or auroc is None:
            raise InterventionError(f"{str(path)!r} lacks tensors for hook {name}; "
                                    "the metadata does not match the data.")
        if alpha.dtype != np.float32 or auroc.dtype != np.float64 or alpha.ndim != 1 or auroc.shape != alpha.shape:
            raise InterventionError(
                f"{str(path)!r}: hook {name} must have float32 alpha and float64 auroc of one shape [d]; "
                f"got {alpha.dtype}{list(alpha.shape)} and {auroc.dtype}{list(auroc.shape)}."
            )
        if widths.get(name) != alpha.shape[0]:
            raise InterventionError(f"{str(path)!r}: metadata says {name} has width {widths.get(name)}, "
                                    f"the data has {alpha.shape[0]}; the file was tampered with.")
        outside = np.flatnonzero(~((alpha >= 0.0) & (alpha <= 1.0)))  # NaN fails too
        if outside.size:
            raise InterventionError(f"{str(path)!r}: alphas must be finite and in [0, 1]; {name} neuron "
                                    f"{int(outside[0])} is {float(alpha[outside[0]]):.6g}. "
                                    "Recreate the file with `aura-stream score`.")
        alphas[name], aurocs[name] = alpha, auroc
    if not alphas:
        raise InterventionError(f"{str(path)!r} holds no hooks; recreate it with `aura-stream score`.")
    extra = set(tensors) - {f"{n}.{s}" for n in alphas for s in ("alpha", "auroc")}
    if extra:
        raise InterventionError(f"{str(path)!r} holds tensors not in its metadata ({sorted(extra)[0]}, ...); refused.")
    return Intervention(alphas=alphas, aurocs=aurocs, metadata=meta)


def check_matches_model(iv: Intervention, widths: Mapping[str, int]) -> None:
    """Every hook of ``iv`` exists in the model with the same width (``widths``: model's hooks)."""
    missing = [n for n in iv.alphas if n not in widths]
    if missing:
        raise InterventionError(
            f"intervention hooks {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
            "do not exist in the model; "
            f"it was made for {iv.metadata.get('model')!r}. Use the model the intervention was scored on."
        )
    wrong = [f"{n} (file {d}, model {widths[n]})" for n, d in iv.widths.items() if widths[n] != d]
    if wrong:
        raise InterventionError(f"intervention widths must match the model; {', '.join(wrong[:5])}. "
                                f"It was made for {iv.metadata.get('model')!r}.")
