"""A TCP proxy the test controls, between platform processes and Redis, to cut the network under them or
lose a reply."""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit


class Proxy:
    """Forwards 127.0.0.1:`port` to `host`:`target`. `cut()` stops all traffic the way a lost link does:
    packets vanish without a reset, so a client only finds out by its own timeouts; new connections are
    accepted and go nowhere. `restore()` forwards new connections again; the connections of before the cut
    stay dead (the state of a firewall or NAT on the way was lost), and their clients must notice.
    `lose_reply_to(marker)` drops the connection that carries the next request holding `marker` once Redis
    has answered it, as when a link fails after the server ran a command: the client never sees the reply."""

    def __init__(self, target: int, host: str = "127.0.0.1") -> None:
        self.host, self.target = host, target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.linked = threading.Event()
        self.linked.set()
        self.generation = 0  # bumped by each cut: links of an older generation never carry data again
        self.held: list[socket.socket] = []
        self.marker: bytes | None = None
        self.replies_lost = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def to(cls, url: str) -> Proxy:
        """A proxy to the server of the Redis URL `url`."""
        address = urlsplit(url)
        return cls(address.port, address.hostname)

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def proxied(self, url: str) -> str:
        """`url` through this proxy (its database kept)."""
        return self.url(int(urlsplit(url).path.strip("/") or 0))

    def cut(self) -> None:
        self.linked.clear()
        self.generation += 1

    def restore(self) -> None:
        self.linked.set()

    def lose_reply_to(self, marker: bytes) -> None:
        self.marker = marker

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
            generation = self.generation  # read before the link: a cut after this one ends this link too
            if not self.linked.is_set():
                continue  # accepted, never answered: a connection into the void
            upstream = socket.create_connection((self.host, self.target))
            self.held.append(upstream)
            link = {"losing": False}  # whether the next reply on this link is to be lost
            for source, sink, requests in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, sink, generation, link, requests), daemon=True
                ).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, generation: int, link: dict, requests: bool
    ) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data or generation != self.generation:
                return  # closed, or cut: what was read is dropped, and nothing more is forwarded
            if requests and self.marker is not None and self.marker in data:
                self.marker, link["losing"] = None, True
            elif not requests and link["losing"]:
                self.replies_lost += 1
                for sock in (source, sink):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)  # wakes the other pump and tells the client
                    sock.close()
                return
            try:
                sink.sendall(data)
            except OSError:
                return
