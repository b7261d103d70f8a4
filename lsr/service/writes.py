"""Write endpoints of a writable collection: upsert, get, delete, commit.

The durability contract (also in the OpenAPI description): a 200 from ``POST /documents`` or a
delete means the whole batch was validated and buffered; it is durable once a commit that
covers it has returned, which is ``POST /commit``, a write with ``?commit=true`` (the response
then comes after the commit), or the automatic commit after ``commit_docs`` buffered changes
or ``commit_ms`` milliseconds. A batch with one bad document is refused whole (422 naming its
position and id): nothing of it is written.
"""


from collections.abc import Callable
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Query as Param
from pydantic import Field, StringConstraints
from starlette.exceptions import HTTPException

from lsr.data.beir import Document
from lsr.data.files import ID_PATTERN, MAX_ID_CHARS
from lsr.retrieval.collection import Collection

MAX_DOCUMENTS = 1000  # per POST /documents
MAX_DELETE_IDS = 10_000

DURABILITY = (
    "A 200 means the whole batch was validated and buffered; it becomes durable (survives a crash) "
    "when a commit covering it returns: `POST /commit`, a write with `?commit=true` (answered after "
    "that commit), or the automatic commit after `commit_docs` changes or `commit_ms` milliseconds. "
    "A batch with a bad document is refused whole (422 naming its position and id)."
)


def register(app: FastAPI, *, ready: Callable, in_thread: Callable, read_key: list, write_key: list, errors: dict,
             limits: Any, stats: Any) -> Callable[[Any], Any]:
    """Add the write routes to ``app``; returns the auto-commit loop to run beside the server."""
    from lsr.service.app import MAX_TERMS, MAX_TEXT_CHARS, ApiModel, ErrorResponse, Term, Weight, log

    class DocumentIn(ApiModel):
        """One document: ``text`` (encoded by the collection's model) or a ``vector``."""

        id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)]
        title: Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)] = ""
        text: Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)] | None = None
        metadata: dict[str, Any] = Field(default_factory=dict, description="JSON object stored with the document and filterable.")
        vector: dict[Term, Weight] | None = Field(None, max_length=MAX_TERMS, description="Term weights, instead of text.")

    class DocumentsRequest(ApiModel):
        documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS)

    class WriteResponse(ApiModel):
        accepted: int
        pending: int = Field(description="Buffered changes not yet committed.")
        generation: int = Field(description="The committed generation searches now read.")
        committed: bool = Field(description="Whether this batch is durable already.")

    class DeleteRequest(ApiModel):
        ids: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]] = Field(min_length=1, max_length=MAX_DELETE_IDS)

    class DeleteResponse(ApiModel):
        deleted: list[str]
        not_found: list[str] = Field(description="Ids that were neither stored nor buffered: reported, never ignored.")
        pending: int
        generation: int
        committed: bool

    class CommitResponse(ApiModel):
        generation: int
        num_docs: int

    class DocumentOut(ApiModel):
        id: str
        title: str
        text: str
        metadata: dict[str, Any]

    def collection(retriever: Any) -> Collection:
        c = retriever.collection
        if c is None or not c.writable:
            raise HTTPException(405, "this server is read-only: start it with `lsr serve --writable` on a collection")
        return c

    def commit(c: Collection) -> int:
        stats.commits += 1
        return c.commit()

    def after_write(c: Collection, now: bool) -> tuple[int, bool]:
        if now or c.pending >= limits.commit_docs:
            return commit(c), True
        return c.snapshot().generation, False

    write_errors = {**errors, 405: {"model": ErrorResponse, "description": "The server is read-only."}}
    missing = {404: {"model": ErrorResponse, "description": "No such document (or the index stores none)."}}
    Ready = Annotated[Any, Depends(ready)]
    CommitNow = Annotated[bool, Param(alias="commit", description="Answer only after a commit that makes this batch durable.")]

    @app.post("/documents", response_model=WriteResponse, responses=write_errors, dependencies=write_key, tags=["documents"],
              description="Add or replace (upsert) documents; an id given twice in one batch is written as its last "
                          "occurrence (as a bulk request of OpenSearch does). " + DURABILITY)
    async def upsert(body: DocumentsRequest, retriever: Ready, commit_now: CommitNow = False) -> WriteResponse:
        c = collection(retriever)
        docs = [Document.parse(d.model_dump(exclude_none=True), f"documents.{i} (id {d.id!r})") for i, d in enumerate(body.documents)]
        docs = list({doc.id: doc for doc in docs}.values())  # the last occurrence of an id wins

        def run() -> tuple[int, bool]:
            c.upsert(docs)
            return after_write(c, commit_now)

        generation, committed = await in_thread(run)
        return WriteResponse(accepted=len(docs), pending=c.pending, generation=generation, committed=committed)

    @app.get("/documents/{doc_id}", response_model=DocumentOut, responses={**errors, **missing}, dependencies=read_key,
             tags=["documents"])
    async def get(doc_id: str, retriever: Ready) -> DocumentOut:
        """A stored (committed) document."""
        if retriever.collection is None:
            raise HTTPException(404, "this index stores no documents")
        doc = await in_thread(retriever.collection.get, doc_id)
        if doc is None:
            raise HTTPException(404, f"no document {doc_id!r}")
        return DocumentOut(id=doc.id, title=doc.title, text=doc.text, metadata=doc.metadata)

    async def _delete(retriever: Any, ids: list[str], commit_now: bool) -> DeleteResponse:
        c = collection(retriever)

        def run() -> tuple[dict, int, bool]:
            report = c.delete(ids)
            return (report, *after_write(c, commit_now))

        report, generation, committed = await in_thread(run)
        return DeleteResponse(**report, pending=c.pending, generation=generation, committed=committed)

    @app.delete("/documents/{doc_id}", response_model=DeleteResponse, responses={**write_errors, **missing}, dependencies=write_key,
                tags=["documents"], description="Delete one document (404 if there is none). " + DURABILITY)
    async def delete_one(doc_id: str, retriever: Ready, commit_now: CommitNow = False) -> DeleteResponse:
        out = await _delete(retriever, [doc_id], commit_now)
        if out.not_found:
            raise HTTPException(404, f"no document {doc_id!r}")
        return out

    @app.post("/documents/delete", response_model=DeleteResponse, responses=write_errors, dependencies=write_key,
              tags=["documents"], description="Delete documents by id; unknown ids are listed in `not_found`. " + DURABILITY)
    async def delete_many(body: DeleteRequest, retriever: Ready, commit_now: CommitNow = False) -> DeleteResponse:
        return await _delete(retriever, body.ids, commit_now)

    @app.post("/commit", response_model=CommitResponse, responses=write_errors, dependencies=write_key, tags=["documents"],
              description="Make every buffered change durable; answers once it is.")
    async def commit_endpoint(retriever: Ready) -> CommitResponse:
        c = collection(retriever)
        generation = await in_thread(commit, c)
        return CommitResponse(generation=generation, num_docs=c.snapshot().num_docs)

    async def auto_commit(retriever: Any) -> None:
        """Commit what has waited ``commit_ms``; a failed commit keeps the changes buffered."""
        c = retriever.collection
        while True:
            await anyio.sleep(limits.commit_ms / 1000)
            if c.pending:
                try:
                    await in_thread(commit, c)
                except Exception:  # noqa: BLE001 - logged; the next round tries again
                    log.exception("automatic commit failed; the changes stay buffered")

    return auto_commit
