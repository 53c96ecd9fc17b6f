"""Reading labelled sentences (Jigsaw ``train.csv``, generic CSV or JSONL) and selecting per class."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aura_stream.errors import DataFileError, MissingFileError

JIGSAW_LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
JIGSAW_COLUMNS = ("id", "comment_text", *JIGSAW_LABELS)
MAX_TEXT_CHARS = 100_000  # per text; a longer one is most likely a malformed file


@dataclass(frozen=True)
class LabelledTexts:
    """Selected sentences with their labels, in a deterministic order.

    Attributes
    ----------
    texts : list of str, length n_samples
    labels : np.ndarray of shape [n_samples], int8, 1 = toxic
    sample_ids : list of str, length n_samples
        The ``id`` column when present, else the 0-based data row number.
    fingerprint : str
        sha256 over the file's bytes and the selection rule: equal fingerprints, equal selection.
    selection : dict
        The rule that produced the selection (format, columns, per_class, seed, counts).
    """

    texts: list[str]
    labels: np.ndarray
    sample_ids: list[str]
    fingerprint: str
    selection: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def demo_data_path() -> Path:
    """The labelled demo set shipped inside the package (Jigsaw format)."""
    return Path(__file__).parent / "assets" / "demo" / "demo_train.csv"


def _read_bytes(path: Path) -> tuple[bytes, str]:
    if not path.exists():
        raise MissingFileError(f"data file {str(path)!r} does not exist; pass an existing `--data` file.")
    if path.is_dir():
        raise DataFileError(f"`--data` must be a CSV or JSONL file; {str(path)!r} is a directory.")
    if not path.is_file():  # a FIFO or device would block the read forever, or never end
        raise DataFileError(f"`--data` must be a regular file; {str(path)!r} is a pipe, socket or device. "
                            "Write the data to a file first.")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFileError(f"cannot read data file {str(path)!r}: {exc.strerror}. Make it readable "
                            "(e.g. `chmod u+r`) or pass a copy you can read.") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFileError(
            f"data file {str(path)!r} must be UTF-8; byte {exc.start} (line {line}) is not. "
            "Re-encode it, e.g. `iconv -f latin1 -t utf-8`."
        ) from exc
    return raw, text


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their ``\n``, one at a time (no copy of the whole text)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _check_unique(names: list[str], path: Path, where: str) -> None:
    """Each column named once: with two, one of them would be silently ignored."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataFileError(f"{path.name} {where} must name each column once; {', '.join(map(repr, dupes[:5]))} "
                            "repeat(s). Rename or remove the duplicate column.")


def _rows_csv(text: str, path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    # rows end at \n (or \r\n) only; str.splitlines would also cut at U+2028, form feed, ...
    reader = csv.reader(_lines(text))
    try:
        header = next(reader)
    except StopIteration:
        raise DataFileError(f"data file {str(path)!r} is empty; it needs a header and rows.") from None
    except csv.Error as exc:
        raise DataFileError(f"data file {str(path)!r} is not valid CSV: {exc}.") from exc
    header = [h.strip() for h in header]
    _check_unique(header, path, "header")
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        for record in reader:
            if not record:
                continue
            if len(record) != len(header):
                raise DataFileError(
                    f"{path.name} line {reader.line_num}: {len(record)} fields, header has "
                    f"{len(header)}; the file is truncated or badly quoted."
                )
            rows.append((reader.line_num, dict(zip(header, record, strict=True))))
    except csv.Error as exc:
        raise DataFileError(f"{path.name} line {reader.line_num}: not valid CSV ({exc}).") from exc
    return header, rows


def _rows_jsonl(text: str, path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    keys: dict[str, None] = {}
    # JSON lines end at \n only (U+2028 and friends are legal inside JSON strings)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            pairs = json.loads(line, object_pairs_hook=list)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{path.name} line {number}: not valid JSON ({exc.msg}).") from exc
        if not isinstance(pairs, list) or not all(isinstance(p, tuple) for p in pairs):
            kind = "array" if isinstance(pairs, list) else type(pairs).__name__
            raise DataFileError(f"{path.name} line {number}: must be a JSON object; got {kind}.")
        _check_unique([k for k, _ in pairs], path, f"line {number}")
        obj = dict(pairs)
        keys.update(dict.fromkeys(obj))
        rows.append((number, obj))
    if not rows:
        raise DataFileError(f"data file {str(path)!r} is empty; it needs one JSON object per line.")
    return list(keys), rows


def _label(value: Any, column: str, where: str) -> int:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return int(value)  # JSON numbers
    if not isinstance(value, str):
        raise DataFileError(f"{where}: label column `{column}` must hold 0 or 1; got {json.dumps(value)[:40]}. "
                            "Map labels to 0/1.")
    v = value.strip()
    if v in ("0", "1"):
        return int(v)
    if v in ("0.0", "1.0"):  # pandas writes float columns so
        return int(float(v))
    raise DataFileError(
        f"{where}: label column `{column}` must hold 0 or 1; got {value[:40]!r}. Map labels to 0/1."
    )


def load_labelled(
    path: str | Path | None,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    per_class: int | None = None,
    seed: int = 42,
) -> LabelledTexts:
    """Read a labelled file and select at most ``per_class`` rows of each class.

    Jigsaw ``train.csv`` is recognised by its columns (an unnamed leading index column is
    tolerated): toxic = ``toxic == 1``; non-toxic = all six labels 0; other rows are dropped.
    Anything else needs ``text_column`` and ``label_column`` (0/1 values).

    Parameters
    ----------
    path : path or None
        CSV (``.csv``) or JSON lines (``.jsonl``/``.json``); None uses the shipped demo set.
    per_class : int, optional
        Cap per class; rows beyond it are dropped by a seeded random choice.
    seed : int
        Seed of that choice.

    Returns
    -------
    LabelledTexts
        Selected rows in file order.

    Raises
    ------
    MissingFileError, DataFileError
        One line naming the file, the line or column, and the fix.
    """
    path = Path(path) if path is not None else demo_data_path()
    raw, text = _read_bytes(path)
    is_jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    header, rows = (_rows_jsonl if is_jsonl else _rows_csv)(text, path)
    jigsaw = text_column is None and label_column is None and set(JIGSAW_COLUMNS) <= set(header)
    if jigsaw:
        text_column, fmt = "comment_text", "jigsaw"
    else:
        text_column, label_column, fmt = text_column or "text", label_column or "label", "generic"
        missing = [c for c in (text_column, label_column) if c not in header]
        if missing:
            raise DataFileError(
                f"{path.name} must have column(s) {', '.join(missing)}; found {', '.join(header) or 'none'}. "
                "Pass `--text-column`/`--label-column`, or use the Jigsaw train.csv columns."
            )
    texts: list[str] = []
    labels: list[int] = []
    ids: list[str] = []
    for index, (line, row) in enumerate(rows):
        where = f"{path.name} line {line}"
        if jigsaw:
            values = [_label(row[c], c, where) for c in JIGSAW_LABELS]
            if values[0] == 1:
                label = 1
            elif not any(values):
                label = 0
            else:
                continue
        else:
            label = _label(row[str(label_column)], str(label_column), where)
        sentence = row[text_column]
        if not isinstance(sentence, str):  # JSON null, a number, a list: never the text "null"
            raise DataFileError(f"{where}: text column `{text_column}` must hold a string; got "
                                f"{json.dumps(sentence)[:40]}. Fill the text or remove the row.")
        if not sentence.strip():
            raise DataFileError(f"{where}: text is empty; remove the row or fill it.")
        if len(sentence) > MAX_TEXT_CHARS:  # tokenizers hold ~200 bytes per character before truncating
            raise DataFileError(
                f"{where}: text must have at most {MAX_TEXT_CHARS:,} characters; got {len(sentence):,}. Only the "
                "first --max-length tokens are read: shorten it (or fix a stray quote that merged rows)."
            )
        texts.append(sentence)
        labels.append(label)
        row_id = row.get("id")
        ids.append(str(row_id) if row_id not in (None, "") else str(index))
    label_array = np.asarray(labels, dtype=np.int8)
    keep = _select(label_array, per_class, seed)
    counts = {"toxic": int(label_array[keep].sum()), "non_toxic": int((label_array[keep] == 0).sum())}
    for cls, n in counts.items():
        if n == 0:
            raise DataFileError(
                f"{path.name} must have both classes after selection; it has no {cls.replace('_', '-')} rows. "
                "Check the label column."
            )
    selection = {
        "format": fmt, "file": path.name, "text_column": text_column, "label_column": label_column,
        "per_class": per_class, "seed": seed, "n_rows_read": len(rows), **counts,
    }
    digest = hashlib.sha256(raw)
    digest.update(json.dumps({k: selection[k] for k in ("format", "text_column", "label_column",
                                                        "per_class", "seed")}, sort_keys=True).encode())
    return LabelledTexts(
        texts=[texts[i] for i in keep],
        labels=label_array[keep],
        sample_ids=[ids[i] for i in keep],
        fingerprint=digest.hexdigest(),
        selection=selection,
    )


def _select(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Row indices kept: at most ``per_class`` of each class, chosen by ``seed``, in file order."""
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in (0, 1):
        rows = np.flatnonzero(labels == cls)
        if len(rows) > per_class:
            rows = rng.choice(rows, size=per_class, replace=False)
        chosen.append(rows)
    return np.sort(np.concatenate(chosen))
