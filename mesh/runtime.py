"""One mesh process's long-lived parts and their lifecycle: store, issuer key, revocations,
replay guard, rate limits, Redis and its breaker, and the background checks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import platform
import time
from typing import Any

from prometheus_client import CollectorRegistry

from mesh import __version__, events
from mesh.audit import REASONS, ChainCheck, Entry
from mesh.breaker import CircuitBreaker
from mesh.checkpoint import Checkpoint, LogSigner
from mesh.credentials import Issuer
from mesh.errors import StoreUnavailable
from mesh.heartbeat import Heartbeat
from mesh.keys import KeyFileError, load_seed
from mesh.limits import RateLimits
from mesh.merkle import Tree, leaf_hash
from mesh.publisher import EventPublisher
from mesh.redisbatch import RedisBatch
from mesh.registry import AgentCache
from mesh.replay import ReplayGuard
from mesh.revocation import RevocationBook
from mesh.settings import Settings
from mesh.stats import StoreCollector
from mesh.store import Store, open_store, records
from mesh.telemetry import Metrics
from mesh.witness import Refused, Witness

__all__ = ["Mesh"]

log = logging.getLogger("mesh")
# Audit entries verified per slice. Hashing runs on the event loop, so a slice is also the
# longest the loop stalls for it: 2,000 at a time (up to 40 ms) showed in decisions' p99.
PAGE = 250


class Mesh:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        issuer_seed = _seed(settings, "issuer")
        log_seed = _seed(settings, "log")
        if issuer_seed == log_seed:
            raise KeyFileError("the log key must not be the issuer key: give each its own")
        self.issuer = Issuer(issuer_seed)
        self.signer = LogSigner(log_seed)
        self.store: Store = open_store(
            settings.storage_url,
            self.metrics,
            settings.storage_timeout_seconds,
            self.signer.sign_entry,
        )
        self.metrics.build_info.labels(
            __version__, platform.python_version(), self.store.backend
        ).set(1)
        self.metrics.start_time.set(time.time())
        self.breaker = CircuitBreaker("redis", self.metrics.breaker_state)
        self.revocations = RevocationBook(
            self.store,
            self.metrics,
            settings.revocation_poll_seconds,
            settings.redis_url,
            self.breaker,
        )
        self.agents = AgentCache(self.store, self.metrics, settings.revocation_poll_seconds)
        self.redis = _redis(settings.redis_url)
        batch = RedisBatch(self.redis, self.breaker) if self.redis is not None else None
        self.replays = ReplayGuard(self.store, batch)
        self.limits = RateLimits(
            settings.client_rate_per_second,
            settings.client_burst,
            settings.rate_limit_per_minute,
            batch,
        )
        self.events = EventPublisher(
            settings.nats_url, self.metrics, f"mesh-{self.node}", settings.event_stream_replicas
        )
        self._checkpoint = (0, "")
        self.witness = Witness(self.signer.verifier, self.redis)
        # The newest checkpoint this replica signed and its witness took (GET /v1/audit/...).
        self.checkpoint: Checkpoint | None = None
        self.ready = False
        # The first signed entry's index, once a walk met it: from then on an entry there
        # without its signature (stripped, to pass off forged appends) fails.
        self._signed_from: int | None = None
        self._chain = self.signed_walk(tree=True)
        # The sweep re-walks old entries for edits, which break the chain or the tree; their
        # signatures were checked as they arrived, and a signature is outside the hash.
        self._sweep = ChainCheck()
        self._failure: tuple[int | None, str | None] = (None, None)
        self._sweep_ok = True
        self._tasks: list[asyncio.Task[None]] = []
        # Not yet checked is not broken: a 0 here paged MeshAuditChainBroken when a scrape
        # fell before a slow first check (a replica starting on a loaded Patroni tier). NaN
        # compares false with 0, so no rule fires on it.
        self.metrics.chain_valid.set(math.nan)
        # Networked stores (they have a breaker) are watched by a heartbeat; SQLite fails
        # only with this process.
        self.heartbeat = (
            Heartbeat(self.store, self.metrics.store_up) if self.store.breaker else None
        )
        self.store_stats = StoreCollector(self.store)
        self.registry.register(self.store_stats)

    @property
    def node(self) -> str:
        return f"{self.settings.zone}/{self.settings.replica}"

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._prepare()))
        if self.heartbeat is not None:
            self._tasks.append(asyncio.create_task(self.heartbeat.run()))

    async def _prepare(self) -> None:
        """Creates the schema and loads the issuer key, retrying while the store is down, so a
        replica started before its database comes up by itself when the database does."""
        while True:
            try:
                await self.store.migrate()
                break
            except StoreUnavailable as exc:
                log.warning("store not ready yet: %s", exc.message)
                await asyncio.sleep(1.0)
            except Exception:
                # Anything else is a bug; it must show, not leave the replica silently unready.
                log.exception("preparing the store failed; retrying in 1 s")
                await asyncio.sleep(1.0)
        await self.revocations.start()
        await self.agents.start()
        await self.replays.start()
        await self.events.start()
        self._tasks.append(asyncio.create_task(self._audit_loop()))
        self.ready = True
        # Everything loaded so far (FastAPI, pydantic schemas, OpenTelemetry, the modules)
        # lives as long as the process: move it out of the collector's sight. Full collections
        # walked all of it again and again, and cost a registration about a third of its time
        # (in process, 8 concurrent: 457-584 us without, 300-362 us with; `make bench`).
        gc.freeze()
        # A registration allocates a few hundred objects, so the default thresholds (700, 10,
        # 10) ran a young collection every request or two. These took a registration from
        # 219-224 to 205-219 us of CPU and left hello at 72-74 us (`python -m
        # mesh.bench.inprocess`, 5 interleaved runs each).
        gc.set_threshold(10_000, 20, 50)
        log.info("mesh replica %s ready on %s", self.node, self.store.backend)

    async def check_ready(self) -> bool:
        if not self.ready:
            self.metrics.store_up.set(0)
            return False
        if self.heartbeat is not None:
            return self.heartbeat.ok  # at once: the front door's check never waits on a ping
        try:
            await self.store.ping()
        except StoreUnavailable:
            self.metrics.store_up.set(0)
            return False
        self.metrics.store_up.set(1)
        return True

    async def _audit_loop(self) -> None:
        """Keeps ``agentmesh_audit_chain_valid`` current without re-hashing the whole chain on
        every pass: new entries are verified as they arrive, and a sweep re-walks the old ones
        one page per pass, so an edit anywhere shows within (length / page) passes. Each pass
        then signs a checkpoint of the verified tree and offers it to the witness."""
        while True:
            walked_since = time.time()
            try:
                await self.verify_chain(self._chain)
                if not self._chain.ok:
                    # A restore may have rewritten history: re-walk from genesis before
                    # calling the chain broken.
                    self._chain = await self.verify_chain(self.signed_walk(tree=True))
                self._note_walk(self._chain)
                await self._sweep_page()
                if self._chain.ok:
                    await self._sign_checkpoint(walked_since)
            except StoreUnavailable:
                pass
            self.metrics.chain_valid.set(1 if self._chain.ok and self._sweep_ok else 0)
            self.metrics.chain_length.set(self._chain.length)
            self._publish_checkpoint()
            await asyncio.sleep(self.settings.audit_check_seconds)

    @property
    def tree(self) -> Tree | None:
        """The Merkle tree over the entries verified so far."""
        return self._chain.tree

    async def _sign_checkpoint(self, walked_since: float) -> None:
        """Signs the verified tree and offers it to the witness. A refusal (the log lost or
        changed entries it had witnessed) is counted and logged; the witness keeps its
        checkpoint, whose age then grows (agentmesh_audit_checkpoint_timestamp_seconds)."""
        tree = self._chain.tree
        assert tree is not None
        cp = self.signer.sign(tree.size, tree.root(), int(time.time()))
        try:
            if await self.witness.offer(
                cp, lambda old: tree.consistency_proof(old, cp.size), walked_since
            ):
                self.checkpoint = cp
                self.metrics.checkpoint_time.set(cp.timestamp)
        except Refused as exc:
            self.metrics.checkpoint_refused.inc()
            log.error("the witness refused checkpoint %d: %s", cp.size, exc.message)

    async def rebuild_tree(self) -> None:
        """Walks the log from genesis again, so that the next checkpoint covers the log as it
        is now: after a restore in place (PostgreSQL), a tree still holding the lost entries
        would offer a freshly reset witness a checkpoint the log no longer matches, which the
        witness would then hold against every true one."""
        self._chain = await self.verify_chain(self.signed_walk(tree=True))
        self._sweep = ChainCheck()

    def _publish_checkpoint(self) -> None:
        """The verified head of the audit log, as an event, whenever it moved."""
        head = (self._chain.length, self._chain.head)
        if self._chain.ok and self._chain.length and head != self._checkpoint:
            self._checkpoint = head
            self.events.publish(events.checkpoint(*head, time.time(), self.node))

    async def _sweep_page(self, page: int = 2000) -> None:
        for _ in range(page // PAGE):
            entries = await self.store.call(
                "audit_after", records.audit_after(self._sweep.length - 1, PAGE)
            )
            self._sweep.feed(entries)
            ended = len(entries) < PAGE
            if self._tree_differs(entries) or (ended and self._sweep.length < self._chain.length):
                # Entries the tree was built from changed (hashes recomputed or not) or are
                # gone: build it again from the log as it is, and let the witness judge it.
                self._chain = await self.verify_chain(self.signed_walk(tree=True))
                self._sweep = ChainCheck()
                return
            if not self._sweep.ok or ended:
                self._sweep_ok = self._sweep.ok  # holds until the next complete sweep
                self._sweep = ChainCheck()
                return
            await asyncio.sleep(0)

    def _tree_differs(self, entries: list[Entry]) -> bool:
        tree = self._chain.tree
        if tree is None:
            return False
        return any(
            e.seq < tree.size and leaf_hash(e.envelope()) != tree.leaf(e.seq) for e in entries
        )

    def signed_walk(self, tree: bool = False) -> ChainCheck:
        """A verify walk from genesis that checks each entry's signature with the log key."""
        return ChainCheck(
            tree=Tree() if tree else None,
            signatures=self.signer.entry_signed,
            signed_from=self._signed_from,
        )

    def _note_walk(self, check: ChainCheck) -> None:
        """Remembers where signing began, and logs a failed walk once, with its index: no
        checkpoint is signed over it (agentmesh_audit_chain_valid says so too)."""
        if self._signed_from is None:
            self._signed_from = check.signed_from
        failure = (check.first_bad_index, check.reason)
        if failure != self._failure and failure[0] is not None:
            log.error(
                "audit entry %d fails verification: %s; no checkpoint will cover it",
                failure[0],
                REASONS[str(failure[1])],
            )
        self._failure = failure

    async def verify_chain(self, check: ChainCheck) -> ChainCheck:
        while check.ok:
            entries = await self.store.call(
                "audit_after", records.audit_after(check.length - 1, PAGE)
            )
            check.feed(entries)
            if len(entries) < PAGE:
                # A short page is the log's end as one committed snapshot saw it, and every
                # committed batch ends with a signed entry.
                check.end()
                break
            await asyncio.sleep(0)
        return check

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.events.stop()
        await self.revocations.stop()
        await self.agents.stop()
        await self.replays.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        self.store.close()

    @staticmethod
    def now() -> float:
        return time.time()


def _seed(settings: Settings, name: str) -> bytes:
    value = getattr(settings, f"{name}_key")
    return load_seed(
        name,
        None if value is None else value.get_secret_value(),
        getattr(settings, f"{name}_key_file"),
    )


def _redis(url: str | None) -> Any:
    """The client for replay checks and rate limits: a call fails within 0.25 s, and the
    breaker then stops calling."""
    if not url:
        return None
    import redis.asyncio as aioredis

    return aioredis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
