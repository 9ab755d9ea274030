"""Grafana dashboards of the mesh, written with grafanalib and generated into ``build/``.

``python -m dashboards`` (or ``make dashboards``) regenerates the JSON and the sidecar
ConfigMaps; ``meshsre dashboards push`` uploads them through Grafana's HTTP API.
"""

from dashboards.build import all_dashboards, outputs, write

__all__ = ["all_dashboards", "outputs", "write"]
