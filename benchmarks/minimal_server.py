"""The baseline for serve's rows: the smallest asyncio HTTP/1.1 server that answers the same routes.

    python benchmarks/minimal_server.py PORT

Keep-alive, Content-Length framing, one fixed token and fixed JSON: no checks, no token store, no
parser strictness. What serve does beyond this is what its rows cost over this baseline.
"""

from __future__ import annotations

import asyncio
import sys

TOKEN = b"AQAEAMinimalBaselineToken=="
CREDS = (
    b'{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIAMINIMALBASELINE0",'
    b'"SecretAccessKey":"0000000000000000000000000000000000000000","Token":"AAAA",'
    b'"Expiration":"2026-12-01T00:00:00Z","LastUpdated":"2026-12-01T00:00:00Z"}'
)


def reply(body: bytes, ctype: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0]
            if line.startswith(b"PUT "):
                writer.write(reply(TOKEN, b"text/plain"))
            elif line.endswith(b"security-credentials/ HTTP/1.1"):
                writer.write(reply(b"bench", b"text/plain"))
            else:
                writer.write(reply(CREDS, b"application/json"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
