"""The platform adapter: what chaos experiments and drills need from where the mesh runs.

List the replicas with their zone and health, fail a zone and restore it (an AZ power
interruption), back up, destroy and restore the store, list the governance sidecars, and stop
and restore the event stream. ``local`` runs processes on this
machine (``mesh.local.platform``); ``kubernetes`` cordons the nodes of a zone and deletes the
mesh pods there. Every method returns JSON-safe data describing what it did, so a Chaos
Toolkit activity can return it as is.

>>> from mesh.platforms import get_platform
>>> platform = get_platform()  # MESH_PLATFORM, else local  # doctest: +SKIP
>>> platform.fail_zone("a")["killed"]  # doctest: +SKIP
['mesh-a-0', 'mesh-a-1']

The implementations import this module, never the other way: ``mesh.platforms`` picks one by
name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["Platform", "PlatformError", "Replica", "zone_fault"]


class PlatformError(Exception):
    """The platform cannot be chosen or reached."""


@dataclass(frozen=True)
class Replica:
    name: str  # unique in the deployment: "a-0" locally, the pod name on Kubernetes
    zone: str
    url: str  # where the replica itself answers (not the front door)
    ready: bool  # GET /health/ready answered 200 just now

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Platform(Protocol):
    name: str

    def replicas(self) -> list[Replica]: ...

    def fail_zone(self, zone: str, mode: str = "power") -> dict[str, Any]:
        """Fail the zone in a mode of ``mesh.faults`` (``power``: every replica down at once,
        as a power loss does, no graceful stop; ``blackhole``, ``loss:N``, ``partition``: its
        network)."""
        ...

    def restore_zone(self, zone: str, timeout: float = 60.0) -> dict[str, Any]:
        """Undo any fault of the zone, bring its replicas back and wait until they are ready;
        idempotent."""
        ...

    def backup(self, dest: str | Path) -> dict[str, Any]:
        """Back up the store to dest; the result holds location, size, row counts, duration."""
        ...

    def destroy_store(self) -> dict[str, Any]:
        """Lose the store, as a disaster does."""
        ...

    def restore(self, src: str | Path, timeout: float = 60.0) -> dict[str, Any]:
        """Restore the store from a backup into a fresh target and bring every replica back."""
        ...

    def sidecars(self) -> list[str]:
        """URLs of the governance sidecars (each an agent's), where they answer themselves."""
        ...

    def stop_event_stream(self) -> dict[str, Any]:
        """Stop the event stream (NATS JetStream) at once, as a crash does."""
        ...

    def restore_event_stream(self, timeout: float = 60.0) -> dict[str, Any]:
        """Bring the event stream back and wait until it answers; idempotent."""
        ...


@contextmanager
def zone_fault(
    platform: Platform, zone: str, mode: str = "power", timeout: float = 60.0
) -> Iterator[dict[str, Any]]:
    """The zone failed in ``mode`` for the body of the ``with``, restored on the way out
    however it is left: an exception, Ctrl-C (KeyboardInterrupt), a failed test."""
    try:
        yield platform.fail_zone(zone, mode)
    finally:
        platform.restore_zone(zone, timeout=timeout)
