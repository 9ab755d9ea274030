"""Choosing the platform adapter, and the local one's behaviour without a running cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.local.errors import NotUpError
from mesh.local.platform import LocalPlatform
from mesh.local.state import StateDir
from mesh.platform import Platform, PlatformError, Replica
from mesh.platforms import get_platform


def test_the_local_platform_is_the_default_and_satisfies_the_contract(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MESHSRE_STATE_DIR", str(tmp_path))
    platform = get_platform()
    assert isinstance(platform, LocalPlatform) and isinstance(platform, Platform)
    assert platform.paths.root == tmp_path.resolve()
    monkeypatch.setenv("MESH_PLATFORM", "local")
    assert get_platform().name == "local"


def test_an_unknown_or_unavailable_platform_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESH_PLATFORM", "nowhere")
    with pytest.raises(PlatformError, match="unknown platform 'nowhere'"):
        get_platform()
    with pytest.raises(PlatformError, match="kubernetes"):
        get_platform("kubernetes")


def test_every_operation_says_there_is_no_cluster_when_none_is_up(tmp_path: Path) -> None:
    platform = LocalPlatform(StateDir(tmp_path))
    calls = [platform.replicas, lambda: platform.fail_zone("a"),
             lambda: platform.restore_zone("a"), lambda: platform.backup(tmp_path / "b"),
             platform.destroy_store, lambda: platform.restore(tmp_path / "b")]
    for call in calls:
        with pytest.raises(NotUpError, match="meshsre up"):
            call()


def test_a_replica_serialises_to_plain_data() -> None:
    r = Replica(name="a-0", zone="a", url="http://127.0.0.11:18090", ready=True)
    assert r.to_dict() == {"name": "a-0", "zone": "a", "url": "http://127.0.0.11:18090",
                           "ready": True}
