"""Exit 0 when the REST service answers /readyz: ``python -m rest_service.healthcheck``.

Docker's HEALTHCHECK uses it. It reads the same FACEWIRE_* settings as the service: the
port, and TLS (https when FACEWIRE_TLS_CERT_FILE is set, trusting FACEWIRE_TLS_CA_FILE
if set, else the service's own certificate).
"""

from __future__ import annotations

import argparse
import http.client
import ssl
import sys

from facewire.settings import Settings
from facewire.tls import trusted_file


def ready(settings: Settings, host: str, timeout: float) -> bool:
    """Whether the REST service on ``host`` and the configured port answers /readyz 200."""
    connection: http.client.HTTPConnection
    if settings.tls:
        context = ssl.create_default_context(cafile=trusted_file(settings))
        context.check_hostname = False  # a local check: the certificate names the service
        connection = http.client.HTTPSConnection(
            host, settings.rest_port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, settings.rest_port, timeout=timeout)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    sys.exit(0 if ready(Settings(), args.host, args.timeout) else 1)


if __name__ == "__main__":
    main()
