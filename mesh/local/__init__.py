"""The local multi-zone cluster: `meshsre up` / `down` / `status` and the local platform.

Names are imported on first use: `meshsre serve` (every replica) loads the CLI that registers
these commands, and must not pay for httpx and jinja2 it never uses.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Cluster",
    "ClusterError",
    "ClusterSpec",
    "ClusterState",
    "Component",
    "ComponentStatus",
    "LocalPlatform",
    "MissingBinaryError",
    "NotReadyError",
    "NotUpError",
    "StateDir",
    "StoreError",
    "UpResult",
]

_WHERE = {
    "Cluster": "cluster",
    "ComponentStatus": "cluster",
    "UpResult": "cluster",
    "ClusterError": "errors",
    "MissingBinaryError": "errors",
    "NotReadyError": "errors",
    "NotUpError": "errors",
    "StoreError": "errors",
    "ClusterSpec": "spec",
    "ClusterState": "state",
    "Component": "state",
    "StateDir": "state",
    "LocalPlatform": "platform",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'mesh.local' has no attribute {name!r}")
    return getattr(importlib.import_module(f"mesh.local.{_WHERE[name]}"), name)
