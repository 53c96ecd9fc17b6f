"""``score``: AUROC (or a transport map) per neuron and an intervention file."""

from __future__ import annotations

from typing import Any

import click
from aura_stream_cli.common import config_option, echo, resolved_config


@click.command("score")
@config_option
@click.argument("store", type=click.Path())
@click.option("--method", type=click.Choice(["aura", "det0", "damp", "linear-act", "mean-act", "gaussian-act"]),
              default="aura", show_default=True,
              help="aura: alpha = 1 - 2(AUROC - 0.5); det0/damp: the top --num-experts neurons get 0/--damp-alpha; "
                   "linear-act/mean-act/gaussian-act: a map omega*z + beta per neuron transporting toxic onto "
                   "non-toxic activations (docs/methods.md).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Intervention file to write (.safetensors); omit to only score.")
@click.option("--pooling", default=None,
              help="Pooling to score (default: the store's first; mean for the transport methods).")
@click.option("--hooks", "hooks", multiple=True, help="Glob over the store's hook names; repeatable (default: all).")
@click.option("--strength", type=float, default=1.0, show_default=True,
              help="s in [0, 1]: z -> s(omega z + beta) + (1 - s) z; for alphas alpha -> 1 - s(1 - alpha).")
@click.option("--support", type=click.Choice(["source-range", "all"]), default=None,
              help="Transport methods: map only activations inside the toxic [min, max] (source-range, the "
                   "default) or every activation (all).")
@click.option("--num-experts", type=int, default=None, help="k for det0/damp (global top-k across hooks).")
@click.option("--damp-alpha", type=float, default=0.5, show_default=True, help="Alpha given by damp.")
@click.option("--workers", type=int, default=None, help="Score on a local dask cluster of N worker processes.")
@click.option("--scheduler", default=None, help="Address of a running dask scheduler, e.g. tcp://host:8786.")
@click.option("--memory-budget", default="2GB", show_default=True, help="Memory for AUROC blocks in flight.")
@click.option("--recompute", is_flag=True, help="Ignore AUROCs stored by an earlier score.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write the AUROC distribution per layer (PNG).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def score_cmd(ctx: click.Context, /, store: str, **opts: Any) -> None:
    """Compute exact AUROC per neuron (out of core) and write an intervention.

    \b
    Examples:
      aura-stream score runs/gpt2.zarr --method aura --out gpt2-aura.safetensors
      aura-stream score runs/gpt2.zarr --method det0 --num-experts 500 --out det0.safetensors
      aura-stream score runs/gpt2.zarr --method linear-act --pooling mean --out gpt2-lact.safetensors
    The second reuses the AUROCs stored by the first: no recompute. The third needs a store
    extracted with --pooling mean (or name another pooling it holds).
    """
    from aura_stream.errors import InputError
    from aura_stream.interventions import TRANSPORT_METHODS
    from aura_stream.score import check_plot_path, plot_aurocs, score

    check_plot_path(opts["plot"], store)  # before the work, not after it
    transport = opts["method"] in TRANSPORT_METHODS
    if transport and opts["plot"]:
        raise InputError(f"`--plot` must not be given with `--method {opts['method']}`: it plots AUROCs, "
                         "which transport methods do not compute. Drop --plot or use --method aura.")
    # defaults (built-in or YAML) of options the method does not use are dropped; typed ones are refused
    for name, users in (("damp_alpha", ("damp",)), ("num_experts", ("det0", "damp")),
                        ("support", TRANSPORT_METHODS)):
        typed = ctx.get_parameter_source(name) in (click.core.ParameterSource.COMMANDLINE,
                                                   click.core.ParameterSource.ENVIRONMENT)
        if opts["method"] not in users and not typed:
            opts[name] = None
    result = score(
        store, method=opts["method"], out=opts["out"], pooling=opts["pooling"], hooks=list(opts["hooks"]) or None,
        strength=opts["strength"], num_experts=opts["num_experts"], damp_alpha=opts["damp_alpha"],
        workers=opts["workers"], scheduler=opts["scheduler"], memory_budget=opts["memory_budget"],
        recompute=opts["recompute"], progress=not opts["quiet"], config=resolved_config(ctx), support=opts["support"],
    )
    if transport:
        _report_transport(result, opts["method"])
        return
    reused = len(result.summary) - len(result.computed)
    echo(f"{'hook':34s} {'neurons':>8s} {'AUROC>0.5':>10s} {'max AUROC':>10s} {'mean alpha':>11s} {'dampened':>9s}")
    for s in result.summary:
        echo(f"{s.hook_name:34s} {s.width:8d} {s.n_above_half:10d} {s.max_auroc:10.4f} {s.mean_alpha:11.4f} "
             f"{s.n_dampened:9d}")
    echo(f"method {opts['method']}: {result.intervention.n_dampened()} neurons dampened; "
         f"AUROCs computed for {len(result.computed)} hooks, reused for {reused}")
    if result.out:
        echo(f"intervention written to {result.out}")
    if opts["plot"]:
        echo(f"plot written to {plot_aurocs(result.intervention.aurocs, opts['plot'], title=str(store))}")


def _report_transport(result: Any, method: str) -> None:
    """The table of a transport method: mean omega, mean |beta|, neurons whose map is not the identity."""
    iv = result.intervention
    echo(f"{'hook':34s} {'neurons':>8s} {'mean omega':>11s} {'mean |beta|':>12s} {'changed':>8s}")
    for s in result.transport:
        echo(f"{s.hook_name:34s} {s.width:8d} {s.mean_omega:11.4f} {s.mean_abs_beta:12.4f} {s.n_changed:8d}")
    meta = iv.metadata
    echo(f"method {method} (pooling {meta.get('pooling')}, support {iv.support}, {meta.get('n_toxic')} toxic / "
         f"{meta.get('n_non_toxic')} non-toxic samples, {meta.get('pairing')}): maps for {len(result.transport)} hooks")
    if result.out:
        echo(f"intervention written to {result.out}")


COMMANDS = [score_cmd]
