"""Interventions: AurA / Det0 / Damp alphas from AUROCs, transport maps, and their safetensors file.

File format (``aura-stream-intervention/2``; ``/1`` files still load): one safetensors file;
``__metadata__["aura_stream"]`` is JSON with ``format``, the method, its parameters, the model,
``hooks``, hook ``widths``, the source store's fingerprint and the package version. Per hook either

- ``<hook>.alpha`` (float32 ``[d]``, in [0, 1]) and ``<hook>.auroc`` (float64 ``[d]``): AurA,
  Det0, Damp (the only kind in ``/1`` files); applied as ``z * alpha``; or
- ``<hook>.omega`` and ``<hook>.beta`` (float32 ``[d]``, finite), and with metadata ``support =
  "source-range"`` also ``<hook>.lo`` and ``<hook>.hi`` (float32 ``[d]``, ``lo <= hi``): the
  transport methods (linear-act, mean-act, gaussian-act); applied as ``omega * z + beta`` where
  ``lo <= z <= hi`` (everywhere for ``support = "all"``).

Both are the affine form :meth:`Intervention.affine`: an alpha file is ``omega = alpha``, ``beta =
0``, support all. safetensors holds raw tensors only, so opening a file from a stranger executes
nothing. The format is described in ``docs/methods.md``.
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
from typing import Any, Literal, NamedTuple, get_args

import numpy as np

from aura_stream._version import __version__
from aura_stream.errors import InputError, InterventionError, MissingFileError, NumericalError
from aura_stream.store import HOOK_NAME

Method = Literal["aura", "det0", "damp"]
METHODS: tuple[str, ...] = get_args(Method)  # AUROC-based (alpha) methods
TRANSPORT_METHODS: tuple[str, ...] = ("linear-act", "mean-act", "gaussian-act")  # = transport.TRANSPORT_METHODS
ALL_METHODS: tuple[str, ...] = METHODS + TRANSPORT_METHODS
Support = Literal["all", "source-range"]
SUPPORTS: tuple[str, ...] = get_args(Support)
FORMAT = "aura-stream-intervention/2"
FORMAT_V1 = "aura-stream-intervention/1"  # alpha files only; still loaded
FORMATS = (FORMAT_V1, FORMAT)


class Affine(NamedTuple):
    """One hook's map ``z -> omega * z + beta`` where ``lo <= z <= hi`` (everywhere if ``lo is None``).

    Attributes
    ----------
    omega, beta : np.ndarray of shape [d], float32
    lo, hi : np.ndarray of shape [d], float32, or None
        The support (``source-range``); None for ``support = "all"``.
    """

    omega: np.ndarray
    beta: np.ndarray
    lo: np.ndarray | None
    hi: np.ndarray | None


@dataclass(frozen=True)
class Intervention:
    """Per-hook dampening factors, or per-hook transport maps.

    Attributes
    ----------
    alphas : dict of str to np.ndarray of shape [d_hook], float32
        Multiplier of each neuron's output; 1 leaves it alone. For a transport intervention
        (:attr:`is_transport`) the slopes ``omega``: *not* the whole map, which needs ``betas``
        and ``bounds`` too; apply any intervention through :meth:`affine`.
    aurocs : dict of str to np.ndarray of shape [d_hook], float64
        Empty for transport interventions.
    metadata : dict
        ``method``, ``parameters``, ``model``, ``widths``, ``store_fingerprint``, ``version``;
        ``support`` for transport interventions.
    betas : dict of str to np.ndarray of shape [d_hook], float32
        Offsets of a transport intervention; empty for AurA/Det0/Damp (beta = 0).
    bounds : dict of str to (lo, hi), each np.ndarray of shape [d_hook], float32
        The source range of a ``support = "source-range"`` transport; empty otherwise.
    """

    alphas: dict[str, np.ndarray]
    aurocs: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    betas: dict[str, np.ndarray] = field(default_factory=dict)
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def widths(self) -> dict[str, int]:
        """Hook name -> number of neurons."""
        return {k: int(v.shape[0]) for k, v in self.alphas.items()}

    @property
    def is_transport(self) -> bool:
        """True for linear-act/mean-act/gaussian-act (an offset beta per neuron), False for alphas."""
        return bool(self.betas)

    @property
    def support(self) -> str:
        """``"source-range"`` (map only inside each neuron's ``[lo, hi]``) or ``"all"``."""
        return "source-range" if self.bounds else "all"

    def affine(self, hook: str) -> Affine:
        """The map of one hook as ``(omega, beta, lo, hi)``: ``z -> omega * z + beta`` inside ``[lo, hi]``.

        For AurA/Det0/Damp ``omega = alpha``, ``beta = 0`` and ``lo = hi = None`` (everywhere).
        Pass the result to :func:`aura_stream.transport_fn.transport` (``transport(z, *iv.affine(h))``
        after converting to tensors). Strength is already in it (:meth:`with_strength`).

        Raises
        ------
        HookError
            ``hook`` is not in the intervention.
        """
        if hook not in self.alphas:
            from aura_stream.errors import HookError

            raise HookError(f"`hook` must be one of the intervention's hooks ({', '.join(list(self.alphas)[:5])}"
                            f"{', ...' if len(self.alphas) > 5 else ''}); got {hook!r}.")
        omega = self.alphas[hook]
        beta = self.betas.get(hook)
        lo, hi = self.bounds.get(hook, (None, None))
        return Affine(omega, np.zeros_like(omega) if beta is None else beta, lo, hi)

    @property
    def fingerprint(self) -> str:
        """sha256 over hook names and alpha bytes (transport: also beta, lo, hi and the support).

        Alpha files hash exactly as before format 2; equal fingerprints, equal intervention.
        """
        digest = hashlib.sha256()
        if self.is_transport:
            digest.update(f"transport:{self.support}".encode())
        for name in sorted(self.alphas):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.alphas[name], dtype=np.float32).tobytes())
            if self.is_transport:
                for part in (self.betas[name], *self.bounds.get(name, ())):
                    digest.update(np.ascontiguousarray(part, dtype=np.float32).tobytes())
        return digest.hexdigest()

    def with_strength(self, strength: float) -> Intervention:
        """The map scaled towards the identity by ``s = strength`` (s = 1 keeps it, 0 disables it).

        ``z -> s * (omega * z + beta) + (1 - s) * z == (1 - s + s * omega) * z + s * beta``, so
        ``omega -> 1 - s * (1 - omega)`` and ``beta -> s * beta``; for alphas that is ``alpha -> 1 - s
        * (1 - alpha)``. The support ``[lo, hi]`` is kept: outside it ``z`` stays as it is.
        """
        check_unit("strength", strength)
        alphas = {k: (1.0 - strength * (1.0 - a)).astype(np.float32) for k, a in self.alphas.items()}
        betas = {k: (np.float64(strength) * b).astype(np.float32) for k, b in self.betas.items()}
        params = {**self.metadata.get("parameters", {}), "strength_applied": strength}
        return replace(self, alphas=alphas, betas=betas, metadata={**self.metadata, "parameters": params})

    def n_dampened(self) -> int:
        """Number of neurons with alpha < 1 (transport: neurons whose map is not the identity)."""
        if self.is_transport:
            return int(sum(((self.alphas[k] != 1) | (self.betas[k] != 0)).sum() for k in self.alphas))
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


def make_transport_intervention(
    estimates: Mapping[str, np.ndarray],
    *,
    method: str,
    support: str = "source-range",
    strength: float = 1.0,
    metadata: Mapping[str, Any] | None = None,
) -> Intervention:
    """Turn per-hook transport estimates into a transport :class:`Intervention`.

    Parameters
    ----------
    estimates : mapping of hook name to np.ndarray of shape [4, d_hook]
        Rows omega, beta, lo, hi, as :func:`aura_stream.transport.transport_estimate` returns.
    method : {"linear-act", "mean-act", "gaussian-act"}
    support : {"source-range", "all"}
        ``source-range`` keeps ``lo``/``hi`` (the map applies only inside the toxic range);
        ``all`` drops them (the map applies everywhere).
    strength : float in [0, 1]
        Final map ``(1 - s + s * omega) z + s * beta`` (:meth:`Intervention.with_strength`).

    Raises
    ------
    InputError
        Unknown method or support, strength outside [0, 1], estimates not of shape [4, d].
    NumericalError
        Non-finite values, or ``lo > hi``.
    """
    if method not in TRANSPORT_METHODS:
        raise InputError(f"`--method` must be one of {', '.join(TRANSPORT_METHODS)}; got {method!r}.")
    check_support(support)
    check_unit("strength", strength)
    omegas, betas, bounds = {}, {}, {}
    for name, est in estimates.items():
        est = np.asarray(est, dtype=np.float64)
        if est.ndim != 2 or est.shape[0] != 4:
            raise InputError(f"estimates of {name} must have shape [4, d] (omega, beta, lo, hi); "
                             f"got {list(est.shape)}.")
        single = est.astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(single).all(axis=0) | (single[2] > single[3]))
        if bad.size:
            raise NumericalError(f"transport estimates must be finite with lo <= hi; hook {name} neuron "
                                 f"{int(bad[0])} has (omega, beta, lo, hi) = {est[:, bad[0]].tolist()}. "
                                 "Rescore it (`aura-stream score`).")
        omegas[name], betas[name] = single[0], single[1]
        if support == "source-range":
            bounds[name] = (single[2], single[3])
    params = {"strength": strength, "support": support}
    meta = {"format": FORMAT, "method": method, "parameters": params, "version": __version__,
            **dict(metadata or {}), "support": support}
    iv = Intervention(alphas=omegas, aurocs={}, metadata=meta, betas=betas, bounds=bounds)
    if strength != 1.0:
        iv = replace(iv.with_strength(strength), metadata=meta)
    meta["widths"] = iv.widths
    return iv


def check_support(support: str) -> str:
    """``support`` must be ``source-range`` or ``all``."""
    if support not in SUPPORTS:
        raise InputError(f"`--support` must be one of {', '.join(SUPPORTS)}; got {support!r}. "
                         "source-range maps only activations inside the toxic range, all maps every activation.")
    return support


def save_intervention(iv: Intervention, path: str | Path) -> Path:
    """Write ``iv`` as safetensors, atomically (a temporary file renamed into place)."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    path = Path(path)
    if path.is_dir():
        raise InterventionError(f"`--out` must be a file path; {str(path)!r} is a directory.")
    tensors: dict[str, np.ndarray] = {}
    for name in iv.alphas:
        if iv.is_transport:
            parts = {"omega": iv.alphas[name], "beta": iv.betas[name]}
            if name in iv.bounds:
                parts["lo"], parts["hi"] = iv.bounds[name]
            for suffix, values in parts.items():
                tensors[f"{name}.{suffix}"] = np.ascontiguousarray(values, dtype=np.float32)
            continue
        tensors[f"{name}.alpha"] = np.ascontiguousarray(iv.alphas[name], dtype=np.float32)
        tensors[f"{name}.auroc"] = np.ascontiguousarray(iv.aurocs[name], dtype=np.float64)
    meta = {**iv.metadata, "format": FORMAT, "widths": iv.widths, "hooks": list(iv.alphas)}
    if iv.is_transport:
        meta["support"] = iv.support
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
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS:
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
    if any(isinstance(n, str) and f"{n}.omega" in tensors for n in hooks):
        return _load_transport(path, meta, hooks, widths, tensors)
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


def _load_transport(path: Path, meta: dict[str, Any], hooks: list[Any], widths: dict[str, Any],
                    tensors: dict[str, np.ndarray]) -> Intervention:
    """The transport half of :func:`load_intervention`: omega, beta (and lo, hi) per hook, validated."""
    support = meta.get("support")
    if meta.get("format") != FORMAT or support not in SUPPORTS or meta.get("method") not in TRANSPORT_METHODS:
        raise InterventionError(
            f"{str(path)!r}: a transport file must be format {FORMAT} with `support` one of {', '.join(SUPPORTS)} "
            f"and `method` one of {', '.join(TRANSPORT_METHODS)}; got {meta.get('format')!r}, {support!r} and "
            f"{meta.get('method')!r}. Recreate it with `aura-stream score`.")
    suffixes = ("omega", "beta", "lo", "hi") if support == "source-range" else ("omega", "beta")
    omegas, betas, bounds = {}, {}, {}
    for name in hooks:
        if not isinstance(name, str) or not HOOK_NAME.match(name):
            raise InterventionError(f"{str(path)!r} names an invalid hook {str(name)[:60]!r}; "
                                    "the file is not trustworthy.")
        parts = [tensors.get(f"{name}.{s}") for s in suffixes]
        if any(p is None for p in parts):
            raise InterventionError(f"{str(path)!r} lacks tensors for hook {name} (support {support} needs "
                                    f"{', '.join(suffixes)}); the metadata does not match the data.")
        arrays = [p for p in parts if p is not None]
        d = arrays[0].shape
        if any(a.dtype != np.float32 or a.ndim != 1 or a.shape != d for a in arrays):
            got = " and ".join(f"{a.dtype}{list(a.shape)}" for a in arrays)
            raise InterventionError(f"{str(path)!r}: hook {name} must have float32 {', '.join(suffixes)} of one "
                                    f"shape [d]; got {got}. Recreate it with `aura-stream score`.")
        if widths.get(name) != d[0]:
            raise InterventionError(f"{str(path)!r}: metadata says {name} has width {widths.get(name)}, "
                                    f"the data has {d[0]}; the file was tampered with.")
        stacked = np.stack(arrays)
        bad = np.flatnonzero(~np.isfinite(stacked).all(axis=0)
                             | ((stacked[2] > stacked[3]) if len(arrays) == 4 else False))
        if bad.size:
            j = int(bad[0])
            raise InterventionError(f"{str(path)!r}: {', '.join(suffixes)} must be finite"
                                    f"{' with lo <= hi' if len(arrays) == 4 else ''}; {name} neuron {j} has "
                                    f"{[float(v) for v in stacked[:, j]]}. Recreate the file with `aura-stream score`.")
        omegas[name], betas[name] = arrays[0], arrays[1]
        if len(arrays) == 4:
            bounds[name] = (arrays[2], arrays[3])
    if not omegas:
        raise InterventionError(f"{str(path)!r} holds no hooks; recreate it with `aura-stream score`.")
    extra = set(tensors) - {f"{n}.{s}" for n in omegas for s in suffixes}
    if extra:
        raise InterventionError(f"{str(path)!r} holds tensors not in its metadata ({sorted(extra)[0]}, ...); refused.")
    return Intervention(alphas=omegas, aurocs={}, metadata=meta, betas=betas, bounds=bounds)


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
