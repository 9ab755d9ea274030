"""The sidecar injector: a Kubernetes mutating admission webhook that adds the governance
sidecar to every pod labelled ``mesh.agentmesh.ai/governed: "true"``.

The pod says what the sidecar needs in annotations:

- ``mesh.agentmesh.ai/agent-key-secret``: the Secret holding the agent's seed (key
  ``agent-key``), mounted read-only; required: without a key there is no agent to govern
  (the pod is refused, with the reason, rather than run ungoverned);
- ``mesh.agentmesh.ai/tools``: ``name=url,name=url``, the tools the agent may reach through
  the sidecar (the agent then calls ``http://127.0.0.1:15001/tools/<name>/...``).

The answer is an AdmissionReview with a JSONPatch; a pod that already has the sidecar, or is
not labelled, is allowed unchanged. ``POST /mutate``; ``/health/ready`` for the kubelet.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from mesh.sidecar.proxy import reply
from mesh.sidecar.settings import parse_tools

__all__ = ["GOVERNED", "INJECTED", "Injector", "InjectorConfig", "review"]

GOVERNED = "mesh.agentmesh.ai/governed"
INJECTED = "mesh.agentmesh.ai/sidecar"
KEY_SECRET = "mesh.agentmesh.ai/agent-key-secret"
TOOLS = "mesh.agentmesh.ai/tools"
CONTAINER = "mesh-sidecar"
PORT = 15001


@dataclass(frozen=True)
class InjectorConfig:
    image: str
    mesh_url: str
    nats_url: str = ""


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")  # a JSON pointer token


def _container(config: InjectorConfig, tools: dict[str, str]) -> dict[str, Any]:
    args = [
        "sidecar",
        "--host",
        "127.0.0.1",
        "--port",
        str(PORT),
        "--mesh",
        config.mesh_url,
        "--key-file",
        "/var/run/agentmesh/agent-key",
    ]
    if config.nats_url:
        args += ["--nats", config.nats_url]
    for name, url in sorted(tools.items()):
        args += ["--tool", f"{name}={url}"]
    return {
        "name": CONTAINER,
        "image": config.image,
        "args": args,
        "env": [
            {
                "name": "MESH_SIDECAR_INSTANCE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
            },
            {
                "name": "MESH_SIDECAR_ZONE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
        ],
        "ports": [{"name": "governance", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/health/ready", "port": PORT}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/health/live", "port": PORT}, "periodSeconds": 10},
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "agentmesh-agent-key", "mountPath": "/var/run/agentmesh", "readOnly": True}
        ],
    }


def patch_for(pod: dict[str, Any], config: InjectorConfig) -> list[dict[str, Any]] | str:
    """The JSONPatch that governs ``pod`` (empty: leave it), or why it must be refused."""
    meta = pod.get("metadata") or {}
    labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
    spec = pod.get("spec") or {}
    if (
        labels.get(GOVERNED) != "true"
        or notes.get(INJECTED) == "injected"
        or any(c.get("name") == CONTAINER for c in spec.get("containers") or [])
    ):
        return []
    secret = notes.get(KEY_SECRET)
    if not secret:
        return f"a governed pod needs the annotation {KEY_SECRET} naming its agent's key Secret"
    try:
        tools = parse_tools([t for t in notes.get(TOOLS, "").split(",") if t.strip()])
    except ValueError as exc:
        return f"annotation {TOOLS}: {exc}"
    volume = {
        "name": "agentmesh-agent-key",
        "secret": {
            "secretName": secret,
            "defaultMode": 0o400,
            "items": [{"key": "agent-key", "path": "agent-key"}],
        },
    }
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/spec/containers/-", "value": _container(config, tools)}
    ]
    if "volumes" in spec:
        ops.append({"op": "add", "path": "/spec/volumes/-", "value": volume})
    else:
        ops.append({"op": "add", "path": "/spec/volumes", "value": [volume]})
    if "annotations" not in meta:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    ops.append(
        {"op": "add", "path": f"/metadata/annotations/{_escape(INJECTED)}", "value": "injected"}
    )
    return ops


def review(body: dict[str, Any], config: InjectorConfig) -> dict[str, Any]:
    """The AdmissionReview answer to an AdmissionReview request."""
    request = body.get("request") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    if request.get("kind", {}).get("kind") == "Pod" and request.get("operation") == "CREATE":
        patch = patch_for(request.get("object") or {}, config)
        if isinstance(patch, str):
            response = {**response, "allowed": False, "status": {"code": 400, "message": patch}}
        elif patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {
        "apiVersion": body.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": response,
    }


class Injector:
    """The webhook as an ASGI application."""

    def __init__(self, config: InjectorConfig) -> None:
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"].startswith("/health/"):
            await reply(send, 200, {"status": "ok"})
            return
        if scope["path"] != "/mutate" or scope["method"] != "POST":
            await reply(
                send,
                404,
                {
                    "error": "not_found",
                    "field": "path",
                    "message": "POST an AdmissionReview to /mutate",
                },
            )
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        try:
            body = json.loads(b"".join(chunks))
            if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
                raise ValueError("no request")
        except ValueError:
            await reply(
                send,
                400,
                {
                    "error": "invalid_request",
                    "field": "body.request",
                    "message": "the body must be an AdmissionReview with a request",
                },
            )
            return
        await reply(send, 200, review(body, self.config))
