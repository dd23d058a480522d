"""A TCP relay on 127.0.0.1 that a test can cut as a network partition would.

``cut()`` stops forwarding in both directions but holds every connection
open (no RST, no FIN): the clients' queries hang, as across a real
partition, rather than failing fast as they would on a refused
connection. New connections are accepted and wait. ``heal()`` forwards
again, including what was held meanwhile.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class Relay:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = int(self.listener.getsockname()[1])
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closed.set()
        self.flowing.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self.sockets.append(client)
        while not self.flowing.wait(0.1):  # cut: the connection waits, open
            if self.closed.is_set():
                return
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        with self._lock:
            self.sockets.append(server)
        pair = {client: server, server: client}
        try:
            while not self.closed.is_set():
                if not self.flowing.wait(0.1):
                    continue  # cut: nothing is read, so nothing moves
                readable, _, _ = select.select(list(pair), [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.close()
