"""A fake Slack Socket Mode server on loopback: a real WebSocket server (RFC 6455, stdlib only).

`FakeSlack.socket_server = server` makes the fake Web API's apps.connections.open hand out one of its
`ws://127.0.0.1:PORT/link/?ticket=...` URLs, as Slack hands out wss://wss-primary.slack.com/link/?ticket=....
On connect it sends Slack's `hello`; `send(type, payload)` delivers an envelope in Slack's shape
(envelope_id, type, payload, accepts_response_payload, retry_attempt, retry_reason) and `ack(envelope_id)`
waits for the client's `{"envelope_id": ..., "payload": ...}` and says how long it took; `send(...,
envelope_id=same)` redelivers one. `disconnect()` sends Slack's `{"type": "disconnect", "reason":
"refresh_requested"}` and closes the old socket a little later, as Slack does; `drop()` just closes the
sockets. Pings are answered with pongs; client frames must be masked (RFC 6455 5.1), else the connection is
failed with 1002.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
APP_ID = "A0KEYTURN"


@dataclass(frozen=True)
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None  # what rode on the acknowledgement (a slash command's answer)
    after: float  # seconds from sending the envelope to receiving its acknowledgement
    raw: dict[str, Any]


class _Client:
    """One accepted WebSocket connection: a reader thread, a locked writer."""

    def __init__(self, server: FakeSocketMode, sock: socket.socket) -> None:
        self.server, self.sock = server, sock
        self.lock = threading.Lock()
        self.open = True

    def send_frame(self, opcode: int, data: bytes) -> None:
        head = bytes([0x80 | opcode])
        n = len(data)
        head += bytes([n]) if n < 126 else (bytes([126]) + struct.pack("!H", n) if n < 65536
                                            else bytes([127]) + struct.pack("!Q", n))
        with self.lock:
            self.sock.sendall(head + data)  # server frames are never masked

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(TEXT, json.dumps(message).encode())

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        if not second & 0x80:
            self.server.protocol_errors.append("unmasked client frame")
            self.close(1002)
            raise ConnectionError("unmasked client frame")
        mask = self._read(4)
        return bool(first & 0x80), first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(n)))

    def read_frame(self) -> tuple[int, bytes]:
        """One message: a frame, or a fragmented message's frames joined (opcode of the first)."""
        fin, opcode, data = self._frame()
        while not fin:
            fin, _, more = self._frame()
            data += more
        return opcode, data

    def run(self) -> None:
        try:
            while self.open:
                opcode, data = self.read_frame()
                if opcode == PING:
                    self.send_frame(PONG, data)
                elif opcode == TEXT:
                    self.server._received(json.loads(data))
                elif opcode == CLOSE:
                    self.close(1000)
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            self.open = False
            self.sock.close()

    def close(self, code: int = 1000) -> None:
        if self.open:
            self.open = False
            try:
                self.send_frame(CLOSE, struct.pack("!H", code))
            except OSError:
                pass


class FakeSocketMode:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._cond = threading.Condition()
        self._tickets: set[str] = set()
        self._clients: list[_Client] = []
        self._sent: dict[str, float] = {}
        self._acks: dict[str, list[Ack]] = {}  # every acknowledgement of an envelope id, in order
        self.handshakes = 0
        self.payloads: dict[str, dict[str, Any]] = {}  # what each envelope id carried (to redeliver it)
        self.refused: list[str] = []  # handshakes refused (unknown ticket, not a WebSocket upgrade)
        self.protocol_errors: list[str] = []
        self.unexpected: list[dict[str, Any]] = []  # messages from the client that acknowledge nothing sent
        self._thread = threading.Thread(target=self._accept, name="fake-socket-mode", daemon=True)

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeSocketMode:
        self._thread.start()
        return self

    def stop(self) -> None:
        for client in list(self._clients):
            client.close(1001)
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not, on Linux)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(5)

    def issue_url(self) -> str:
        """A one-time URL for apps.connections.open (Slack's tickets are single-use too)."""
        ticket = secrets.token_hex(16)
        with self._cond:
            self._tickets.add(ticket)
        return f"ws://{self.host}:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"

    # ---- the server side ---------------------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(sock,), name="fake-socket-conn", daemon=True).start()

    def _handshake(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 16384:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                return
            request += chunk
        head, _, _ = request.partition(b"\r\n\r\n")
        line, *fields = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        parts = line.split()
        ticket = parts[1].partition("ticket=")[2].partition("&")[0] if len(parts) == 3 else ""
        key = headers.get("sec-websocket-key", "")
        with self._cond:
            known = ticket in self._tickets
            self._tickets.discard(ticket)
        if (parts[:1] != ["GET"] or not known or headers.get("upgrade", "").lower() != "websocket"
                or "upgrade" not in headers.get("connection", "").lower() or not key
                or headers.get("sec-websocket-version") != "13"):
            self.refused.append(line)
            sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            sock.close()
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()  # RFC 6455 4.2.2
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        sock.settimeout(None)
        client = _Client(self, sock)
        client.send_json({"type": "hello", "num_connections": 1,
                          "debug_info": {"host": "applink-fake-1", "build_number": 1,
                                         "approximate_connection_time": 18060},
                          "connection_info": {"app_id": APP_ID}})
        with self._cond:
            self._clients.append(client)
            self.handshakes += 1
            self._cond.notify_all()
        client.run()

    def _received(self, message: dict[str, Any]) -> None:
        envelope_id = message.get("envelope_id")
        with self._cond:
            sent = self._sent.get(str(envelope_id))
            if sent is None:
                self.unexpected.append(message)
            else:
                self._acks.setdefault(str(envelope_id), []).append(
                    Ack(str(envelope_id), message.get("payload"), time.monotonic() - sent, message))
            self._cond.notify_all()

    # ---- what a test does --------------------------------------------------------------------------
    def wait_connected(self, timeout: float = 30.0, handshakes: int = 1) -> None:
        """Until a client is connected, and `handshakes` connections were opened in all (a reconnect: 2)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(c.open for c in self._clients) or self.handshakes < handshakes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no Socket Mode client connected within {timeout}s "
                                         f"(refused handshakes: {self.refused})")
                self._cond.wait(min(remaining, 0.1))

    @property
    def connections(self) -> int:
        return sum(1 for c in self._clients if c.open)

    def send(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool | None = None,
             retry_attempt: int = 0, envelope_id: str | None = None) -> str:
        """Deliver one envelope to the newest connection, as Slack does; returns its envelope_id (give the
        id of one sent before to redeliver it)."""
        client = next((c for c in reversed(self._clients) if c.open), None)
        if client is None:
            raise AssertionError("no Socket Mode client is connected")
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                                    "accepts_response_payload": (kind == "slash_commands"
                                                                 if accepts_response_payload is None
                                                                 else accepts_response_payload)}
        if kind == "events_api":
            envelope.update(retry_attempt=retry_attempt, retry_reason="" if not retry_attempt else "timeout")
        with self._cond:
            self._sent[envelope_id] = time.monotonic()
            self.payloads[envelope_id] = payload
        client.send_json(envelope)
        return envelope_id

    def disconnect(self, reason: str = "refresh_requested", close_after: float = 1.0) -> None:
        """Slack's warning that this connection goes away; the socket closes `close_after` seconds later."""
        old = [c for c in self._clients if c.open]
        for client in old:
            client.send_json({"type": "disconnect", "reason": reason,
                              "debug_info": {"host": "applink-fake-1"}})

        def _close() -> None:
            for client in old:
                client.close(1000)
        threading.Timer(close_after, _close).start()

    def drop(self) -> None:
        """Close every open connection at once (a network drop, Slack's server going away)."""
        for client in [c for c in self._clients if c.open]:
            client.close(1001)
            try:
                client.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def acks(self, envelope_id: str) -> list[Ack]:
        with self._cond:
            return list(self._acks.get(envelope_id, []))

    def ack(self, envelope_id: str, timeout: float = 3.0, nth: int = 1) -> Ack:
        """The `nth` acknowledgement of `envelope_id`; fails unless it arrives within `timeout` (Slack's 3 s)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._acks.get(envelope_id, [])) < nth:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"envelope {envelope_id} not acknowledged within {timeout}s "
                                         f"(unexpected messages: {self.unexpected})")
                self._cond.wait(min(remaining, 0.05))
            return self._acks[envelope_id][nth - 1]
