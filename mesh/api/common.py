from __future__ import annotations

from typing import cast

from fastapi import Request

from mesh.errors import Invalid
from mesh.runtime import Mesh
from meshsre import identity

__all__ = ["decode_b64", "mesh_of"]


def mesh_of(request: Request) -> Mesh:
    return cast(Mesh, request.app.state.mesh)


def decode_b64(value: str, field: str, length: int | None = None) -> bytes:
    try:
        raw = identity.b64decode(value)
    except ValueError as exc:
        raise Invalid("not valid standard base64", field=field) from exc
    if length is not None and len(raw) != length:
        raise Invalid(f"must decode to {length} bytes, got {len(raw)}", field=field)
    return raw
