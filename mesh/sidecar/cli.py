"""`meshsre sidecar`: run one governance sidecar in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

__all__ = ["sidecar", "sidecar_injector"]


@click.command("sidecar")
@click.option(
    "--mesh",
    "mesh_url",
    envvar="MESH_SIDECAR_MESH_URL",
    required=True,
    help="The mesh's URL (its Service or front door).",
)
@click.option(
    "--tool",
    "tools",
    multiple=True,
    metavar="NAME=URL",
    help="A tool and its upstream, e.g. search=http://127.0.0.1:9000 (repeatable).",
)
@click.option(
    "--nats",
    "nats_url",
    envvar="MESH_SIDECAR_NATS_URL",
    default=None,
    help="nats://... the mesh's event stream; without it the sidecar polls.",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File holding the agent's base64 Ed25519 seed (or MESH_SIDECAR_AGENT_KEY).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=15001, show_default=True, type=click.IntRange(0, 65535))
@click.option("--zone", envvar="MESH_SIDECAR_ZONE", default=None)
@click.option(
    "--instance",
    envvar="MESH_SIDECAR_INSTANCE",
    default=None,
    help="Name of this sidecar (default: the host name); names its event consumer.",
)
@click.option(
    "--register",
    "register_name",
    default=None,
    metavar="NAME",
    help="Register the agent under NAME first (already registered is fine).",
)
@click.option("--sponsor", "register_sponsor", default=None)
@click.option("--capability", "register_capabilities", multiple=True)
@click.option(
    "--policy",
    "register_policy",
    default=None,
    type=click.Choice(["standard", "strict", "permissive"]),
)
@click.option(
    "--grace",
    "grace_seconds",
    type=float,
    default=None,
    help="Seconds the mesh may be unreachable before every call is refused [30].",
)
@click.option(
    "--fallback-poll",
    "fallback_poll_seconds",
    type=float,
    default=None,
    help="Seconds between credential checks while the event stream is down [0.5].",
)
@click.option(
    "--upstream-timeout",
    "upstream_timeout_seconds",
    type=float,
    default=None,
    help="Seconds of silence from a tool before its call fails with 504 [30].",
)
def sidecar(tools: tuple[str, ...], host: str, port: int, **given: Any) -> None:
    """Govern an agent's tool calls: decide with the mesh, forward what is allowed."""
    from mesh.logs import configure
    from mesh.server import serve
    from mesh.sidecar.app import Sidecar
    from mesh.sidecar.settings import SidecarSettings, parse_tools

    try:
        options = {k: v for k, v in given.items() if v not in (None, ())}
        if tools:
            options["tools"] = parse_tools(tools)
        settings = SidecarSettings(**options)
        app = Sidecar(settings)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "MESH_SIDECAR_" + str(first["loc"][0]).upper()
        raise click.UsageError(f"{name}: {first['msg']}") from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    configure("INFO", settings.zone, settings.instance)
    # A proxy passes the tool's own Date and Server on, not a second pair.
    serve(app, host, port, lifespan="on", server_header=False, date_header=False)


@click.command("sidecar-injector")
@click.option(
    "--image",
    envvar="MESH_INJECTOR_IMAGE",
    required=True,
    help="The sidecar's image (this meshsre image).",
)
@click.option(
    "--mesh",
    "mesh_url",
    envvar="MESH_INJECTOR_MESH_URL",
    required=True,
    help="The mesh's URL as the sidecars reach it (its Service).",
)
@click.option(
    "--nats",
    "nats_url",
    envvar="MESH_INJECTOR_NATS_URL",
    default="",
    help="The event stream as the sidecars reach it.",
)
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8443, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Certificate for HTTPS (the API server calls webhooks over TLS only).",
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None)
def sidecar_injector(
    image: str,
    mesh_url: str,
    nats_url: str,
    host: str,
    port: int,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """The mutating admission webhook that injects the sidecar into governed pods."""
    from mesh.logs import configure
    from mesh.server import serve
    from mesh.sidecar.inject import Injector, InjectorConfig

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("give --tls-cert and --tls-key together")
    configure("INFO", "local", "sidecar-injector")
    tls = {"ssl_certfile": tls_cert, "ssl_keyfile": tls_key} if tls_cert else {}
    serve(
        Injector(InjectorConfig(image, mesh_url.rstrip("/"), nats_url)),
        host,
        port,
        lifespan="off",
        **tls,
    )
