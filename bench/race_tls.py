"""The proxy race's TLS: one certificate every peer terminates with, and the settings they share.

The certificate is made here with ``cryptography`` (ECDSA P-256, the usual choice of a modern
site; SAN 127.0.0.1 and localhost), so nginx, HAProxy and pyjk do the same signature work per
handshake. All three use Mozilla's "intermediate" settings (pyjk's defaults): TLS 1.2 and 1.3,
the same cipher list, server preference, no session tickets.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# the same list as balancer/dataplane/tls.py (Mozilla intermediate, TLS 1.2 suites)
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


@dataclass(frozen=True)
class RaceCert:
    cert: Path
    key: Path
    combined: Path  # certificate + key in one file, as HAProxy's ``crt`` wants it


def make_cert(directory: Path) -> RaceCert:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    paths = RaceCert(directory / "race.crt", directory / "race.key", directory / "race.pem")
    paths.cert.write_bytes(cert_pem)
    paths.key.write_bytes(key_pem)
    paths.combined.write_bytes(cert_pem + key_pem)
    for p in (paths.key, paths.combined):
        p.chmod(0o600)
    return paths


def nginx_server(port: int, cert: RaceCert) -> str:
    """An nginx ``server`` block terminating TLS on ``port`` (same location as the plain one)."""
    return f"""
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {CIPHERS};
        ssl_prefer_server_ciphers on;
        ssl_session_tickets off;
        location / {{
            proxy_pass http://$jk_pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-Proto https;
            proxy_buffer_size 16k;
            proxy_buffers 8 16k;
            proxy_busy_buffers_size 32k;
        }}
    }}
"""


def haproxy_bind(port: int, cert: RaceCert) -> str:
    """A second ``bind`` line of the race frontend, terminating TLS."""
    return (
        f"    bind 127.0.0.1:{port} ssl crt {cert.combined} alpn http/1.1 "
        f"ssl-min-ver TLSv1.2 ciphers {CIPHERS} no-tls-tickets"
    )


def pyjk_args(port: int, cert: RaceCert) -> list[str]:
    return [
        "--listen",
        f"https://127.0.0.1:{port}",
        "--tls-cert",
        str(cert.cert),
        "--tls-key",
        str(cert.key),
    ]


def smoke(port: int, timeout: float = 5.0) -> list[str]:
    """Problems of a peer's HTTPS port: one GET /100 must answer 200 over TLS 1.2+."""
    import http.client
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the race's own self-signed certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", "/100")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            return [f"https GET /100 answered {resp.status}"]
    except (OSError, http.client.HTTPException) as exc:
        return [f"https GET /100 failed: {exc!r}"]
    finally:
        conn.close()
    return []
