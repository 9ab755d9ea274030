"""The launcher's exceptions: one root, with messages short enough for one terminal line."""

from __future__ import annotations

__all__ = ["ClusterError", "MissingBinaryError", "NotReadyError", "NotUpError", "StoreError"]


class ClusterError(Exception):
    """Root of every error the local cluster raises."""


class MissingBinaryError(ClusterError):
    def __init__(self, binary: str, package: str, component: str) -> None:
        super().__init__(
            f"{binary} not found: install it with `apt-get install -y {package}` "
            f"or run without it (--without {component})"
        )
        self.binary = binary
        self.package = package
        self.component = component


class NotReadyError(ClusterError):
    """A component did not become ready in time, or exited while we waited."""


class NotUpError(ClusterError):
    """No cluster state where one was expected."""


class StoreError(ClusterError):
    """A backup, destroy or restore step failed."""
