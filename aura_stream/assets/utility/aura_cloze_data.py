"""Dataset loader of the ``aura_cloze`` lm-eval task: reads ``aura_cloze.jsonl`` beside this file.

lm-eval imports it through ``custom_dataset: !function aura_cloze_data.load`` in
``aura_cloze.yaml``, so the task needs neither the network nor a path relative to the working
directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().with_name("aura_cloze.jsonl")


def load(**_: Any) -> Any:
    """The task's documents as ``datasets.DatasetDict({"test": ...})``.

    lm-eval passes the task's metadata as keyword arguments; they are not needed here.
    """
    import datasets

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
