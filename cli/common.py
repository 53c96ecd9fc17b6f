"""Pieces shared by every command: YAML config as click defaults, errors as one line."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from aura_stream.errors import AuraStreamError

F = TypeVar("F", bound=Callable[..., Any])


class AuraGroup(click.Group):
    """A group whose commands turn ``AuraStreamError`` into one line and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuraStreamError as exc:
            if ctx.meta.get("aura_stream.debug"):
                traceback.print_exc()
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the same command to resume.", err=True)
            sys.exit(130)


MAX_CONFIG_BYTES = 1 << 20  # a config of options is a few hundred bytes
MAX_CONFIG_ALIASES = 32  # nested anchors expand exponentially ("billion laughs")


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses more than ``MAX_CONFIG_ALIASES`` aliases."""

    n_aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.n_aliases += 1
            if self.n_aliases > MAX_CONFIG_ALIASES:
                raise yaml.YAMLError(f"it uses more than {MAX_CONFIG_ALIASES} aliases (*name); write the values out")
        return super().compose_node(parent, index)


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Eager callback: YAML keys become click defaults (command line > env > YAML > code)."""
    if not value:
        return value
    path = Path(value)
    try:
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise click.BadParameter(f"{value!r} must be at most {MAX_CONFIG_BYTES // 1024} KiB; got "
                                     f"{path.stat().st_size:,} bytes.", param_hint="--config")
        loader = _BoundedLoader(path.read_text(encoding="utf-8"))
        try:
            data = loader.get_single_data() or {}
        finally:
            loader.dispose()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {value!r}: {exc.strerror}.", param_hint="--config") from None
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{value!r} is not valid YAML: {exc}.", param_hint="--config") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value!r} must hold a mapping of option: value.", param_hint="--config")
    known = {p.name for p in ctx.command.params if p.name and p.name != "config"}
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(data) - known)
    if unknown:
        raise click.BadParameter(
            f"unknown key(s) {', '.join(unknown)} in {value!r}; known: {', '.join(sorted(known))}.",
            param_hint="--config",
        )
    ctx.default_map = {**(ctx.default_map or {}), **data}
    ctx.meta["aura_stream.config_file"] = str(path)
    return value


def config_option(f: F) -> F:
    """Add ``--config FILE`` (YAML defaults for this command)."""
    return click.option(
        "--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
        callback=_load_config,
        help="YAML file of option defaults (command line > AURA_STREAM_* env > YAML > built-in).",
    )(f)


BACKEND_HELP = (
    "hf: hooks on the Hugging Face modules (fastest; KV cache). transformer-lens: forward passes and hooks "
    "through TransformerLens' TransformerBridge, same results (needs aura-stream[tl]). "
    "E.g. --backend transformer-lens."
)


def backend_option(f: F) -> F:
    """Add ``--backend`` with the registered backends as choices (:data:`aura_stream.backends.BACKENDS`)."""
    from aura_stream.backends import BACKENDS, DEFAULT_BACKEND

    return click.option(
        "--backend", type=click.Choice(list(BACKENDS)), default=DEFAULT_BACKEND, show_default=True,
        help=BACKEND_HELP,
    )(f)


def load_for_backend(backend: str, model: str | None, **kwargs: Any) -> Any:
    """The model loaded behind ``backend`` (``kwargs``: those of ``load_model``)."""
    from aura_stream.backends import get_backend

    return get_backend(backend).load(model, **kwargs)


def check_backend_ready(backend: str, model: str | None) -> None:
    """Cheap checks before a model loads (e.g. TransformerLens installed, a shape the bridge can boot)."""
    from aura_stream.backends import get_backend

    get_backend(backend).check_ready(model)


def with_backend(backend: str, loaded: Any) -> Any:
    """An already loaded Hugging Face model behind ``backend`` (no second copy of the weights)."""
    from aura_stream.backends import get_backend

    return get_backend(backend).wrap(loaded)


def resolved_config(ctx: click.Context) -> dict[str, Any]:
    """The options as finally resolved, for provenance."""
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in ctx.params.items()}
    if "aura_stream.config_file" in ctx.meta:
        out["config_file"] = ctx.meta["aura_stream.config_file"]
    out["command"] = ctx.command_path
    return out


def echo(message: str = "", *, err: bool = False) -> None:
    """Print to stdout (results) or stderr (progress, notes)."""
    click.echo(message, err=err)
