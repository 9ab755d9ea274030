"""A zone's network faults on Kubernetes, as Chaos Mesh ``NetworkChaos`` objects.

Chaos Mesh rather than a NetworkPolicy: a policy selects pods by their labels and cannot say
"the pods on the nodes of zone Z", nor drop a share of the packets. A NetworkChaos selects the
mesh pods with ``nodeSelectors`` on the zone label, and its daemon applies tc/iptables rules in
each pod's network namespace, as ``mesh.local.zonenet`` does locally:

- ``blackhole``: action ``loss`` at 100 %: nothing the pods send gets out, so nothing they are
  sent is ever answered;
- ``loss:N``: action ``loss`` at N %;
- ``partition``: action ``partition``, both directions, against every pod of the namespace on
  the nodes of the other zones (the data tier when it runs there) and the external data tier
  (``MESH_K8S_DATA_TIER``: the store's and Redis's addresses, comma-separated). A partition
  with neither is refused: it would cut nothing. The front door
  (the ingress controller, in its own namespace) still reaches the zone.

Every object carries the label ``meshsre.dev/zone-fault=<zone>``, so ``restore_zone`` removes
exactly the faults of that zone, and a duration, so an object a crashed drill left behind
expires on its own.
"""

from __future__ import annotations

from typing import Any

from mesh.faults import FaultMode

__all__ = [
    "FAULT_LABEL",
    "GROUP",
    "PLURAL",
    "VERSION",
    "ZONE_LABEL",
    "network_chaos",
    "network_chaos_zone",
]

GROUP, VERSION, PLURAL = "chaos-mesh.org", "v1alpha1", "networkchaos"
ZONE_LABEL = "topology.kubernetes.io/zone"
FAULT_LABEL = "meshsre.dev/zone-fault"
MAX_DURATION = "30m"  # no drill observes longer; a forgotten fault ends by itself


def _labels(selector: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in selector.split(",") if "=" in pair)


def network_chaos_zone(zone: str) -> str:
    """The zone as a label value and a name part (lowercase, dashes)."""
    return "".join(c if c.isalnum() else "-" for c in zone.lower()).strip("-")


def network_chaos(
    zone: str,
    mode: FaultMode,
    namespace: str,
    selector: str,
    other_nodes: list[str],
    data_tier: list[str],
) -> dict[str, Any]:
    """The NetworkChaos object that fails ``zone`` in a network ``mode``."""
    pods = {
        "namespaces": [namespace],
        "labelSelectors": _labels(selector),
        "nodeSelectors": {ZONE_LABEL: zone},
    }
    spec: dict[str, Any] = {"mode": "all", "selector": pods, "duration": MAX_DURATION}
    if mode.name in ("blackhole", "loss"):
        percent = 100 if mode.name == "blackhole" else mode.percent
        spec |= {"action": "loss", "loss": {"loss": str(percent), "correlation": "0"}}
    elif mode.name == "partition":
        spec |= {"action": "partition", "direction": "both"}
        if other_nodes:
            # nodeSelectors match all their pairs at once and cannot say "not zone Z": the
            # other zones' nodes are named one by one.
            spec["target"] = {
                "mode": "all",
                "selector": {"namespaces": [namespace], "nodes": sorted(other_nodes)},
            }
        if data_tier:
            spec["externalTargets"] = list(data_tier)
        if not other_nodes and not data_tier:
            raise ValueError(
                "a partition needs other zones' nodes or MESH_K8S_DATA_TIER to cut the zone from"
            )
    else:
        raise ValueError(f"fault mode {mode} is not a network fault")
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "NetworkChaos",
        "metadata": {
            "name": f"meshsre-zone-{network_chaos_zone(zone)}-{mode.name}",
            "namespace": namespace,
            "labels": {
                FAULT_LABEL: network_chaos_zone(zone),
                "app.kubernetes.io/managed-by": "meshsre",
            },
        },
        "spec": spec,
    }
