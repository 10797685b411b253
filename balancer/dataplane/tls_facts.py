"""What members learn of a TLS client connection, read once per connection. No I/O.

One object for both member protocols: ``http`` members get ``X-Forwarded-Proto: https``,
``Forwarded: proto=https`` and the client certificate as RFC 9440's ``Client-Cert`` header;
``ajp13`` members get AJP's ``is_ssl`` flag and the attributes mod_jk sends from mod_ssl
(SSL_CIPHER, SSL_SESSION, SSL_KEY_SIZE, SSL_CERT as PEM, and ``AJP_SSL_PROTOCOL``), so
Tomcat's ``request.isSecure()`` is true and ``javax.servlet.request.X509Certificate`` is set.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """The TLS facts of one client connection."""

    cipher: bytes
    key_size: int | None
    session: bytes | None  # hex session id
    protocol: bytes | None  # TLSv1.3 ...
    cert: bytes | None  # the client's certificate, PEM (AJP's SSL_CERT, as mod_ssl gives it)
    cert_der: bytes | None = None

    @property
    def client_cert_field(self) -> bytes | None:
        """RFC 9440 ``Client-Cert`` value: the DER certificate as a structured-field byte
        sequence (``:base64:``)."""
        if not self.cert_der:
            return None
        return b":" + base64.b64encode(self.cert_der) + b":"


def tls_info(ssl_object: Any) -> TlsInfo | None:
    """TLS facts of a client connection (``transport.get_extra_info("ssl_object")``)."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    if not cipher:
        return None
    name, protocol, bits = cipher
    session = getattr(ssl_object, "session", None)
    session_id = getattr(session, "id", b"") if session is not None else b""
    cert = ssl_object.getpeercert(binary_form=True)
    return TlsInfo(
        cipher=name.encode("ascii"),
        key_size=bits if isinstance(bits, int) else None,
        session=session_id.hex().encode("ascii") if session_id else None,
        protocol=(ssl_object.version() or protocol or "").encode("ascii") or None,
        cert=ssl.DER_cert_to_PEM_cert(cert).encode("ascii") if cert else None,
        cert_der=cert or None,
    )
