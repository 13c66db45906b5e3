"""Open the published dashboard in headless Chromium with no network and check that a time graph renders.

``python benchmarks/browser_check.py .asv/html [--screenshot out.png]`` serves the directory on 127.0.0.1,
opens the time graph of ``conv.TimeConv2d.time_conv2d`` in headless Chromium (Debian's ``chromium`` under
``chromium-driver``, driven by selenium) with every host but 127.0.0.1 unresolvable and a dead proxy, and
fails (exit 1) unless flot draws the graph (its ``flot-base`` canvas and axis labels appear in the DOM)
rather than asv sending the page to its "continental origin of swallow" error page, as it does when a
script does not load. With ``--screenshot`` it also saves a picture of the graph (for the README).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import pathlib
import shutil
import sys
import threading
import time
from typing import Any

#: the time graph of auto, im2col and Winograd on ResNet-18's 3x3 layer at 56², N=8, on the NumPy backend
GRAPH = ("index.html#conv.TimeConv2d.time_conv2d?p-strategy=%27auto%27&p-strategy=%27im2col%27"
         "&p-strategy=%27winograd%27&p-backend=%27numpy%27&p-layer=%27conv3x3_56%27&p-batch=8")


def _driver() -> Any:
    """Headless Chromium under chromedriver (Debian's ``chromium`` and ``chromium-driver``), with every host but
    127.0.0.1 unresolvable and a dead proxy: no network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,860",
                 "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        raise SystemExit("browser_check: needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    opts.binary_location = binary
    return webdriver.Chrome(options=opts, service=Service(driver_path))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def check(html_dir: pathlib.Path, screenshot: pathlib.Path | None = None, seconds: float = 30,
          machine: str | None = None) -> list[str]:
    """Problems found with the dashboard in ``html_dir`` (empty: the time graph renders offline)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(html_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = _driver()
    problems = []
    try:
        only = f"&machine={machine}" if machine else ""  # one machine's series (all by default)
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/{GRAPH}{only}")
        drawn = ("return document.querySelector('canvas.flot-base') !== null && "
                 "document.querySelectorAll('.flot-tick-label').length > 0")
        try:  # the graph drawn (a canvas and axis labels: data came in), or asv's error page
            WebDriverWait(driver, seconds).until(lambda d: "error.html" in d.current_url or d.execute_script(drawn))
        except TimeoutException:
            problems.append(f"no graph of conv.TimeConv2d.time_conv2d drawn within {seconds:.0f} s (no flot canvas "
                            "with axis labels in the DOM)")
        if "error.html" in driver.current_url or "continental origin of swallow" in driver.page_source:
            problems.append("the page went to asv's error page (a script or stylesheet did not load)")
        if screenshot is not None and not problems:
            time.sleep(1)  # flot's last redraw
            driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
        server.shutdown()
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=pathlib.Path)
    parser.add_argument("--screenshot", type=pathlib.Path)
    parser.add_argument("--machine", help="show only this machine's series")
    opts = parser.parse_args()
    problems = check(opts.html_dir, opts.screenshot, machine=opts.machine)
    for p in problems:
        print(f"browser_check: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("browser_check: the dashboard renders the time graph of conv.TimeConv2d.time_conv2d with no network")


if __name__ == "__main__":
    main()
