"""TLS without sockets: certificate checks, SNI choice, ClientHello verdicts, failure reasons,
the command line, and what members are told."""

from __future__ import annotations

import argparse
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from balancer.__main__ import Listen, build_parser, parse_listen, tls_settings
from balancer.dataplane.http_request import tls_fields as _tls_fields
from balancer.dataplane.tls import (
    TlsError,
    TlsSettings,
    TlsStats,
    check_lines,
    failure_reason,
    inspect_pair,
    load_certificates,
    name_covered,
)
from balancer.dataplane.tls_facts import TlsInfo
from balancer.dataplane.tls_listener import MORE, hello_verdict
from balancer.status.tls_view import CertRow, TlsView, tls_html, tls_metrics
from tests.support.certs import make_ca, make_pair

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d)
    make_pair(d / "dir", "default", ["fallback.test"], ca)
    make_pair(d / "dir", "shop.test", ["shop.test", "www.shop.test"], ca)
    make_pair(d / "dir", "api.test", ["*.api.test", "api.test"], ca)
    make_pair(d, "one", ["one.test"], ca)
    make_pair(d, "two", ["two.test"], ca)
    return d


# --- certificates ------------------------------------------------------------------------------


def test_a_pair_reports_its_names_and_dates(certs: Path):
    info = inspect_pair(certs / "one.crt", certs / "one.key", NOW)
    assert info.names == ("one.test",)
    assert info.subject == "CN=one.test"
    assert info.days_left(NOW) == pytest.approx(30, abs=0.1)  # made after NOW, 30 days long


def test_a_key_of_another_certificate_is_refused_naming_the_key(certs: Path):
    with pytest.raises(TlsError) as err:
        inspect_pair(certs / "one.crt", certs / "two.key", NOW)
    assert err.value.file == str(certs / "two.key")
    assert "does not match the certificate" in str(err.value)


def test_an_expired_or_not_yet_valid_certificate_is_refused(certs: Path):
    with pytest.raises(TlsError, match="expired on"):
        inspect_pair(certs / "one.crt", certs / "one.key", NOW + timedelta(days=31))
    with pytest.raises(TlsError, match="not valid before"):
        inspect_pair(certs / "one.crt", certs / "one.key", NOW - timedelta(days=2))


def test_unreadable_and_non_pem_files_are_named(certs: Path, tmp_path: Path):
    with pytest.raises(TlsError, match="cannot read the certificate") as err:
        inspect_pair(tmp_path / "missing.crt", certs / "one.key", NOW)
    assert err.value.file == str(tmp_path / "missing.crt")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key")
    with pytest.raises(TlsError, match="not a PEM private key"):
        inspect_pair(certs / "one.crt", junk, NOW)


def test_a_directory_pair_must_cover_its_file_name(certs: Path, tmp_path: Path):
    (tmp_path / "wrong.test.crt").write_bytes((certs / "one.crt").read_bytes())
    (tmp_path / "wrong.test.key").write_bytes((certs / "one.key").read_bytes())
    with pytest.raises(TlsError, match=re.escape("does not cover the name 'wrong.test'")):
        load_certificates(TlsSettings(cert_dir=tmp_path), NOW)


def test_a_lone_file_in_the_directory_is_an_error(certs: Path, tmp_path: Path):
    (tmp_path / "lonely.crt").write_bytes((certs / "one.crt").read_bytes())
    with pytest.raises(TlsError, match=re.escape("no key lonely.key")):
        load_certificates(TlsSettings(cert_dir=tmp_path), NOW)


def test_sni_picks_by_exact_name_then_wildcard_and_the_first_pair_is_default(certs: Path):
    loaded = load_certificates(
        TlsSettings(pairs=((certs / "one.crt", certs / "one.key"),), cert_dir=certs / "dir"), NOW
    )
    assert loaded.infos[0].default and loaded.infos[0].names == ("one.test",)
    assert loaded.context_for(None) is loaded.default
    assert loaded.context_for("ONE.test.") is loaded.default
    shop = loaded.context_for("www.shop.test")
    assert shop is not None and shop is loaded.context_for("shop.test")
    api = loaded.context_for("v1.api.test")
    assert api is not None and api is loaded.context_for("api.test") and api is not shop
    assert loaded.context_for("a.b.api.test") is None  # a wildcard covers one label
    assert loaded.context_for("elsewhere.test") is None


def test_without_pairs_the_directory_default_pair_is_the_default(certs: Path):
    loaded = load_certificates(TlsSettings(cert_dir=certs / "dir"), NOW)
    assert [i.default for i in loaded.infos] == [True, False, False]
    assert loaded.infos[0].names == ("fallback.test",)


def test_contexts_have_the_safe_defaults(certs: Path):
    ctx = load_certificates(TlsSettings(pairs=((certs / "one.crt", certs / "one.key"),)), NOW)
    c = ctx.default
    assert c.minimum_version == ssl.TLSVersion.TLSv1_2
    for option in (ssl.OP_NO_COMPRESSION, ssl.OP_CIPHER_SERVER_PREFERENCE, ssl.OP_NO_TICKET):
        assert c.options & option
    tls12 = {x["name"] for x in c.get_ciphers() if x["protocol"] == "TLSv1.2"}
    assert tls12 and all("GCM" in n or "CHACHA20" in n for n in tls12)
    assert c.verify_mode == ssl.CERT_NONE  # no client certificates unless asked for


def test_session_tickets_are_off_unless_rotation_is_set(certs: Path):
    pairs = ((certs / "one.crt", certs / "one.key"),)
    off = load_certificates(TlsSettings(pairs=pairs), NOW).default
    on = load_certificates(TlsSettings(pairs=pairs, ticket_rotation=600), NOW).default
    assert off.options & ssl.OP_NO_TICKET
    assert not on.options & ssl.OP_NO_TICKET


def test_client_certificates_optional_or_required(certs: Path):
    pairs = ((certs / "one.crt", certs / "one.key"),)
    ca = next(certs.glob("*CA.pem"))
    opt = load_certificates(TlsSettings(pairs=pairs, client_ca=ca), NOW)
    assert opt.default.verify_mode == ssl.CERT_OPTIONAL
    req = load_certificates(TlsSettings(pairs=pairs, client_ca=ca, client_verify="required"), NOW)
    assert req.default.verify_mode == ssl.CERT_REQUIRED


def test_check_lines_print_names_and_expiry(certs: Path):
    lines = check_lines(TlsSettings(pairs=((certs / "one.crt", certs / "one.key"),)), NOW)
    assert lines[0].startswith(f"{certs / 'one.crt'} (default): one.test; expires ")
    soon = check_lines(
        TlsSettings(pairs=((certs / "one.crt", certs / "one.key"),)), NOW + timedelta(days=20)
    )
    assert "WARNING: expires in 10 day(s)" in soon[0]


def test_name_coverage():
    assert name_covered("a.example.com", ("*.example.com",))
    assert not name_covered("example.com", ("*.example.com",))
    assert not name_covered("x.a.example.com", ("*.example.com",))
    assert name_covered("Example.COM.", ("example.com",))


# --- the first bytes and the reasons -------------------------------------------------------------


def _hello(declared: int) -> bytes:
    return b"\x16\x03\x01\x02\x00\x01" + declared.to_bytes(3, "big")


@pytest.mark.parametrize(
    ("head", "verdict"),
    [
        (b"", MORE),
        (b"\x16\x03", MORE),
        (b"GET / HTTP/1.1\r\n", "plain-http"),
        (b"PRI * HTTP/2.0", "plain-http"),
        (b"\x00\x00\x00\x00\x00\x00\x00\x00\x00", "not-tls"),
        (b"\x16\x02\x00\x02\x00\x01\x00\x01\x00", "not-tls"),  # SSL 2-ish version
        (b"\x16\x03\x01\x02\x00\x02\x00\x01\x00", "not-tls"),  # a ServerHello
        (_hello(512), None),
        (_hello(16384), None),
        (_hello(16385), "oversized-client-hello"),
    ],
)
def test_hello_verdict(head: bytes, verdict: str | None):
    assert hello_verdict(head, 16384) == verdict


def _ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, reason)
    exc.reason = reason  # type: ignore[misc]
    return exc


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (_ssl_error("NO_SHARED_CIPHER"), "no-shared-cipher"),
        (_ssl_error("UNSUPPORTED_PROTOCOL"), "protocol-version"),
        (_ssl_error("PEER_DID_NOT_RETURN_A_CERTIFICATE"), "client-cert"),
        (_ssl_error("CALLBACK_FAILED"), "unknown-sni"),
        (_ssl_error("TLSV1_ALERT_UNKNOWN_CA"), "client-alert"),
        (_ssl_error("SOMETHING_NEW"), "tls-error"),
        (ConnectionAbortedError("SSL handshake is taking longer than 1 seconds"), "timeout"),
        (ConnectionResetError(), "closed"),
        (ValueError(), "other"),
    ],
)
def test_failure_reasons(exc: BaseException, reason: str):
    assert failure_reason(exc) == reason


# --- the command line ------------------------------------------------------------------------


def test_listen_accepts_plain_and_https_addresses():
    assert parse_listen("0.0.0.0:8080") == Listen("0.0.0.0", 8080, False)
    assert parse_listen("https://[::1]:8443") == Listen("::1", 8443, True)
    assert str(Listen("::1", 8443, True)) == "https://[::1]:8443"
    for bad in ("ftp://a:1", "https://a", "a:0", "https://a:99999"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_listen(bad)


def _args(*argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(["--workers", "w", *argv])
    args.listen = args.listen or [Listen("127.0.0.1", 8080)]
    return args


def test_tls_options_pair_in_order_and_need_an_https_listener():
    https = ("--listen", "https://127.0.0.1:8443")
    settings = tls_settings(
        _args(*https, "--tls-cert", "a.crt", "--tls-key", "a.key", "--tls-dir", "d")
    )
    assert settings is not None
    assert settings.pairs == ((Path("a.crt"), Path("a.key")),) and settings.cert_dir == Path("d")
    with pytest.raises(argparse.ArgumentTypeError, match="1 cert"):
        tls_settings(_args(*https, "--tls-cert", "a.crt"))
    with pytest.raises(argparse.ArgumentTypeError, match="need a --listen https"):
        tls_settings(_args("--tls-dir", "d"))
    with pytest.raises(argparse.ArgumentTypeError, match="needs --tls-cert"):
        tls_settings(_args(*https))
    assert tls_settings(_args()) is None


# --- what members and operators see ------------------------------------------------------------


def test_http_members_learn_https_and_the_client_certificate():
    plain = TlsInfo(b"TLS_AES_128_GCM_SHA256", 128, None, b"TLSv1.3", None)
    assert _tls_fields("10.0.0.1", b"shop.test", plain) == (
        b"Forwarded: for=10.0.0.1;host=shop.test;proto=https\r\n"
    )
    with_cert = TlsInfo(b"X", 128, None, b"TLSv1.3", b"PEM", b"\x30\x01")
    assert _tls_fields("::1", b"shop.test:8443", with_cert) == (
        b'Forwarded: for="[::1]";host="shop.test:8443";proto=https\r\nClient-Cert: :MAE=:\r\n'
    )
    assert _tls_fields("10.0.0.1", b"x", None) == b""


def test_tls_metrics_and_html_render_the_view():
    stats = TlsStats()
    stats.handshake_done("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    stats.failed("plain-http")
    view = TlsView(
        listeners=("https://127.0.0.1:8443",),
        handshakes=stats.handshakes,
        failures=tuple(stats.failures.items()),
        protocols=tuple(stats.protocols.items()),
        ciphers=tuple(stats.ciphers.items()),
        sni_default=0,
        reloads=1,
        reload_failures=0,
        certificates=(CertRow("/c/<a>.crt", ("a.test",), NOW + timedelta(days=3), True),),
        unknown_sni="default",
        client_verify=None,
    )
    names = {m.name: m for m in tls_metrics(view)}
    assert names["pyjk_tls_handshakes"].samples[0].value == 1
    expiry = names["pyjk_tls_certificate_expiry_timestamp_seconds"].samples[0]
    assert expiry.value == pytest.approx((NOW + timedelta(days=3)).timestamp())
    assert list(tls_metrics(None)) == []
    page = tls_html(view, NOW)
    assert "plain-http: 1" in page and "TLSv1.3: 1" in page
    assert "/c/&lt;a&gt;.crt (default)" in page  # escaped
    assert tls_html(None) == ""
