"""``score``: exact per-neuron AUROC or transport maps of a store, out of core with dask; the intervention file."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aura_stream.errors import InputError, StoreError
from aura_stream.hookpoints import match_hooks
from aura_stream.interventions import (
    ALL_METHODS,
    METHODS,
    TRANSPORT_METHODS,
    Intervention,
    check_support,
    check_unit,
    make_intervention,
    make_transport_intervention,
    save_intervention,
)
from aura_stream.store import ActivationStore


@dataclass(frozen=True)
class HookSummary:
    """One line of the score report."""

    hook_name: str
    width: int
    n_above_half: int
    max_auroc: float
    mean_alpha: float
    n_dampened: int


@dataclass(frozen=True)
class TransportSummary:
    """One line of the score report of a transport method."""

    hook_name: str
    width: int
    mean_omega: float
    mean_abs_beta: float
    n_changed: int  # neurons whose map is not the identity


@dataclass(frozen=True)
class ScoreResult:
    """What one ``score`` call produced."""

    intervention: Intervention
    out: Path | None
    summary: list[HookSummary]  # AUROC methods; empty for transport methods
    computed: list[str]  # hooks whose AUROCs (transport maps) were computed now (others came from the store)
    transport: list[TransportSummary] = field(default_factory=list)  # transport methods only


@contextlib.contextmanager
def dask_client(*, workers: int | None = None, scheduler: str | None = None,
                timeout: float = 10.0) -> Iterator[Any]:
    """A ``dask.distributed`` client for ``scheduler`` or a local cluster of ``workers``; else None.

    None means dask's local threaded scheduler. The client and any cluster it started are
    closed on exit.
    """
    if scheduler and workers:
        raise InputError("`--workers` and `--scheduler` exclude each other; pass one.")
    if scheduler:
        parse_scheduler(scheduler)
    if not scheduler and not workers:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(
                f"`--scheduler` {scheduler} did not answer within {timeout:.0f} s ({type(exc).__name__}); "
                "start `dask scheduler` there or drop `--scheduler`."
            ) from None
        with client:
            yield client
        return
    if workers is not None and workers < 1:
        raise InputError(f"`--workers` must be >= 1; got {workers}.")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


SCHEDULER_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")


def parse_scheduler(address: str) -> str:
    """``tcp://host:8786`` (or ``host:8786``): checked before any work, not when the work needs it."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    host, colon, port = rest.rpartition(":")
    if scheme not in SCHEDULER_SCHEMES or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"`--scheduler` must be an address like tcp://host:8786 (schemes "
                         f"{', '.join(SCHEDULER_SCHEMES)}); got {address!r}.")
    return address


def compute_aurocs(store: ActivationStore, pooling: str, hook_names: Sequence[str], *,
                   client: Any = None, memory_budget: str | int = "2GB",
                   progress: bool = True) -> dict[str, np.ndarray]:
    """AUROC of every neuron of ``hook_names``, computed from the store in column blocks.

    Parameters
    ----------
    store : ActivationStore
        A complete store.
    memory_budget : str or int
        Working memory for all blocks in flight together; a block's columns follow from it.

    Returns
    -------
    dict of hook name to np.ndarray of shape [d_hook], float64
    """
    import dask.array as da

    from aura_stream.auroc import auroc_dask, parse_memory

    labels = store.labels
    budget = parse_memory(memory_budget)
    n_parallel = len(client.ncores()) if client is not None else max(1, _threads())
    per_block = max(1, budget // max(1, n_parallel))
    lazy = [
        auroc_dask(da.from_zarr(store.activations(pooling, h)), labels, memory_budget=per_block,
                   name=f"hook {h}")
        for h in hook_names
    ]
    results = _compute_all(lazy, client=client, progress=progress)
    return {h: np.asarray(r, dtype=np.float64) for h, r in zip(hook_names, results, strict=True)}


def compute_transport(store: ActivationStore, pooling: str, hook_names: Sequence[str], *, method: str,
                      client: Any = None, memory_budget: str | int = "2GB",
                      progress: bool = True) -> dict[str, np.ndarray]:
    """Transport estimate (omega, beta, lo, hi) of every neuron of ``hook_names``, in column blocks.

    The same dask graph as :func:`compute_aurocs` (all samples of a block of neurons per task,
    ``memory_budget`` shared by the blocks in flight) with the transport kernel.

    Returns
    -------
    dict of hook name to np.ndarray of shape [4, d_hook], float64
        Rows omega, beta, lo, hi (:func:`aura_stream.transport.transport_estimate`).
    """
    import dask.array as da

    from aura_stream.auroc import parse_memory
    from aura_stream.transport import transport_dask

    labels = store.labels
    budget = parse_memory(memory_budget)
    n_parallel = len(client.ncores()) if client is not None else max(1, _threads())
    per_block = max(1, budget // max(1, n_parallel))
    lazy = [transport_dask(da.from_zarr(store.activations(pooling, h)), labels, method=method,
                           memory_budget=per_block, name=f"hook {h}")
            for h in hook_names]
    results = _compute_all(lazy, client=client, progress=progress)
    return {h: np.asarray(r, dtype=np.float64) for h, r in zip(hook_names, results, strict=True)}


def _compute_all(lazy: list[Any], *, client: Any, progress: bool) -> list[Any]:
    """Compute dask arrays together: on ``client`` (a tqdm bar per hook) or local threads."""
    from dask.base import compute

    if client is not None:
        from distributed import as_completed
        from tqdm.auto import tqdm

        futures = client.compute(lazy)
        for _ in tqdm(as_completed(futures), total=len(futures), unit="hook", desc="score",
                      disable=not progress):
            pass
        results = [f.result() for f in futures]
    else:
        from dask.diagnostics.progress import ProgressBar

        ctx = ProgressBar(out=sys.stderr) if progress else contextlib.nullcontext()
        with ctx:
            results = list(compute(*lazy, scheduler="threads"))
    return results


def _threads() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def score(
    store_path: str | Path,
    *,
    method: str = "aura",
    out: str | Path | None = None,
    pooling: str | None = None,
    hooks: Sequence[str] | None = None,
    strength: float = 1.0,
    num_experts: int | None = None,
    damp_alpha: float | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    memory_budget: str | int = "2GB",
    recompute: bool = False,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    support: str | None = None,
) -> ScoreResult:
    """Score a store's neurons and build an intervention.

    AUROCs already in the store (``scores/<pooling>/<hook>/auroc``) are reused, so a second call
    with another method or k costs nothing; ``recompute`` forces fresh ones.

    The transport methods (``linear-act``, ``mean-act``, ``gaussian-act``; docs/methods.md) estimate
    a map ``omega * z + beta`` per neuron from the activations every time (nothing is stored in
    the store, so ``recompute`` does not apply). Their pooling defaults to ``mean``: a store
    without it is refused unless ``pooling`` names one it has. ``support`` (default
    ``source-range``) applies only to them.

    Raises
    ------
    StoreError
        Missing, foreign or incomplete store (names the missing rows).
    InputError
        Unknown method, bad k, alpha or strength, one class only, hook patterns matching nothing.
    NumericalError
        NaN/inf in activations (names hook and neuron).
    """
    from aura_stream.auroc import parse_memory

    if method not in ALL_METHODS:
        raise InputError(f"`--method` must be one of {', '.join(ALL_METHODS)}; got {method!r}.")
    check_unit("strength", strength)
    transport = method in TRANSPORT_METHODS
    ignored = [f"`--{name}`" for name, value, used_by in (("num-experts", num_experts, ("det0", "damp")),
                                                           ("damp-alpha", damp_alpha, ("damp",)),
                                                           ("support", support, TRANSPORT_METHODS),
                                                           ("recompute", recompute or None, METHODS))
               if value is not None and method not in used_by]
    if ignored and transport:
        raise InputError(f"{' and '.join(ignored)} must not be given with `--method {method}`, which ignores "
                         f"{'them' if len(ignored) > 1 else 'it'}; drop {' and '.join(ignored)} (transport maps are "
                         "estimated afresh on every call, without AUROCs or top-k).")
    if ignored:
        raise InputError(f"{' and '.join(ignored)} must not be given with `--method {method}`, which ignores "
                         f"{'them' if len(ignored) > 1 else 'it'}; drop {' and '.join(ignored)} or choose a method "
                         "that uses it (det0/damp take --num-experts, damp --damp-alpha, the *-act methods --support).")
    damp_alpha = 0.5 if damp_alpha is None else damp_alpha
    check_unit("damp_alpha", damp_alpha)
    if transport:
        check_support(support or "source-range")
    if method in ("det0", "damp") and (num_experts is None or num_experts < 1):
        raise InputError(f"`--num-experts` must be >= 1 for method {method}; got {num_experts}.")
    parse_memory(memory_budget)
    if scheduler:
        parse_scheduler(scheduler)
    if workers is not None and workers < 1:
        raise InputError(f"`--workers` must be >= 1; got {workers}.")
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.is_dir():
        raise InputError(f"`--out` must be a file path; {str(out_path)!r} is a directory.")
    store = ActivationStore.open(store_path, mode="r+")
    check_outside_store(out_path, store.path, "--out")
    unbacked = store.unbacked_blocks()
    missing = store.missing_rows()
    if missing:
        lost = (f" ({len(unbacked)} block(s) flagged complete have missing or empty data files, e.g. "
                f"{next(iter(unbacked.values()))[0]})") if unbacked else ""
        raise StoreError(f"store {str(store.path)!r} is incomplete: {missing} of {store.n_samples} rows missing"
                         f"{lost}; rerun the same `extract` command to finish it.")
    labels = store.labels
    if labels.min() == labels.max():
        raise InputError(f"labels must hold both classes; the store has only class {int(labels[0])}. "
                         "Extract toxic and non-toxic sentences.")
    if transport and pooling is None and "mean" not in store.poolings:
        raise InputError(f"`--pooling` must be given for `--method {method}`, whose default is mean; the store "
                         f"holds {', '.join(store.poolings)}. Pass e.g. --pooling {store.poolings[0]}, or extract "
                         "with --pooling mean.")
    pooling = pooling or ("mean" if transport else store.poolings[0])
    if pooling not in store.poolings:
        raise InputError(f"`--pooling` must be one the store holds ({', '.join(store.poolings)}); got {pooling!r}.")
    names = match_hooks(list(hooks), store.hooks) if hooks else list(store.hooks)
    if transport:
        return _score_transport(store, method, names, pooling=pooling, support=support or "source-range",
                                strength=strength, out_path=out_path, workers=workers, scheduler=scheduler,
                                memory_budget=memory_budget, progress=progress, config=config)
    if method != "aura" and num_experts is not None:
        total = sum(store.hooks[n] for n in names)
        if num_experts > total:
            raise InputError(f"`--num-experts` must be <= {total}, the neurons selected; got {num_experts}.")
    aurocs: dict[str, np.ndarray] = {}
    todo = []
    for name in names:
        stored = None if recompute else store.read_scores(pooling, name)
        if stored is not None and stored.shape == (store.hooks[name],):
            aurocs[name] = stored
        else:
            todo.append(name)
    if todo:
        with dask_client(workers=workers, scheduler=scheduler) as client:
            try:
                fresh = compute_aurocs(store, pooling, todo, client=client, memory_budget=memory_budget,
                                       progress=progress)
            except ValueError as exc:
                if "checksum" not in str(exc):
                    raise
                raise StoreError(f"store {str(store.path)!r} is corrupted: a chunk failed its crc32c checksum; "
                                 "extract again with `--overwrite` (the data cannot be trusted).") from exc
        prov = {"computed": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "dataset_fingerprint": store.attrs.get("identity", {}).get("dataset_fingerprint"),
                "config": dict(config or {})}
        for name, values in fresh.items():
            store.write_scores(pooling, name, values, prov)
        aurocs.update(fresh)
    aurocs = {n: aurocs[n] for n in names}
    identity = store.attrs.get("identity", {})
    iv = make_intervention(
        aurocs, method=method, num_experts=num_experts, damp_alpha=damp_alpha, strength=strength,
        metadata={"model": identity.get("model"), "model_type": store.attrs.get("model_type"),
                  "pooling": pooling, "store": str(store.path.resolve()),
                  "store_fingerprint": identity.get("dataset_fingerprint"),
                  "n_samples": store.n_samples, "config": dict(config or {})},
    )
    if out_path is not None:
        save_intervention(iv, out_path)
    return ScoreResult(iv, out_path, summarise(iv), todo)


def _metadata(store: ActivationStore, pooling: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The provenance an intervention records about its store."""
    identity = store.attrs.get("identity", {})
    return {"model": identity.get("model"), "model_type": store.attrs.get("model_type"),
            "pooling": pooling, "store": str(store.path.resolve()),
            "store_fingerprint": identity.get("dataset_fingerprint"),
            "n_samples": store.n_samples, "config": dict(config or {})}


def _score_transport(store: ActivationStore, method: str, names: list[str], *, pooling: str, support: str,
                     strength: float, out_path: Path | None, workers: int | None, scheduler: str | None,
                     memory_budget: str | int, progress: bool, config: Mapping[str, Any] | None) -> ScoreResult:
    """The transport half of :func:`score`: estimate every hook's map, build and save the intervention."""
    labels = store.labels
    n_toxic = int(labels.sum())
    n_clean = int(labels.size - n_toxic)
    with dask_client(workers=workers, scheduler=scheduler) as client:
        try:
            estimates = compute_transport(store, pooling, names, method=method, client=client,
                                          memory_budget=memory_budget, progress=progress)
        except ValueError as exc:
            if "checksum" not in str(exc):
                raise
            raise StoreError(f"store {str(store.path)!r} is corrupted: a chunk failed its crc32c checksum; "
                             "extract again with `--overwrite` (the data cannot be trusted).") from exc
    pairing = ("sorted pairs" if n_toxic == n_clean or method != "linear-act"
               else "quantile matching (Hazen positions (i + 0.5) / n_toxic, linear interpolation)")
    iv = make_transport_intervention(
        estimates, method=method, support=support, strength=strength,
        metadata={**_metadata(store, pooling, config), "n_toxic": n_toxic, "n_non_toxic": n_clean,
                  "pairing": pairing},
    )
    if out_path is not None:
        save_intervention(iv, out_path)
    return ScoreResult(iv, out_path, [], list(names), summarise_transport(iv))


def summarise_transport(iv: Intervention) -> list[TransportSummary]:
    """Per hook of a transport intervention: mean omega, mean |beta|, neurons whose map is not the identity."""
    return [TransportSummary(name, int(omega.shape[0]), float(omega.mean(dtype=np.float64)),
                             float(np.abs(iv.betas[name]).mean(dtype=np.float64)),
                             int(((omega != 1) | (iv.betas[name] != 0)).sum()))
            for name, omega in iv.alphas.items()]


def check_outside_store(path: str | Path | None, store_path: str | Path, option: str) -> None:
    """An output file must not lie inside the store, where it could replace the store's own files."""
    if path is None or not (Path(store_path) / "zarr.json").is_file():
        return  # not a store: opening it says so
    store_dir, target = Path(store_path).resolve(), Path(path).resolve()
    if target == store_dir or store_dir in target.parents:
        raise InputError(f"`{option}` must be outside the store; {str(path)!r} is inside {str(store_path)!r} "
                         "and would overwrite its files. Choose a path beside the store.")


def check_plot_path(path: str | Path | None, store_path: str | Path) -> None:
    """``--plot``: outside the store, with a suffix matplotlib writes (checked before any work)."""
    if path is None:
        return
    check_outside_store(path, store_path, "--plot")
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix and suffix not in formats:
        raise InputError(f"`--plot` must end in one of .{', .'.join(formats)}; got {str(path)!r}. "
                         "E.g. --plot auroc.png.")


def summarise(iv: Intervention) -> list[HookSummary]:
    """Per hook: neurons with AUROC > 0.5, max AUROC, mean alpha, neurons dampened."""
    return [
        HookSummary(name, int(a.shape[0]), int((iv.aurocs[name] > 0.5).sum()), float(iv.aurocs[name].max()),
                    float(a.mean()), int((a < 1).sum()))
        for name, a in iv.alphas.items()
    ]


def plot_aurocs(aurocs: Mapping[str, np.ndarray], path: str | Path, *, title: str = "") -> Path:
    """Box plot of the AUROC distribution per layer, one panel per hook kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds: dict[str, list[tuple[int, np.ndarray]]] = {}
    for name, values in aurocs.items():
        _, layer, kind = name.split(".", 2)
        kinds.setdefault(kind, []).append((int(layer), values))
    fig, axes = plt.subplots(len(kinds), 1, figsize=(max(6.0, 0.35 * max(len(v) for v in kinds.values()) + 3),
                                                      2.8 * len(kinds)), squeeze=False)
    for ax, (kind, items) in zip(axes[:, 0], kinds.items(), strict=True):
        items.sort()
        ax.boxplot([v for _, v in items], tick_labels=[str(i) for i, _ in items], showfliers=True,
                   flierprops={"markersize": 2})
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("AUROC")
        ax.set_title(f"{kind}: AUROC per neuron by layer (above 0.5 = fires more on toxic text)", fontsize=9)
    axes[-1, 0].set_xlabel("layer")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from aura_stream.evaluation.report import save_figure

    return save_figure(fig, path, hint="choose a writable `--plot`", what="the plot ")
