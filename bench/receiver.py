"""A lean webhook receiver for the benchmark: HTTP/1.1 keep-alive on httptools + uvloop, answers 200,
counts requests and distinct `webhook-id`s (signatures are verified in the tests, not here, so the
receiver costs the machine as little as possible). Prints `ready <port>` and, on SIGTERM, its counts
as JSON."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import httptools
import uvloop

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class Counts:
    requests = 0
    ids: set[bytes] = set()


class Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.header_name = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            Counts.ids.add(value)

    def on_message_complete(self) -> None:
        Counts.requests += 1
        self.transport.write(RESPONSE)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Receiver, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    print(json.dumps({"requests": Counts.requests, "distinct_ids": len(Counts.ids)}), flush=True)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
