"""A TCP proxy the test controls, between platform processes and Redis, to cut the network under them."""

from __future__ import annotations

import socket
import threading


class Proxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target`. `cut()` stops all traffic the way a lost link does:
    packets vanish without a reset, so a client only finds out by its own timeouts; new connections are
    accepted and go nowhere. `restore()` forwards new connections again; the connections of before the cut
    stay dead (the state of a firewall or NAT on the way was lost), and their clients must notice."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.linked = threading.Event()
        self.linked.set()
        self.generation = 0  # bumped by each cut: links of an older generation never carry data again
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def cut(self) -> None:
        self.linked.clear()
        self.generation += 1

    def restore(self) -> None:
        self.linked.set()

    def close(self) -> None:
        self.listener.close()
        for sock in self.held:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(client)
            if not self.linked.is_set():
                continue  # accepted, never answered: a connection into the void
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.held.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, self.generation), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, generation: int) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data or generation != self.generation:
                return  # closed, or cut: what was read is dropped, and nothing more is forwarded
            try:
                sink.sendall(data)
            except OSError:
                return
