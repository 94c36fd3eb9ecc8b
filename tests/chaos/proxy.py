"""A loopback TCP proxy that cuts, stalls and resets connections on command.

Runs an asyncio loop in a background thread. Modes:
  pass   forward bytes both ways
  stall  keep connections open but forward nothing (bytes are held, then flushed on pass)
  drop   close every connection (FIN) and refuse new ones while in this mode
  reset  like drop, but with RST (SO_LINGER 0) so the peers see ECONNRESET
Listens on 127.0.0.1 only; used between cpx-adapter and cpx-gateway (ZeroMQ over TCP).
"""
import asyncio
import socket
import struct
import threading


class Proxy:
    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.port = None
        self.conns = set()
        self.bytes = 0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._resume = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._resume = asyncio.Event()
        self._resume.set()
        srv = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self._server = srv
        self.port = srv.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._resume.wait()
                if self.mode in ("drop", "reset"):
                    break
                self.bytes += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._close(writer)

    def _close(self, writer, rst=False):
        try:
            if rst:
                s = writer.get_extra_info("socket")
                if s is not None:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
        except Exception:  # noqa: BLE001
            pass

    async def _client(self, creader, cwriter):
        if self.mode in ("drop", "reset"):
            self._close(cwriter, rst=self.mode == "reset")
            return
        try:
            ureader, uwriter = await asyncio.open_connection(*self.target)
        except OSError:
            self._close(cwriter, rst=True)
            return
        self.accepted += 1
        pair = (cwriter, uwriter)
        self.conns.add(pair)
        try:
            await asyncio.gather(self._pipe(creader, uwriter), self._pipe(ureader, cwriter))
        finally:
            self.conns.discard(pair)

    def _set(self, mode):
        self.mode = mode
        if mode == "stall":
            self._resume.clear()
            return
        if mode in ("drop", "reset"):
            for a, b in list(self.conns):
                self._close(a, rst=mode == "reset")
                self._close(b, rst=mode == "reset")
            self.conns.clear()
        self._resume.set()

    def set_mode(self, mode):
        assert mode in ("pass", "stall", "drop", "reset")
        done = threading.Event()

        def go():
            self._set(mode)
            done.set()
        self._loop.call_soon_threadsafe(go)
        done.wait(5)

    def close(self):
        def stop():
            self._set("drop")
            self._server.close()
            self._loop.stop()
        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)
