"""``score``: AUROC per neuron and an intervention file."""

from __future__ import annotations

from typing import Any

import click
from aura_stream_cli.common import config_option, echo, resolved_config


@click.command("score")
@config_option
@click.argument("store", type=click.Path())
@click.option("--method", type=click.Choice(["aura", "det0", "damp"]), default="aura", show_default=True,
              help="aura: alpha = 1 - 2(AUROC - 0.5); det0/damp: the top --num-experts neurons get 0/--damp-alpha.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Intervention file to write (.safetensors); omit to only score.")
@click.option("--pooling", default=None, help="Pooling to score (default: the store's first).")
@click.option("--hooks", "hooks", multiple=True, help="Glob over the store's hook names; repeatable (default: all).")
@click.option("--strength", type=float, default=1.0, show_default=True, help="s in [0, 1]: alpha -> 1 - s(1 - alpha).")
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
    The second reuses the AUROCs stored by the first: no recompute.
    """
    from aura_stream.score import check_plot_path, plot_aurocs, score

    check_plot_path(opts["plot"], store)  # before the work, not after it
    # defaults (built-in or YAML) of options the method does not use are dropped; typed ones are refused
    for name, users in (("damp_alpha", ("damp",)), ("num_experts", ("det0", "damp"))):
        typed = ctx.get_parameter_source(name) in (click.core.ParameterSource.COMMANDLINE,
                                                   click.core.ParameterSource.ENVIRONMENT)
        if opts["method"] not in users and not typed:
            opts[name] = None
    result = score(
        store, method=opts["method"], out=opts["out"], pooling=opts["pooling"], hooks=list(opts["hooks"]) or None,
        strength=opts["strength"], num_experts=opts["num_experts"], damp_alpha=opts["damp_alpha"],
        workers=opts["workers"], scheduler=opts["scheduler"], memory_budget=opts["memory_budget"],
        recompute=opts["recompute"], progress=not opts["quiet"], config=resolved_config(ctx),
    )
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


COMMANDS = [score_cmd]
