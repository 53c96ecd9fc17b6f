"""The default scorer: a Jigsaw-trained BiLSTM shipped with the package (safetensors + JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from torch import nn

from aura_stream.errors import InputError, ModelLoadError
from aura_stream.evaluation.scorers.protocol import (
    BILSTM_FORMAT,
    KERAS_FILTERS,
    _check_batch_size,
    _check_texts,
    _parse_device,
)

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
