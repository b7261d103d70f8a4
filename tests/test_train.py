"""`lsr train`: a few steps on ADI give a Hugging Face folder `lsr index --model DIR` loads whose
vectors differ from the start model's; a resumed run equals an uninterrupted one; IDF-aware and
l0-masked FLOPS are what they say; learned query weights become an idf.json the idf-json query
encoder searches with; a cross-encoder teacher scores pairs as its model does; bad settings fail first."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import run_cli
from lsr.data import iter_corpus
from lsr.encoders import SpladeEncoder
from lsr.encoders.inference_free import IDF_FILE, InferenceFreeEncoder
from lsr.encoders.models import splade_tiny_path
from lsr.errors import DataError, LsrError
from lsr.index import SparseIndex
from lsr.retrieval import Retriever
from lsr.training.config import START_TEACHER, TrainConfig
from lsr.training.data import pairs_from_qrels, pairs_from_titles, query_half
from lsr.training.teacher import is_cross_encoder
from lsr.training.trainer import Trainer, flops, ramp

SMALL = dict(batch_size=4, max_length=48, query_max_length=16, negatives_depth=10, lr=5e-4, warmup_steps=0, flops_warmup=4, seed=3)


def _weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_a_few_steps_give_a_loadable_model_with_new_vectors(adi, tmp_path, splade_tiny):
    out = tmp_path / "run"
    run_cli("train", "--qrels", str(adi), "--out", str(out), "--steps", "4", "--batch-size", "4", "--max-length", "48",
            "--query-max-length", "16", "--lr", "5e-4", "--warmup-steps", "0", "--flops-warmup", "2", "--negatives-depth", "10",
            "--flops-kind", "idf", "--l0-mask", "4", "--query-weights", "learned", "--query-weights-lr", "0.05")
    settings = json.loads((out / "training.json").read_text())
    assert settings == {**settings, "flops_kind": "idf", "l0_mask": 4, "query_weights": "learned", "query_weights_lr": 0.05}
    assert settings.keys() == TrainConfig.__dataclass_fields__.keys()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["nnz_document"] > 0 for r in log)
    assert log[0]["lambda_document"] == pytest.approx(1e-4 * 0.25) and log[-1]["lambda_document"] == pytest.approx(1e-4)
    assert (out / "train_plot.png").stat().st_size > 0 and (out / "config.json").is_file()
    trained = SpladeEncoder(str(out))  # what `lsr index --model DIR` loads
    texts = ["computer based information retrieval systems", "automatic indexing of documents"]
    before, after = splade_tiny.encode_documents(texts), trained.encode_documents(texts)
    assert before.to_dicts() != after.to_dicts()
    index = tmp_path / "index"
    run_cli("index", "--corpus", str(adi), "--model", str(out), "--out", str(index))
    assert "  " in run_cli("search", "--index", str(index), "--query", "information retrieval", "-k", "3").stdout
    assert (out / IDF_FILE).is_file()  # the learned query weights (searched with in the test below)


def test_resume_continues_exactly(adi, tmp_path):
    pairs = pairs_from_qrels(str(adi))
    straight = Trainer(TrainConfig(out=str(tmp_path / "a"), steps=4, **SMALL), pairs, str(adi))
    straight.train(show_progress_bar=False)
    Trainer(TrainConfig(out=str(tmp_path / "b"), steps=2, **SMALL), pairs, str(adi)).train(show_progress_bar=False)
    resumed = Trainer(TrainConfig(out=str(tmp_path / "b"), steps=4, **SMALL), pairs, str(adi))
    assert resumed.step == 2
    resumed.train(show_progress_bar=False)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [json.loads(x)["step"] for x in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    with pytest.raises(Exception, match="other settings"):
        Trainer(TrainConfig(out=str(tmp_path / "b"), steps=6, **{**SMALL, "lr": 1e-3}), pairs, str(adi))


def test_distillation_from_the_dense_teacher_runs(adi, tmp_path):
    pairs = pairs_from_titles(str(adi))
    for distill in ("kl", "margin-mse"):
        summary = Trainer(TrainConfig(out=str(tmp_path / distill), steps=1, distill=distill, **SMALL), pairs, str(adi)).train(show_progress_bar=False)
        record = json.loads((tmp_path / distill / "train_log.jsonl").read_text().splitlines()[0])
        assert summary["steps"] == 1 and record["distill"] > 0


def _dots(encoder, queries, docs) -> np.ndarray:
    q, d = encoder.encode_queries(queries).to_dicts(), encoder.encode_documents(docs).to_dicts()
    return np.array([[sum(w * b.get(t, 0.0) for t, w in a.items()) for b in d] for a in q])


def test_the_start_teacher_is_the_frozen_start_model_even_after_resume(adi, tmp_path, splade_tiny):
    cfg = {**SMALL, "distill": "kl", "teacher": START_TEACHER}
    pairs = pairs_from_titles(str(adi))
    Trainer(TrainConfig(out=str(tmp_path / "r"), steps=2, **cfg), pairs, str(adi)).train(show_progress_bar=False)
    assert all(json.loads(x)["distill"] > 0 for x in (tmp_path / "r" / "train_log.jsonl").read_text().splitlines())
    resumed = Trainer(TrainConfig(out=str(tmp_path / "r"), steps=3, **cfg), pairs, str(adi))
    assert resumed.step == 2
    queries, docs = ["information retrieval systems", "indexing"], ["automatic indexing of documents", "computer based retrieval systems"]
    start = _dots(splade_tiny, queries, docs)
    assert resumed.teacher_scores(queries, docs).numpy() == pytest.approx(start, rel=1e-4)
    assert not np.allclose(_dots(SpladeEncoder(str(tmp_path / "r")), queries, docs), start, rtol=1e-3)  # the student moved


def test_data_sources_and_query_halves(adi):
    pairs = pairs_from_qrels(str(adi))
    first, second = pairs_from_qrels(str(adi), half="first"), pairs_from_qrels(str(adi), half="second")
    assert len(first) + len(second) == len(pairs) and first and second
    assert not {p.query_id for p in first} & {p.query_id for p in second}
    assert all(query_half(p.query_id, "first") for p in first)
    titles = pairs_from_titles(str(adi))
    assert titles and all(p.query and p.positive and p.positive_id for p in titles)


def test_regularizer_and_schedule():
    v = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])
    assert float(flops(v)) == pytest.approx(2.0**2 + 0 + 1.0**2)
    idf = torch.tensor([0.5, 1.0, 4.0])
    assert float(flops(v, idf)) == pytest.approx((2.0 / 0.5) ** 2 + 0 + (1.0 / 4.0) ** 2)  # column means 2, 0, 1 over their IDF
    assert float(flops(v, torch.ones(3))) == pytest.approx(float(flops(v)))
    assert ramp(1e-3, 5, 10) == pytest.approx(1e-3 * 0.25) and ramp(1e-3, 20, 10) == 1e-3 and ramp(1e-3, 1, 0) == 1e-3


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "steps must be >= 1"), ({"negatives": "random"}, "negatives must be one of"),
    ({"distill": "margin-mse", "negatives": "none"}, "needs negatives"), ({"flops_query": -1.0}, "flops_query must be >= 0"),
    ({"flops_kind": "df"}, "flops_kind must be one of plain, idf"), ({"l0_mask": -1}, "l0_mask must be >= 0"),
    ({"query_weights": "idf"}, "query_weights must be one of"), ({"query_weights_lr": -1.0}, "query_weights_lr must be >= 0"),
])
def test_bad_settings_fail_before_any_work(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        Trainer(TrainConfig(out=str(tmp_path / "x"), **{**SMALL, **change}), [], None)
    assert not (tmp_path / "x").exists()


def test_negatives_need_a_corpus(tmp_path):
    from lsr.training.data import Pair

    with pytest.raises(DataError, match="mined from a corpus"):
        Trainer(TrainConfig(out=str(tmp_path / "x")), [Pair("q", "d")], None)


def test_l0_mask_leaves_short_documents_out_of_flops():
    v = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]], requires_grad=True)  # 2 and 1 non-zeros
    masked = flops(v, l0_mask=1)
    assert masked.item() == pytest.approx((1.0 / 2) ** 2 + 0 + (2.0 / 2) ** 2)  # row 1 zeroed, the mean still over 2 rows
    masked.backward()
    assert torch.all(v.grad[1] == 0) and torch.all(v.grad[0, [0, 2]] > 0)
    assert flops(v, l0_mask=2).item() == 0.0 and flops(v, l0_mask=0).item() == pytest.approx(flops(v).item())


def _idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def test_idf_aware_flops_weighs_by_the_training_corpus_idf(adi, tmp_path):
    texts = [d.contents for d in iter_corpus(adi / "corpus.jsonl")]
    trainer = Trainer(TrainConfig(out=str(tmp_path / "idf"), steps=1, flops_kind="idf", **{**SMALL, "flops_warmup": 0}),
                      pairs_from_qrels(str(adi)), str(adi))
    tok = trainer.tokenizer
    for word in ("the", "retrieval", "zebra"):
        t = tok.convert_tokens_to_ids(word)
        df = sum(t in set(tok(x, add_special_tokens=False)["input_ids"]) for x in texts)
        assert float(trainer.idf[t]) == pytest.approx(_idf(df, len(texts)), rel=1e-6), word
    record = trainer.train_step()
    assert record["flops_document"] > 0 and np.isfinite(record["loss"])


def _static_weights(folder) -> dict[str, float]:
    return json.loads((folder / IDF_FILE).read_text())


def test_learned_query_weights_are_an_idf_json_the_idf_json_encoder_searches_with(adi, tmp_path):
    pairs = pairs_from_qrels(str(adi))
    cfg = {**SMALL, "query_weights": "learned", "query_weights_lr": 0.05}
    trainer = Trainer(TrainConfig(out=str(tmp_path / "a"), steps=3, **cfg), pairs, str(adi))
    start = trainer.idf.numpy().copy()
    trainer.train(show_progress_bar=False)
    out = tmp_path / "a"
    table = _static_weights(out)
    vocab = trainer.tokenizer.get_vocab()
    moved = [t for t, w in table.items() if not np.isclose(w, start[vocab[t]], rtol=1e-6)]
    assert moved and all(np.isclose(w, start[vocab[t]], rtol=1e-6) for t, w in table.items() if t not in moved)
    encoder = InferenceFreeEncoder.from_pretrained(str(out))  # what --query-encoder idf-json loads
    query = next(p.query for p in pairs if set(encoder.encode_queries([p.query]).to_dict(0)) & set(moved))  # one trained on
    got = encoder.encode_queries([query]).to_dict(0)
    assert got == {t: pytest.approx(table[t]) for t in got}
    docs = list(iter_corpus(adi / "corpus.jsonl"))
    index = SparseIndex.build(SpladeEncoder(str(out)).encode_documents([d.contents for d in docs]), [d.id for d in docs], model=str(out))
    retriever = Retriever(index)
    result, direct = retriever.search(query, 5, query_encoder="idf-json"), retriever.search(got, 5)
    assert result.ids == direct.ids and result.scores == pytest.approx(direct.scores)
    # resumed: the weights continue exactly
    Trainer(TrainConfig(out=str(tmp_path / "b"), steps=1, **cfg), pairs, str(adi)).train(show_progress_bar=False)
    Trainer(TrainConfig(out=str(tmp_path / "b"), steps=3, **cfg), pairs, str(adi)).train(show_progress_bar=False)
    assert _static_weights(tmp_path / "b") == table


def test_learned_only_query_weights_leave_the_document_model_as_it_was(adi, tmp_path):
    cfg = {**SMALL, "query_weights": "learned-only", "query_weights_lr": 0.05}
    trainer = Trainer(TrainConfig(out=str(tmp_path / "q"), steps=2, **cfg), pairs_from_qrels(str(adi)), str(adi))
    start = trainer.idf.numpy().copy()
    trainer.train(show_progress_bar=False)
    before, after = _weights(splade_tiny_path()), _weights(tmp_path / "q")
    assert all(torch.equal(before[k], after[k]) for k in before)
    vocab = trainer.tokenizer.get_vocab()
    assert any(not np.isclose(w, start[vocab[t]], rtol=1e-6) for t, w in _static_weights(tmp_path / "q").items())


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory):
    """A tiny one-logit BertForSequenceClassification (splade-tiny's encoder config, random head), saved locally."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("cross") / "model"
    BertForSequenceClassification(BertConfig.from_pretrained(splade_tiny_path(), num_labels=1)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(splade_tiny_path()).save_pretrained(folder)
    return folder


def test_a_cross_encoder_teacher_scores_pairs_as_its_model_does(adi, tmp_path, cross_encoder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    assert is_cross_encoder(str(cross_encoder)) and not is_cross_encoder("all-MiniLM-L6-v2")
    pairs = pairs_from_titles(str(adi))
    for distill in ("kl", "margin-mse"):
        trainer = Trainer(TrainConfig(out=str(tmp_path / distill), steps=1, distill=distill, teacher=str(cross_encoder), **SMALL), pairs, str(adi))
        trainer.train(show_progress_bar=False)
        assert json.loads((tmp_path / distill / "train_log.jsonl").read_text().splitlines()[0])["distill"] > 0
    model, tok = AutoModelForSequenceClassification.from_pretrained(cross_encoder).eval(), AutoTokenizer.from_pretrained(cross_encoder)
    queries, docs = ["information retrieval systems", "indexing"], ["automatic indexing of documents", "computer based retrieval", "a third"]
    with torch.no_grad():
        direct = torch.tensor([[float(model(**tok(q, d, return_tensors="pt")).logits[0, 0]) for d in docs] for q in queries])
    got = trainer.teacher_scores(queries, docs)
    assert got.shape == (2, 3) and torch.allclose(got, direct, atol=1e-5) and direct.std() > 0
    rows, cols = torch.tensor([1, 0]), torch.tensor([2, 1])
    assert torch.allclose(trainer.teacher_scores(queries, docs, (rows, cols)), direct[rows, cols], atol=1e-5)


def test_a_classifier_with_more_labels_is_no_teacher(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    BertForSequenceClassification(BertConfig.from_pretrained(splade_tiny_path(), num_labels=3)).save_pretrained(tmp_path / "c")
    with pytest.raises(LsrError, match="3 labels"):
        is_cross_encoder(str(tmp_path / "c"))
