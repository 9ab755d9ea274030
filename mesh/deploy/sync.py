"""Copy the generated PrometheusRule and dashboard ConfigMaps into the kustomize base.

kustomize refuses files outside a kustomization's root, so the base keeps copies of
``alerts/build/prometheusrule.yaml`` and ``dashboards/build/configmaps.yaml``. The copies are
byte-for-byte the sources behind one header line, committed, and a test regenerates and diffs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["COPIES", "DEPLOY_DIR", "REPO_ROOT", "Copy", "render", "stale", "write"]

DEPLOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEPLOY_DIR.parent.parent


@dataclass(frozen=True)
class Copy:
    source: str  # relative to the repository root
    target: str  # relative to mesh/deploy
    made_by: str  # what regenerates the source


COPIES = (
    Copy("alerts/build/prometheusrule.yaml", "base/generated/prometheusrule.yaml", "make alerts"),
    Copy("dashboards/build/configmaps.yaml", "base/generated/dashboards.yaml", "make dashboards"),
)


def render(copy: Copy, root: Path = REPO_ROOT) -> str:
    header = (
        f"# DO NOT EDIT: copied from {copy.source} by `python -m mesh.deploy`"
        f" (run `{copy.made_by}` first to change it).\n"
    )
    return header + (root / copy.source).read_text(encoding="utf-8")


def write(deploy_dir: Path = DEPLOY_DIR, root: Path = REPO_ROOT) -> list[Path]:
    written = []
    for copy in COPIES:
        path = deploy_dir / copy.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(copy, root), encoding="utf-8")
        written.append(path)
    return written


def stale(deploy_dir: Path = DEPLOY_DIR, root: Path = REPO_ROOT) -> list[str]:
    """Targets whose content differs from what ``write`` would produce."""
    out = []
    for copy in COPIES:
        path = deploy_dir / copy.target
        if not path.exists() or path.read_text(encoding="utf-8") != render(copy, root):
            out.append(copy.target)
    return out
