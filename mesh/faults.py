"""The ways a zone can fail: the one registry of fault modes, for every platform and drill.

A mode is spelled ``NAME`` or ``NAME:PARAM`` (``loss:20``). ``parse`` turns the spelling into a
``FaultMode`` or raises ``FaultModeError`` with a sentence saying what to type instead.

>>> parse("loss:20")
FaultMode(name='loss', percent=20)
>>> str(parse("blackhole"))
'blackhole'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODES", "NETWORK_MODES", "FaultMode", "FaultModeError", "parse"]


class FaultModeError(ValueError):
    """A mode that does not parse: the message names the modes there are."""


@dataclass(frozen=True)
class Mode:
    description: str
    network: bool  # acts on the zone's packets (needs the zone network layout locally)
    takes_percent: bool = False
    # A fault of the data tier rather than of one zone: its drill is an experiment of its own.
    experiment: str | None = None


MODES: dict[str, Mode] = {
    "power": Mode(
        "every replica of the zone is killed at once (SIGKILL), as a power loss", network=False
    ),
    "blackhole": Mode(
        "every packet to and from the zone is dropped; processes keep running", network=True
    ),
    "loss": Mode(
        "N% of the zone's packets are dropped at random: the zone is slow, not down (gray failure)",
        network=True,
        takes_percent=True,
    ),
    "partition": Mode(
        "the zone is cut off from the other zones and the data tier, while the"
        " front door still reaches it (split brain on the data path)",
        network=True,
    ),
    "data": Mode(
        "the PostgreSQL primary fails (its Patroni and PostgreSQL killed), wherever it is;"
        " needs the Patroni tier (meshsre up --storage patroni)",
        network=False,
        experiment="data-failover",
    ),
}
NETWORK_MODES = tuple(name for name, m in MODES.items() if m.network)


@dataclass(frozen=True)
class FaultMode:
    name: str
    percent: int | None = None  # loss only: share of packets dropped, 1..100

    def __str__(self) -> str:
        return self.name if self.percent is None else f"{self.name}:{self.percent}"

    @property
    def network(self) -> bool:
        return MODES[self.name].network


def _spellings() -> str:
    return ", ".join(f"{n}:N" if m.takes_percent else n for n, m in MODES.items())


def parse(text: str) -> FaultMode:
    """``power``, ``blackhole``, ``partition`` or ``loss:N`` (N a whole percent, 1 to 100)."""
    name, sep, param = str(text).strip().partition(":")
    mode = MODES.get(name)
    if mode is None:
        raise FaultModeError(f"unknown fault mode {text!r}: use one of {_spellings()}")
    if not mode.takes_percent:
        if sep:
            raise FaultModeError(f"fault mode {name!r} takes no parameter: write {name!r}")
        return FaultMode(name)
    if not param.isdigit() or not 1 <= int(param) <= 100:
        raise FaultModeError(
            f"fault mode {text!r}: write {name}:N with N a whole percent"
            " from 1 to 100, e.g. loss:20"
        )
    return FaultMode(name, int(param))
