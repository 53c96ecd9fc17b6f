"""Error types: every user-facing failure is an ``AuraStreamError``.

Each class also inherits the built-in exception a caller would naturally catch, so that
``except FileNotFoundError`` keeps working.  Messages follow the shape
"``x`` must be ...; got ... . <how to fix>" and fit on one line.
"""

from __future__ import annotations


class AuraStreamError(Exception):
    """Base class of every error aura-stream raises on purpose."""


class InputError(AuraStreamError, ValueError):
    """A value given by the user (option, data file content) is invalid."""


class DataFileError(AuraStreamError, ValueError):
    """A data file (CSV/JSONL/prompts/text) is missing columns, malformed or empty."""


class MissingFileError(AuraStreamError, FileNotFoundError):
    """A file or directory the user named does not exist."""


class HookError(AuraStreamError, KeyError):
    """A hook name or pattern does not exist in the model or store, or a hook misbehaved."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(AuraStreamError, OSError):
    """A model or tokenizer cannot be loaded (missing offline, unsupported architecture)."""


class StoreError(AuraStreamError, OSError):
    """An activation store is missing, foreign, incomplete, from another run or unwritable."""


class InterventionError(AuraStreamError, ValueError):
    """An intervention file is missing, unsafe, malformed or does not match the model."""


class NumericalError(AuraStreamError, ArithmeticError):
    """NaN, inf or float16 overflow where finite values are required."""
