"""Open an HTML page in headless Chromium and check that it and all its images load.

Used by the tests of ``alexnet report`` (and handy by hand). Chromium is optional: :func:`find_chromium`
returns None when no browser is installed and the tests skip. The page is copied to a temporary folder
with a small script appended that, on the window's ``load`` event, records on ``<body>`` how many images
there are, how many decoded (``naturalWidth > 0``) and how many resources were fetched from anywhere but
a ``data:`` URI; ``--dump-dom`` then prints the DOM with those attributes. The browser runs with its
network features off and every host name unresolvable, so a page that needs the network shows it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--disable-default-apps", "--host-resolver-rules=MAP * ~NOTFOUND")

_PROBE = """<script>window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var res = performance.getEntriesByType('resource').filter(function (e) {
    return e.name.indexOf('data:') !== 0; }).length;
  document.body.setAttribute('data-probe-images', String(imgs.length));
  document.body.setAttribute('data-probe-loaded', String(ok));
  document.body.setAttribute('data-probe-fetched', String(res));
  document.body.setAttribute('data-probe-title', document.title);
});</script>"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class RenderCheck:
    images: int
    loaded: int
    fetched: int  # resources loaded from anything but a data: URI (0 for a self-contained page)
    title: str

    @property
    def ok(self) -> bool:
        return self.images == self.loaded and self.fetched == 0


def _run(browser: str, args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def check_page(path: str | os.PathLike, *, browser: str | None = None, timeout: float = 90.0) -> RenderCheck:
    """Load ``path`` in headless Chromium; counts of images / decoded images / network fetches."""
    browser = browser or find_chromium()
    if browser is None:
        raise RuntimeError("no Chromium binary found")
    text = Path(path).read_text(encoding="utf-8")
    probed = text.replace("</body>", _PROBE + "</body>") if "</body>" in text else text + _PROBE
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(probed, encoding="utf-8")
        proc = _run(browser, ["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], Path(tmp) / "profile",
                    timeout)
    m = re.search(r"<body[^>]*>", proc.stdout)
    attrs = dict(re.findall(r'data-probe-(\w+)="([^"]*)"', m.group(0))) if m else {}
    if "images" not in attrs:
        raise RuntimeError(f"the page did not finish loading in Chromium (exit {proc.returncode}): "
                           f"{proc.stderr.strip().splitlines()[-1:] or proc.stdout[:200]}")
    return RenderCheck(int(attrs["images"]), int(attrs["loaded"]), int(attrs["fetched"]), attrs.get("title", ""))


def screenshot(path: str | os.PathLike, out: str | os.PathLike, *, width: int = 1200, height: int = 2400,
               browser: str | None = None, timeout: float = 90.0) -> Path:
    """A PNG screenshot of the page (the first ``height`` pixels)."""
    browser = browser or find_chromium()
    if browser is None:
        raise RuntimeError("no Chromium binary found")
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        _run(browser, [f"--window-size={width},{height}", "--hide-scrollbars", f"--screenshot={out}",
                       Path(path).resolve().as_uri()], Path(tmp) / "profile", timeout)
    if not out.is_file():
        raise RuntimeError("Chromium wrote no screenshot")
    return out


_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import""",
                       re.IGNORECASE)


def external_references(text: str) -> list[str]:
    """Attributes or CSS that would fetch something from a network (empty for a self-contained page)."""
    return [m.group(0) for m in _EXTERNAL.finditer(text)]
