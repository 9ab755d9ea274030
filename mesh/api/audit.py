"""Reading and verifying the audit chain (admin only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from mesh.api.common import mesh_of
from mesh.audit import ChainCheck
from mesh.auth import authenticate
from mesh.store import records

router = APIRouter(tags=["audit"])


@router.get("/v1/audit")
async def read(
    request: Request,
    after: int = Query(default=-1, ge=-1, le=2**63 - 1),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    mesh = mesh_of(request)
    await authenticate(mesh, request, admin_only=True)
    entries = await mesh.store.call("audit_after", records.audit_after(after, limit))
    return {
        "entries": [e.as_json() for e in entries],
        "next_after": entries[-1].seq if len(entries) == limit else None,
    }


@router.get("/v1/audit/verify")
async def verify(request: Request) -> dict[str, Any]:
    mesh = mesh_of(request)
    await authenticate(mesh, request, admin_only=True)
    check = await mesh.verify_chain(ChainCheck())
    return check.as_json()
