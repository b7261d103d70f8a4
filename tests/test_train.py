"""`lsr train`: a few steps on ADI give a Hugging Face folder `lsr index --model DIR` loads whose
vectors differ from the start model's; a resumed run equals an uninterrupted one; bad settings fail first."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from lsr.encoders import SpladeEncoder
from lsr.errors import DataError
from lsr.training.config import START_TEACHER, TrainConfig
from lsr.training.data import pairs_from_qrels, pairs_from_titles, query_half
from lsr.training.trainer import Trainer, flops, ramp

SMALL = dict(batch_size=4, max_length=48, query_max_length=16, negatives_depth=10, lr=5e-4, warmup_steps=0, flops_warmup=4, seed=3)


def _weights(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_a_few_steps_give_a_loadable_model_with_new_vectors(adi, tmp_path, splade_tiny):
    out = tmp_path / "run"
    run_cli("train", "--qrels", str(adi), "--out", str(out), "--steps", "4", "--batch-size", "4", "--max-length", "48",
            "--query-max-length", "16", "--lr", "5e-4", "--warmup-steps", "0", "--flops-warmup", "2", "--negatives-depth", "10")
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
    assert ramp(1e-3, 5, 10) == pytest.approx(1e-3 * 0.25) and ramp(1e-3, 20, 10) == 1e-3 and ramp(1e-3, 1, 0) == 1e-3


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "steps must be >= 1"), ({"negatives": "random"}, "negatives must be one of"),
    ({"distill": "margin-mse", "negatives": "none"}, "needs negatives"), ({"flops_query": -1.0}, "flops_query must be >= 0"),
])
def test_bad_settings_fail_before_any_work(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        Trainer(TrainConfig(out=str(tmp_path / "x"), **{**SMALL, **change}), [], None)
    assert not (tmp_path / "x").exists()


def test_negatives_need_a_corpus(tmp_path):
    from lsr.training.data import Pair

    with pytest.raises(DataError, match="mined from a corpus"):
        Trainer(TrainConfig(out=str(tmp_path / "x")), [Pair("q", "d")], None)
