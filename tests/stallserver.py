"""A tiny HTTP server that freezes on purpose: 1 s in every 5 s, like a stop-the-world pause.

A request that arrives during a stall is answered when the stall ends; the rest of the time it
answers at once. It is the fault that exposes coordinated omission, and no real mesh can be
made to produce it on cue, so the tests start this one on a loopback port.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType

__all__ = ["StallServer"]

_BODY = b'{"status":"ok"}'
_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
             + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)


class StallServer:
    def __init__(self, period: float = 5.0, stall: float = 1.0) -> None:
        self.period, self.stall = period, stall
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.t0 = time.monotonic()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def stall_left(self) -> float:
        """Seconds until the current stall ends (0 outside a stall)."""
        phase = (time.monotonic() - self.t0) % self.period
        return max(0.0, phase - (self.period - self.stall)) and self.period - phase

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                wait = self.stall_left()
                if wait:
                    await asyncio.sleep(wait)
                writer.write(_RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, sock=self.sock))
        try:
            self.loop.run_forever()
        finally:
            server.close()
            self.loop.run_until_complete(server.wait_closed())
            self.loop.close()

    def __enter__(self) -> StallServer:
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
