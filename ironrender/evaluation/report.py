"""A self-contained ``report.html`` for one run: views, materials, turntable, curves, metrics.

The report reads only files that a run leaves on disk, so it can be rebuilt at any time::

    RUN/eval/metrics.json            the metrics table (per view and mean) and its notes
    RUN/eval/views/<name>_gt.png     ground truth and prediction of each held-out view
    RUN/eval/views/<name>_pred.png
    RUN/eval/relight/<name>_*.png    relighting (optional)
    RUN/eval/turntable/*.png         turntable frames of the exported asset (optional)
    RUN/export/*.png                 baked material maps (optional)
    RUN/stage*/**/events.out.*       TensorBoard scalars, drawn as inline SVG loss curves

Images are embedded as base64 PNG, so the file can be mailed or opened anywhere.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ironrender.evaluation.viewer import viewer_data, viewer_section
from ironrender.run_folder import STAGE1_DIR
from ironrender.storage import atomic_write_text
from ironrender.training.surface_check import read_surface_check

MAX_VIEWS = 8
CURVE_WIDTH, CURVE_HEIGHT = 360, 160
MATERIAL_MAPS = ("diffuse_albedo", "specular_albedo", "roughness")
#: ``metrics["info"]`` entries listed under the metrics table: what the numbers were measured on.
INFO_NOTES = ("notice", "image_metrics", "resolution", "object_mask", "sfm", "turntable")


def _img(path: Path, title: str = "", width: int | None = None, element_id: str = "") -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    style = f' style="width:{width}px"' if width else ""
    ident = f' id="{html.escape(element_id)}"' if element_id else ""
    return (
        f'<figure><img{ident} src="data:image/png;base64,{data}"{style}>'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def _format(value) -> str:
    if isinstance(value, float):
        if value == float("inf"):
            return "∞"
        return f"{value:.4g}"
    return html.escape(str(value))


def _metrics_table(metrics: dict) -> str:
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict | list):
            continue
        rows.append(f"<tr><th>{html.escape(key)}</th><td>{_format(value)}</td></tr>")
    return "<table class=metrics>" + "".join(rows) + "</table>"


def _info_notes(info: dict) -> str:
    """The ``INFO_NOTES`` entries of ``metrics["info"]`` as a definition list."""
    items = "".join(
        f"<dt>{html.escape(key.replace('_', ' '))}</dt><dd>{html.escape(str(info[key]))}</dd>"
        for key in INFO_NOTES
        if info.get(key)
    )
    return f"<dl class=notes>{items}</dl>" if items else ""


def _per_view_table(per_view: list[dict]) -> str:
    if not per_view:
        return ""
    keys = list(per_view[0])
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{_format(row.get(k))}</td>" for k in keys) + "</tr>"
        for row in per_view
    )
    return f"<table class=metrics><tr>{head}</tr>{body}</table>"


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of the TensorBoard event files under ``log_dir``."""
    series: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            points = [(e.step, e.value) for e in accumulator.Scalars(tag)]
            series.setdefault(tag, []).extend(points)
    return {tag: sorted(set(points)) for tag, points in series.items()}


def _svg_curve(title: str, points: list[tuple[int, float]]) -> str:
    """A small line plot; log scale on y for positive series spanning over a decade."""
    steps = [p[0] for p in points]
    values = [p[1] for p in points if math.isfinite(p[1])]
    if len(values) < 2:
        return ""
    log = min(values) > 0 and max(values) / min(values) > 10
    ys = [math.log10(v) if log else v for v in values]
    x0, x1 = min(steps), max(steps) or 1
    y0, y1 = min(ys), max(ys)
    y1 = y1 if y1 > y0 else y0 + 1
    pad = 8
    coords = " ".join(
        f"{pad + (s - x0) / max(x1 - x0, 1) * (CURVE_WIDTH - 2 * pad):.1f},"
        f"{CURVE_HEIGHT - pad - (y - y0) / (y1 - y0) * (CURVE_HEIGHT - 2 * pad):.1f}"
        for s, y in zip(steps, ys, strict=False)
    )
    scale = " (log)" if log else ""
    return (
        f'<figure><svg width="{CURVE_WIDTH}" height="{CURVE_HEIGHT}" class=curve>'
        f'<polyline fill="none" stroke="#2a6" stroke-width="1.5" points="{coords}"/></svg>'
        f"<figcaption>{html.escape(title)}{scale}: {values[0]:.4g} → {values[-1]:.4g}"
        "</figcaption></figure>"
    )


def build_report(run_dir: str | Path, title: str | None = None) -> Path:
    """Write ``RUN/report.html`` from what the run folder holds; returns its path."""
    run_dir = Path(run_dir)
    eval_dir = run_dir / "eval"
    sections: list[str] = []
    surface = read_surface_check(run_dir / STAGE1_DIR)
    if surface is not None and not surface.formed:
        sections.append(
            f"<div class=alarm><b>{html.escape(surface.line())}</b><br>"
            f"{html.escape(surface.advice)}</div>"
        )

    metrics_path = eval_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if metrics:
        summary = metrics.get("mean", metrics)
        sections.append(
            "<h2>Metrics</h2>" + _metrics_table(summary) + _info_notes(metrics.get("info", {}))
        )

    views = sorted((eval_dir / "views").glob("*_pred.png")) if (eval_dir / "views").is_dir() else []
    photos = {}  # held-out view -> the id of its photograph's <img>, for the viewer
    for pred in views[:MAX_VIEWS]:
        name = pred.name[: -len("_pred.png")]
        if pred.with_name(f"{name}_gt.png").is_file():
            photos[name] = f"photo-{name}"
    viewer = viewer_data(run_dir, photos)
    if viewer is not None:
        sections.append(viewer_section(viewer))

    if views:
        rows = []
        for pred in views[:MAX_VIEWS]:
            name = pred.name[: -len("_pred.png")]
            gt = pred.with_name(f"{name}_gt.png")
            photo = photos.get(name, "")
            cells = [_img(gt, f"{name}: ground truth", element_id=photo)] if gt.is_file() else []
            cells.append(_img(pred, f"{name}: ironrender"))
            error = pred.with_name(f"{name}_error.png")
            if error.is_file():
                cells.append(_img(error, f"{name}: |error| x4"))
            rows.append("<div class=row>" + "".join(cells) + "</div>")
        sections.append("<h2>Held-out views (co-located flash)</h2>" + "".join(rows))

    relight = (
        sorted((eval_dir / "relight").glob("*_pred.png")) if (eval_dir / "relight").is_dir() else []
    )
    if relight:
        rows = []
        for pred in relight[:MAX_VIEWS]:
            name = pred.name[: -len("_pred.png")]
            gt = pred.with_name(f"{name}_gt.png")
            cells = [_img(gt, f"{name}: ground truth")] if gt.is_file() else []
            cells.append(_img(pred, f"{name}: exported asset, Mitsuba 3"))
            rows.append("<div class=row>" + "".join(cells) + "</div>")
        sections.append("<h2>Relighting under an environment map</h2>" + "".join(rows))

    maps = [run_dir / "export" / f"{m}.png" for m in MATERIAL_MAPS]
    maps = [m for m in maps if m.is_file()]
    if maps:
        cells = "".join(_img(m, m.stem.replace("_", " "), width=256) for m in maps)
        sections.append(f"<h2>Material textures</h2><div class=row>{cells}</div>")

    frames = (
        sorted((eval_dir / "turntable").glob("*.png")) if (eval_dir / "turntable").is_dir() else []
    )
    if frames:
        cells = "".join(_img(f, f.stem) for f in frames)
        sections.append(f"<h2>Exported asset, turntable</h2><div class=row>{cells}</div>")

    curves = []
    for stage_dir in sorted(run_dir.glob("stage*")):
        if stage_dir.is_dir():  # TensorBoard event files anywhere under the stage folder
            for tag, points in read_scalars(stage_dir).items():
                curves.append(_svg_curve(f"{stage_dir.name} {tag}", points))
    if any(curves):
        sections.append("<h2>Training curves</h2><div class=row>" + "".join(curves) + "</div>")

    if metrics.get("per_view"):
        sections.append("<h2>Per view</h2>" + _per_view_table(metrics["per_view"]))

    title = title or f"ironrender report: {run_dir.name}"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; background: #fafafa; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 1.6em; }}
.row {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 0.8em; color: #555; }}
img {{ image-rendering: pixelated; width: 256px; background: #000; }}
table.metrics {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
table.metrics th {{ text-align: left; background: #eee; }}
svg.curve {{ background: #fff; border: 1px solid #ddd; }}
dl.notes {{ font-size: 0.85em; color: #444; max-width: 60em; }}
div.alarm {{ background: #fde2e1; border: 2px solid #c0392b; padding: 0.8em; max-width: 60em; }}
.viewer canvas {{ background: #000; }} .viewer img.photo {{ width: auto; }}
.viewer .controls {{ margin: 0.4em 0; display: flex; flex-wrap: wrap; gap: 1em; }}
.hint {{ font-size: 0.85em; color: #555; max-width: 60em; }}
dl.notes dt {{ font-weight: bold; margin-top: 0.4em; }} dl.notes dd {{ margin-left: 1.5em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{"".join(sections) or "<p>Nothing to show yet: run <code>iron eval RUN</code>.</p>"}
</body></html>
"""
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out
