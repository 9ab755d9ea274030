"""Kubernetes deployment of the mesh: kustomize base and overlays (YAML beside this module).

The Python here only copies generated artifacts into the kustomize base: see ``mesh.deploy.sync``.
"""
