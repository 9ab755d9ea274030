"""The platform adapter on Kubernetes (``MESH_PLATFORM=kubernetes``): zone failures by cordoning
and deleting pods, store drills through Jobs. See README.md beside this file."""

from __future__ import annotations

__all__: list[str] = []
