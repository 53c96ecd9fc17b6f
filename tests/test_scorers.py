"""Tests for aura_stream.evaluation.scorers: the shipped BiLSTM, the Hugging Face scorer, load_scorer."""

from __future__ import annotations

import collections
import csv
import hashlib
import importlib.util
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score

from aura_stream.errors import InputError, ModelLoadError
from aura_stream.evaluation.scorers import (
    JIGSAW_LABELS,
    BiLSTMScorer,
    HFClassifierScorer,
    KerasTextEncoder,
    ToxicityScorer,
    load_scorer,
    toxic_label_index,
)
from tests.conftest import jigsaw_sample

REPO = Path(__file__).resolve().parents[1]
SCORER_ASSETS = REPO / "aura_stream" / "assets" / "scorer"

# Written for these tests (not from any data set). Clear insults and clearly benign sentences.
TOXIC = [
    "You are a pathetic loser and everyone laughs at you.",
    "Shut up, you ignorant moron.",
    "Go to hell, you disgusting pig.",
    "Nobody wants you here, get lost you idiot.",
    "What a dumb piece of garbage you are.",
    "You're a worthless waste of space.",
    "Fuck off and stop editing my page.",
    "You are so stupid it hurts to read your comments.",
    "Keep talking and I will beat the crap out of you.",
    "Your mother should be ashamed of raising such an imbecile.",
    "This is the most idiotic thing I have ever read, you clown.",
    "Die in a fire, you miserable creep.",
    "Only a brainless fool would write something this ugly.",
    "You are a lying scumbag and a coward.",
    "I hope someone punches you in your ugly face.",
    "Get out of here, you filthy rat.",
    "You useless jerk, you ruined everything.",
    "Stop whining like a little bitch.",
    "Everyone hates you because you're an annoying asshole.",
    # A threat without insults or profanity: the BiLSTM misses it (0.025); kept to keep it honest.
    "I will find where you live and make you regret it.",
]
CLEAN = [
    "Thanks for fixing the citation, the article reads much better now.",
    "The meeting has been moved to Thursday at ten.",
    "Could you add a source for the population figure?",
    "I enjoyed the hike along the river this morning.",
    "The recipe needs two cups of flour and a pinch of salt.",
    "Please see the talk page before reverting again.",
    "The museum opens at nine and closes at five.",
    "She plays the violin in the city orchestra.",
    "The train to Boston leaves from platform four.",
    "Great work on the new section about the history of the bridge.",
    "The process kills idle workers after ten minutes.",
    "The battle ended with heavy losses on both sides.",
    "He was shot in the leg during the war and recovered in hospital.",
    "The committee voted to fund the new library.",
    "I disagree with this edit, but I appreciate the effort.",
    "The weather forecast says it will rain tomorrow.",
    "Our cat likes to sleep on the windowsill.",
    "The paper was published in a peer reviewed journal in 2015.",
    "Happy birthday, I hope you have a wonderful day.",
    "The band released their third album last spring.",
]


@pytest.fixture(scope="module")
def bilstm() -> BiLSTMScorer:
    return BiLSTMScorer()


# --------------------------------------------------------------------------- shipped assets


def test_scorer_assets_match_manifest() -> None:
    manifest = json.loads((SCORER_ASSETS / "MANIFEST.json").read_text(encoding="utf-8"))
    listed = {o["file"]: o["sha256"] for o in manifest["outputs"]}
    on_disk = {p.name for p in SCORER_ASSETS.iterdir() if p.is_file()} - {"MANIFEST.json"}
    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((SCORER_ASSETS / name).read_bytes()).hexdigest() == digest, name
    assert {"NOTICE.md", "LICENSE-toxic-comment-classifier.txt"} <= on_disk
    assert "Md Irfan Ali" in (SCORER_ASSETS / "NOTICE.md").read_text(encoding="utf-8")
    unsafe = (".pickle", ".pkl", ".pt", ".bin")
    assert not [p for p in SCORER_ASSETS.iterdir() if p.suffix in unsafe]


def test_scorer_prompt_and_text_assets_are_small() -> None:
    folders = [REPO / "aura_stream" / "assets" / name for name in ("scorer", "prompts", "text")]
    total = sum(p.stat().st_size for folder in folders for p in folder.iterdir() if p.is_file())
    assert total < 6_000_000  # 4.73 MB, 4.19 MB of it the BiLSTM weights


def test_loading_never_unpickles(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle/torch.load must not be used at run time")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert BiLSTMScorer().score(["hello there"]).shape == (1,)


def test_build_script_unpickler_admits_only_the_tokenizer_globals() -> None:
    pytest.importorskip("h5py")  # the build script needs it; the package does not
    script = REPO / "scripts" / "build_scorer_assets.py"
    spec = importlib.util.spec_from_file_location("build_scorer_assets", script)
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)

    def unpickle(obj: object) -> object:
        return build.RestrictedUnpickler(io.BytesIO(pickle.dumps(obj))).load()

    counts = collections.defaultdict(int, {"a": 1})
    assert unpickle(counts) == counts
    with pytest.raises(pickle.UnpicklingError, match="is not allowed"):
        unpickle(os.system)
    with pytest.raises(pickle.UnpicklingError, match="is not allowed"):
        unpickle(Path("x"))


# --------------------------------------------------------------------------- BiLSTM quality


def test_design_sanity_sentences(bilstm: BiLSTMScorer) -> None:
    toxic, clean = bilstm.score([
        "You are a stupid worthless idiot and I hope you die.",
        "Thank you for the lovely dinner, see you tomorrow.",
    ])
    assert toxic == pytest.approx(0.995, abs=0.002)
    assert clean == pytest.approx(0.010, abs=0.002)


def test_reproduces_upstream_keras_outputs(bilstm: BiLSTMScorer) -> None:
    # Outputs of the original TensorFlow model printed in toxic-comment-classifier 0.3.0's README:
    # classify() on one sentence, and predict_batch() (the mean over the 6 labels) on six.
    labels = bilstm.label_scores(["You are so dumb and stupid!"])[0]
    keras = [0.9889402985572815, 0.07256772369146347, 0.620429277420044,
             0.01934845559298992, 0.8664075136184692, 0.04072948172688484]
    np.testing.assert_allclose(labels, keras, atol=2e-6)
    texts = ["I hate you so much!", "This is wonderful news.", "You're disgusting!",
             "Absolutely love your energy!", "You're the worst person ever!", "Have a nice day :)"]
    means = bilstm.label_scores(texts).mean(axis=1)
    np.testing.assert_allclose(means, [0.1395, 0.0013, 0.3110, 0.0088, 0.0937, 0.0115], atol=6e-5)


def test_clear_insults_rank_above_clean_sentences(bilstm: BiLSTMScorer) -> None:
    insults = bilstm.score(TOXIC[:-1])
    clean = bilstm.score(CLEAN)
    assert insults.min() > clean.max()  # measured 0.60 > 0.19
    assert (insults >= 0.5).mean() >= 0.9  # measured 19/19
    assert (clean < 0.5).all()


def test_handwritten_auroc(bilstm: BiLSTMScorer) -> None:
    labels = np.r_[np.ones(len(TOXIC)), np.zeros(len(CLEAN))]
    auroc = roc_auc_score(labels, bilstm.score(TOXIC + CLEAN))
    assert auroc >= 0.93  # measured 0.9875 (the threat sentence is the one miss)


def test_jigsaw_fixture_auroc(bilstm: BiLSTMScorer) -> None:
    path = jigsaw_sample()
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and "" in rows[0]  # the unnamed leading index column
    assert any("\n" in r["comment_text"] for r in rows)  # multi-line quoted comments survive
    labels = np.array([int(r["toxic"]) for r in rows])
    assert labels.sum() == 8
    texts = [r["comment_text"] for r in rows]
    for reduce in ("toxic", "max"):
        scores = BiLSTMScorer(reduce=reduce).score(texts)
        assert roc_auc_score(labels, scores) >= 0.9  # measured 1.0 for both (rows seen in training)


def test_reduce_max_bounds_toxic(bilstm: BiLSTMScorer) -> None:
    scorer_max = BiLSTMScorer(reduce="max")
    texts = TOXIC[:5] + CLEAN[:5]
    assert scorer_max.name != bilstm.name
    np.testing.assert_array_equal(scorer_max.score(texts), bilstm.label_scores(texts).max(axis=1))
    assert (scorer_max.score(texts) >= bilstm.score(texts)).all()


# --------------------------------------------------------------------------- BiLSTM mechanics


def test_score_shape_dtype_and_batching(bilstm: BiLSTMScorer) -> None:
    texts = TOXIC[:7] + CLEAN[:6] + ["", "!!!", "x " * 500]
    scores = bilstm.score(texts)
    assert scores.shape == (len(texts),) and scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all()
    one_by_one = BiLSTMScorer(batch_size=1).score(texts)
    np.testing.assert_allclose(scores, one_by_one, atol=1e-6)
    np.testing.assert_allclose(bilstm.score(texts[::-1]), scores[::-1], atol=1e-6)
    assert bilstm.score([]).shape == (0,)
    assert BiLSTMScorer(reduce="max").score([]).shape == (0,)
    assert isinstance(bilstm, ToxicityScorer)
    assert bilstm.labels == JIGSAW_LABELS


def test_encoder_follows_keras_tokenizer() -> None:
    enc = KerasTextEncoder({"you": 1, "are": 2, "don't": 3, "rare": 9}, num_words=5, max_len=6)
    assert enc.words("YOU\tare,\nDON'T!! ") == ["you", "are", "don't"]
    # unknown words and ids >= num_words are dropped; left padding with 0
    assert enc.encode(["you are rare unknown don't"]).tolist() == [[0, 0, 0, 1, 2, 3]]
    # truncation keeps the LAST max_len ids
    assert enc.encode(["are " * 3 + "you " * 6]).tolist() == [[1, 1, 1, 1, 1, 1]]
    assert enc.encode(["", "..."]).tolist() == [[0] * 6, [0] * 6]
    # only the space splits (Keras split=" "): a non-breaking space joins words
    assert enc.words("you\u00a0are") == ["you\u00a0are"]
    assert enc.encode([]).shape == (0, 6)


def test_shipped_word_index_is_top_words(bilstm: BiLSTMScorer) -> None:
    index = bilstm.encoder.word_index
    assert len(index) == 19_999 and sorted(index.values()) == list(range(1, 20_000))
    assert index["the"] == 1 and index["you"] == 6
    ids = bilstm.encoder.encode(["The cat"])[0]
    assert ids.shape == (100,) and ids[-2] == 1 and (ids[:-2] == 0).all()


def _keras_bilstm_numpy(h5_path: Path, ids: np.ndarray) -> np.ndarray:
    """Independent oracle: the Keras layer equations, in float64, straight from the .h5 file."""
    import h5py

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-x)))

    with h5py.File(h5_path, "r") as f:
        def v(path: str) -> np.ndarray:
            return np.asarray(f[path][()], dtype=np.float64)

        emb = v("layers/embedding/vars/0")
        cells = {d: [v(f"layers/bidirectional/{d}_layer/cell/vars/{i}") for i in range(3)]
                 for d in ("forward", "backward")}
        w1, b1 = v("layers/dense/vars/0"), v("layers/dense/vars/1")
        w2, b2 = v("layers/dense_1/vars/0"), v("layers/dense_1/vars/1")

    def lstm(x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray
             ) -> np.ndarray:  # x [pos, d_embed] -> [pos, units]
        units = recurrent.shape[0]
        h, c, out = np.zeros(units), np.zeros(units), []
        for x_t in x:
            z = x_t @ kernel + h @ recurrent + bias
            i, f_, g, o = (z[k * units:(k + 1) * units] for k in range(4))
            c = sigmoid(f_) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            out.append(h)
        return np.stack(out)

    results = []
    for row in ids:
        x = emb[row]  # [pos, d_embed]
        fwd = lstm(x, *cells["forward"])
        bwd = lstm(x[::-1], *cells["backward"])[::-1]  # go_backwards, then re-aligned
        pooled = np.concatenate([fwd, bwd], axis=1).max(axis=0)  # GlobalMaxPooling1D
        hidden = np.maximum(pooled @ w1 + b1, 0.0)
        results.append(sigmoid(hidden @ w2 + b2))
    return np.stack(results)


def test_torch_bilstm_matches_numpy_keras_oracle(bilstm: BiLSTMScorer) -> None:
    spec = importlib.util.find_spec("toxic_classifier")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("toxic-comment-classifier is not installed (needed for the original .h5)")
    pytest.importorskip("h5py")
    h5_path = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.weights.h5"
    texts = ["You are a stupid worthless idiot and I hope you die.", "Thanks for the edit!",
             "the " * 150]
    ids = bilstm.encoder.encode(texts)
    expected = _keras_bilstm_numpy(h5_path, ids)
    np.testing.assert_allclose(bilstm.label_scores(texts), expected, atol=1e-5)


# --------------------------------------------------------------------------- BiLSTM errors


def test_score_rejects_bad_texts(bilstm: BiLSTMScorer) -> None:
    with pytest.raises(InputError, match="not one string"):
        bilstm.score("you idiot")
    with pytest.raises(InputError, match=r"non-strings at positions 1 \(int\), 2 \(NoneType\)"):
        bilstm.score(["ok", 3, None])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "`batch_size` must be a positive integer; got 0"),
        ({"batch_size": True}, "`batch_size` must be a positive integer"),
        ({"reduce": "mean"}, "`reduce` must be 'toxic' or 'max'; got 'mean'"),
        ({"device": "nonsense"}, "`device` must be a torch device"),
    ],
)
def test_bilstm_rejects_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        BiLSTMScorer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_bilstm_rejects_unavailable_cuda() -> None:
    with pytest.raises(InputError, match="CUDA is not available"):
        BiLSTMScorer(device="cuda")


@pytest.fixture
def weights_copy(tmp_path: Path) -> Path:
    for name in ("bilstm.json", "bilstm.safetensors", "word_index.json"):
        shutil.copyfile(SCORER_ASSETS / name, tmp_path / name)
    return tmp_path


def test_weights_dir_copy_loads(weights_copy: Path, bilstm: BiLSTMScorer) -> None:
    scorer = BiLSTMScorer(weights_dir=weights_copy)
    np.testing.assert_array_equal(scorer.score(CLEAN[:3]), bilstm.score(CLEAN[:3]))


def test_missing_asset_is_a_load_error(weights_copy: Path) -> None:
    (weights_copy / "word_index.json").unlink()
    with pytest.raises(ModelLoadError, match=r"`word_index\.json` must exist in"):
        BiLSTMScorer(weights_dir=weights_copy)


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bilstm.json", b"{not json", "`bilstm.json` must be an aura-stream-bilstm/1 config"),
        ("bilstm.json", b'{"format": "other/9"}', "`bilstm.json` must be an aura-stream-bilstm/1"),
        ("word_index.json", b"[1, 2]", "`word_index.json` must map words to ids"),
        ("word_index.json", b'{"the": 20000}', "`word_index.json` must map words to ids"),
        ("word_index.json", b"{oops", "`word_index.json` must be JSON"),
        ("bilstm.safetensors", b"\x00" * 16, "`bilstm.safetensors` must hold the BiLSTM"),
    ],
)
def test_corrupt_assets_are_load_errors(weights_copy: Path, name: str, content: bytes,
                                        match: str) -> None:
    (weights_copy / name).write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        BiLSTMScorer(weights_dir=weights_copy)


def test_wrong_tensor_shapes_are_load_errors(weights_copy: Path) -> None:
    save_file({"embedding.weight": torch.zeros(3, 2)}, str(weights_copy / "bilstm.safetensors"))
    with pytest.raises(ModelLoadError, match=r"must hold the BiLSTM described by bilstm\.json"):
        BiLSTMScorer(weights_dir=weights_copy)


def test_config_without_toxic_label_is_a_load_error(weights_copy: Path) -> None:
    cfg = json.loads((weights_copy / "bilstm.json").read_text(encoding="utf-8"))
    cfg["labels"] = ["a", "b", "c", "d", "e", "f"]
    (weights_copy / "bilstm.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="labels must include 'toxic'"):
        BiLSTMScorer(weights_dir=weights_copy)


# --------------------------------------------------------------------------- load_scorer


def test_load_scorer_default() -> None:
    scorer = load_scorer("default", batch_size=8)
    assert isinstance(scorer, BiLSTMScorer) and scorer.name == "bilstm-jigsaw"


@pytest.mark.parametrize("spec", ["nope", "", "roberta-base"])
def test_load_scorer_rejects_unknown_spec(spec: str) -> None:
    with pytest.raises(ModelLoadError, match=r"`--scorer` must be 'default' or a local Hugging "
                                             rf"Face classifier directory; got '{spec}'"):
        load_scorer(spec)


def test_load_scorer_rejects_a_file(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="which is not a directory"):
        load_scorer(str(path))


# --------------------------------------------------------------------------- Hugging Face


@pytest.mark.parametrize(
    ("id2label", "num_labels", "expected"),
    [
        ({0: "non-toxic", 1: "toxic"}, 2, 1),
        ({0: "toxic", 1: "neutral"}, 2, 0),
        ({0: "neutral", 1: "TOXIC"}, 2, 1),
        ({0: "not_toxic", 1: "very toxic"}, 2, 1),
        ({0: "toxicity", 1: "severe_toxicity"}, 2, 0),
        ({0: "severe_toxic", 1: "obscene", 2: "toxic"}, 3, 2),
        ({0: "LABEL_0", 1: "LABEL_1"}, 2, 1),
        ({0: "nontoxic", 1: "hate"}, 2, 1),
        (None, 2, 1),
        ({0: "LABEL_0"}, 1, 0),
    ],
)
def test_toxic_label_index(id2label: dict[int, str] | None, num_labels: int, expected: int) -> None:
    assert toxic_label_index(id2label, num_labels) == expected


def _tiny_classifier(path: Path, *, id2label: dict[int, str], multi_label: bool = False,
                     seed: int = 0) -> Path:
    """A random-init DistilBERT classifier and a word-level tokenizer, built offline."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    corpus = {w.strip(".,!?'").lower() for t in TOXIC + CLEAN for w in t.split()}
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *sorted(corpus)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", model_max_length=16,
    )
    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=len(words), dim=16, n_layers=1, n_heads=2, hidden_dim=32,
        max_position_embeddings=16, pad_token_id=0, id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
    )
    model = DistilBertForSequenceClassification(config)
    with torch.no_grad():  # make the head's outputs spread out, so the oracle check has teeth
        model.classifier.weight.mul_(40.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _oracle_probs(path: Path, texts: list[str], *, multi_label: bool) -> np.ndarray:
    """Plain transformers forward pass, one text at a time: [n_texts, num_labels]."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            logits = model(**tokenizer([text], truncation=True, return_tensors="pt")).logits[0]
            probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)
            rows.append(probs.numpy())
    return np.stack(rows).astype(np.float64)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_classifier(tmp_path_factory.mktemp("hf"), id2label={0: "non-toxic", 1: "toxic"})


def test_hf_scorer_probabilities_match_plain_forward(hf_dir: Path) -> None:
    texts = TOXIC[:4] + CLEAN[:4] + ["zzz qqq", "a much longer sentence " * 10]
    scorer = load_scorer(str(hf_dir), batch_size=3)
    assert isinstance(scorer, HFClassifierScorer) and isinstance(scorer, ToxicityScorer)
    assert scorer.label_index == 1 and not scorer.multi_label and scorer.max_length == 16
    scores = scorer.score(texts)
    assert scores.shape == (len(texts),) and scores.dtype == np.float64
    assert ((scores >= 0) & (scores <= 1)).all() and scores.std() > 0.01
    expected = _oracle_probs(hf_dir, texts, multi_label=False)[:, 1]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert scorer.score([]).shape == (0,)
    with pytest.raises(InputError, match="not one string"):
        scorer.score("text")


def test_hf_scorer_label_choice_and_multilabel(tmp_path: Path) -> None:
    texts = TOXIC[:3] + CLEAN[:3]
    first = _tiny_classifier(tmp_path / "first", id2label={0: "Toxic", 1: "neutral"}, seed=1)
    scorer = HFClassifierScorer(first, batch_size=4)
    assert scorer.label_index == 0
    np.testing.assert_allclose(scorer.score(texts),
                               _oracle_probs(first, texts, multi_label=False)[:, 0], atol=1e-5)

    multi = _tiny_classifier(tmp_path / "multi", multi_label=True, seed=2,
                             id2label={0: "severe_toxic", 1: "obscene", 2: "toxic"})
    scorer = HFClassifierScorer(multi)
    assert scorer.multi_label and scorer.label_index == 2
    probs = _oracle_probs(multi, texts, multi_label=True)
    np.testing.assert_allclose(scorer.score(texts), probs[:, 2], atol=1e-5)
    assert not np.allclose(probs.sum(axis=1), 1.0)  # sigmoid, not softmax


def test_hf_scorer_rejects_non_model_directories(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="must hold a Hugging Face tokenizer and "
                                             "sequence-classification model; loading failed"):
        load_scorer(str(tmp_path))
    with pytest.raises(ModelLoadError, match="is not a directory"):
        HFClassifierScorer(tmp_path / "missing")


def test_hf_scorer_rejects_bad_options(hf_dir: Path) -> None:
    with pytest.raises(InputError, match="`batch_size` must be a positive integer; got -1"):
        HFClassifierScorer(hf_dir, batch_size=-1)
    with pytest.raises(InputError, match="`device` must be a torch device"):
        load_scorer(str(hf_dir), device="gpu!!")


def test_hf_scorer_refuses_a_classifier_without_its_head(hf_dir: Path, tmp_path: Path) -> None:
    """A checkpoint whose head is missing would get a random head: different noise every run."""
    from safetensors.torch import load_file, save_file

    headless = tmp_path / "headless"
    headless.mkdir()
    for f in hf_dir.iterdir():
        (headless / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(headless / "model.safetensors"))
    kept = {k: v for k, v in weights.items() if not k.startswith(("classifier.", "pre_classifier."))}
    assert len(kept) < len(weights)
    save_file(kept, str(headless / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"must be a trained sequence-classification model; .* no trained "
                                             r"weights for classifier\.bias, classifier\.weight"):
        load_scorer(str(headless))


def test_hf_scorer_refuses_a_causal_lm(gpt2_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no trained weights for score\.weight"):
        load_scorer(str(gpt2_dir))


def test_hf_scorer_is_padding_side_independent(gpt2_dir: Path, tmp_path: Path) -> None:
    """A GPT-2 classifier whose tokenizer pads on the left scores a batch as it scores each text alone."""
    import json

    from transformers import AutoConfig, AutoTokenizer, GPT2ForSequenceClassification

    config = AutoConfig.from_pretrained(gpt2_dir, num_labels=2, id2label={0: "clean", 1: "toxic"},
                                        label2id={"clean": 0, "toxic": 1})
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.mul_(20.0)
    path = tmp_path / "gpt2-clf"
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(gpt2_dir).save_pretrained(path)
    tok_config = json.loads((path / "tokenizer_config.json").read_text())
    tok_config["padding_side"] = "left"
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config))
    assert AutoTokenizer.from_pretrained(path).padding_side == "left"
    texts = ["hi", "you are a horrible person and everyone knows it", "thank you so much"]
    batched = load_scorer(str(path), batch_size=3).score(texts)
    single = load_scorer(str(path), batch_size=1).score(texts)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert batched.std() > 1e-3
