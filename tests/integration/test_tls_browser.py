"""The status page over pyjk's own HTTPS listener, in real headless Chromium.

The browser trusts nothing of the test's CA (its certificate store is not touched), so it runs
with ``--ignore-certificate-errors``; what is checked is that the page, its form posts and the
TLS section work over TLS, not the certificate chain (test_tls_frontdoor checks that).
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Stack
from tests.integration.test_status_browser import _activation, _click_activation, browser
from tests.integration.test_tls_frontdoor import make_tls, tls_args
from tests.support.procs import port_open, wait_for

pytestmark = pytest.mark.integration

__all__ = ["browser"]  # the fixture, shared with test_status_browser
BROWSER_FLAGS = ("--ignore-certificate-errors",)


def test_the_status_page_works_over_https_in_chromium(stack: Stack, browser: object):
    from selenium.webdriver.common.by import By

    tls = make_tls(stack.tmp)
    for name in ("n1", "n2"):
        stack.start_backend(name)
    stack.start_balancer(
        stack.workers_properties(["n1", "n2"], "worker.jkstatus.read_only=false"),
        args=tls_args(tls),
    )
    wait_for(lambda: port_open(tls.port), 10, what="https listener")
    driver = browser
    driver.get(f"https://127.0.0.1:{tls.port}/jkmanager")  # type: ignore[attr-defined]
    assert driver.title.startswith("JK Status Manager")  # type: ignore[attr-defined]
    assert _activation(driver, "n2") == "ACT"
    # a change is a POST with the CSRF token: it must work over TLS as over plain HTTP
    banner = _click_activation(driver, "n2", "Disable")
    assert "lb/n2 activation: ACT -> DIS" in banner, banner
    assert driver.current_url.startswith("https://")  # type: ignore[attr-defined]
    section = driver.find_element(By.ID, "tls")  # type: ignore[attr-defined]
    assert section.text == "TLS"
    table = driver.find_element(By.CSS_SELECTOR, "table.tls").text  # type: ignore[attr-defined]
    assert "TLSv1.3" in table  # Chromium's handshakes, counted
    certs = driver.find_element(By.CSS_SELECTOR, "table.tls-certs").text  # type: ignore[attr-defined]
    assert "a.test" in certs and "(default)" in certs
