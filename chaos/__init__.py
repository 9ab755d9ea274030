"""Chaos Toolkit experiments of the mesh and their Python activities.

- ``az-failure.json``, ``backup-restore.json``, ``revocation.json``: the experiments, runnable
  with plain ``chaos run --rollback-strategy always`` or ``meshsre chaos NAME``;
- ``steady`` (hypothesis probes, limits from the SLO catalog), ``zone``, ``store`` and
  ``revocation`` (the drills' actions and probes), ``load`` (the constant-rate load, also a
  control), ``control`` (the clock: phases, fault start and end, the run record);
- ``record`` (the run record ``chaos-<drill>.json``), ``runner`` and ``cli`` (``meshsre chaos``);
- ``runstate``: what the control and activities of one run share.

Activities reach the deployment only through the platform adapter (``MESH_PLATFORM``), the
mesh's HTTP API (``MESH_URL``), Prometheus (``PROMETHEUS_URL``) and the alert receiver.
"""
