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

from pathlib import Path

from aura_stream.errors import ModelLoadError
from aura_stream.evaluation.scorers.bilstm import BiLSTMScorer, KerasTextEncoder
from aura_stream.evaluation.scorers.hf_classifier import HFClassifierScorer, toxic_label_index
from aura_stream.evaluation.scorers.protocol import JIGSAW_LABELS, ToxicityScorer

__all__ = [
    "JIGSAW_LABELS",
    "BiLSTMScorer",
    "HFClassifierScorer",
    "KerasTextEncoder",
    "ToxicityScorer",
    "load_scorer",
    "toxic_label_index",
]

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


if __name__ == "__main__":  # pragma: no cover - manual check: python -m aura_stream.evaluation.scorers
    _texts = ["You are a stupid worthless idiot and I hope you die.",
              "Thank you for the lovely dinner, see you tomorrow."]
    for _text, _p in zip(_texts, BiLSTMScorer().score(_texts), strict=True):
        print(f"{_p:.3f}  {_text}")
