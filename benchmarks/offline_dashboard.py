"""Make the dashboard ``asv publish`` wrote load nothing from the internet.

``python benchmarks/offline_dashboard.py .asv/html`` copies the pinned scripts and styles of
``benchmarks/dashboard/vendor`` (each checked against the SHA-256 in its ``VENDOR.md``) into ``HTML/vendor``
and rewrites every ``<script src>`` and ``<link href>`` of the published pages that points at a CDN to the
local copy, dropping the ``integrity`` and ``crossorigin`` attributes (they name the CDN's minified files).
A CDN address it does not know (a newer asv) is an error, so the dashboard never silently needs a network.
"""

from __future__ import annotations

import hashlib
import pathlib
import re
import shutil
import sys

VENDOR = pathlib.Path(__file__).resolve().parent / "dashboard" / "vendor"

#: CDN address (as asv 0.6 writes it) -> vendored file
LOCAL = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": "jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": "jquery.flot.time.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": "jquery.flot.selection.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": "jquery.flot.categories.js",
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": "jquery.flot.orderBars.js",
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": "stupidtable.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": "md5.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": "bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": "css/bootstrap.min.css",
}

_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_URL = re.compile(r"""\b(src|href)=["'](https?://[^"']+)["']""", re.IGNORECASE)
_DROP = re.compile(r"""\s+(integrity|crossorigin|referrerpolicy)=["'][^"']*["']""", re.IGNORECASE)


def checksums() -> dict[str, str]:
    """Vendored file -> SHA-256, from the block at the end of ``VENDOR.md``."""
    text = (VENDOR / "VENDOR.md").read_text()
    return {m.group(2): m.group(1) for m in re.finditer(r"^([0-9a-f]{64})  (\S+)$", text, re.MULTILINE)}


def rewrite(html: str) -> str:
    """``html`` with every CDN script and stylesheet tag pointing at ``vendor/`` (ValueError for an unknown one)."""

    def tag(m: re.Match[str]) -> str:
        text = m.group(0)
        url = _URL.search(text)
        if url is None:
            return text
        if url.group(2) not in LOCAL:
            raise ValueError(f"the dashboard loads {url.group(2)}, which benchmarks/dashboard/vendor does not hold: "
                             "vendor it (VENDOR.md) and map it in offline_dashboard.LOCAL")
        text = text.replace(url.group(0), f'{url.group(1)}="vendor/{LOCAL[url.group(2)]}"')
        return _DROP.sub("", text)

    return _TAG.sub(tag, html)


def install(html_dir: pathlib.Path) -> list[pathlib.Path]:
    """Copy the checked vendor files into ``html_dir/vendor`` and rewrite the pages; returns the pages."""
    sums = checksums()
    for name, digest in sorted(sums.items()):
        data = (VENDOR / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"benchmarks/dashboard/vendor/{name} does not match its SHA-256 in VENDOR.md")
        target = html_dir / "vendor" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    shutil.copytree(VENDOR / "licenses", html_dir / "vendor" / "licenses", dirs_exist_ok=True)
    pages = sorted(html_dir.glob("*.html"))
    for page in pages:
        page.write_text(rewrite(page.read_text()))
    return pages


def main() -> None:
    html_dir = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".asv/html")
    pages = install(html_dir)
    print(f"offline_dashboard: {len(pages)} page(s) of {html_dir} load their scripts and styles from vendor/")


if __name__ == "__main__":
    main()
