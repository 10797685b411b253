"""The status page in a real headless Chromium: a person disables and re-activates a member.

Debian's ``chromium`` and ``chromium-driver`` (``scripts/test.sh`` installs them) driven by
Selenium. Nothing is downloaded: the driver path is given explicitly, so Selenium Manager is
never run (the test makes sure of it), and Chromium's own background traffic is switched off
with every host name but 127.0.0.1 unresolvable. Without Chromium the tests skip on a developer
machine and fail in CI (``CI`` set), where the scripts must have installed it.

``PYJK_SCREENSHOTS=<dir>`` also keeps the laptop and phone screenshots there (that is how
docs/status-page.png and docs/status-page-phone.png are made).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Stack, http_get

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--no-proxy-server",
    "--disable-extensions",
    "--disable-default-apps",
    # any name but the loopback address fails to resolve: the browser cannot reach out
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
LAPTOP = (1280, 900)
PHONE = (390, 844)


def _need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if not missing:
        return
    reason = f"browser test needs {', '.join(missing)} (scripts/test.sh installs them)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run it")
    pytest.skip(reason)


@pytest.fixture
def browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[object]:
    """A headless Chromium with a fresh profile; Selenium Manager is made to fail if called.
    A test module may add flags with ``BROWSER_FLAGS`` (test_tls_browser)."""
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    monkeypatch.setenv("SE_OFFLINE", "true")

    def no_manager(self: object, args: list[str]) -> dict:
        raise AssertionError(f"Selenium Manager was called ({args}): it would download")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_manager)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    extra = getattr(request.module, "BROWSER_FLAGS", ())
    window = f"--window-size={LAPTOP[0]},{LAPTOP[1]}"
    for flag in (*FLAGS, *extra, f"--user-data-dir={profile}", window):
        options.add_argument(flag)
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")
    )
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


# -- page helpers ------------------------------------------------------------------------------


def _member_row(driver: object, member: str) -> object:
    """The member table's row of ``member``: the row whose Name cell names it and that has an
    Actions cell (the columns are found by their class, not their position)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(  # type: ignore[attr-defined]
        By.XPATH,
        f"//tr[td[@class='name'][normalize-space()='{member}']][td[@class='actions']]",
    )


def _settled(driver: object, timeout: float = 15) -> object:
    """A wait that polls through a page being replaced: chromedriver reports a node of the old
    document as stale, or (racing the navigation) as an inspector error; both mean "not yet"."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,))


def _activation(driver: object, member: str) -> str:
    """The member's Act cell."""
    from selenium.webdriver.common.by import By

    def read(d: object) -> str:
        return _member_row(d, member).find_element(By.XPATH, "td[@class='activation']").text.strip()

    return _settled(driver).until(read)  # type: ignore[attr-defined]


def _click_activation(driver: object, member: str, label: str) -> str:
    """Click the member's Activate/Disable/Stop button as a person would; wait for the page the
    change leads to (the only one with a result banner) and return the banner's text."""
    from selenium.webdriver.common.by import By

    banners = (By.CSS_SELECTOR, "p.ok, p.error")
    assert driver.find_elements(*banners) == [], "a result banner before the click"  # type: ignore[attr-defined]
    button = _member_row(driver, member).find_element(
        By.XPATH, f".//button[@name='vwa'][normalize-space()='{label}']"
    )
    assert button.is_enabled(), f"{label} is greyed out for {member}"
    button.click()

    def banner(d: object) -> str | bool:
        found = d.find_elements(*banners)  # type: ignore[attr-defined]
        return found[0].text if found else False

    return _settled(driver).until(banner)  # type: ignore[attr-defined]


def _nodes(stack: Stack, count: int, cookie: str | None = None) -> list[str]:
    served = []
    headers = {"Cookie": cookie} if cookie else {}
    for _ in range(count):
        status, _, body = http_get(f"{stack.url}/app/x", headers)
        assert status == 200, body[:200]
        served.append(json.loads(body)["node"])
    return served


# -- the test ----------------------------------------------------------------------------------


def test_a_person_disables_a_member_in_the_browser_and_new_sessions_avoid_it(
    stack: Stack, browser: object
):
    from selenium.webdriver.common.by import By

    for name in ("n1", "n2", "n3"):
        stack.start_backend(name)
    stack.start_balancer(
        stack.workers_properties(["n1", "n2", "n3"], "worker.jkstatus.read_only=false")
    )
    assert set(_nodes(stack, 9)) == {"n1", "n2", "n3"}
    driver = browser
    driver.get(f"{stack.url}/jkmanager")  # type: ignore[attr-defined]
    assert driver.title.startswith("JK Status Manager")  # type: ignore[attr-defined]
    assert _activation(driver, "n2") == "ACT"

    banner = _click_activation(driver, "n2", "Disable")

    assert "Result: OK" in banner and "lb/n2 activation: ACT -> DIS" in banner, banner
    assert "result=" in driver.current_url  # type: ignore[attr-defined]  # the 303's view
    assert _activation(driver, "n2") == "DIS"
    assert _activation(driver, "n1") == _activation(driver, "n3") == "ACT"
    row = _member_row(driver, "n2")
    assert not row.find_element(By.XPATH, ".//button[normalize-space()='Disable']").is_enabled()
    # reloading the page shows the state again but neither repeats the change nor the banner
    driver.refresh()  # type: ignore[attr-defined]
    assert driver.find_elements(By.CSS_SELECTOR, "p.ok") == []  # type: ignore[attr-defined]
    assert _activation(driver, "n2") == "DIS"
    assert " name=n2 " in stack.status_txt()
    assert "activation=DIS" in _txt_member(stack, "n2")

    new_sessions = _nodes(stack, 30)
    assert "n2" not in new_sessions and set(new_sessions) == {"n1", "n3"}, new_sessions
    assert _nodes(stack, 10, cookie="JSESSIONID=x.n2") == ["n2"] * 10

    banner = _click_activation(driver, "n2", "Activate")

    assert "lb/n2 activation: DIS -> ACT" in banner, banner
    assert _activation(driver, "n2") == "ACT"
    assert "n2" in _nodes(stack, 30)


def _txt_member(stack: Stack, member: str) -> str:
    for line in stack.status_txt().splitlines():
        if line.startswith("Member:") and f" name={member} " in line:
            return line
    raise AssertionError(f"{member} not in the txt status")


def test_status_page_fits_a_laptop_and_a_phone(stack: Stack, browser: object, tmp_path: Path):
    """Demo-like: node1..node3 (node3 twice the lbfactor), some traffic, node2 disabled. No
    horizontal overflow of the page itself at either size (wide tables scroll in their own
    wrappers), and every member's Activate/Disable/Stop on the first screen at both; the
    screenshots are kept when PYJK_SCREENSHOTS names a directory."""
    for name in ("node1", "node2", "node3"):
        stack.start_backend(name)
    stack.start_balancer(
        stack.workers_properties(
            ["node1", "node2", "node3"],
            "worker.jkstatus.read_only=false\nworker.node3.lbfactor=2",
        )
    )
    _nodes(stack, 40)
    _nodes(stack, 6, cookie="JSESSIONID=demo.node1")
    _disable_by_post(stack, "node2")
    _nodes(stack, 12)
    driver = browser
    shots = {}
    for label, (width, height), mobile in (("laptop", LAPTOP, False), ("phone", PHONE, True)):
        driver.execute_cdp_cmd(  # type: ignore[attr-defined]
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        driver.get(f"{stack.url}/jkmanager")  # type: ignore[attr-defined]
        assert _activation(driver, "node2") == "DIS"
        inner, scroll = driver.execute_script(  # type: ignore[attr-defined]
            "return [window.innerWidth, document.documentElement.scrollWidth]"
        )
        assert inner == width, (label, inner)
        assert scroll <= inner, f"{label}: the page is {scroll}px wide in a {inner}px window"
        _assert_actions_in_view(driver, label, width, height)
        path = tmp_path / f"status-{label}.png"
        assert driver.save_screenshot(str(path))  # type: ignore[attr-defined]
        assert _png_size(path) == (width, height)
        shots[label] = path
    keep = os.environ.get("PYJK_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shots["laptop"], Path(keep) / "status-page.png")
        shutil.copy(shots["phone"], Path(keep) / "status-page-phone.png")


def _assert_actions_in_view(driver: object, label: str, width: int, height: int) -> None:
    """What an operator acts on is on the first screen, without scrolling: on the laptop the
    member row's buttons (the cards are hidden), on the phone the members' cards."""
    from selenium.webdriver.common.by import By

    cards = driver.find_elements(By.CSS_SELECTOR, ".glance .card")  # type: ignore[attr-defined]
    if label == "laptop":
        assert not [c for c in cards if c.is_displayed()], "cards on a laptop"
        buttons = [
            b
            for m in ("node1", "node2", "node3")
            for b in _member_row(driver, m).find_elements(By.XPATH, ".//button[@name='vwa']")
        ]
    else:
        assert len([c for c in cards if c.is_displayed()]) == 3, "no member cards on a phone"
        buttons = [b for c in cards for b in c.find_elements(By.XPATH, ".//button[@name='vwa']")]
    assert len(buttons) == 9
    for b in buttons:
        r = b.rect
        inside = r["x"] >= 0 and r["x"] + r["width"] <= width and r["y"] + r["height"] <= height
        assert b.is_displayed() and inside, f"{label}: {b.text} button at {r}"


def _disable_by_post(stack: Stack, member: str) -> None:
    import urllib.parse
    import urllib.request

    _, _, page = http_get(f"{stack.url}/jkmanager")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    body = urllib.parse.urlencode(
        {"cmd": "update", "w": "lb", "sw": member, "vwa": "d", "csrf": csrf.group(1).decode()}
    ).encode()
    req = urllib.request.Request(f"{stack.url}/jkmanager", data=body, method="POST")
    with contextlib.closing(urllib.request.urlopen(req, timeout=10)) as resp:
        assert resp.status == 200


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])
