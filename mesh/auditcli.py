"""`meshsre audit checkpoint` and `meshsre audit verify`: keep a witnessed checkpoint of the
audit log in a file, and check a log against one, offline (see ``mesh.auditverify``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx

from mesh.audit import ChainCheck, Entry, canonical
from mesh.auditverify import (
    CheckpointFile,
    read_checkpoint_file,
    verify,
    write_checkpoint_file,
)
from mesh.checkpoint import CheckpointError, LogVerifier
from mesh.keys import KeyFileError, load_seed, public_key
from mesh.merkle import leaf_hash, verify_consistency

__all__ = ["audit"]

PAGE = 1000
BEHIND_RETRIES = 15


def _entry(doc: dict[str, Any]) -> Entry:
    return Entry(
        int(doc["seq"]),
        float(doc["ts"]),
        str(doc["actor"]),
        str(doc["action"]),
        str(doc["subject"]),
        canonical(doc["data"]),
        str(doc["prev_hash"]),
        str(doc["hash"]),
        None if doc.get("signature") is None else str(doc["signature"]),
    )


class _Api:
    def __init__(self, url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=30, trust_env=False
        )

    def get(self, path: str, **params: int) -> dict[str, Any]:
        # Behind a load balancer a proof may reach a replica that has not verified that far
        # yet (422 on size): it catches up within an audit check, so ask again for a while.
        for attempt in range(BEHIND_RETRIES):
            try:
                response = self.client.get(path, params=params)
            except httpx.HTTPError as exc:
                raise click.ClickException(f"{self.client.base_url}{path}: {exc}") from None
            behind = response.status_code == 422 and response.json().get("field") == "size"
            if not behind or attempt == BEHIND_RETRIES - 1:
                break
            time.sleep(1.0)
        if response.status_code != 200:
            raise click.ClickException(
                f"{path} answered {response.status_code}: {response.text[:200]}"
                " (an admin token is needed: --token or MESH_ADMIN_TOKEN)"
            )
        body: dict[str, Any] = response.json()
        return body

    def entries(self, end: int | None = None) -> Iterator[Entry]:
        start = 0
        while end is None or start < end:
            stop = start + PAGE if end is None else min(end, start + PAGE)
            page = self.get("/v1/audit/entries", start=start, end=stop)["entries"]
            yield from (_entry(e) for e in page)
            if len(page) < stop - start:
                return
            start = stop


def _store_entries(url: str) -> list[Entry]:
    from prometheus_client import CollectorRegistry

    from mesh.errors import StoreUnavailable
    from mesh.store import open_store, records
    from mesh.telemetry import Metrics

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        # Opening would create an empty database: a reader must leave no file behind.
        raise click.ClickException(f"no SQLite store at {url.removeprefix('sqlite:///')}")

    async def read() -> list[Entry]:
        store = open_store(url, Metrics(CollectorRegistry()), timeout_s=30)
        found: list[Entry] = []
        try:
            while True:
                page = await store.call("audit_after", records.audit_after(len(found) - 1, PAGE))
                found += page
                if len(page) < PAGE:
                    return found
        finally:
            store.close()

    try:
        return asyncio.run(read())
    except (StoreUnavailable, ValueError) as exc:
        raise click.ClickException(f"cannot read the audit log from {url}: {exc}") from None


@click.group()
def audit() -> None:
    """The audit log as a transparency log: checkpoints and offline verification."""


_url = click.option("--url", envvar="MESH_URL", help="The mesh's API (a replica or front door).")
_token = click.option("--token", envvar="MESH_ADMIN_TOKEN", help="Admin token for --url.")


@audit.command("checkpoint")
@_url
@_token
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the checkpoint file.",
)
@click.option(
    "--previous",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A checkpoint file of an earlier run the new one must extend.",
)
def checkpoint(url: str | None, token: str | None, out: Path, previous: Path | None) -> None:
    """Fetch the mesh's newest signed checkpoint and the entries it covers, check that they
    hash to its root (and extend --previous), and write them to --out."""
    if not url:
        raise click.UsageError("--url (or MESH_URL) is required")
    api = _Api(url, token)
    doc = api.get("/v1/audit/checkpoint")
    try:
        verifier = LogVerifier.from_vkey(str(doc["public_key"]))
        cp = verifier.verify(str(doc["note"]))
        covered = list(api.entries(cp.size))
        leaves = [leaf_hash(e.envelope()) for e in covered]
        signed = ChainCheck(signatures=verifier.entry_signed)
        signed.feed(covered)
        signed.end()
        if not signed.ok:
            raise CheckpointError(
                f"entry {signed.first_bad_index} of the checkpointed log fails verification"
                f" ({signed.reason}): run meshsre audit verify"
            )
        if previous is not None:
            old = read_checkpoint_file(previous, verifier).checkpoint
            proof = api.get("/v1/audit/proof/consistency", old=old.size, size=cp.size)
            hashes = [bytes.fromhex(h) for h in proof["proof"]]
            if not verify_consistency(old.size, cp.size, hashes, old.root, cp.root):
                raise CheckpointError(
                    f"checkpoint {cp.size} does not extend {previous} ({old.size} entries):"
                    " the log was truncated or rewritten in between"
                )
        write_checkpoint_file(out, cp, verifier, leaves, signed.signed_from)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"checkpoint of {cp.size} entries at {cp.timestamp} written to {out}")


def _state(state_dir: Path) -> tuple[str, LogVerifier]:
    from mesh.local.state import StateDir

    paths = StateDir(state_dir)
    state = paths.load()
    if state is None:
        raise click.ClickException(f"no cluster in {state_dir}: run meshsre up first")
    try:
        seed = load_seed("log", None, str(paths.root / "log.key"))
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    return state.storage_url, LogVerifier(public_key(seed))


@audit.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A witnessed checkpoint (file or signed note).",
)
@click.option(
    "--public-key",
    help="The log's verifier key (else the checkpoint file's, or the local cluster's).",
)
@click.option("--storage", help="Read the log from this store (sqlite:///PATH, postgresql://...).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Read the log from this local cluster's store.",
)
@_url
@_token
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(
    checkpoint_file: Path | None,
    public_key: str | None,
    storage: str | None,
    state_dir: Path | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Check the audit log's hash chain and entry signatures and, against a witnessed
    checkpoint, that nothing it covered was truncated or rewritten. Exits 1 on a finding
    that fails."""
    sources = [s for s in (storage, state_dir) if s]
    if len(sources) > 1:
        raise click.UsageError("give one of --storage, --state-dir (or --url)")
    verifier = None
    try:
        if public_key:
            verifier = LogVerifier.from_vkey(public_key)
        if state_dir is not None:
            storage, local = _state(state_dir)
            verifier = verifier or local
        witnessed: CheckpointFile | None = None
        if checkpoint_file is not None:
            witnessed = read_checkpoint_file(checkpoint_file, verifier)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    if storage:
        entries = _store_entries(storage)
    elif url:
        entries = list(_Api(url, token).entries())
    else:
        raise click.UsageError("say where the log is: --storage, --state-dir or --url")
    report = verify(entries, witnessed, verifier)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        against = "no checkpoint: the hash chain alone"
        if witnessed is not None:
            cp = witnessed.checkpoint
            against = f"checkpoint of {cp.size} entries at {cp.timestamp}"
        click.echo(f"{report.size} entries, against {against}")
        if not report.signatures_checked:
            click.echo("signatures not checked: no log key (--public-key or --checkpoint)")
        for f in report.findings:
            click.echo(f"{f.kind} at index {f.index}: {f.message}")
        click.echo("ok" if report.ok else "FAILED")
    if not report.ok:
        raise SystemExit(1)
