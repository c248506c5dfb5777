"""The asset viewer of ``report.html``: the exported ``model.glb`` in three.js, in the page.

Everything the viewer needs is written into the report, so that it opens from ``file://`` and
offline (no CDN, no server): three.js itself (vendored from its npm package, built by
``viewer/package.json`` into ``ironrender/assets/viewer/three.bundle.min.js``, MIT licence in
``three.LICENSE`` beside it), the viewer's own script (``assets/viewer/viewer.js``) and one JSON
block, ``<script type="application/json" id="iron-viewer-data">``:

* ``glb``: ``RUN/export/model.glb``, base64;
* ``light_intensity``: the recovered flash intensity ``I`` (``light.json``); three.js's physical
  point light (``decay`` 2) gives radiance ``I / d^2`` as IRON's Eq. 3;
* ``views``: the held-out cameras shown in the report, each ``name``, ``width``, ``height`` (the
  evaluation's image size), ``K`` = ``[fx, fy, cx, cy]`` in those pixels, ``c2w`` (OpenCV
  camera-to-world, 16 numbers, row-major), ``flash_in_camera`` (the light in the camera's frame,
  0 when co-located) and ``photo_id`` (the report's ``<img>`` of that photograph, so it is not
  stored twice). A run without held-out views gets the export's preview camera;
* ``envmap``: the evaluation's environment map (``DATA/gt/envmap.exr``) when there is one,
  averaged down to at most ``ENVMAP_WIDTH`` columns, its columns turned by a quarter turn from
  Mitsuba's lat-long layout to three.js's (viewer.js says why), float32 RGB base64; else null.
"""

from __future__ import annotations

import base64
import html
import json
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ironrender.data.camera_file import (
    CAMERA_FILE,
    dataset_up,
    read_camera_dict,
    sort_names,
    split_cameras,
)
from ironrender.data.cameras import Cameras
from ironrender.data.images import read_image
from ironrender.errors import IronError
from ironrender.export.writers import GLB_NAME, LIGHT_NAME, preview_camera
from ironrender.run_folder import resolve_data_dir

VIEWER_ASSETS = "assets/viewer"
THREE_BUNDLE = "three.bundle.min.js"
VIEWER_SCRIPT = "viewer.js"
THREE_LICENCE = "three.LICENSE"
THREE_VERSION = "three.version.json"
ENVMAP_WIDTH = 256
#: The free camera of a run without held-out views (the export's Mitsuba preview camera).
PREVIEW_SIZE, PREVIEW_FOV_DEG, PREVIEW_DISTANCE = 512, 45.0, 3.0


def _asset_text(name: str) -> str:
    return resources.files("ironrender").joinpath(f"{VIEWER_ASSETS}/{name}").read_text("utf-8")


def _view_entry(name: str, cameras: Cameras, index: int, width: int, photo_id: str) -> dict:
    """One held-out camera at the evaluation's image ``width`` (module docstring)."""
    camera = cameras[index].scaled(width / cameras.width(index))
    K = camera.intrinsics[0].double().cpu().numpy()
    flash = [0.0, 0.0, 0.0] if camera.flash is None else camera.flash[0].double().tolist()
    return {
        "name": name,
        "width": camera.width(),
        "height": camera.height(),
        "K": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
        "c2w": camera.c2w[0].double().cpu().numpy().reshape(-1).tolist(),
        "flash_in_camera": flash,
        "photo_id": photo_id,
    }


def _preview_view(up: np.ndarray | None) -> dict:
    """The export's preview camera (``writers.preview_camera``), looking at the origin."""
    eye, up_vector = preview_camera(up, PREVIEW_DISTANCE)
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, up_vector)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, down, forward], axis=1)
    c2w[:3, 3] = eye
    focal = 0.5 * PREVIEW_SIZE / np.tan(np.radians(PREVIEW_FOV_DEG) / 2)
    centre = PREVIEW_SIZE / 2
    return {
        "name": "preview",
        "width": PREVIEW_SIZE,
        "height": PREVIEW_SIZE,
        "K": [focal, focal, centre, centre],
        "c2w": c2w.reshape(-1).tolist(),
        "flash_in_camera": [0.0, 0.0, 0.0],
        "photo_id": "",
    }


def envmap_entry(path: Path) -> dict:
    """The environment map for three.js: averaged down, columns shifted by a quarter turn
    (Mitsuba's ``u = atan2(x, -z) / 2 pi`` is three.js's ``u - 1/4``)."""
    envmap = read_image(path)[..., :3].astype(np.float32)
    height, width = envmap.shape[:2]
    factor = max(1, int(np.ceil(width / ENVMAP_WIDTH)))
    height, width = height // factor, width // factor
    envmap = envmap[: height * factor, : width * factor]
    envmap = envmap.reshape(height, factor, width, factor, 3).mean(axis=(1, 3))
    envmap = np.roll(envmap, width // 4, axis=1)
    data = base64.b64encode(np.ascontiguousarray(envmap, dtype="<f4").tobytes()).decode()
    return {"width": width, "height": height, "data": data}


def viewer_data(run_dir: Path, photos: dict[str, str]) -> dict | None:
    """The viewer's JSON (module docstring), or None when the run has no ``model.glb``.

    ``photos`` maps each held-out view's name to the id of its ``<img>`` in the report, in the
    order the viewer steps through them.
    """
    export_dir = run_dir / "export"
    glb = export_dir / GLB_NAME
    if not glb.is_file():
        return None
    light = json.loads((export_dir / LIGHT_NAME).read_text())["light_intensity"]
    try:
        data_dir = resolve_data_dir(run_dir, None)
    except IronError:
        data_dir = None  # a run folder moved without its dataset: the asset alone
    cameras = split_cameras(data_dir, "test") if data_dir is not None else None
    entries = [] if cameras is None else read_camera_dict(data_dir / "test" / CAMERA_FILE)
    names = [Path(entry).stem for entry in sort_names(entries)]  # split_cameras' order
    views = []
    for name, photo_id in photos.items():
        if cameras is None or name not in names:
            continue
        index = names.index(name)
        image = run_dir / "eval" / "views" / f"{name}_gt.png"
        if image.is_file():
            with Image.open(image) as opened:
                width = opened.width
        else:
            width = cameras.width(index)
        views.append(_view_entry(name, cameras, index, width, photo_id))
    if not views:  # the preview camera stands upright for the capture's up
        views = [_preview_view(dataset_up(data_dir) if data_dir is not None else None)]
    envmap = data_dir / "gt" / "envmap.exr" if data_dir is not None else None
    return {
        "glb": base64.b64encode(glb.read_bytes()).decode(),
        "light_intensity": float(light),
        "views": views,
        "envmap": envmap_entry(envmap) if envmap is not None and envmap.is_file() else None,
    }


def viewer_section(data: dict) -> str:
    """The report's viewer: controls, canvas, the photograph of the current view, scripts."""
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f"""<h2>The asset, in your browser</h2>
<p class=hint>model.glb as glTF viewers show it (three.js), lit by the recovered flash
(I = {data["light_intensity"]:.4g}, radiance I / d²). Drag to turn, scroll to zoom; the arrows
step through the held-out cameras, each beside its photograph.</p>
<div id="iron-viewer" class=viewer>
<div class=controls>
<button class=previous title="previous held-out view">◀</button>
<button class=next title="next held-out view">▶</button> <span class=view-name></span>
<label>light <select class=light></select></label>
<label><input type=checkbox class=with-flash> and the flash</label>
<label>material <select class=material>
<option value=full>full material</option><option value=diffuse>diffuse only</option>
<option value=specular>specular only</option><option value=normals>normals</option></select></label>
<label>exposure (EV) <input type=range class=exposure min=-4 max=4 step=0.25 value=0></label>
</div>
<div class=row><canvas></canvas><img class=photo alt="held-out photograph"></div>
</div>
<script>{_asset_text(THREE_BUNDLE)}</script>
<script type="application/json" id="iron-viewer-data">{payload}</script>
<script>{_asset_text(VIEWER_SCRIPT)}</script>
<details class=hint><summary>three.js {html.escape(_three_version())} draws this view; its
licence</summary><pre>{html.escape(_asset_text(THREE_LICENCE))}</pre></details>"""


def _three_version() -> str:
    return json.loads(_asset_text(THREE_VERSION))["version"]
