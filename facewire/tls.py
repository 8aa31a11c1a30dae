"""TLS files: the check before a service serves them, and what its checks trust."""

from __future__ import annotations

import ssl
from pathlib import Path

from facewire.settings import Settings


def tls_problem(settings: Settings) -> str | None:
    """Why the TLS certificate and key cannot be served, in one line; None when they can,
    or when TLS is off. Both services check before start-up: uvicorn would only fail once
    serving, and grpc would take any bytes and fail every handshake, neither naming the
    file."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None or key is None:
        return None
    for what, path in (("certificate", cert), ("key", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            return f"cannot read the TLS {what} file {path}: {exc.strerror or exc}"
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, _no_passphrase)
    except _EncryptedKey:
        return f"the TLS key file {key} is encrypted; facewire needs an unencrypted key"
    except ssl.SSLError as exc:
        return f"the TLS certificate {cert} and key {key} are not a usable PEM pair: {exc}"
    return None


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> bytes:
    """Asked for a passphrase: fail rather than let OpenSSL prompt on the terminal."""
    raise _EncryptedKey


def trusted_file(settings: Settings) -> Path | None:
    """The PEM certificates a local check trusts for the services: FACEWIRE_TLS_CA_FILE,
    else the service's own certificate (a self-signed one trusts itself); None: the
    system's trust store."""
    return settings.tls_ca_file or settings.tls_cert_file
