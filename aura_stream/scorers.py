"""Toxicity scorers: text in, probability of "toxic" out.

Two implementations of one protocol, chosen with :func:`load_scorer`:

- :class:`BiLSTMScorer` (``"default"``): a Jigsaw-trained BiLSTM shipped with the package (converted
  from ``toxic-comment-classifier`` 0.3.0, MIT; see ``assets/scorer/NOTICE.md``). Offline, ~4 MB,
  fast on CPU, reproduces the upstream Keras model's outputs to float32 precision.
- :class:`HFClassifierScorer` (a directory): any local Hugging Face sequence-classification model,
  e.g. a RoBERTa toxicity classifier, for real evaluations.

Nothing here unpickles or calls ``torch.load``: weights are safetensors, the vocabulary is JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from aura_stream.errors import InputError, ModelLoadError

__all__ = [
    "JIGSAW_LABELS",
    "BiLSTMScorer",
    "HFClassifierScorer",
    "KerasTextEncoder",
    "ToxicityScorer",
    "load_scorer",
    "toxic_label_index",
]

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


# --------------------------------------------------------------------------- BiLSTM (default)


class KerasTextEncoder:
    """Keras-``Tokenizer``-equivalent text encoder for the shipped BiLSTM.

    Lower-cases, replaces each character of ``filters`` with a space, splits on single spaces
    (dropping empty pieces), maps words through ``word_index`` keeping ids below ``num_words``
    and silently dropping unknown words, then keeps the *last* ``max_len`` ids and left-pads
    with 0 (Keras ``pad_sequences`` defaults ``padding="pre"``, ``truncating="pre"``).

    Parameters
    ----------
    word_index : mapping of str to int
        Word to id, ids from 1.
    num_words : int
        Ids ``>= num_words`` are dropped.
    max_len : int
        Length of every encoded row.
    filters : str
        Characters replaced by the split character before splitting.

    Examples
    --------
    >>> enc = KerasTextEncoder({"you": 1, "are": 2, "kind": 3}, num_words=3, max_len=4)
    >>> enc.encode(["You are KIND, you!"]).tolist()
    [[0, 1, 2, 1]]
    """

    def __init__(self, word_index: Mapping[str, int], *, num_words: int, max_len: int,
                 filters: str = KERAS_FILTERS) -> None:
        self.word_index = dict(word_index)
        self.num_words = num_words
        self.max_len = max_len
        self._translate = str.maketrans({c: " " for c in filters})

    def words(self, text: str) -> list[str]:
        """Split one text into words the way ``keras...text_to_word_sequence`` does."""
        return [w for w in text.lower().translate(self._translate).split(" ") if w]

    def ids(self, text: str) -> list[int]:
        """Word ids of one text, unknown and rare (``>= num_words``) words dropped, untruncated."""
        found = (self.word_index.get(w) for w in self.words(text))
        return [i for i in found if i is not None and i < self.num_words]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts into left-padded id rows.

        Parameters
        ----------
        texts : sequence of str of length n_texts

        Returns
        -------
        ndarray of int64, shape (n_texts, max_len)
            The last ``max_len`` ids of each text, left-padded with 0.
        """
        out = np.zeros((len(texts), self.max_len), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = self.ids(text)[-self.max_len:]
            if ids:
                out[row, self.max_len - len(ids):] = ids
        return out


class _BiLSTMNet(nn.Module):
    """Embedding -> BiLSTM -> max over time -> Dense+ReLU -> Dense+sigmoid (the Keras model)."""

    def __init__(self, *, vocab_size: int, d_embed: int, d_lstm: int, d_dense: int,
                 n_labels: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_embed)
        self.lstm = nn.LSTM(d_embed, d_lstm, batch_first=True, bidirectional=True)
        self.hidden = nn.Linear(2 * d_lstm, d_dense)
        self.out = nn.Linear(d_dense, n_labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)  # [batch, pos, d_embed]; pad id 0 is embedded too, as in Keras
        h, _ = self.lstm(x)  # [batch, pos, 2 * d_lstm]
        pooled = h.amax(dim=1)  # [batch, 2 * d_lstm]
        return torch.sigmoid(self.out(torch.relu(self.hidden(pooled))))  # [batch, n_labels]


@dataclass(frozen=True)
class _BiLSTMConfig:
    """Dimensions and preprocessing read from ``bilstm.json``."""

    labels: tuple[str, ...]
    vocab_size: int
    d_embed: int
    d_lstm: int
    d_dense: int
    max_len: int
    num_words: int
    filters: str


def _read_asset(weights_dir: Path | None, name: str) -> bytes:
    """Bytes of a scorer asset, from ``weights_dir`` or the package's ``assets/scorer``."""
    try:
        if weights_dir is not None:
            return (weights_dir / name).read_bytes()
        return (resources.files("aura_stream") / "assets" / "scorer" / name).read_bytes()
    except OSError as exc:
        where = weights_dir if weights_dir is not None else "the aura_stream package"
        raise ModelLoadError(f"the default scorer's `{name}` must exist in {where}; got "
                             f"{type(exc).__name__}. Reinstall aura-stream or rebuild with "
                             "scripts/build_scorer_assets.py.") from exc


def _parse_bilstm_config(raw: bytes) -> _BiLSTMConfig:
    """Parse and check ``bilstm.json``."""
    try:
        cfg = json.loads(raw)
        tok = cfg["tokenizer"]
        if cfg["format"] != BILSTM_FORMAT or tok["padding"] != "pre" or tok["split"] != " ":
            raise ValueError("unsupported format or tokenizer settings")
        config = _BiLSTMConfig(
            labels=tuple(cfg["labels"]), vocab_size=int(cfg["vocab_size"]),
            d_embed=int(cfg["d_embed"]), d_lstm=int(cfg["d_lstm"]), d_dense=int(cfg["d_dense"]),
            max_len=int(cfg["max_len"]), num_words=int(cfg["num_words"]),
            filters=str(tok["filters"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"`bilstm.json` must be an {BILSTM_FORMAT} config; got an "
                             f"unreadable one ({exc}). Rebuild with "
                             "scripts/build_scorer_assets.py.") from exc
    if "toxic" not in config.labels:
        raise ModelLoadError(f"`bilstm.json` labels must include 'toxic'; got {config.labels}.")
    return config


class BiLSTMScorer:
    """The default offline scorer: the shipped Jigsaw BiLSTM, run with PyTorch.

    Parameters
    ----------
    device : str, default "cpu"
        Torch device to run on.
    batch_size : int, default 64
        Texts per forward pass.
    reduce : {"toxic", "max"}, default "toxic"
        ``"toxic"`` scores with the Jigsaw ``toxic`` output (the default, see ``docs/scorer.md``);
        ``"max"`` with the largest of the six label outputs.
    weights_dir : path, optional
        Folder with ``bilstm.safetensors``, ``bilstm.json`` and ``word_index.json``; defaults to
        the copy shipped in ``aura_stream/assets/scorer``.

    Raises
    ------
    ModelLoadError
        If an asset is missing, malformed or does not fit the network.
    InputError
        If ``device``, ``batch_size`` or ``reduce`` is invalid.

    Examples
    --------
    >>> scorer = BiLSTMScorer()
    >>> scorer.score(["Thank you for the lovely dinner, see you tomorrow."]).round(2).tolist()
    [0.01]
    """

    def __init__(self, *, device: str = "cpu", batch_size: int = 64,
                 reduce: Literal["toxic", "max"] = "toxic",
                 weights_dir: str | Path | None = None) -> None:
        if reduce not in ("toxic", "max"):
            raise InputError(f"`reduce` must be 'toxic' or 'max'; got {reduce!r}.")
        self.device = _parse_device(device)
        self.batch_size = _check_batch_size(batch_size)
        self.reduce = reduce
        self.name = "bilstm-jigsaw" if reduce == "toxic" else "bilstm-jigsaw-max"
        where = None if weights_dir is None else Path(weights_dir)

        self.config = _parse_bilstm_config(_read_asset(where, "bilstm.json"))
        self.labels = self.config.labels
        self.encoder = KerasTextEncoder(
            _parse_word_index(_read_asset(where, "word_index.json"), self.config.num_words),
            num_words=self.config.num_words, max_len=self.config.max_len,
            filters=self.config.filters,
        )
        self.net = _BiLSTMNet(vocab_size=self.config.vocab_size, d_embed=self.config.d_embed,
                              d_lstm=self.config.d_lstm, d_dense=self.config.d_dense,
                              n_labels=len(self.config.labels))
        try:
            state = load_safetensors(_read_asset(where, "bilstm.safetensors"))
            self.net.load_state_dict(state, strict=True)
        except Exception as exc:  # safetensors raises its own error type on corrupt files
            if isinstance(exc, ModelLoadError):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"`bilstm.safetensors` must hold the BiLSTM described by "
                                 f"bilstm.json; got: {first[:200]}. Rebuild with "
                                 "scripts/build_scorer_assets.py.") from exc
        self.net.to(self.device).eval()

    def label_scores(self, texts: Sequence[str]) -> np.ndarray:
        """Sigmoid outputs for all labels.

        Parameters
        ----------
        texts : sequence of str of length n_texts

        Returns
        -------
        ndarray of float64, shape (n_texts, n_labels)
            Columns in ``self.labels`` order (Jigsaw: toxic, severe_toxic, obscene, threat,
            insult, identity_hate).
        """
        items = _check_texts(texts)
        out = np.empty((len(items), len(self.labels)), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                ids = self.encoder.encode(items[start:start + self.batch_size])  # [batch, max_len]
                probs = self.net(torch.from_numpy(ids).to(self.device))  # [batch, n_labels]
                out[start:start + len(ids)] = probs.double().cpu().numpy()
        return out

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Probability of toxicity per text.

        Parameters
        ----------
        texts : sequence of str of length n_texts

        Returns
        -------
        ndarray of float64, shape (n_texts,)
            The ``toxic`` output, or the max over labels when ``reduce="max"``.

        Raises
        ------
        InputError
            If ``texts`` is a single string or contains non-strings.
        """
        labels = self.label_scores(texts)  # [n_texts, n_labels]
        if self.reduce == "max":
            return labels.max(axis=1) if len(labels) else np.zeros(0)
        return labels[:, self.labels.index("toxic")].copy()

    def __repr__(self) -> str:
        return f"BiLSTMScorer(device={str(self.device)!r}, reduce={self.reduce!r})"


def _parse_word_index(raw: bytes, num_words: int) -> dict[str, int]:
    """Parse and check ``word_index.json`` (word -> id, ids in [1, num_words))."""
    try:
        index = json.loads(raw)
    except ValueError as exc:
        raise ModelLoadError(f"`word_index.json` must be JSON; got {exc}. Rebuild with "
                             "scripts/build_scorer_assets.py.") from exc
    if not isinstance(index, dict) or not all(
        isinstance(w, str) and isinstance(i, int) and 0 < i < num_words for w, i in index.items()
    ):
        raise ModelLoadError(f"`word_index.json` must map words to ids in [1, {num_words}); got "
                             "other values. Rebuild with scripts/build_scorer_assets.py.")
    return index


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


# --------------------------------------------------------------------------- factory


def load_scorer(spec: str = "default", *, device: str = "cpu",
                batch_size: int = 64) -> ToxicityScorer:
    """Build the scorer named by ``spec``.

    Parameters
    ----------
    spec : str, default "default"
        ``"default"`` for the shipped offline BiLSTM, or the path of a local Hugging Face
        sequence-classification directory.
    device : str, default "cpu"
    batch_size : int, default 64

    Returns
    -------
    ToxicityScorer

    Raises
    ------
    ModelLoadError
        If ``spec`` is neither ``"default"`` nor an existing directory, or loading fails.

    Examples
    --------
    >>> load_scorer("default").name
    'bilstm-jigsaw'
    """
    if spec == "default":
        return BiLSTMScorer(device=device, batch_size=batch_size)
    if isinstance(spec, str) and spec and Path(spec).expanduser().is_dir():
        return HFClassifierScorer(spec, device=device, batch_size=batch_size)
    raise ModelLoadError(
        f"`--scorer` must be 'default' or a local Hugging Face classifier directory; got "
        f"{spec!r}, which is not a directory. Use 'default' for the offline BiLSTM, or download "
        "a classifier (e.g. save_pretrained of a RoBERTa toxicity model) and pass its folder."
    )


if __name__ == "__main__":  # pragma: no cover - manual check: python -m aura_stream.scorers
    _texts = ["You are a stupid worthless idiot and I hope you die.",
              "Thank you for the lovely dinner, see you tomorrow."]
    for _text, _p in zip(_texts, BiLSTMScorer().score(_texts), strict=True):
        print(f"{_p:.3f}  {_text}")
