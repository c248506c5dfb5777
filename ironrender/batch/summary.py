"""What a batch shows: a line per object, ``OUT/summary.csv`` and ``OUT/index.html``.

Both files are rewritten (atomically) each time an object starts or ends, so they can be
watched while the batch runs, and an interrupted batch leaves them consistent. One row per
object, in name order: its status (``queued``, ``running``, ``finished``, ``done earlier``,
``failed``), wall time, the worker's peak memory, the headline metrics, the error of a failed
one, and in the page a thumbnail (a held-out view as the run renders it) linking the object's
``report.html``.
"""

from __future__ import annotations

import csv
import html
import io
import time
from pathlib import Path

from ironrender.batch.task import ObjectResult
from ironrender.run_folder import EVAL_DIR, FINAL_PREVIEW, REPORT_FILE, STAGE2_DIR
from ironrender.storage import atomic_write_text

SUMMARY_CSV = "summary.csv"
INDEX_HTML = "index.html"
QUEUED = "queued"
RUNNING = "running"
#: The metrics in the summary, as ``format_summary`` shows them (when the run has them).
METRICS = ("psnr", "ssim", "chamfer_percent", "albedo_psnr", "roughness_error", "relight_psnr")
COLUMNS = (
    "object",
    "status",
    "seconds",
    "peak_memory_mb",
    "peak_gpu_memory_mb",
    *METRICS,
    "attempt",
    "host",
    "device",
    "threads",
    "error",
)


def start_line(name: str, host: str, attempt: int) -> str:
    """``[batch 14:02:11] mug: started on node3`` (the clock time: when it started)."""
    again = f" (attempt {attempt}: resuming)" if attempt > 1 else ""
    return f"{_stamp()} {name}: started on {host}{again}"


def end_line(result: ObjectResult) -> str:
    """``[batch 14:09:03] mug: finished in 412 s, PSNR 31.2 dB`` or the one-line error."""
    if not result.ok:
        return f"{_stamp()} {result.name}: FAILED after {result.seconds:.0f} s: {result.error}"
    line = f"{_stamp()} {result.name}: {result.status} in {result.seconds:.0f} s"
    if "psnr" in result.metrics:
        line += f", PSNR {result.metrics['psnr']:.2f} dB"
    return line


def _stamp() -> str:
    return time.strftime("[batch %H:%M:%S]")


def write_summaries(out: Path, rows: list[ObjectResult]) -> None:
    """``OUT/summary.csv`` and ``OUT/index.html`` for ``rows`` (module docstring)."""
    atomic_write_text(out / SUMMARY_CSV, summary_csv(rows))
    atomic_write_text(out / INDEX_HTML, index_html(out, rows))


def summary_csv(rows: list[ObjectResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(_cells(row))
    return buffer.getvalue()


def _cells(row: ObjectResult) -> list[str]:
    started = row.status not in (QUEUED, RUNNING)
    cells = {
        "object": row.name,
        "status": row.status,
        "seconds": f"{row.seconds:.1f}" if started else "",
        "peak_memory_mb": f"{row.peak_memory_mb:.0f}" if row.peak_memory_mb else "",
        "peak_gpu_memory_mb": f"{row.peak_gpu_memory_mb:.0f}" if row.peak_gpu_memory_mb else "",
        "attempt": str(row.attempt) if started else "",
        "host": row.host,
        "device": row.device,
        "threads": str(row.threads or ""),
        "error": row.error,
    }
    for key in METRICS:
        cells[key] = f"{row.metrics[key]:.6g}" if key in row.metrics else ""
    return [cells[column] for column in COLUMNS]


def thumbnail(run_dir: Path) -> Path | None:
    """A picture of the result: the first held-out view rendered by evaluation, else stage 2's
    final preview."""
    views = sorted((run_dir / EVAL_DIR / "views").glob("*_pred.png"))
    if views:
        return views[0]
    preview = run_dir / STAGE2_DIR / FINAL_PREVIEW
    return preview if preview.is_file() else None


def index_html(out: Path, rows: list[ObjectResult]) -> str:
    done = sum(row.ok for row in rows)
    failed = sum(row.status == "failed" for row in rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("", *COLUMNS))
    body = []
    for row in rows:
        run_dir = out / row.name
        picture = thumbnail(run_dir)
        image = (
            f'<img src="{html.escape(picture.relative_to(out).as_posix())}" height="96">'
            if picture
            else ""
        )
        if (run_dir / REPORT_FILE).is_file():
            image = f'<a href="{html.escape(row.name)}/{REPORT_FILE}">{image or "report"}</a>'
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in _cells(row))
        body.append(f'<tr class="{html.escape(row.status)}"><td>{image}</td>{cells}</tr>')
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>iron batch</title>\n"
        '<meta http-equiv="refresh" content="30">\n'
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
        "tr.failed{background:#fdd}tr.running{background:#ffd}</style></head><body>\n"
        f"<h1>iron batch: {done} of {len(rows)} done, {failed} failed</h1>\n"
        f"<table><tr>{head}</tr>\n" + "\n".join(body) + "\n</table></body></html>\n"
    )
