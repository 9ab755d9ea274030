"""The acknowledged-writes ledger: every registration the mesh answered 201, with its time.

A 201 is a promise that the agent is stored. Chaos drills (zone failure, store restore) check
the ledger of the load that ran through them: any acknowledged DID missing afterwards is a lost
write, whatever the dashboards said. Requests that got no answer are not in the ledger; their
fate is unknown, not promised.

    $ python -m loadtests.ledger reports/out/RUN/load.json --host http://127.0.0.1:18080
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

__all__ = ["Ack", "Ledger", "LedgerCheckError", "load", "missing"]


class LedgerCheckError(RuntimeError):
    """The mesh could not say whether an acknowledged agent exists."""


@dataclass(frozen=True)
class Ack:
    did: str
    at: float  # unix time the 201 arrived

    def as_json(self) -> dict[str, Any]:
        return {"did": self.did, "at": round(self.at, 3)}


class Ledger:
    def __init__(self) -> None:
        self.entries: list[Ack] = []

    def add(self, did: str, at: float) -> None:
        self.entries.append(Ack(did, at))

    def drain(self) -> list[list[Any]]:
        """New entries in wire form, emptied: what a worker sends to the master."""
        wire = [[a.did, a.at] for a in self.entries]
        self.entries.clear()
        return wire

    def merge(self, wire: Iterable[Sequence[Any]]) -> None:
        self.entries.extend(Ack(str(did), float(at)) for did, at in wire)

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.entries, key=lambda a: (a.at, a.did))
        return {"count": len(ordered), "entries": [a.as_json() for a in ordered]}


def load(record_path: Path) -> list[Ack]:
    record = json.loads(record_path.read_text())
    return [Ack(e["did"], e["at"]) for e in record["ledger"]["entries"]]


def missing(base_url: str, dids: Iterable[str], timeout: float = 5.0) -> list[str]:
    """The DIDs the mesh does not know (404); raises LedgerCheckError when it cannot answer."""
    lost = []
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        for did in dids:
            try:
                r = client.get(f"/v1/agents/{did}")
            except httpx.HTTPError as exc:
                raise LedgerCheckError(f"cannot read {did} from {base_url}: {exc}") from exc
            if r.status_code == 404:
                lost.append(did)
            elif r.status_code != 200:
                raise LedgerCheckError(f"reading {did} from {base_url}: HTTP {r.status_code}")
    return lost


@click.command()
@click.argument("record", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--host", required=True, help="Base URL of the mesh to check against.")
def main(record: Path, host: str) -> None:
    """Check that every acknowledged registration in a load.json still exists in the mesh."""
    acks = load(record)
    try:
        lost = missing(host, (a.did for a in acks))
    except LedgerCheckError as exc:
        raise click.ClickException(str(exc)) from exc
    if lost:
        click.echo(f"{len(lost)} of {len(acks)} acknowledged registrations are missing:")
        for did in lost:
            click.echo(f"  {did}")
        sys.exit(1)
    click.echo(f"all {len(acks)} acknowledged registrations are present")


if __name__ == "__main__":
    main()
