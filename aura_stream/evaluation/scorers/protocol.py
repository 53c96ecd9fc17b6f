"""The scorer protocol and the checks every scorer makes on its input."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from aura_stream.errors import InputError

JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
BILSTM_FORMAT = "aura-stream-bilstm/1"
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


@runtime_checkable
class ToxicityScorer(Protocol):
    """Anything with a ``name`` and a ``score`` method mapping texts to P(toxic)."""

    name: str

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each text is toxic, float64 of shape ``[n_texts]`` in [0, 1]."""
        ...


# --------------------------------------------------------------------------- validation


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Validate a batch of texts; a bare string is refused (it would be scored per character)."""
    if isinstance(texts, str):
        raise InputError(f"`texts` must be a sequence of strings, not one string; got "
                         f"{texts[:40]!r}. Wrap it in a list.")
    items = list(texts)
    bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
    if bad:
        shown = ", ".join(f"{i} ({type(items[i]).__name__})" for i in bad[:5])
        raise InputError(f"`texts` must contain only strings; got non-strings at positions {shown}"
                         f"{' ...' if len(bad) > 5 else ''}.")
    return items


def _check_batch_size(batch_size: int) -> int:
    """``batch_size`` must be a positive int."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    return batch_size


def _parse_device(device: str | torch.device) -> torch.device:
    """Parse a device string and check it is usable here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"`device` must be a torch device such as 'cpu' or 'cuda:0'; got "
                         f"{device!r}.") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"`device` must be available on this machine; got {device!r} but CUDA "
                         "is not available. Use device='cpu'.")
    return parsed
