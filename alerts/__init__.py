"""SLO catalog, Prometheus recording and alerting rules, and their OpenSLO export.

``python -m alerts`` (``make alerts``) regenerates ``alerts/build/`` from the catalog.
"""

from alerts.catalog import (
    BACKUP_FRESHNESS,
    CATALOG,
    MESH_JOB,
    SLI,
    SLO,
    CatalogError,
    FreshnessObjective,
    burn_rate_windows,
    sli_windows,
)
from alerts.windows import AlertWindow

__all__ = [
    "BACKUP_FRESHNESS",
    "CATALOG",
    "MESH_JOB",
    "SLI",
    "SLO",
    "AlertWindow",
    "CatalogError",
    "FreshnessObjective",
    "burn_rate_windows",
    "sli_windows",
]
