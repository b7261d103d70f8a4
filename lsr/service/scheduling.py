"""How the service spends its cores under load: bounded admission and micro-batched encoding.

- :class:`Admission`: at most ``workers`` requests compute at once and at most ``queue_depth``
  wait; beyond that a request is answered 503 with ``Retry-After`` at once, and one that waited
  ``queue_timeout`` gets the same instead of a late answer. A request whose client went away
  while it waited is dropped before any work is done. Without this, a burst fills an unbounded
  queue, every client times out, and the server keeps computing answers nobody reads.
- :class:`QueryBatcher`: text queries of concurrent requests are encoded by one model call
  (dynamic micro-batching, as inference servers do): a small model's per-call overhead and its
  vocabulary projection amortize over the batch, which multiplies throughput at high
  concurrency, and a lone query waits at most ``max_wait``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import anyio
from starlette.exceptions import HTTPException

T = TypeVar("T")


class Overloaded(HTTPException):
    """503 with Retry-After: the request was not computed; sending it again later may work."""

    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(503, reason, headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


class ClientGone(Exception):
    """The client disconnected while its request waited: nothing was computed."""


class Ticket:
    """A request's place in the :class:`Admission` queue and its deadline (``time.monotonic``)."""

    def __init__(self, admission: "Admission | None", deadline: float) -> None:
        self.admission, self.deadline = admission, deadline

    def leave(self) -> None:
        """Free the place (once): the request got a worker or gave up."""
        if self.admission is not None:
            self.admission.waiting -= 1
            self.admission = None


UNQUEUED = Ticket(None, math.inf)
"""For work done on behalf of requests already in the queue (see :meth:`Admission.run`)."""


class Admission:
    """A bounded queue in front of the worker threads (see the module docstring)."""

    def __init__(self, workers: int, queue_depth: int, queue_timeout_s: float) -> None:
        self.limiter = anyio.CapacityLimiter(workers)
        self.queue_depth = queue_depth
        self.queue_timeout_s = queue_timeout_s
        self.waiting = 0
        self.shed = 0
        self.abandoned = 0

    @contextmanager
    def enter(self) -> Iterator["Ticket"]:
        """A place in the queue (503 at once when ``queue_depth`` requests hold one), held until
        the request gets its worker in :meth:`run` or leaves. Take it on arrival when a request
        waits for something else first (its batched encoding), so that this wait is bounded and
        counted too: texts must not pile up, unbounded, in front of the queue."""
        if self.waiting >= self.queue_depth:
            self.shed += 1
            raise Overloaded(f"the server is at capacity ({self.queue_depth} requests waiting); retry later", self.queue_timeout_s)
        self.waiting += 1
        ticket = Ticket(self, time.monotonic() + self.queue_timeout_s)
        try:
            yield ticket
        finally:
            ticket.leave()

    async def within(self, ticket: "Ticket", awaitable: Awaitable[T]) -> T:
        """``await awaitable`` until the ticket's deadline, then 503."""
        try:
            with anyio.fail_after(None if math.isinf(ticket.deadline) else max(0.0, ticket.deadline - time.monotonic())):
                return await awaitable
        except TimeoutError:
            self.shed += 1
            raise Overloaded(f"the request waited {self.queue_timeout_s:g} s for a worker; retry later", self.queue_timeout_s) from None

    async def run(self, fn: Callable[..., T], *args: Any, is_disconnected: Callable[[], Awaitable[bool]] | None = None,
                  ticket: "Ticket | None" = None) -> T:
        """``fn(*args)`` in a worker thread once a worker is free; ``ticket``: a place taken by
        :meth:`enter` (else one is taken here), or :data:`UNQUEUED` for work done on behalf of
        requests that hold places (their batch encoding): no place, no deadline."""
        with ExitStack() as stack:
            if ticket is None:
                ticket = stack.enter_context(self.enter())
            try:
                await self.within(ticket, self.limiter.acquire())
            finally:
                ticket.leave()
        try:
            if is_disconnected is not None and await is_disconnected():
                self.abandoned += 1
                raise ClientGone
            return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self.limiter.release()


class QueryBatcher:
    """Encode concurrent requests' texts together: ``await encode(text)`` returns that text's
    encoding, produced by one ``encode_many(texts)`` call for every text that arrived within
    ``max_wait_s`` of the first (at most ``max_batch`` texts). ``run_batch`` runs that call
    (through the admission queue). At most ``parallel`` batches are encoded at once."""

    def __init__(self, encode_many: Callable[[list[str]], Sequence[Any]], run_batch: Callable[..., Awaitable[Any]], *,
                 max_batch: int, max_wait_s: float, parallel: int) -> None:
        self.encode_many = encode_many
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[tuple[str, asyncio.Future, Callable[[], Awaitable[bool]] | None]] = asyncio.Queue()
        self._slots = asyncio.Semaphore(parallel)
        self.batches = 0
        self.texts = 0
        self.abandoned = 0

    async def encode(self, text: str, is_disconnected: Callable[[], Awaitable[bool]] | None = None) -> Any:
        """The text's encoding; :class:`ClientGone` instead when ``is_disconnected()`` says the
        client left before its batch was encoded (its text is then left out)."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future, is_disconnected))
        return await future

    async def serve(self) -> None:
        """Form and encode batches until cancelled (run it beside the server)."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            await self._slots.acquire()  # a free encoder slot: meanwhile more texts queue up
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            asyncio.ensure_future(self._encode(batch))

    async def _encode(self, batch: list[tuple[str, asyncio.Future, Callable[[], Awaitable[bool]] | None]]) -> None:
        live = []
        try:
            for text, f, is_disconnected in batch:
                if f.done():  # a cancelled request's text is skipped
                    continue
                if is_disconnected is not None and await is_disconnected():  # so is an abandoned one's
                    self.abandoned += 1
                    f.set_exception(ClientGone())
                    continue
                live.append((text, f))
            if not live:
                return
            started = time.perf_counter()
            rows = await self.run_batch(self.encode_many, [text for text, _ in live])
            self.batches += 1
            self.texts += len(live)
            self.last_batch_ms = (time.perf_counter() - started) * 1e3
            for (_, f), row in zip(live, rows):
                if not f.done():
                    f.set_result(row)
        except BaseException as e:  # noqa: BLE001 - every waiting request gets the error
            for _, f, _ in batch:
                if not f.done():
                    f.set_exception(e if isinstance(e, Exception) else RuntimeError("encoding was cancelled"))
        finally:
            self._slots.release()
