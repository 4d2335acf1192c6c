"""The report page in a real browser: headless Chromium (the Debian package) driven by selenium, loaded from
file:// with the network blocked. Each section renders with the run's own numbers (read from the DOM), the
browser logs no error, no request other than the page itself is made, and a screenshot is taken (into the test's
tmp folder, and into $MOXIN_SCREENSHOTS as report.png when that names a folder)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _driver():
    if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
        pytest.skip(f"headless Chromium not installed ({CHROMIUM}, {DRIVER}); scripts/setup.sh installs the "
                    "Debian chromium and chromium-driver packages")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e .[dev])")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-dev-shm-usage", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.execute_cdp_cmd("Network.enable", {})
    drv.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*"]})
    return drv


def _text(drv, css: str) -> str:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.CSS_SELECTOR, css).text.strip()


def _screenshot(drv, tmp_path: Path) -> Path:
    from io import BytesIO

    from PIL import Image

    height = drv.execute_script("return document.documentElement.scrollHeight")
    drv.set_window_size(1280, min(int(height) + 100, 2400))
    shot = tmp_path / "report.png"
    drv.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    dest = os.environ.get("MOXIN_SCREENSHOTS")
    if dest:
        im = Image.open(BytesIO(shot.read_bytes())).convert("RGB")
        im = im.quantize(colors=128)  # a palette PNG keeps the README image small
        Path(dest).mkdir(parents=True, exist_ok=True)
        im.save(Path(dest) / "report.png", optimize=True)
    return shot


def _requests(drv) -> tuple[list[str], list[str]]:
    """(URLs requested, failures) from the DevTools performance log."""
    urls, failed = [], []
    for entry in drv.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
        elif msg["method"] == "Network.loadingFailed":
            failed.append(f"{msg['params'].get('errorText')} {msg['params'].get('blockedReason', '')}")
    return urls, failed


def _expected(run: Path, release: Path) -> dict:
    from moxin.layout import RunLayout
    from moxin.release.cards import num

    rows = [json.loads(x) for x in (run / "pretrain" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {"class": json.loads((release / "mof.json").read_text())["class"],
            "val_loss": num([r["val_loss"] for r in rows if "val_loss" in r][-1]),
            "tokens": num([r["tokens_seen"] for r in rows if "tokens_seen" in r][-1]),
            "checkpoints": len(RunLayout(run).all_checkpoints()),
            "samples": len((release / "samples" / "outputs.jsonl").read_text().splitlines())}


@pytest.mark.timeout(120)
def test_report_page_in_headless_chromium(tiny_run, built_release, tmp_path):
    from selenium.webdriver.common.by import By

    from moxin.report.commands import report

    # the run with its release in place (the layout `moxin build` writes): copy the release under the run
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run, symlinks=True)
    shutil.copytree(built_release, run / "release")
    (run / "data" / "data_card.md").write_text("# Data card\n", "utf-8")  # the data stage writes one; the fixture not
    page = tmp_path / "report.html"
    report(run, out=page)
    want = _expected(run, run / "release")
    drv = _driver()
    try:
        url = page.resolve().as_uri()
        drv.get(url)
        assert _text(drv, "#mof-class") == want["class"]
        for sid in ("openness", "data", "training", "evaluation", "lineage", "verification", "samples"):
            assert drv.find_element(By.ID, sid).is_displayed()
        assert len(drv.find_elements(By.CSS_SELECTOR, "table.components tr")) == 1 + 17
        stages = drv.find_elements(By.CSS_SELECTOR, "table.stages tr")
        pre = [td.text for td in stages[1].find_elements(By.TAG_NAME, "td")]
        assert pre[0] == "pretrain" and pre[2] == want["tokens"] and pre[4] == want["val_loss"]
        assert _text(drv, "#checkpoint-count") == str(want["checkpoints"])
        assert len(drv.find_elements(By.CSS_SELECTOR, "#training svg polyline")) >= 2
        assert drv.find_elements(By.CSS_SELECTOR, "#evaluation svg circle")
        assert len(drv.find_elements(By.CSS_SELECTOR, "#lineage g.node")) >= 4
        assert len(drv.find_elements(By.CSS_SELECTOR, "table.samples tr")) == 1 + want["samples"]
        assert len(_text(drv, "#digest")) == 64
        assert drv.find_element(By.ID, "data-card-link").get_attribute("href").endswith("/tiny/data/data_card.md")
        _screenshot(drv, tmp_path)
        severe = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], severe
        urls, failed = _requests(drv)
        assert failed == []
        assert [u for u in urls if u != url and not u.startswith("data:")] == []
    finally:
        drv.quit()
