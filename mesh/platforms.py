"""The platforms by name: ``MESH_PLATFORM`` picks where chaos and drills act."""

from __future__ import annotations

import os

from mesh.platform import Platform, PlatformError

__all__ = ["PLATFORMS", "get_platform"]

PLATFORMS = ("local", "kubernetes")


def get_platform(name: str | None = None) -> Platform:
    """The platform named by ``name`` or ``MESH_PLATFORM`` (default ``local``)."""
    chosen = name or os.environ.get("MESH_PLATFORM") or "local"
    if chosen == "local":
        from mesh.local.platform import LocalPlatform

        return LocalPlatform()
    if chosen == "kubernetes":
        from mesh.k8s.platform import KubernetesPlatform

        return KubernetesPlatform()
    raise PlatformError(
        f"unknown platform {chosen!r} (MESH_PLATFORM): use {' or '.join(PLATFORMS)}"
    )
