"""`iron batch` on a local Ray: three tiny objects (one broken), a worker killed inside a task,
a batch killed half-way and run again, two batches on one object, and a two-node cluster.

The objects are copies of one tiny capture, so every finished object must equal one plain
``iron run`` of it. The comparison is exact where it can be: the batch gives each object one
thread and the reference ``iron run`` runs with ``OMP_NUM_THREADS=1``, the same float kernels in
the same order, so the exported asset files are compared byte for byte and the metrics to 1e-9
(the kill-storm test shows resumed runs reproduce uninterrupted ones to that precision).
Different thread counts would change the sums' order, and the results in the last digits.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ironrender.batch import BatchOptions, run_batch
from ironrender.batch.objects import DATASET, PHOTOS, UNKNOWN, find_objects
from ironrender.batch.task import DONE_EARLIER, FAILED, FINISHED, KILL_HOOK_ENV
from ironrender.run_config import ConfigRequest
from ironrender.run_folder import read_progress, run_lock, stage_checkpoint
from tests.tiny_runs import TINY, set_args, tiny_capture

#: The exported files that must be identical to a plain `iron run`'s.
ASSET_FILES = ("mesh.obj", "model.glb", "diffuse_albedo.png", "roughness.exr", "light.json")
NO_EVAL = "stage1,stage2,export"


def iron(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ironrender", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def read_summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv") as handle:
        return {row["object"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    """alpha and beta: the same tiny capture; broken: three photos, too few to import."""
    root = tmp_path_factory.mktemp("batch") / "captures"
    tiny_capture(root / "alpha")
    shutil.copytree(root / "alpha", root / "beta")
    (root / "broken").mkdir()
    for i, image in enumerate(sorted((root / "alpha" / "train" / "image").glob("*.png"))[:3]):
        shutil.copy(image, root / "broken" / f"photo{i}.png")
    return root


@pytest.fixture(scope="module")
def first_batch(captures, tmp_path_factory):
    """`iron batch` on the three objects, beta's worker killed once inside its task; a plain
    `iron run` of the same capture alongside, for reference."""
    work = tmp_path_factory.mktemp("first")
    marker = work / "killed"
    reference = iron(
        "run", str(captures / "alpha"), str(work / "reference"), *set_args(TINY),
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    batch = iron(
        "batch", str(captures), str(work / "out"), *set_args(TINY), "--cpus-per-object", "1",
        env={KILL_HOOK_ENV: f"beta:{marker}"},
    )  # fmt: skip
    stdout, stderr = batch.communicate(timeout=600)
    _, reference_err = reference.communicate(timeout=600)
    assert reference.returncode == 0, reference_err
    return work, batch.returncode, stdout, stderr


def test_objects_are_datasets_photo_folders_or_neither(tmp_path):
    (tmp_path / "c" / "a" / "train").mkdir(parents=True)
    (tmp_path / "c" / "b").mkdir()
    (tmp_path / "c" / "b" / "IMG_1.JPG").write_bytes(b"")
    (tmp_path / "c" / "z").mkdir()
    (tmp_path / "c" / ".hidden").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("not an object")
    found = [(o.name, o.kind) for o in find_objects(tmp_path / "c", tmp_path / "out")]
    assert found == [("a", DATASET), ("b", PHOTOS), ("z", UNKNOWN)]


def test_a_missing_captures_folder_is_a_one_line_error(tmp_path):
    result = iron("batch", str(tmp_path / "nope"), str(tmp_path / "out"))
    _, stderr = result.communicate(timeout=120)
    assert result.returncode == 2
    assert len(stderr.strip().splitlines()) == 1 and "not found" in stderr


def test_an_address_nothing_answers_at_is_a_one_line_error(captures, tmp_path):
    result = iron("batch", str(captures), str(tmp_path / "out"), "--address", "127.0.0.1:1")
    _, stderr = result.communicate(timeout=120)
    assert result.returncode == 2
    assert len(stderr.strip().splitlines()) == 1 and "no Ray cluster answers at" in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_objects_finish_as_iron_run_and_the_broken_one_is_one_line(first_batch):
    work, returncode, stdout, stderr = first_batch
    out, reference = work / "out", work / "reference"
    assert returncode == 1, stderr  # one object failed
    assert "Traceback" not in stdout + stderr
    rows = read_summary(out)
    assert {name: row["status"] for name, row in rows.items()} == {
        "alpha": FINISHED,
        "beta": FINISHED,
        "broken": FAILED,
    }
    assert "only 3 photos; SfM needs at least 10" in rows["broken"]["error"]
    assert "FAILED broken: " in stdout and "2 finished" in stdout
    expected = json.loads((reference / "eval" / "metrics.json").read_text())["mean"]
    for name in ("alpha", "beta"):
        for file in ASSET_FILES:
            got, want = out / name / "export" / file, reference / "export" / file
            assert got.read_bytes() == want.read_bytes(), f"{name}: {file}"
        metrics = json.loads((out / name / "eval" / "metrics.json").read_text())["mean"]
        assert metrics.keys() == expected.keys()
        for key, value in expected.items():
            assert metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, key)
        assert float(rows[name]["psnr"]) == pytest.approx(expected["psnr"], rel=1e-5)
        assert float(rows[name]["peak_memory_mb"]) > 100 and rows[name]["threads"] == "1"
        assert (out / name / "report.html").is_file()
        assert f"] {name}: finished in" in stdout and "PSNR" in stdout  # the live lines


@pytest.mark.slow
def test_a_worker_killed_inside_its_task_is_retried_and_resumes(first_batch):
    work, _, stdout, _ = first_batch
    out = work / "out"
    assert (work / "killed").read_text().startswith("killed worker")  # the hook did kill it
    rows = read_summary(out)
    assert rows["beta"]["attempt"] == "2" and rows["alpha"]["attempt"] == "1"
    record = json.loads((out / "beta" / "batch.json").read_text())
    # The retry found stage 1 finished and a stage-2 checkpoint, and went on from there (its
    # outputs equal the uninterrupted reference: the test above).
    assert record["resumed_from"] == ["stage1 done", "stage2 checkpoint"]
    assert "] beta: started on" in stdout and "(attempt 2: resuming)" in stdout


@pytest.mark.slow
def test_the_index_page_links_each_report_with_a_thumbnail(first_batch):
    out = first_batch[0] / "out"
    page = (out / "index.html").read_text()
    assert page.count("<tr class=") == 3 and "2 of 3 done, 1 failed" in page
    for name in ("alpha", "beta"):
        assert f'<a href="{name}/report.html"><img src="{name}/eval/views/000_pred.png"' in page
    assert "only 3 photos; SfM needs at least 10" in page


@pytest.mark.slow
def test_a_batch_killed_midway_finishes_without_redoing_finished_objects(captures, tmp_path):
    """SIGKILL to the whole `iron batch` (its local Ray with it) once one object is finished
    and the other has a checkpoint; the same batch from Python then skips the finished one and
    resumes the other."""
    out = tmp_path / "out"
    args = ["batch", str(captures), str(out), *set_args(TINY), "--steps", NO_EVAL]
    batch = iron(*args, "--cpus", "1", start_new_session=True)  # one object at a time
    deadline = time.monotonic() + 300
    finished = half = None
    while finished is None or half is None:
        assert batch.poll() is None, batch.communicate()
        assert time.monotonic() < deadline, "no object finished in time"
        done = {n: set(read_progress(out / n)["done"]) for n in ("alpha", "beta")}
        finished = next((n for n in done if {"export"} <= done[n]), None)
        half = next(
            (n for n in done if n != finished and stage_checkpoint(out / n, "stage1").exists()),
            None,
        )
        time.sleep(0.05)
    os.killpg(batch.pid, signal.SIGKILL)
    batch.communicate()
    assert not {"stage1", "stage2", "export"} <= set(read_progress(out / half)["done"])
    stamps = {p: p.stat().st_mtime_ns for p in (out / finished).rglob("*") if p.is_file()}

    request = ConfigRequest(overrides=tuple(TINY))
    options = BatchOptions(steps=tuple(NO_EVAL.split(",")), local_cpus=1, progress=False)
    result = run_batch(captures, out, request, options)
    status = {r.name: r.status for r in result.results}
    assert status == {finished: DONE_EARLIER, half: FINISHED, "broken": FAILED}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not one file rewritten
    resumed = next(r for r in result.results if r.name == half)
    assert resumed.resumed_from and resumed.resumed_from[0].startswith("stage1")
    assert read_summary(out)[finished]["status"] == DONE_EARLIER
    assert float(read_summary(out)[finished]["seconds"]) > 0  # its row kept from the first run


@pytest.mark.slow
def test_two_batches_never_write_one_object(captures, tmp_path):
    """While another process holds alpha's run folder (as a second batch on the same OUT
    would), this batch leaves it alone with the holder's name in its row."""
    only_alpha = tmp_path / "captures"
    only_alpha.mkdir()
    (only_alpha / "alpha").symlink_to(captures / "alpha")
    out = tmp_path / "out"
    request = ConfigRequest(overrides=tuple(TINY))
    with run_lock(out / "alpha", "iron batch CAPTURES OUT (the other batch)"):
        result = run_batch(only_alpha, out, request, BatchOptions(progress=False))
    (row,) = result.results
    assert row.status == FAILED and "being written by process" in row.error
    assert "(the other batch)" in row.error and not (out / "alpha" / "config.json").exists()


@pytest.mark.slow
def test_a_two_node_cluster_runs_objects_on_both_nodes(captures, tmp_path):
    """A Ray head and a second node on this machine (one CPU each), `iron batch --address`."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "out"
        args = ["batch", str(captures), str(out), *set_args(TINY), "--steps", "stage1"]
        batch = iron(*args, "--address", cluster.address)
        stdout, stderr = batch.communicate(timeout=600)
        assert batch.returncode == 1, stderr  # broken
        assert "2 node(s), 2 CPUs" in stdout
        nodes = {
            json.loads((out / name / "batch.json").read_text())["node_id"]
            for name in ("alpha", "beta")
        }
        assert len(nodes) == 2 and all(nodes)
    finally:
        cluster.shutdown()
