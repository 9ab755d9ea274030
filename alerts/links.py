"""Where a team keeps its runbooks and dashboards, as two URL patterns (the monitoring
mixins' ``runbookURLPattern``). The catalog holds the setting (``alerts.catalog.LINKS``);
rules and dashboards build every link from it.

>>> Links(runbook="https://wiki.example/{alert}", dashboard="/d/{uid}").runbook_url("X")
'https://wiki.example/X'
"""

from __future__ import annotations

import string
from dataclasses import dataclass

__all__ = ["Links", "check_links"]


@dataclass(frozen=True)
class Links:
    """Every alert's ``runbook_url`` and ``dashboard_url`` and every panel's runbook link:
    change them in the catalog, then `make alerts dashboards deploy-manifests`."""

    runbook: str  # holds {alert}
    dashboard: str  # holds {uid}

    def runbook_url(self, alert: str) -> str:
        return self.runbook.format(alert=alert)

    def dashboard_url(self, uid: str) -> str:
        return self.dashboard.format(uid=uid)

    def alert_of(self, url: str) -> str | None:
        """The alert a runbook URL names, or None when the URL does not fit the pattern."""
        head, _, tail = self.runbook.partition("{alert}")
        inner = url.removeprefix(head).removesuffix(tail)
        fits = url.startswith(head) and url.endswith(tail) and inner.isidentifier()
        return inner if fits else None


def check_links(links: Links) -> Links:
    """Return ``links`` unchanged, or raise ValueError naming the pattern to fix."""
    for pattern, field in ((links.runbook, "alert"), (links.dashboard, "uid")):
        names = {n for _, n, _, _ in string.Formatter().parse(pattern) if n is not None}
        if names != {field}:
            raise ValueError(f"link pattern {pattern!r} must hold {{{field}}} and nothing"
                             " else in braces")
    return links
