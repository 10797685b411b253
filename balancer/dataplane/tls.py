"""TLS as a listener property: settings, certificates, contexts chosen by SNI, counters.

Nothing here touches a socket. ``load_certificates(settings, now)`` reads and checks every
certificate/key pair and builds one ``ssl.SSLContext`` per pair; the result (``Certificates``)
is immutable, so a reload builds a new one first and swaps it in only when every pair passed
— a bad pair raises ``TlsError`` naming the file and the running certificates stay. The
accepting side (``balancer.dataplane.tls_listener``) gives each new connection the contexts
current at its accept; connections in flight keep theirs.

Why Python's ``ssl`` (OpenSSL) on uvloop: it is the TLS stack nginx, HAProxy and httpd's
mod_ssl use, so cipher names, protocol names and client-certificate PEMs are the ones mod_jk
sends from mod_ssl and Tomcat expects; it ships with CPython (no extra native dependency), and
uvloop drives it from Cython with memory BIOs. A pure-Python TLS would be far slower, and a
separate terminator (stunnel, nginx) is the second hop this issue removes.

Defaults follow Mozilla's "intermediate" profile (ssl-config.mozilla.org, v5.7): TLS 1.2 and
1.3, its cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's, all AEAD), no compression
(CRIME), ALPN ``http/1.1`` only. The server's cipher order wins (the issue asks for it; with
this list every choice is an AEAD suite with forward secrecy either way).

Session resumption: Python's ``ssl`` resumes only with stateless session tickets (a server
context with ``OP_NO_TICKET`` resumed nothing in our tests, TLS 1.2 or 1.3). So tickets are
off by default (Mozilla's advice for nginx too: a ticket key that lives as long as the process
undoes forward secrecy), and ``--tls-session-tickets MINUTES`` turns them on with keys that
change every MINUTES (tls_tickets.py: a one-way ratchet every process shares, given to
OpenSSL's ticket key callback; ``Terminator.rotate``) — a ticket resumes until the second
boundary after it was issued, after which that client does one full handshake.
"""

from __future__ import annotations

import ssl
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

# ssl-config.mozilla.org "intermediate", TLS 1.2 suites (TLS 1.3 suites are OpenSSL's defaults)
MOZILLA_INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)
UNKNOWN_SNI_CHOICES = ("default", "refuse")
CLIENT_VERIFY_CHOICES = ("optional", "required")
EXPIRY_WARNING_DAYS = 14


class TlsError(Exception):
    """A certificate, key or CA file that cannot be served; ``file`` names it."""

    def __init__(self, file: Path | str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = str(file)
        self.message = message


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """What the command line says about TLS (``--tls-*``)."""

    pairs: tuple[tuple[Path, Path], ...] = ()  # (cert, key); the first is the default
    cert_dir: Path | None = None  # NAME.crt + NAME.key, chosen by SNI
    unknown_sni: str = "default"  # a name with no certificate: serve the default, or refuse
    client_ca: Path | None = None  # ask for client certificates signed by these CAs
    client_verify: str = "optional"  # with client_ca: "optional" or "required"
    handshake_timeout: float = 10.0  # s from accept to a finished handshake (slowloris)
    ticket_rotation: float = 0.0  # s between ticket key renewals; 0: session tickets off
    max_client_hello: int = 16 * 1024  # bytes; a larger ClientHello is refused unread

    @property
    def enabled(self) -> bool:
        return bool(self.pairs) or self.cert_dir is not None


@dataclass(frozen=True, slots=True)
class CertInfo:
    """One checked certificate/key pair, for ``--check``, the status page and /metrics."""

    cert_file: str
    key_file: str
    names: tuple[str, ...]  # DNS names the certificate covers (SAN, or CN without SAN)
    subject: str
    not_before: datetime
    not_after: datetime
    default: bool = False

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


@dataclass(frozen=True, slots=True)
class Certificates:
    """Contexts of one load: the default one and one per name the certificates cover."""

    default: ssl.SSLContext
    exact: dict[str, ssl.SSLContext]
    wildcard: dict[str, ssl.SSLContext]  # "example.com" for a "*.example.com" certificate
    infos: tuple[CertInfo, ...]
    settings: TlsSettings

    def context_for(self, server_name: str | None) -> ssl.SSLContext | None:
        """The context for an SNI name (None: no certificate covers it)."""
        if server_name is None:
            return self.default
        name = server_name.lower().rstrip(".")
        ctx = self.exact.get(name)
        if ctx is None:
            _, dot, parent = name.partition(".")
            ctx = self.wildcard.get(parent) if dot else None
        return ctx


@dataclass(slots=True)
class TlsStats:
    """Counters of one listener set; read by the status page and /metrics."""

    handshakes: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # reason -> count
    protocols: Counter[str] = field(default_factory=Counter)
    ciphers: Counter[str] = field(default_factory=Counter)
    sni_default: int = 0  # names without a certificate that got the default one
    reloads: int = 0
    reload_failures: int = 0

    def handshake_done(self, protocol: str | None, cipher: str | None) -> None:
        self.handshakes += 1
        self.protocols[protocol or "?"] += 1
        self.ciphers[cipher or "?"] += 1

    def failed(self, reason: str) -> None:
        self.failures[reason] += 1

    def add(self, other: TlsStats) -> None:
        """Another process's handshake counters into these (reloads stay each one's own:
        every process reloads the same certificates)."""
        self.handshakes += other.handshakes
        self.sni_default += other.sni_default
        self.failures.update(other.failures)
        self.protocols.update(other.protocols)
        self.ciphers.update(other.ciphers)


# --- checking certificates ---------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(path, f"cannot read the {what}: {exc.strerror or exc}") from exc


def cert_names(cert: x509.Certificate) -> tuple[str, ...]:
    """DNS names a certificate covers: its subjectAltName DNS entries, else its CN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(n.lower() for n in names)


def name_covered(name: str, names: tuple[str, ...]) -> bool:
    """Whether ``name`` matches one of ``names`` (a wildcard covers one label, RFC 6125)."""
    name = name.lower().rstrip(".")
    if name in names:
        return True
    _, dot, parent = name.partition(".")
    return bool(dot) and f"*.{parent}" in names


def inspect_pair(
    cert_file: Path, key_file: Path, now: datetime, *, must_cover: str | None = None
) -> CertInfo:
    """Check one pair: both readable, PEM, the key belongs to the certificate, valid at
    ``now``, and (for a ``--tls-dir`` pair) the certificate covers its file's name."""
    cert_pem = _read(cert_file, "certificate")
    key_pem = _read(key_file, "private key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise TlsError(cert_file, f"not a PEM certificate ({exc})") from exc
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:
        raise TlsError(key_file, "the key is encrypted (no passphrase support)") from exc
    except ValueError as exc:
        raise TlsError(key_file, f"not a PEM private key ({exc})") from exc
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != leaf.public_key().public_bytes(der, spki):
        raise TlsError(key_file, f"the key does not match the certificate {cert_file}")
    not_before = leaf.not_valid_before_utc
    not_after = leaf.not_valid_after_utc
    if now > not_after:
        raise TlsError(cert_file, f"expired on {not_after:%Y-%m-%d %H:%M} UTC")
    if now < not_before:
        raise TlsError(cert_file, f"not valid before {not_before:%Y-%m-%d %H:%M} UTC")
    names = cert_names(leaf)
    if must_cover is not None and not name_covered(must_cover, names):
        raise TlsError(
            cert_file, f"does not cover the name {must_cover!r} (covers: {', '.join(names)})"
        )
    return CertInfo(
        str(cert_file), str(key_file), names, leaf.subject.rfc4514_string(), not_before, not_after
    )


def dir_pairs(cert_dir: Path) -> list[tuple[str, Path, Path]]:
    """``NAME.crt`` + ``NAME.key`` in ``cert_dir``, sorted by name; a lone file is an error."""
    try:
        files = sorted(p for p in cert_dir.iterdir() if p.suffix in (".crt", ".key"))
    except OSError as exc:
        raise TlsError(cert_dir, f"cannot list the directory: {exc.strerror or exc}") from exc
    stems = sorted({p.stem for p in files})
    pairs = []
    for stem in stems:
        crt, key = cert_dir / f"{stem}.crt", cert_dir / f"{stem}.key"
        if not crt.exists():
            raise TlsError(key, f"no certificate {crt.name} beside the key")
        if not key.exists():
            raise TlsError(crt, f"no key {key.name} beside the certificate")
        pairs.append((stem, crt, key))
    return pairs


# --- contexts ---------------------------------------------------------------------------------


def server_context(cert_file: Path, key_file: Path, settings: TlsSettings) -> ssl.SSLContext:
    """A server context with the defaults above, serving one pair."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(MOZILLA_INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if settings.ticket_rotation <= 0:
        ctx.options |= ssl.OP_NO_TICKET
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # client-initiated renegotiation is a DoS lever
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(cert_file, f"OpenSSL refuses the pair with {key_file}: {exc}") from exc
    if settings.client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=settings.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(settings.client_ca, f"cannot load the client CA: {exc}") from exc
        required = settings.client_verify == "required"
        ctx.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    return ctx


def load_certificates(settings: TlsSettings, now: datetime | None = None) -> Certificates:
    """Check every pair and build the contexts; TlsError on the first bad one."""
    now = now or datetime.now(UTC)
    named: list[tuple[str | None, Path, Path]] = [(None, c, k) for c, k in settings.pairs]
    if settings.cert_dir is not None:
        found = dir_pairs(settings.cert_dir)
        # without --tls-cert the default is default.crt if there is one, else the first name
        found.sort(key=lambda p: p[0] != "default")
        named += found
    if not named:
        raise TlsError(settings.cert_dir or "--tls-cert", "no certificate to serve")
    exact: dict[str, ssl.SSLContext] = {}
    wildcard: dict[str, ssl.SSLContext] = {}
    infos: list[CertInfo] = []
    default: ssl.SSLContext | None = None
    for stem, cert_file, key_file in named:
        cover = stem if stem not in (None, "default") else None
        info = inspect_pair(cert_file, key_file, now, must_cover=cover)
        ctx = server_context(cert_file, key_file, settings)
        if default is None:
            default = ctx
            info = replace(info, default=True)
        infos.append(info)
        for name in (stem, *info.names) if cover else info.names:
            assert name is not None
            if name.startswith("*."):
                wildcard.setdefault(name[2:], ctx)
            else:
                exact.setdefault(name, ctx)  # the first pair naming a host wins
    assert default is not None
    return Certificates(default, exact, wildcard, tuple(infos), settings)


def check_lines(settings: TlsSettings, now: datetime | None = None) -> list[str]:
    """``--check``'s report: one line per certificate with its names and expiry; TlsError
    when one cannot be served."""
    now = now or datetime.now(UTC)
    certs = load_certificates(settings, now)
    lines = []
    for info in certs.infos:
        days = info.days_left(now)
        mark = " (default)" if info.default else ""
        warn = f" WARNING: expires in {days:.0f} day(s)" if days < EXPIRY_WARNING_DAYS else ""
        lines.append(
            f"{info.cert_file}{mark}: {', '.join(info.names) or '-'}; "
            f"expires {info.not_after:%Y-%m-%d %H:%M} UTC ({days:.0f} days){warn}"
        )
    return lines


# --- what went wrong --------------------------------------------------------------------------

# OpenSSL reason codes -> the reasons the counters use
_SSL_REASONS = {
    "HTTP_REQUEST": "plain-http",
    "WRONG_VERSION_NUMBER": "protocol-version",
    "UNSUPPORTED_PROTOCOL": "protocol-version",
    "VERSION_TOO_LOW": "protocol-version",
    "NO_SHARED_CIPHER": "no-shared-cipher",
    "NO_SUITABLE_SIGNATURE_ALGORITHM": "no-shared-cipher",
    "NO_APPLICATION_PROTOCOL": "alpn",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "client-cert",
    "CERTIFICATE_VERIFY_FAILED": "client-cert",
    "CALLBACK_FAILED": "unknown-sni",
    "CLIENTHELLO_TLSEXT": "unknown-sni",
    "EXCESSIVE_MESSAGE_SIZE": "oversized-client-hello",
}


def failure_reason(exc: BaseException) -> str:
    """The counter a failed handshake goes to."""
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in _SSL_REASONS:
            return _SSL_REASONS[reason]
        if reason.startswith(("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_")):
            return "client-alert"  # the client gave up (it did not trust the certificate...)
        return "tls-error"
    if isinstance(exc, TimeoutError | ConnectionAbortedError):
        return "timeout"  # uvloop aborts a handshake past ssl_handshake_timeout this way
    if isinstance(exc, ConnectionError | EOFError):
        return "closed"
    return "other"
