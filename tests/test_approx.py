"""Approximate search: knob validation, exactness at the no-pruning knobs, storage, auto-tuning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsr.data import SparseVectors, load_queries
from lsr.errors import DataError, IndexFormatError
from lsr.index import SparseIndex
from lsr.index.approx import ApproxSettings
from lsr.index.modes import APPROX
from lsr.retrieval import Retriever, SearchResult

VOCAB = [f"t{i}" for i in range(12)]
QUERY_CUT, HEAP_FACTOR = APPROX.knobs
NO_PRUNING = {"query_cut": int(QUERY_CUT.hi), "heap_factor": 0.0}
UNPRUNED = ApproxSettings(n_postings=None, centroid_fraction=0.3)


def random_index(n_docs: int, n_terms: int, seed: int, approx: ApproxSettings | bool = True, topics: int = 20) -> tuple[Retriever, list[dict]]:
    """Documents drawn around a few topics (so clustering has structure), and queries like them."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(n_terms)]
    centers = [rng.choice(n_terms, 30, replace=False) for _ in range(topics)]

    def row(length: int) -> dict[str, float]:
        c = centers[rng.integers(topics)]
        terms = set(rng.choice(c, min(length, 20), replace=False)) | set(rng.choice(n_terms, length // 3, replace=False))
        return {vocab[t]: float(rng.gamma(1.0)) for t in terms}

    rows = [row(int(rng.integers(5, 40))) for _ in range(n_docs)]
    index = Retriever.build(SparseVectors.from_dicts(rows, vocab), [f"d{i}" for i in range(n_docs)], quantization="u8", approx=approx)
    return index, [row(12) for _ in range(400)]


@pytest.fixture(scope="module")
def small() -> tuple[Retriever, list[dict]]:
    return random_index(3000, 400, seed=3, approx=ApproxSettings(n_postings=60, centroid_fraction=0.1))


@pytest.mark.parametrize(
    "knobs, message",
    [
        ({"query_cut": 0}, r"query_cut must be in \[1, 65536\], got 0"),
        ({"query_cut": 2.5}, r"query_cut must be a whole number in \[1, 65536\]"),
        ({"query_cut": 10**6}, r"query_cut must be in \[1, 65536\]"),
        ({"heap_factor": -0.1}, r"heap_factor must be in \[0, 1\], got -0.1"),
        ({"heap_factor": 1.5}, r"heap_factor must be in \[0, 1\], got 1.5"),
        ({"heap_factor": float("nan")}, r"heap_factor must be a number in \[0, 1\]"),
        ({"heap_factor": True}, r"heap_factor must be a number in \[0, 1\]"),
        ({"alpha": 0.5}, "mode 'approx' has no knob 'alpha' \\(its knobs: query_cut, heap_factor\\)"),
    ],
)
def test_knobs_outside_their_range_are_clear_errors(small, knobs, message):
    index, queries = small
    with pytest.raises(ValueError, match=message):
        index.search(queries[0], 10, mode="approx", **knobs)
    with pytest.raises(ValueError, match=message):  # the numeric layer checks them the same way
        index.index.search(index.encode_queries(queries[:1]), 10, mode="approx", **knobs)


def test_bad_modes_and_settings_are_clear_errors(small):
    index, queries = small
    with pytest.raises(ValueError, match="mode 'exact' has no knob 'heap_factor'"):
        index.search(queries[0], 10, mode="exact", heap_factor=0.5)
    with pytest.raises(ValueError, match="mode 'exhaustive' has no knob 'query_cut'"):
        index.search(queries[0], 10, mode="exhaustive", query_cut=5)
    plain, _ = random_index(50, 30, seed=1, approx=False)
    with pytest.raises(DataError, match="mode 'approx' needs the approx part.*lsr index --approx"):
        plain.search({"w1": 1.0}, 10, mode="approx")
    with pytest.raises(DataError, match="no approximate-search structure"):
        plain.index.search(plain.encode_queries([{"w1": 1.0}]), 10, mode="approx")
    with pytest.raises(DataError, match="no approximate-search structure"):
        plain.tune([{"w1": 1.0}], target_recall=0.9)
    for bad in ({"n_postings": 0}, {"centroid_fraction": 0.0}, {"summary_energy": 1.2}, {"max_fraction": 0.5}, {"doc_cut": 0}):
        with pytest.raises(ValueError, match=f"approx setting {next(iter(bad))} must be"):
            ApproxSettings(**bad)
    with pytest.raises(ValueError, match="target_recall must be in"):
        index.tune(index.encode_queries(queries[:5]), target_recall=1.5)


small_weights = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])


def impact_brute_force(sparse, queries: SparseVectors, k: int) -> list[tuple[list[int], list[float]]]:
    """Each query's top-k (rows, scores) by brute force over the quantized impacts approx search
    scores (exact modes score the float weights), in dot_row's order: float32 products, the
    j-th of a row's whole 16-entry chunks into lane j % 16, lanes added pairwise, then the
    remaining len % 16 products one by one; scaled in float64; ties to the lower row."""
    entry_ptr, fwd_terms, fwd_impacts = sparse.approx.forward_entries()
    q = sparse.prepare(queries)
    starts, lengths = entry_ptr[:-1], np.diff(entry_ptr)
    chunked = lengths - lengths % 16
    out = []
    for i in range(len(q)):
        qdense = np.zeros(len(sparse.vocab), np.float32)
        qdense[q.row(i)[0]] = q.row(i)[1]
        lanes = np.zeros((16, sparse.num_docs), np.float32)
        tails = []
        for j in range(int(lengths.max(initial=0))):  # the j-th term of every document at once, in float32
            has = lengths > j
            e = starts[has] + j
            prod = np.zeros(sparse.num_docs, np.float32)
            prod[has] = qdense[fwd_terms[e]] * fwd_impacts[e].astype(np.float32)
            in_chunk = has & (j < chunked)
            lanes[j % 16, in_chunk] += prod[in_chunk]
            tails.append((has & ~in_chunk, prod))
        while len(lanes) > 1:
            lanes = lanes[0::2] + lanes[1::2]
        s = lanes[0]
        for tail, prod in tails:
            s[tail] += prod[tail]
        rows = np.flatnonzero(s > 0)
        top = rows[np.lexsort((rows, -s[rows]))][:k]
        out.append((top.tolist(), (s[top].astype(np.float64) * sparse.scale).tolist()))
    return out


def as_result(index: Retriever, hits: tuple[list[int], list[float]]) -> tuple[list[str], list[float]]:
    return [index.doc_ids[r] for r in hits[0]], hits[1]


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.dictionaries(st.sampled_from(VOCAB), small_weights, max_size=6), min_size=1, max_size=40),
    query=st.dictionaries(st.sampled_from(VOCAB), st.integers(0, 4).map(float), max_size=6),
    k=st.integers(1, 45),
    centroid_fraction=st.sampled_from([0.05, 0.5, 1.0]),
)
def test_no_pruning_knobs_return_the_exhaustive_top_k_with_ties(rows, query, k, centroid_fraction):
    """Few distinct weights make many exact ties: ids, order and scores must all match the brute
    force over the impacts; the ids are the exhaustive mode's (which scores the float weights)."""
    vecs = SparseVectors.from_dicts(rows, VOCAB)
    index = Retriever.build(vecs, [f"d{i}" for i in range(len(rows))], approx=ApproxSettings(n_postings=None, centroid_fraction=centroid_fraction))
    expected = as_result(index, impact_brute_force(index.index, index.encode_queries([query]), k)[0])
    for found in (index.search(query, k, mode="approx", **NO_PRUNING),
                  index.search_batch([query, {}], k, mode="approx", **NO_PRUNING)[0]):
        assert (found.ids, found.scores) == expected


def test_no_pruning_knobs_return_the_exhaustive_top_k_on_adi(adi, adi_index):
    index = Retriever.load(adi_index)
    index.index.add_approx(UNPRUNED)
    texts = [q.text for q in load_queries(adi)]
    brute = impact_brute_force(index.index, index.encode_queries(texts), 100)
    for k in (1, 10, 100):
        found = index.search_batch(texts, k, mode="approx", **NO_PRUNING)
        assert [(r.ids, r.scores) for r in found] == [as_result(index, (b[0][:k], b[1][:k])) for b in brute]
    one = index.search(texts[0], 10, mode="approx", **NO_PRUNING)
    assert (one.ids, one.scores) == as_result(index, (brute[0][0][:10], brute[0][1][:10]))


def recall_at_k(found, truth) -> float:
    """Mean recall of ``found`` against the exhaustive top-k ``truth`` (queries with hits only)."""
    return float(np.mean([len(set(f.ids) & set(t.ids)) / len(t.ids) for f, t in zip(found, truth) if t.ids]))


def test_static_pruning_keeps_the_heaviest_n_postings_times_the_vocabulary():
    """As Seismic counts it: n_postings x vocabulary size postings overall (terms that never occur
    count too), the heaviest, at most max_fraction x n_postings a term (its heaviest)."""
    from lsr.index.approx import build_approx

    rng = np.random.default_rng(7)
    n_docs, vocab_size = 400, 300  # terms 200..299 never occur
    rows = [{f"t{t}": float(rng.gamma(1.0)) for t in rng.choice(200, int(rng.integers(3, 30)), replace=False)}
            for _ in range(n_docs)]
    vecs = SparseVectors.from_dicts(rows, [f"t{i}" for i in range(vocab_size)])
    settings = ApproxSettings(n_postings=5, max_fraction=2.0)
    impacts = np.ones_like(vecs.indices, dtype=np.uint8)
    approx, stats = build_approx(vecs.indptr, vecs.indices, vecs.values, vocab_size, impacts, settings)
    budget, cap = 5 * vocab_size, 10
    threshold = np.sort(vecs.values)[::-1][budget - 1]
    doc_of = np.repeat(np.arange(n_docs), np.diff(vecs.indptr))
    for t in range(vocab_size):
        at = vecs.indices == t
        w, d = vecs.values[at], doc_of[at]
        keep = np.lexsort((d, -w))[: cap]
        keep = keep[w[keep] >= threshold]
        blocks = slice(approx.lst_blk_ptr[t], approx.lst_blk_ptr[t + 1] + 1)
        lo, hi = approx.blk_doc_ptr[blocks][[0, -1]] if approx.lst_blk_ptr[t + 1] > approx.lst_blk_ptr[t] else (0, 0)
        assert sorted(approx.blk_docs[lo:hi].tolist()) == sorted(d[keep].tolist()), t
    assert 0 < stats["kept_postings"] <= budget

@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, -0.0, 1e-30, 0.5, 1.0, 1.0000001, 3.5, 1e30]) | st.floats(0, 100, width=32), min_size=1,
                max_size=300), st.data())
def test_the_pruning_threshold_is_the_order_statistic_np_partition_gives(values, data):
    from lsr.index.kernels.approx_build import kth_smallest

    w = np.array(values, dtype=np.float32)
    k = data.draw(st.integers(0, len(w) - 1))
    assert kth_smallest(w, k) == np.partition(w, k)[k]



def test_pruning_knobs_trade_recall_for_work(small):
    index, queries = small
    texts = queries[:100]
    q = index.encode_queries(texts)
    brute = [as_result(index, b) for b in impact_brute_force(index.index, q, 3000)]  # what approx scores: the impacts
    truth = [SearchResult(ids[:10], scores[:10]) for ids, scores in brute]
    full = [dict(zip(ids, scores)) for ids, scores in brute]
    # from no pruning to very tight: work falls and recall@10 against the exhaustive top-10 with it
    ladder = [(65536, 0.0), (10, 0.8), (5, 0.9), (3, 1.0), (1, 1.0)]
    work, recall = [], []
    for cut, hf in ladder:
        work.append(index.index.approx_work(q, 10, query_cut=cut, heap_factor=hf))
        found = index.search_batch(texts, 10, mode="approx", query_cut=cut, heap_factor=hf)
        recall.append(recall_at_k(found, truth))
        # the scores returned are true scores even when the set is approximate, ranked by them
        for r, exact in zip(found, full):
            assert r.scores == [exact[d] for d in r.ids] and r.scores == sorted(r.scores, reverse=True)
    loose, tight = work[0], work[3]
    assert tight["docs_scored"] < loose["docs_scored"] and tight["blocks_skipped"] > 0 == loose["blocks_skipped"]
    assert all(a["docs_scored"] >= b["docs_scored"] and a["doc_entries"] >= b["doc_entries"] for a, b in zip(work, work[1:]))
    assert all(a >= b for a, b in zip(recall, recall[1:])), recall
    assert recall[0] >= 0.99  # no search-time pruning: only the build's pruning of the lists costs anything
    assert 0.8 <= recall[3] < recall[0], recall  # query_cut=3, heap_factor=1: cheaper, and it shows
    assert recall[-1] < recall[3]  # one list only: much cheaper still, and worse


def test_tuning_keeps_three_standard_errors_of_recall_to_spare():
    from lsr.index.approx import TunedPoint, pick_cheapest, recall_at_k

    mean, se = recall_at_k([[1, 2], [1, 9], [9, 8]], [[1, 2], [1, 2], [1, 2]])
    per_query = np.array([1.0, 0.5, 0.0])
    assert mean == pytest.approx(0.5) and se == pytest.approx(per_query.std(ddof=1) / np.sqrt(3))
    just, safe = TunedPoint(3, 1.0, 0.960, 10.0, 0.004), TunedPoint(5, 1.0, 0.964, 20.0, 0.004)
    assert pick_cheapest([just, safe], 0.95) is safe  # 0.960 is 2.5 standard errors above 0.95 only
    assert pick_cheapest([just, safe], 0.948) is just
    best = pick_cheapest([just, safe], 0.99)  # none reaches it: the most accurate, flagged
    assert (best.knobs(), best.recall, best.reached) == (safe.knobs(), safe.recall, False)
    assert safe.reached and pick_cheapest([safe], 0.952).reached


def test_saved_index_answers_both_modes_and_keeps_tuned_knobs(tmp_path, small):
    index, queries = small
    q = index.encode_queries(queries[:40])
    tuned = index.tune(q, target_recall=0.9)
    index.save(tmp_path / "ix")
    loaded = Retriever.load(tmp_path / "ix", verify=True)
    assert loaded.index.approx_knobs() == tuned.knobs()
    for mode in ("exact", "approx"):
        assert loaded.search_batch(queries[:40], 10, mode=mode) == index.search_batch(queries[:40], 10, mode=mode)
    assert loaded.info()["approx"]["tuned"]["knobs"] == tuned.knobs()
    loaded.index.add_approx(ApproxSettings(n_postings=30))  # a rebuild drops knobs tuned on the old structure
    assert "tuned" not in loaded.manifest["approx"]


def test_the_index_and_its_files_do_not_depend_on_the_build_and_save_threads(tmp_path):
    """Lists are clustered and files written on several threads: the result is the one-thread one."""
    rng = np.random.default_rng(5)
    rows = [{f"w{t}": float(rng.gamma(1.0)) for t in rng.choice(300, int(rng.integers(3, 30)), replace=False)} for _ in range(2000)]
    vectors, ids = SparseVectors.from_dicts(rows, [f"w{i}" for i in range(300)]), [f"d{i}" for i in range(2000)]
    files = {}
    for threads in (1, 3):
        index = SparseIndex.build(vectors, ids, quantization="u8", approx=ApproxSettings(n_postings=40), threads=threads)
        index.save(tmp_path / str(threads), threads=threads)
        files[threads] = {name: entry["sha256"] for name, entry in index.manifest["files"].items()}
        assert index.approx.n_blocks > 300  # most lists have several blocks: the spans split real work
    assert files[1] == files[3]
    assert len(files[1]) == len(list((tmp_path / "1").iterdir())) - 1  # every file but the manifest is hashed
    loaded = Retriever.load(tmp_path / "3", verify=True)
    q = loaded.encode_queries(rows[:20])
    assert loaded.search_encoded(q, 10, mode="approx") == Retriever.load(tmp_path / "1").search_encoded(q, 10, mode="approx")


@pytest.mark.parametrize("target", [0.8, 0.95])
def test_auto_tune_reaches_its_target_on_held_out_queries(small, target):
    index, queries = small
    tune, held_out = queries[:200], queries[200:]
    point = index.tune(index.encode_queries(tune), target_recall=target)
    assert point.recall >= target
    assert point.knobs() != {"query_cut": 65536, "heap_factor": 0.0}  # it found something cheaper
    truth = index.search_batch(held_out, 10, mode="exhaustive")
    found = index.search_batch(held_out, 10, mode="approx")  # the tuned defaults
    recall = np.mean([len(set(f.ids) & set(t.ids)) / len(t.ids) for f, t in zip(found, truth) if t.ids])
    assert recall >= target, recall


def test_cli_tune_then_search_both_modes(adi, adi_index, tmp_path):
    import json
    import shutil

    from conftest import run_cli

    index_dir = tmp_path / "adi"
    shutil.copytree(adi_index, index_dir)
    tuned = json.loads(run_cli("tune", "--index", str(index_dir), "--queries", str(adi), "--target", "0.9", "--n-postings", "0").stdout)
    assert tuned["chosen"]["recall"] >= 0.9 and tuned["approx"]["settings"]["n_postings"] is None
    # `lsr index` wrote a collection: the tuned structure is saved in its segment, and the
    # collection now records the approx settings (for the segments later commits write)
    info = json.loads(run_cli("info", "--index", str(index_dir), "--json", "--verify").stdout)
    assert info["approx"] is not None and info["approx"]["n_postings"] is None and len(info["segments"]) == 1
    assert Retriever.load(index_dir).index.manifest["approx"] == tuned["approx"]
    query = ["--index", str(index_dir), "--query", "computer information retrieval", "-k", "5", "--json"]
    approx = json.loads(run_cli("search", *query, "--mode", "approx", "--query-cut", "65536", "--heap-factor", "0").stdout)
    exhaustive = json.loads(run_cli("search", *query, "--mode", "exhaustive").stdout)  # float weights: same ids here
    assert [h["id"] for h in approx["hits"]] == [h["id"] for h in exhaustive["hits"]]
    bad = run_cli("search", *query, "--mode", "approx", "--heap-factor", "2", check=False)
    assert bad.returncode == 2 and "heap_factor must be in [0, 1], got 2" in bad.stderr
    assert tuned["chosen"]["reached"] and tuned["approx"]["tuned"]["reached"]
    short = run_cli("tune", "--index", str(index_dir), "--queries", str(adi), "--target", "0.999", "--rebuild", "--n-postings", "1")
    assert not json.loads(short.stdout)["approx"]["tuned"]["reached"]  # one posting per list cannot reach it: said, and stored
    assert "no knobs reach recall 0.999" in short.stderr and "larger --n-postings" in short.stderr


def test_service_approx_mode_with_knobs(small):
    from fastapi.testclient import TestClient

    from lsr.service import create_app

    index, queries = small
    with TestClient(create_app(index)) as client:
        body = {"vector": queries[0], "k": 5, "mode": "approx", "knobs": {"query_cut": 65536, "heap_factor": 0}}
        r = client.post("/search", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == index.search(queries[0], 5, mode="exhaustive").ids
        r = client.post("/search", json={**body, "knobs": {"heap_factor": 1.5}})
        assert r.status_code == 422 and "heap_factor" in r.text


# ---- the thin single-query entry point, the compact forward index and older layouts ------
raw_pairs = st.lists(st.tuples(st.integers(0, len(VOCAB) - 1), st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0])), max_size=10)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.dictionaries(st.sampled_from(VOCAB), small_weights, max_size=6), min_size=1, max_size=40),
       pairs=raw_pairs, k=st.integers(1, 45))
def test_thin_searcher_takes_raw_queries_as_search_does(rows, pairs, k):
    """Unsorted, repeated terms and weights <= 0 in one raw query: the kernel's own preparation
    gives what SparseIndex.prepare gives, and the no-pruning answer is the exhaustive one."""
    vecs = SparseVectors.from_dicts(rows, VOCAB)
    sparse = Retriever.build(vecs, [f"d{i}" for i in range(len(rows))], approx=UNPRUNED).index
    terms = np.array([t for t, _ in pairs], dtype=np.int32)
    weights = np.array([w for _, w in pairs], dtype=np.float32)
    query = SparseVectors(np.array([0, len(pairs)]), terms, weights, VOCAB)
    (expected,) = impact_brute_force(sparse, query, k)
    rows_, scores = sparse.approx_searcher(k, **NO_PRUNING).search(terms, weights)
    assert (rows_.tolist(), scores.tolist()) == expected
    (thin,) = sparse.search(query, k, mode="approx", **NO_PRUNING)  # one query: the same kernel path
    (batch, _) = sparse.search(SparseVectors.concat([query, query]), k, mode="approx", threads=2, **NO_PRUNING)
    for hits in (thin, batch):
        assert (hits.rows.tolist(), hits.scores.tolist()) == expected


def test_thin_searcher_refuses_bad_queries_and_reuses_its_buffers(small):
    index, queries = small
    sparse = index.index
    searcher = sparse.approx_searcher(5, query_cut=5, heap_factor=0.9)
    with pytest.raises(DataError, match="query term id 400 is outside the vocabulary"):
        searcher.search(np.array([1, 400], np.int32), np.array([1.0, 1.0], np.float32))
    with pytest.raises(DataError, match="query term id -3 is outside the vocabulary"):
        searcher.search(np.array([-3], np.int32), np.array([1.0], np.float32))
    with pytest.raises(DataError, match="query weights must be finite"):
        searcher.search(np.array([1], np.int32), np.array([np.nan], np.float32))
    q = index.encode_queries(queries[:30])
    expected = sparse.search(q, 5, mode="approx", query_cut=5, heap_factor=0.9)
    long_query = (np.arange(400, dtype=np.int32), np.ones(400, np.float32))  # longer than its first buffers
    for _ in range(2):
        assert searcher.search(*long_query)[0].tolist() == sparse.search(
            SparseVectors(np.array([0, 400]), *long_query, sparse.vocab), 5, mode="approx", query_cut=5, heap_factor=0.9)[0].rows.tolist()
        for i, hits in enumerate(expected):
            found_rows, found_scores = searcher.search(*q.row(i))
            assert found_rows.tolist() == hits.rows.tolist() and found_scores.tolist() == hits.scores.tolist()
    assert searcher.s.visited.sum() == 0 and searcher.s.qdense.sum() == 0  # left as found
    plain, _ = random_index(50, 30, seed=1, approx=False)
    with pytest.raises(DataError, match="no approximate-search structure"):
        plain.index.approx_searcher(5)


def _layout_3_runs(approx) -> dict[str, np.ndarray]:
    """The summary runs of a structure as layouts 1-3 stored them: per summary term its first
    entry relative to its list's (approx_comp_start), per list its range of entries
    (approx_lst_ent_ptr), one plain block id per entry (approx_ent_blk)."""
    from lsr.index.kernels import bits

    n = approx.n_entries
    starts = np.flatnonzero(bits.unpack_flags(approx.ent_first, n))
    lst_ent_ptr = np.append(starts, n)[approx.lst_comp_ptr]
    list_of_comp = np.repeat(np.arange(approx.lst_comp_ptr.shape[0] - 1), np.diff(approx.lst_comp_ptr))
    return {"approx_comp_start": (starts - lst_ent_ptr[list_of_comp]).astype(np.uint16), "approx_lst_ent_ptr": lst_ent_ptr,
            "approx_ent_blk": bits.unpack_fields(approx.ent_blk, n, approx.blk_bits).astype(np.uint8)}


def _rewrite(path, manifest: dict, drop: list[str], files: dict[str, np.ndarray], layout: int | None) -> None:
    """Replace array files of a saved index (manifest entries too) and set its approx layout."""
    import json

    from lsr.index.storage import sha256_file

    for name in drop:
        (path / f"{name}.npy").unlink()
        del manifest["files"][f"{name}.npy"]
    for name, arr in files.items():
        np.save(path / f"{name}.npy", arr)
        manifest["files"][f"{name}.npy"] = {"bytes": (path / f"{name}.npy").stat().st_size, "sha256": sha256_file(path / f"{name}.npy")}
    if layout is None:
        manifest["approx"].pop("layout", None)
    else:
        manifest["approx"]["layout"] = layout
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("layout", [1, 2, 3])
def test_an_index_of_a_previous_approx_layout_loads_and_answers_the_same(tmp_path, small, layout):
    """Layout 1 had no compact forward index of its own (the exact one's rows and terms, with
    approx_fwd_impacts); layout 2 kept terms and impacts apart (approx_fwd_ptr, approx_fwd_terms,
    approx_fwd_impacts); layouts 1-3 stored each summary run's offset and plain block ids. All
    are converted on load, into the arrays layout 4 writes."""
    import json

    index, queries = small
    path = index.save(tmp_path / "ix")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["approx"]["layout"] == 4
    approx = index.index.approx
    entry_ptr, terms, impacts = approx.forward_entries()
    old_files = _layout_3_runs(approx)
    drop = ["approx_comp_ckpt", "approx_ent_first", "approx_ent_blk"]
    if layout < 3:
        old_files.update({"approx_fwd_impacts": impacts} if layout == 1 else {"approx_fwd_ptr": entry_ptr, "approx_fwd_terms": terms,
                                                                            "approx_fwd_impacts": impacts})
        drop += ["approx_fwd_ptr", "approx_fwd_rows"]
    _rewrite(path, manifest, drop, old_files, None if layout == 1 else layout)
    old = Retriever.load(path)
    assert old.index.approx.fwd_rows.dtype == np.uint16
    assert all(np.array_equal(a, b) for a, b in zip(old.index.approx.forward_entries(), (entry_ptr, terms, impacts)))
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(old.index.approx.kernel_args(), approx.kernel_args())
               if isinstance(a, np.ndarray))
    for knobs in ({"query_cut": 5, "heap_factor": 0.9}, NO_PRUNING):
        assert old.search_batch(queries[:30], 10, mode="approx", **knobs) == index.search_batch(queries[:30], 10, mode="approx", **knobs)
        assert old.search(queries[0], 10, mode="approx", **knobs) == index.search(queries[0], 10, mode="approx", **knobs)
    manifest["approx"]["layout"] = 7
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="approx entry has layout 7; this lsr reads layouts 1 to 4"):
        Retriever.load(path)


@pytest.mark.parametrize("damage, message", [
    (lambda f: {"approx_comp_start": f["approx_comp_start"] + 1}, "approx_comp_start does not split"),
    (lambda f: {"approx_comp_start": np.zeros_like(f["approx_comp_start"])}, "approx_comp_start does not split"),
    (lambda f: {"approx_lst_ent_ptr": np.minimum(f["approx_lst_ent_ptr"] * 2, f["approx_lst_ent_ptr"][-1])},
     "approx_(lst_ent_ptr|comp_start)"),
    (lambda f: {"approx_ent_blk": np.where(np.arange(f["approx_ent_blk"].size) == 0, 255, f["approx_ent_blk"]).astype(np.uint8)},
     "approx_ent_blk names a block outside its list"),
    (lambda f: {"approx_ent_blk": f["approx_ent_blk"].astype(np.int16)}, "approx_ent_blk has dtype int16"),
])
def test_a_damaged_structure_of_layout_3_is_a_clean_error(tmp_path, small, damage, message):
    """Converting reads the old arrays: they are checked first, and refused with a clear error."""
    import json

    index, _ = small
    path = index.save(tmp_path / "ix")
    manifest = json.loads((path / "manifest.json").read_text())
    files = _layout_3_runs(index.index.approx)
    _rewrite(path, manifest, ["approx_comp_ckpt", "approx_ent_first", "approx_ent_blk"], {**files, **damage(files)}, 3)
    with pytest.raises(IndexFormatError, match=message):
        Retriever.load(path)


@pytest.mark.parametrize("name, damage, message", [
    ("approx_fwd_rows", lambda a: np.where(np.arange(a.size) == 0, 399 + 1, a).astype(a.dtype), "approx_fwd_rows holds values outside"),
    ("approx_fwd_rows", lambda a: a[::-1].copy(), "approx_fwd_rows (holds values outside|does not ascend within a row)"),
    ("approx_fwd_ptr", lambda a: np.where(np.arange(a.size) == 5, a[-1] + 9, a), "approx_fwd_ptr decreases"),
    ("approx_fwd_ptr", lambda a: a - 1, "approx_fwd_ptr runs from -1"),
    ("approx_fwd_ptr", lambda a: np.where(np.arange(a.size) == 5, a[5] + 1, a), "lengths no packed row has"),
    ("approx_blk_docs", lambda a: np.where(np.arange(a.size) == 0, 3000, a).astype(a.dtype), "approx_blk_docs holds values outside"),
    ("approx_ent_first", lambda a: a & ~np.uint64(1), r"approx_ent_first marks \d+ runs \(the first at entry \[[1-9]"),
    ("approx_ent_first", lambda a: a | np.uint64(0b110), r"approx_ent_first marks \d+ runs|approx_comp_ckpt does not give"),
    ("approx_ent_first", lambda a: a ^ a, "approx_ent_first marks 0 runs"),
    ("approx_comp_ckpt", lambda a: a + 1, "approx_comp_ckpt does not give"),
    ("approx_ent_blk", lambda a: ~a, "approx_ent_blk names a block outside its list"),
])
def test_a_damaged_approx_structure_is_a_clean_error(tmp_path, small, name, damage, message):
    index, _ = small
    path = index.save(tmp_path / "ix")
    np.save(path / f"{name}.npy", damage(np.load(path / f"{name}.npy")))  # same size: only the structural checks see it
    with pytest.raises(IndexFormatError, match=message):
        Retriever.load(path)


def _lane_order_dot(q: np.ndarray, terms: np.ndarray, impacts: np.ndarray) -> np.float32:
    """dot_row's definition in numpy: the j-th product of the whole 16-entry chunks into lane
    j % 16, lanes added pairwise, then the remaining products one by one (all float32)."""
    prod = q[terms.astype(np.int64)] * impacts.astype(np.float32)
    whole = len(prod) // 16 * 16
    lanes = np.zeros(16, np.float32)
    for j in range(whole):
        lanes[j % 16] += prod[j]
    while len(lanes) > 1:
        lanes = lanes[0::2] + lanes[1::2]
    s = lanes[0]
    for p in prod[whole:]:
        s = np.float32(s + p)
    return s


@pytest.mark.parametrize("term_dtype, vocab", [(np.uint8, 200), (np.uint16, 30_000), (np.uint32, 200_000)])
@pytest.mark.parametrize("impact_dtype", [np.uint8, np.uint16])
def test_dot_row_follows_its_lane_order_for_every_dtype(term_dtype, vocab, impact_dtype):
    """The vector-gather score of a row equals its written definition, bit for bit, for every
    term and impact width the indexes use, every tail length, and rows that start anywhere."""
    import numba as nb

    from lsr.index.kernels.forward import dot_row

    score = nb.njit(lambda q, t, i, lo, hi: dot_row(q, t, i, lo, hi))
    rng = np.random.default_rng(1)
    q = rng.random(vocab).astype(np.float32)
    for n in (0, 1, 15, 16, 17, 33, 100):
        terms = np.sort(rng.choice(vocab, n + 3, replace=False)).astype(term_dtype)
        impacts = rng.integers(0, np.iinfo(impact_dtype).max, n + 3).astype(impact_dtype)
        assert score(q, terms, impacts, 3, n + 3) == _lane_order_dot(q, terms[3:], impacts[3:]), n


@pytest.mark.parametrize("vocab", [200, 30_000, 200_000])
@pytest.mark.parametrize("impact_dtype", [np.uint8, np.uint16])
def test_packed_rows_score_and_unpack_as_the_rows_they_were_made_of(vocab, impact_dtype):
    """Each document's terms then impacts in one run of words: every row length (so every
    padding), every word width (never narrower than the impacts), the same float as dot_row
    scores the unpacked row, and forward_entries gives back the CSR rows."""
    import dataclasses

    import numba as nb

    from lsr.index.approx import ApproxIndex, packed_forward
    from lsr.index.kernels.forward import dot_packed

    score = nb.njit(lambda q, rows, imp, lo, hi: dot_packed(q, rows, imp, lo, hi))
    rng = np.random.default_rng(2)
    lengths = np.array([0, 1, 2, 3, 4, 5, 15, 16, 17, 33, 100, 0, 7])
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    terms = np.concatenate([np.sort(rng.choice(vocab, n, replace=False)) for n in lengths]).astype(np.int32)
    impacts = rng.integers(1, np.iinfo(impact_dtype).max, terms.size).astype(impact_dtype)
    packed = packed_forward(indptr, terms, impacts, vocab)
    assert packed["fwd_rows"].itemsize >= np.dtype(impact_dtype).itemsize
    assert packed["fwd_rows"].itemsize == max(1 if vocab <= 256 else 2 if vocab <= 65536 else 4, np.dtype(impact_dtype).itemsize)
    empty = {f.name: None for f in dataclasses.fields(ApproxIndex) if not f.name.startswith("fwd_")}
    entry_ptr, got_terms, got_impacts = ApproxIndex(**packed, **empty).forward_entries()
    assert np.array_equal(entry_ptr, indptr) and np.array_equal(got_terms, terms) and np.array_equal(got_impacts, impacts)
    q = rng.random(vocab).astype(np.float32)
    ptr = packed["fwd_ptr"]
    for d in range(len(lengths)):
        lo, hi = indptr[d], indptr[d + 1]
        assert score(q, packed["fwd_rows"], packed["fwd_impacts"], ptr[d], ptr[d + 1]) == _lane_order_dot(q, terms[lo:hi], impacts[lo:hi]), d


@settings(max_examples=60, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=1, max_size=300), width=st.integers(1, 20), data=st.data())
def test_bit_fields_and_start_bits_read_back_what_was_packed(flags, width, data):
    """The summaries' bit fields: unpacking gives the packed values for every width and length,
    and the run-start search finds the same bit numpy does, across word boundaries."""
    import numba as nb

    from lsr.index.kernels import bits

    values = np.array(data.draw(st.lists(st.integers(0, 2**width - 1), min_size=len(flags), max_size=len(flags))), np.int64)
    assert bits.unpack_fields(bits.pack_fields(values, width), len(values), width).tolist() == values.tolist()
    flags = np.array(flags + [True])  # the end sentinel, as the structure stores it
    words = bits.pack_flags(flags)
    assert bits.unpack_flags(words, len(flags)).tolist() == flags.tolist()
    set_at = np.flatnonzero(flags)
    pos = data.draw(st.integers(0, len(flags) - 1))
    next_set = nb.njit(lambda w, p: bits.next_set(w, p))
    assert next_set(words, pos) == set_at[set_at >= pos][0]
    after = set_at[set_at > pos]
    if after.size:
        r = data.draw(st.integers(1, after.size))
        assert nb.njit(lambda w, p, r: bits.nth_set_after(w, p, r))(words, pos, r) == after[r - 1]
