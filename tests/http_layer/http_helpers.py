"""Raw-socket HTTP and WebSocket clients for the HTTP-layer tests: bytes on the wire, no Tornado code."""

import base64
import os
import socket
import struct
from typing import Optional, Tuple


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    """Reads until ``marker`` has arrived (or the peer closed); returns everything read."""
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def status_of(response: bytes) -> Optional[int]:
    """The status code of the first response in ``response`` (None if there is none)."""
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])


def websocket_handshake(port: int, path: str = "/ws") -> socket.socket:
    """Opens a WebSocket to ``path`` with a plain socket; returns it after the 101 answer."""
    sock = connect(port)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = read_until(sock, b"\r\n\r\n")
    assert status_of(head) == 101, head
    return sock


def masked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client frame (clients must mask) with ``opcode`` and ``payload``."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> Tuple[int, bytes]:
    """Reads one (unmasked, server) frame: ``(opcode, payload)``.  Raises EOFError at end of stream."""
    first, second = _recv_exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack(">H", _recv_exactly(sock, 2))
    elif length == 127:
        (length,) = struct.unpack(">Q", _recv_exactly(sock, 8))
    return first & 0x0F, _recv_exactly(sock, length)
