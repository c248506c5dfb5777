"""Reading what the report's viewer draws, in a real headless Chromium (tests, benchmarks).

The viewer (:mod:`ironrender.evaluation.viewer`) opened with ``#view=K&light=...&snapshot``
renders held-out camera ``K`` at the evaluation's image size, one canvas pixel per image pixel,
and writes the frame into the page as a PNG data URL; :func:`viewer_snapshot` opens the report in
Chromium through Playwright and returns that frame. :func:`viewer_frame_rate` times frames of
the orbit view; :func:`object_psnr` scores a frame against a linear render of the same view.
Chromium is Debian's package (``/usr/bin/chromium``, installed by ``make setup``
when it runs as root; ``IRON_CHROMIUM`` names another), drawing WebGL with its software
rasteriser (SwiftShader) where there is no GPU. Playwright is a development dependency, imported
only here. Every page load also checks that the report is self-contained: a request for anything
but the file itself is refused and reported as an error.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ironrender.data.tone_curve import encode
from ironrender.errors import IronError

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
#: WebGL without a GPU: ANGLE on SwiftShader, allowed explicitly (Chromium refuses it otherwise).
SOFTWARE_GL_ARGS = (
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
)
READY_TIMEOUT_MS = 120_000


def chromium_path() -> str:
    """``IRON_CHROMIUM``, else the first Chromium on PATH; a clear error when there is none."""
    named = os.environ.get("IRON_CHROMIUM")
    if named:
        return named
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise IronError(
        "no Chromium found: install Debian's package (`apt-get install chromium`, which"
        " `make setup` does when run as root) or set IRON_CHROMIUM to a Chromium binary"
    )


@contextmanager
def report_page(report: str | Path, fragment: str) -> Iterator[object]:
    """A Playwright page showing ``report#fragment`` once its viewer is ready."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise IronError("the browser checks need Playwright: pip install -e '.[dev]'") from exc
    url = Path(report).resolve().as_uri() + "#" + fragment
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=list(SOFTWARE_GL_ARGS)
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            fetched: list[str] = []  # anything but the file itself: the report must be offline
            page.route("**/*", lambda route: _local_only(route, fetched))
            page.goto(url)
            page.wait_for_selector("#iron-viewer[data-ready]", timeout=READY_TIMEOUT_MS)
            state = page.get_attribute("#iron-viewer", "data-ready")
            if state != "true" or errors:
                raise IronError(f"the viewer in {report} failed: {state}; {'; '.join(errors)}")
            yield page
            if fetched:
                raise IronError(f"{report} fetched {fetched[0]}: a report must work offline")
        finally:
            browser.close()


def _local_only(route, fetched: list[str]) -> None:
    """Let the report's own file through; refuse (and note) anything from elsewhere."""
    if route.request.url.startswith(("file:", "data:", "blob:")):
        route.continue_()
    else:
        fetched.append(route.request.url)
        route.abort()


def viewer_snapshot(
    report: str | Path, view: int = 0, light: str = "flash", material: str = "full"
) -> np.ndarray:
    """The viewer's frame of held-out view ``view`` as (H, W, 3) uint8 sRGB."""
    fragment = f"view={view}&light={light}&material={material}&snapshot"
    with report_page(report, fragment) as page:
        url = page.text_content("#iron-snapshot")
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def viewer_frame_rate(report: str | Path, frames: int = 60) -> float:
    """Frames per second of the viewer turning the asset (orbit steps, one render each, each
    finished on the GPU or rasteriser before the next: ``gl.finish``), at the first view's
    size."""
    with report_page(report, "view=0&light=flash") as page:
        return float(page.evaluate(f"window.ironViewer.timeFrames({int(frames)})"))


def object_psnr(snapshot: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (8-bit sRGB) of a viewer frame (H, W, 3) uint8 against a linear render (H, W, 3)
    quantised the same way, over the pixels either image covers, less a one-pixel band along
    both silhouettes (where anti-aliasing differs by design: MSAA against a box filter)."""
    ours = snapshot.astype(np.float64) / 255.0
    theirs = np.round(encode(reference, "srgb") * 255.0) / 255.0
    covered = [image.max(axis=-1) > 0 for image in (ours, theirs)]
    band = np.zeros_like(covered[0])
    for mask in covered:
        band |= ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask, border_value=1)
    region = (covered[0] | covered[1]) & ~band
    if not region.any():
        raise ValueError("neither image shows the object")
    mse = float(np.mean((ours - theirs)[region] ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))
