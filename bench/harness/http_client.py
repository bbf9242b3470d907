"""Raw HTTP/1.1 over asyncio, one keep-alive connection per client: what the API bench's Django phase and the
reliability suite's simulated annotators send their requests on."""

from __future__ import annotations

import asyncio

from bench.harness import LOOPBACK

SUBMIT_BODY = {"choice": "a", "strength": "better", "time_spent_ms": 1000}
"""A submit's body, less its idempotency key."""


class StaleConnection(ConnectionError):
    """The server closed a kept-alive connection before answering; the request was not handled."""


class HttpConnection:
    """One HTTP/1.1 keep-alive connection, reopened when the server closes it (sync workers always do)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, path: str, headers: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """POST `body` with `headers` (CRLF-terminated lines); a connection found stale is reopened once."""
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.port)
            assert self.reader is not None
            head = f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Length: {len(body)}\r\n".encode()
            self.writer.write(head + headers + b"\r\n" + body)
            try:
                return await self.read_response(self.reader)
            except StaleConnection:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def read_response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise StaleConnection() from exc
            raise
        except ConnectionResetError as exc:
            raise StaleConnection() from exc
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        if status == 204 or status == 304 or status < 200:
            body = b""
        elif chunked:
            body = await self.read_chunked(reader)
        elif length is not None:
            body = await reader.readexactly(length)
        else:
            body, close = await reader.read(), True
        if close:
            self.close()
        return status, body

    @staticmethod
    async def read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
