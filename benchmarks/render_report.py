"""Publish asv's HTML report with local copies of its JS/CSS, render it in headless Chromium and check the graphs.

Usage::

    python benchmarks/render_report.py                      # asv publish, then check a graph page
    python benchmarks/render_report.py --png results/asv/report.png --benchmark bench_norms.Norm.time_eval_forward

Steps:

1. ``asv publish`` writes ``.asv/html`` (from every result under ``.asv/results``);
2. the ``<script>``/``<link>`` tags of ``index.html`` that point at CDNs (jQuery, flot and its plugins, stupidtable,
   blueimp-md5, bootstrap) are pointed at copies under ``.asv/html/vendor/``, taken from the npm registry with
   ``npm pack`` the first time and cached in ``.asv/vendor/``. A tag keeps its ``integrity`` hash when the local
   copy is byte-identical to the CDN's file; otherwise (cdnjs serves its own minified builds) the hash is dropped;
3. ``.asv/html`` is served on 127.0.0.1 and headless Chromium (Debian: ``apt-get install chromium``) loads one
   benchmark's graph page twice: ``--dump-dom`` to check that flot drew into ``#main-graph`` (its canvases exist
   and the error page did not replace the report), and ``--screenshot`` for the PNG, whose plot area must contain
   pixels in the colours of asv's series.

Exits non-zero with the reason when any check fails. Nothing is fetched from a CDN at render time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from base64 import b64encode
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HTML = REPO / ".asv" / "html"
CACHE = REPO / ".asv" / "vendor"
#: CDN address in asv 0.6's index.html -> (npm package@version, file inside the package). npm has no stupidtable
#: 1.0.1 (the package is "stupid-table-plugin" there, only 1.1.3); flot's npm package ships unminified files.
ASSETS = {
    "https://code.jquery.com/jquery-3.3.1.min.js": ("jquery@3.3.1", "dist/jquery.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": ("flot@0.8.3", "jquery.flot.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": ("flot@0.8.3", "jquery.flot.time.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js":
        ("flot@0.8.3", "jquery.flot.selection.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js":
        ("flot@0.8.3", "jquery.flot.categories.js"),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js":
        ("stupid-table-plugin@1.1.3", "stupidtable.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": ("blueimp-md5@2.19.0", "js/md5.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js":
        ("bootstrap@3.1.1", "dist/js/bootstrap.min.js"),
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        ("bootstrap@3.1.1", "dist/css/bootstrap.min.css"),
}  # fmt: skip
#: Folders copied beside a file because it refers to them (bootstrap's CSS loads ../fonts/glyphicons-*).
COMPANIONS = {("bootstrap@3.1.1", "dist/css/bootstrap.min.css"): "dist/fonts"}
TAG = re.compile(r"<(script|link)\b[^>]*?(?:src|href)=\"(https://[^\"]+)\"[^>]*>")
#: asv's series colours ($.asv.colors in asv.js, less its grey), as RGB. Bootstrap's link blue (#428BCA) and its
#: anti-aliased blends with white all lie farther than COLOUR_TOLERANCE from #247AAD.
SERIES_COLOURS = [(0x24, 0x7A, 0xAD), (0xE2, 0x4A, 0x33), (0x98, 0x8E, 0xD5), (0xFB, 0xC1, 0x5E), (0x8E, 0xBA, 0x42),
                  (0xFF, 0xB5, 0xB8)]  # fmt: skip
COLOUR_TOLERANCE = 25
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1400,1000", "--virtual-time-budget=15000"]  # fmt: skip


def fail(msg: str) -> None:
    sys.exit(f"render_report: FAILED: {msg}")


# ----------------------------------------------------------------------------------------------- assets
def package_dir(spec: str) -> Path:
    """The unpacked npm package ``spec`` under ``.asv/vendor`` (``npm pack`` from the registry the first time)."""
    target = CACHE / spec
    if target.is_dir():
        return target
    if shutil.which("npm") is None:
        fail(f"{spec} is not cached in {CACHE} and npm is not installed (apt-get install npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["npm", "pack", "--silent", spec, "--pack-destination", tmp], capture_output=True,
                             text=True)  # fmt: skip
        tarballs = list(Path(tmp).glob("*.tgz"))
        if out.returncode != 0 or len(tarballs) != 1:
            fail(f"npm pack {spec}: {out.stderr.strip()[-500:]}")
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(tmp, filter="data")
        shutil.move(str(Path(tmp) / "package"), target)
    return target


def sri_digest(path: Path, algorithm: str) -> str:
    return f"{algorithm}-" + b64encode(hashlib.new(algorithm, path.read_bytes()).digest()).decode()


def localise(tag: str, url: str) -> tuple[str, str, str]:
    """Copy ``url``'s asset into ``.asv/html/vendor``; returns the tag pointing at it, its path and a hash note."""
    if url not in ASSETS:
        fail(f"index.html loads {url}, which has no local copy here (a new asv version?): add it to ASSETS")
    spec, inner = ASSETS[url]
    source, dest = package_dir(spec) / inner, HTML / "vendor" / spec / inner
    if not source.is_file():
        fail(f"{spec} has no {inner}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    if (spec, inner) in COMPANIONS:
        sub = COMPANIONS[spec, inner]
        shutil.copytree(package_dir(spec) / sub, HTML / "vendor" / spec / sub, dirs_exist_ok=True)
    local = f"vendor/{spec}/{inner}"
    new = tag.replace(url, local)
    integrity = re.search(r'\sintegrity="([a-z0-9]+)-[^"]*"', tag)
    if integrity and sri_digest(source, integrity.group(1)) == re.search(r'integrity="([^"]+)"', tag).group(1):
        return new, local, "identical to the CDN file (integrity kept)"
    new = re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", new)
    return new, local, "differs from the CDN build (integrity dropped)"


def publish() -> None:
    """``asv publish`` into ``.asv/html``, then point every CDN tag of ``index.html`` at a local copy."""
    out = subprocess.run([sys.executable, "-m", "asv", "publish"], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"asv publish: {out.stdout[-1500:]}{out.stderr[-1500:]}")
    index = HTML / "index.html"
    text = index.read_text()
    for match in TAG.finditer(text):
        tag, url = match.group(0), match.group(2)
        new, local, note = localise(tag, url)
        text = text.replace(tag, new)
        print(f"  {url}\n    -> {local}: {note}")
    if TAG.search(text):
        fail("index.html still loads assets from a CDN")
    index.write_text(text)


# ----------------------------------------------------------------------------------------------- rendering
@contextlib.contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, fmt: str, *args) -> None:
        QuietHandler.requests.append(self.path)


def chromium(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        fail("chromium is not installed (Debian: apt-get update && apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def pick_benchmark(requested: str | None) -> str:
    """``requested``, else eLinear's eval forward, else the first eval-forward benchmark asv published."""
    import json

    names = json.loads((HTML / "index.json").read_text())["benchmarks"]
    if requested:
        if requested not in names:
            fail(f"{requested} is not in the published report")
        return requested
    preferred = ["bench_linear.Linear.time_eval_forward"] * ("bench_linear.Linear.time_eval_forward" in names)
    preferred += [n for n in names if n.endswith(".time_eval_forward")]
    return (preferred or sorted(names))[0]


def check_dom(dom: str) -> list[str]:
    """What is wrong with the rendered DOM of a graph page (nothing: an empty list)."""
    problems = []
    if "js_load_failure" in dom and "error.html" in dom and 'id="main-graph"' not in dom:
        problems.append("the page was replaced by asv's error page (an asset failed to load)")
    graph = dom.split('id="main-graph"', 1)
    if len(graph) < 2:
        problems.append("no #main-graph element")
    elif 'class="flot-base"' not in graph[1] or 'class="flot-overlay"' not in graph[1]:
        problems.append("flot drew no canvases into #main-graph")
    if "flot-tick-label" not in dom:
        problems.append("the graph has no axis tick labels")
    return problems


def series_pixels(png: Path) -> int:
    """Pixels of the screenshot within a small distance of one of asv's series colours."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int32).reshape(-1, 1, 3)
    distance2 = ((pixels - np.array(SERIES_COLOURS, dtype=np.int32)) ** 2).sum(axis=-1)
    return int((distance2.min(axis=1) < COLOUR_TOLERANCE**2).sum())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", help="benchmark whose graph page is rendered (default: eLinear's eval forward)")
    p.add_argument("--png", type=Path, default=REPO / "results" / "asv" / "report.png", help="screenshot path")
    p.add_argument("--min-pixels", type=int, default=100, help="series-coloured pixels required in the screenshot")
    p.add_argument("--no-publish", action="store_true", help="reuse .asv/html as it is")
    args = p.parse_args(argv)
    if not args.no_publish:
        print("asv publish; local assets:")
        publish()
    name = pick_benchmark(args.benchmark)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    with serve(HTML) as base:
        url = f"{base}/index.html#{name}?show-legend=false"  # no legend: series colours then mean drawn data
        print(f"rendering {url}")
        dom = chromium("--dump-dom", url).stdout
        shot = chromium(f"--screenshot={args.png.resolve()}", url)
    external = [r for r in QuietHandler.requests if r.startswith("http")]
    problems = check_dom(dom) + [f"requests for external addresses: {external}"] * bool(external)
    if not args.png.exists():
        problems.append(f"no screenshot: {shot.stderr[-500:]}")
    elif (count := series_pixels(args.png)) < args.min_pixels:
        problems.append(f"only {count} pixels in asv's series colours (need {args.min_pixels}): no data drawn")
    else:
        print(f"screenshot {args.png}: {count} pixels in series colours")
    if problems:
        fail("; ".join(problems))
    print(f"OK: {name} rendered offline with its graph drawn ({len(QuietHandler.requests)} local requests)")


if __name__ == "__main__":
    main()
