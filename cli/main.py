"""Entry point of the ``aura-stream`` console script."""

from __future__ import annotations

import click
from aura_stream_cli.common import AuraGroup

from aura_stream._version import __version__


@click.group(cls=AuraGroup, context_settings={"auto_envvar_prefix": "AURA_STREAM",
                                              "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aura-stream")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def app(ctx: click.Context, debug: bool) -> None:
    """Find the neurons of a language model that whisper toxicity, and turn them down (AurA).

    \b
    Pipeline:  extract -> score -> generate | fold | eval
    Example:   aura-stream demo
    """
    ctx.meta["aura_stream.debug"] = debug


def _register() -> None:
    from aura_stream_cli import extract_cmds

    for command in extract_cmds.COMMANDS:
        app.add_command(command)
    for module_name in ("score_cmds", "generate_cmds", "eval_cmds", "demo_cmds"):
        try:
            module = __import__(f"aura_stream_cli.{module_name}", fromlist=["COMMANDS"])
        except ModuleNotFoundError as exc:
            if exc.name != f"aura_stream_cli.{module_name}":
                raise
            continue
        for command in module.COMMANDS:
            app.add_command(command)


_register()


def main() -> None:
    """Console-script entry."""
    app()


if __name__ == "__main__":
    main()
