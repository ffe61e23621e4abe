"""The verifying local endpoint over TLS, in its own process, for the benchmarks.

    python benchmarks/endpoint.py CA.pem TLS.crt TLS.key [DELAY_SECONDS]

Prints its URL, then serves until terminated. Same server as ``rolesanywhere-signer local-endpoint``
(which sets TCP_NODELAY on its answers, so no client waits on a delayed ACK).
"""

from __future__ import annotations

import signal
import sys

from cryptography import x509

from rolesanywhere_signer import endpoint_server


def main(argv: list[str]) -> int:
    ca, cert, key = argv[:3]
    delay = float(argv[3]) if len(argv) > 3 else 0.0
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
