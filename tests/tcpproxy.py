"""A loopback TCP proxy that can be cut and restored: how tests make PostgreSQL or Redis
"unreachable" for one mesh process without touching the machine's services.

Two ways to cut, because the mesh must survive both:
- ``refuse``: the server died. Live connections are reset and the port refuses new ones.
- ``blackhole``: the network partitioned. Connections are accepted (or kept) but no byte
  passes either way, so only the client's own timeouts can notice.

>>> with TcpProxy("127.0.0.1", 5432) as proxy:  # doctest: +SKIP
...     proxy.cut()
...     proxy.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import threading
from types import TracebackType
from typing import Literal

__all__ = ["CutMode", "TcpProxy"]

CutMode = Literal["refuse", "blackhole"]
_CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._rotation: itertools.cycle[tuple[str, int]] | None = None
        self.host = host
        self.port = 0
        self.mode: CutMode | None = None  # None: forwarding
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcpproxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()

    # -- control, from the test's thread ------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._run(self._listen())
        return self

    def round_robin(self, *targets: tuple[str, int]) -> None:
        """Send each new connection to the next of ``targets``, as a load balancer does."""
        self._rotation = itertools.cycle(targets)

    def cut(self, mode: CutMode = "refuse") -> None:
        self._run(self._cut(mode))

    def restore(self) -> None:
        self._run(self._restore())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._cut("refuse"))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def url(self, scheme: str, rest: str = "") -> str:
        """``url("redis", "/0")`` -> ``redis://127.0.0.1:PORT/0``."""
        return f"{scheme}://{self.host}:{self.port}{rest}"

    def _run(self, coro: object) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        future.result(timeout=10)

    # -- the proxy, on its own loop -----------------------------------------------------

    async def _listen(self) -> None:
        # The same port on every restore: the client's URL must keep working. SO_REUSEADDR
        # lets us bind again while closed connections linger in TIME_WAIT.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=sock)
        self._flowing.set()

    async def _cut(self, mode: CutMode) -> None:
        self.mode = mode
        self._flowing.clear()
        if mode == "refuse":
            if self._server is not None:
                self._server.close()
                self._server = None
            for task in list(self._links):
                task.cancel()
            await asyncio.gather(*self._links, return_exceptions=True)

    async def _restore(self) -> None:
        mode, self.mode = self.mode, None
        if mode == "blackhole":
            # Connections held through a partition are stale on both ends: drop them, as
            # a real network's keepalives would, and let the clients reconnect.
            for task in list(self._links):
                task.cancel()
            await asyncio.gather(*self._links, return_exceptions=True)
        if self._server is None:
            await self._listen()
        self._flowing.set()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
                      ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()  # a blackholed connect hangs here, as on a partition
            target = next(self._rotation) if self._rotation else self.target
            upstream_r, upstream_w = await asyncio.open_connection(*target)
            await asyncio.gather(self._pump(client_r, upstream_w),
                                 self._pump(upstream_r, client_w))
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Our own cut. Not re-raised: asyncio's stream callback would log the
            # cancelled handler task as an error.
            _reset(client_w)
            if upstream_w is not None:
                _reset(upstream_w)
        finally:
            self._links.discard(task)
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                break
            await self._flowing.wait()  # during a blackhole, bytes are held, never delivered
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort with RST rather than FIN: a dead server does not say goodbye politely."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
