"""Reading and verifying the audit log (admin only): its entries, the verify walk, the
newest signed checkpoint, and RFC 9162 inclusion and consistency proofs over the tree the
replica has verified."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Query, Request

from mesh.api.common import mesh_of
from mesh.auth import authenticate
from mesh.checkpoint import Checkpoint
from mesh.errors import Invalid, StoreUnavailable
from mesh.merkle import Tree
from mesh.runtime import Mesh
from mesh.store import records

router = APIRouter(tags=["audit"])
log = logging.getLogger("mesh")
_MAX = 2**63 - 1
PAGE_LIMIT = 1000


@router.get("/v1/audit")
async def read(
    request: Request,
    after: int = Query(default=-1, ge=-1, le=_MAX),
    limit: int = Query(default=100, ge=1, le=PAGE_LIMIT),
) -> dict[str, Any]:
    mesh = mesh_of(request)
    await authenticate(mesh, request, admin_only=True)
    entries = await mesh.store.call("audit_after", records.audit_after(after, limit))
    return {
        "entries": [e.as_json() for e in entries],
        "next_after": entries[-1].seq if len(entries) == limit else None,
    }


@router.get("/v1/audit/entries")
async def entries(
    request: Request,
    start: int = Query(ge=0, le=_MAX),
    end: int = Query(ge=1, le=_MAX),
) -> dict[str, Any]:
    """Entries [start, end), at most PAGE_LIMIT, as stored (a verifier recomputes the rest)."""
    mesh = mesh_of(request)
    await authenticate(mesh, request, admin_only=True)
    if end <= start:
        raise Invalid(f"must be above start ({start})", field="end")
    if end - start > PAGE_LIMIT:
        raise Invalid(
            f"at most {PAGE_LIMIT} entries a page: end <= {start + PAGE_LIMIT}", field="end"
        )
    found = await mesh.store.call("audit_after", records.audit_after(start - 1, end - start))
    return {"start": start, "entries": [e.as_json() for e in found]}


@router.get("/v1/audit/verify")
async def verify(request: Request) -> dict[str, Any]:
    mesh = mesh_of(request)
    await authenticate(mesh, request, admin_only=True)
    check = await mesh.verify_chain(mesh.signed_walk())
    return check.as_json()


def _signed(mesh: Mesh) -> Checkpoint:
    if mesh.checkpoint is None or mesh.tree is None:
        raise StoreUnavailable("no audit checkpoint signed yet: the log is being verified")
    return mesh.checkpoint


@router.get("/v1/audit/checkpoint")
async def checkpoint(request: Request) -> dict[str, Any]:
    mesh = mesh_of(request)
    await authenticate(mesh, request, admin_only=True)
    return {**_signed(mesh).as_json(), "public_key": mesh.signer.verifier.vkey}


async def _tree(request: Request, size: int | None) -> tuple[Tree, int]:
    """The verified tree, and the size a proof is about: ``size``, by default the newest
    checkpoint's, and never beyond what this replica verified."""
    mesh = mesh_of(request)
    await authenticate(mesh, request, admin_only=True)
    signed = _signed(mesh)
    tree = mesh.tree
    assert tree is not None
    if size is not None and size > tree.size:
        raise Invalid(f"beyond the {tree.size} entries this replica has verified", field="size")
    return tree, signed.size if size is None else size


@router.get("/v1/audit/proof/inclusion")
async def inclusion(
    request: Request,
    index: int = Query(ge=0, le=_MAX),
    size: int | None = Query(default=None, ge=1, le=_MAX),
) -> dict[str, Any]:
    """PATH(index, D[size])."""
    tree, n = await _tree(request, size)
    if index >= n:
        raise Invalid(f"must be below the tree size ({n})", field="index")
    return {
        "index": index,
        "size": n,
        "leaf_hash": tree.leaf(index).hex(),
        "root": tree.root(n).hex(),
        "proof": [p.hex() for p in tree.inclusion_proof(index, n)],
    }


@router.get("/v1/audit/proof/consistency")
async def consistency(
    request: Request,
    old: int = Query(ge=1, le=_MAX),
    size: int | None = Query(default=None, ge=1, le=_MAX),
) -> dict[str, Any]:
    """PROOF(old, D[size])."""
    tree, n = await _tree(request, size)
    if old > n:
        raise Invalid(f"must not be above the tree size ({n})", field="old")
    return {
        "old": old,
        "size": n,
        "old_root": tree.root(old).hex(),
        "root": tree.root(n).hex(),
        "proof": [p.hex() for p in tree.consistency_proof(old, n)],
    }


@router.post("/v1/audit/witness/reset")
async def reset_witness(request: Request) -> dict[str, Any]:
    """Forgets the witnessed checkpoint after a deliberate restore of an older backup (which
    the witness would otherwise refuse for good, as a truncation). Logged, not appended to
    the audit log: the restored log must stay exactly what the backup held."""
    mesh = mesh_of(request)
    await authenticate(mesh, request, admin_only=True)
    held = mesh.witness.latest
    await mesh.rebuild_tree()  # first: no checkpoint of the log as it was may follow the reset
    await mesh.witness.reset()
    forgot = {"size": held.size if held else None, "root": held.root.hex() if held else None}
    log.warning("audit witness reset by an admin; it forgot checkpoint %s", forgot)
    # The entries this replica's next checkpoint starts from: the log as restored.
    return {"reset": True, "forgot": forgot, "verified": mesh.tree.size if mesh.tree else 0}
