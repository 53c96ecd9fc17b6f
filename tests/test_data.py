"""data: Jigsaw and generic files, selection, and every bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from aura_stream.data import load_labelled
from aura_stream.errors import DataFileError, MissingFileError


def test_jigsaw_sample(jigsaw_csv: Path) -> None:
    data = load_labelled(jigsaw_csv)
    rows = list(csv.DictReader(jigsaw_csv.open(encoding="utf-8")))
    assert len(data) == 16 and int(data.labels.sum()) == 8
    assert data.selection["format"] == "jigsaw"
    assert data.sample_ids == [r["id"] for r in rows]  # file order
    assert data.texts == [r["comment_text"] for r in rows]
    assert any("\n" in t for t in data.texts)  # multi-line comments survive
    assert data.labels.tolist() == [int(r["toxic"]) for r in rows]


def test_jigsaw_drops_rows_toxic_only_in_other_labels(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        ",id,comment_text,toxic,severe_toxic,obscene,threat,insult,identity_hate\n"
        '0,a,"clean one",0,0,0,0,0,0\n1,b,"rude",1,0,0,0,0,0\n2,c,"insult only",0,0,0,0,1,0\n'
    )
    data = load_labelled(path)
    assert data.sample_ids == ["a", "b"] and data.labels.tolist() == [0, 1]


def test_per_class_selection_is_seeded_and_ordered(jigsaw_csv: Path) -> None:
    a = load_labelled(jigsaw_csv, per_class=3, seed=1)
    b = load_labelled(jigsaw_csv, per_class=3, seed=1)
    c = load_labelled(jigsaw_csv, per_class=3, seed=2)
    assert a.sample_ids == b.sample_ids and a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert np.bincount(a.labels).tolist() == [3, 3]
    full = load_labelled(jigsaw_csv).sample_ids
    assert [full.index(s) for s in a.sample_ids] == sorted(full.index(s) for s in a.sample_ids)


def test_generic_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("sentence,is_toxic\nhello there,0\nyou idiot,1\n")
    data = load_labelled(csv_path, text_column="sentence", label_column="is_toxic")
    assert data.texts == ["hello there", "you idiot"] and data.labels.tolist() == [0, 1]
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [{"text": "hi", "label": 0}, {"text": "jerk", "label": 1}]))
    assert load_labelled(jl).labels.tolist() == [0, 1]


@pytest.mark.parametrize(("content", "kwargs", "error", "match"), [
    (None, {}, MissingFileError, "does not exist; pass an existing `--data`"),
    (b"", {}, DataFileError, "is empty"),
    (b"text,label\nhello,0\n", {"text_column": "body"}, DataFileError,
     r"must have column\(s\) body; found text, label"),
    (b"a,b\n1,2\n", {}, DataFileError, r"must have column\(s\) text, label"),
    (b"text,label\nhello,0\nbye,toxic\n", {}, DataFileError,
     r"line 3: label column `label` must hold 0 or 1; got 'toxic'"),
    (b"text,label\nhello,0\nbye,2\n", {}, DataFileError, "must hold 0 or 1; got '2'"),
    (b"text,label\nhello,0\nbye,0\n", {}, DataFileError, "has no toxic rows"),
    (b"text,label\nhello,1\nbye,1\n", {}, DataFileError, "has no non-toxic rows"),
    (b"text,label\nhello,0\n  ,1\n", {}, DataFileError, "line 3: text is empty"),
    (b"text,label\ncaf\xe9,0\nx,1\n", {}, DataFileError, r"must be UTF-8; byte 14 \(line 2\)"),
    (b"text,label\n\"unterminated,0\n", {}, DataFileError, "truncated or badly quoted"),
    (b"text,label\nhello,0,extra\n", {}, DataFileError, "3 fields, header has 2"),
])
def test_bad_data(tmp_path: Path, content: bytes | None, kwargs: dict[str, str], error: type[Exception],
                  match: str) -> None:
    path = tmp_path / "d.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=match):
        load_labelled(path, **kwargs)


def test_bad_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 0}\n{"text": \n')
    with pytest.raises(DataFileError, match="line 2: not valid JSON"):
        load_labelled(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="is a directory"):
        load_labelled(tmp_path)
