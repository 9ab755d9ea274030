"""The kubernetes suite (`--namespace N [--kube-context C]`): the live deployment has what
surviving a zone failure takes (3 ready replicas in 3 zones, PDB, HPA), is hardened (non-root,
read-only root filesystem, requests and limits, NetworkPolicy), is watched (ServiceMonitor,
PrometheusRule), and the GovernedAgent CRD is installed. The checks are `suites.kubechecks`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from suites.conftest import Targets
from suites.kubechecks import CHECKS, zone_problems

if TYPE_CHECKING:
    from suites.kubelive import Live


@pytest.fixture(scope="module")
def live(targets: Targets) -> Live:
    if not targets.namespace:
        pytest.skip("no Kubernetes target: pass --namespace N (and --kube-context C unless "
                    "the current context is the cluster)")
    from suites import kubelive  # the client loads only when a cluster is named

    return kubelive.load(targets.namespace, targets.kube_context)


@pytest.mark.parametrize("name", list(CHECKS))
def test_the_deployment_passes_the_check(live: Live, name: str) -> None:
    problems = CHECKS[name](live.objects)
    notes = "; ".join(live.notes)
    assert not problems, "\n".join(problems) + (f"\n(notes: {notes})" if notes else "")


def test_three_ready_replicas_run_in_three_zones(live: Live) -> None:
    problems = zone_problems(live.pods, live.nodes)
    assert not problems, "\n".join(problems)
