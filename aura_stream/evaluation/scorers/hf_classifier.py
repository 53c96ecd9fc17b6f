"""Any local Hugging Face sequence-classification model as a toxicity scorer."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aura_stream.errors import ModelLoadError
from aura_stream.evaluation.scorers.protocol import (
    _check_batch_size,
    _check_texts,
    _parse_device,
)

# --------------------------------------------------------------------------- Hugging Face


_NEGATED_TOXIC = re.compile(r"\b(non|not|no|un)[\s_-]*toxic")


def toxic_label_index(id2label: Mapping[int, str] | None, num_labels: int) -> int:
    """Index of the logit that means "toxic" in a classifier's ``id2label``.

    An exact ``toxic``/``toxicity`` name wins; else the first name containing "toxic" that is not
    negated ("non-toxic", "not_toxic"); else index 1 (binary classifiers put the positive class
    second), or 0 for a single-logit model.

    Parameters
    ----------
    id2label : mapping of int to str, or None
    num_labels : int

    Returns
    -------
    int

    Examples
    --------
    >>> toxic_label_index({0: "non-toxic", 1: "toxic"}, 2)
    1
    >>> toxic_label_index({0: "TOXICITY", 1: "neutral"}, 2)
    0
    >>> toxic_label_index({0: "LABEL_0", 1: "LABEL_1"}, 2)
    1
    """
    names = {int(i): str(n).strip().lower() for i, n in (id2label or {}).items()}
    for i in sorted(names):
        if names[i] in ("toxic", "toxicity"):
            return i
    for i in sorted(names):
        if "toxic" in names[i] and not _NEGATED_TOXIC.search(names[i]):
            return i
    return 1 if num_labels >= 2 else 0


def _first_line(exc: BaseException) -> str:
    """First line of an exception message, bounded, for one-line errors."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


class HFClassifierScorer:
    """Any local Hugging Face sequence-classification model as a toxicity scorer.

    Loads with ``local_files_only=True`` (never downloads). The toxic logit is chosen with
    :func:`toxic_label_index`; probabilities are a softmax over labels for single-label models
    and a per-label sigmoid when ``config.problem_type == "multi_label_classification"`` or the
    model has a single logit.

    Parameters
    ----------
    path : str or Path
        Directory holding ``config.json``, weights and tokenizer files.
    device : str, default "cpu"
    batch_size : int, default 64
    max_length : int, optional
        Truncation length in tokens; defaults to the tokenizer's ``model_max_length`` (512 when
        the tokenizer does not say).

    Raises
    ------
    ModelLoadError
        If the directory does not hold a loadable tokenizer and sequence-classification model.
    InputError
        If ``device`` or ``batch_size`` is invalid.
    """

    def __init__(self, path: str | Path, *, device: str = "cpu", batch_size: int = 64,
                 max_length: int | None = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = Path(path).expanduser()
        self.device = _parse_device(device)
        self.batch_size = _check_batch_size(batch_size)
        if not self.path.is_dir():
            raise ModelLoadError(f"`path` must be a local Hugging Face classifier directory; got "
                                 f"{str(path)!r}, which is not a directory.")
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the missing-weights report is ours to give, in one line
        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model, info = AutoModelForSequenceClassification.from_pretrained(
                self.path, local_files_only=True, output_loading_info=True
            )
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
            raise ModelLoadError(f"`{self.path}` must hold a Hugging Face tokenizer and "
                                 f"sequence-classification model; loading failed with "
                                 f"{type(exc).__name__}: {_first_line(exc)}") from exc
        finally:
            hf_logging.set_verbosity(verbosity)
        untrained = sorted({*info.get("missing_keys", ()), *(str(k[0]) if isinstance(k, tuple) else str(k)
                                                              for k in info.get("mismatched_keys", ()))})
        if untrained:
            raise ModelLoadError(
                f"`--scorer` must be a trained sequence-classification model; `{self.path}` has no trained "
                f"weights for {', '.join(untrained[:3])}{' ...' if len(untrained) > 3 else ''} (they would be "
                "initialised at random, so scores would be noise). Pass a classifier checkpoint, e.g. a "
                "RoBERTa toxicity model saved with save_pretrained.")
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ModelLoadError(f"`{self.path}` tokenizer must define a pad or eos token to "
                                     "batch texts; got neither.")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

        config = self.model.config
        self.num_labels = int(config.num_labels)
        self.multi_label = (config.problem_type == "multi_label_classification"
                            or self.num_labels == 1)
        self.label_index = toxic_label_index(getattr(config, "id2label", None), self.num_labels)
        model_max = int(min(getattr(self.tokenizer, "model_max_length", 512) or 512, 10**9))
        self.max_length = max_length if max_length is not None else (
            model_max if model_max <= 100_000 else 512)
        self.name = f"hf:{self.path.name}"
        self.model.to(self.device).eval()

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of the toxic label per text.

        Parameters
        ----------
        texts : sequence of str of length n_texts

        Returns
        -------
        ndarray of float64, shape (n_texts,)

        Raises
        ------
        InputError
            If ``texts`` is a single string or contains non-strings.
        """
        items = _check_texts(texts)
        out = np.empty(len(items), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                batch = items[start:start + self.batch_size]
                # right padding: decoder classifiers read the last real token at its true position
                enc = self.tokenizer(batch, padding=True, padding_side="right", truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                logits = self.model(**enc).logits.float()  # [batch, num_labels]
                probs = torch.sigmoid(logits) if self.multi_label else logits.softmax(dim=-1)
                out[start:start + len(batch)] = probs[:, self.label_index].double().cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"HFClassifierScorer({str(self.path)!r}, device={str(self.device)!r})"
