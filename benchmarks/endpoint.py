"""The verifying local endpoint over TLS, in its own process, for the benchmarks.

    python benchmarks/endpoint.py CA.pem TLS.crt TLS.key [DELAY_SECONDS]

Prints its URL, then serves until terminated. Same server as ``rolesanywhere-signer local-endpoint``,
with one difference that matters for timing: TCP_NODELAY on the answers. ``BaseHTTPRequestHandler``
writes the status/headers and the body in two ``send`` calls; with Nagle on, the body waits for the
client's (delayed, ~40 ms) ACK of the headers. That stall is a property of the test server, not of
AWS, and it would add the same ~40 ms to every client measured, ours and the peer's alike.
"""

from __future__ import annotations

import signal
import sys

from cryptography import x509

from rolesanywhere_signer import endpoint_server


def main(argv: list[str]) -> int:
    ca, cert, key = argv[:3]
    delay = float(argv[3]) if len(argv) > 3 else 0.0
    endpoint_server._Handler.disable_nagle_algorithm = True
    with open(ca, "rb") as f:
        anchors = x509.load_pem_x509_certificates(f.read())
    ep = endpoint_server.LocalEndpoint(anchors, tls=(cert, key), delay=delay)

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    sys.stdout.write(ep.url + "\n")
    sys.stdout.flush()
    try:
        ep.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
