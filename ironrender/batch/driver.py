"""``run_batch``: every object of ``CAPTURES`` as one Ray task, results in ``OUT``.

Ray runs the tasks: locally by default (a fresh ``ray.init`` on this machine, stopped at the
end), or on a running cluster (``address``, or ``RAY_ADDRESS``), where every node needs the same
``ironrender`` and ``OUT`` must be a path every node sees (a shared mount). An already connected
Ray session (``ray.init`` by the caller) is used as it is and left running.

Each task asks Ray for ``cpus_per_object`` CPUs (and ``gpus_per_object`` GPUs), runs with that
many threads, and so Ray runs as many objects at once as the CPUs allow, never more threads than
cores. The default follows a measurement (BENCHMARKS.md, "Many objects"): on 2 cores two tiny
objects with a thread each finished a batch sooner than one at a time with two threads, since a
run uses its threads poorly (small kernels, Python between them) and objects share nothing. So
objects come first: one thread each while there are at least as many objects as cores, the
spare cores shared out when there are fewer. A task is a fresh worker process (``max_calls=1``):
its peak memory is its object's own, and its threads are set before anything runs.

Failures stay with their object (:mod:`ironrender.batch.task`): a broken capture is one failed
row with its message; a worker that dies (killed, out of memory, a crashed node) is retried by
Ray up to ``max_retries`` times, and the retry resumes from the object's last checkpoint. Objects
finished by an earlier batch are skipped, unfinished ones resume; two batches on one ``OUT``
never write one object at once (``iron run``'s lock on the run folder, across processes and,
on a shared mount with working ``flock``, across machines).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
from tqdm import tqdm

from ironrender.batch.objects import (
    UNKNOWN,
    BatchObject,
    find_objects,
    finished_earlier,
    unknown_kind_error,
)
from ironrender.batch.summary import (
    INDEX_HTML,
    QUEUED,
    RUNNING,
    SUMMARY_CSV,
    end_line,
    start_line,
    write_summaries,
)
from ironrender.batch.task import (
    DONE_EARLIER,
    FAILED,
    KILL_HOOK_ENV,
    ObjectJob,
    ObjectResult,
    read_result,
    run_object,
    write_result,
)
from ironrender.data.capture import ImportConfig
from ironrender.errors import IronError
from ironrender.pipeline import STEPS
from ironrender.run_config import ConfigRequest
from ironrender.run_folder import read_progress

#: How often the driver looks for objects that started, in seconds.
POLL_SECONDS = 0.5
#: How long to wait for a cluster's address to answer before saying that nothing does.
CONNECT_SECONDS = 5.0
#: Ray's setting of its workers' niceness (Ray's default: 15). A local batch sets 0 unless the
#: user chose: its objects then get the CPU share an ``iron run`` gets; at 15 they starved
#: behind any other busy process (BENCHMARKS.md, "Many objects": 113 and 305 s for 4 objects
#: against 81 s for sequential ``iron run``s beside another user's run).
WORKER_NICENESS_ENV = "RAY_worker_niceness"


@dataclass(frozen=True)
class BatchOptions:
    """How to run a batch; the configuration of each run is the :class:`ConfigRequest`."""

    steps: tuple[str, ...] = STEPS
    device: str | None = None  # None: CUDA where the task has a GPU, else the CPU
    downscale: int = 1
    import_config: ImportConfig | None = None  # photo folders; None: iron import's defaults
    address: str | None = None  # a running cluster; None: RAY_ADDRESS, else a local Ray
    local_cpus: int | None = None  # the local Ray's CPUs; None: all of this machine's
    cpus_per_object: int | None = None  # None: the rule of the module docstring
    gpus_per_object: float | None = None  # None: 1 where the cluster has GPUs, else 0
    max_retries: int = 3  # attempts after a worker died (not after an error in the capture)
    progress: bool = True  # the progress bar and a line per object start and end
    command: str = "iron batch"  # recorded in each run folder's lock while it is written


@dataclass
class BatchResult:
    out: Path
    results: list[ObjectResult]
    seconds: float
    ray_start_seconds: float = 0.0  # connecting to (or starting) Ray
    nodes: int = 0  # the cluster's nodes when the batch ran
    summary_files: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[ObjectResult]:
        return [r for r in self.results if not r.ok]


def run_batch(
    captures: str | Path,
    out: str | Path,
    request: ConfigRequest | None = None,
    options: BatchOptions | None = None,
) -> BatchResult:
    """Run every object of ``captures`` into ``out/<object>/`` (module docstring)."""
    started = time.perf_counter()
    request, options = request or ConfigRequest(), options or BatchOptions()
    out = Path(out)
    objects = find_objects(captures, out)
    unknown = set(options.steps) - set(STEPS)
    if unknown:
        raise IronError(f"unknown step(s) {sorted(unknown)}; choose from {', '.join(STEPS)}")
    request.resolve()  # a bad --set or --config is one error now, not one per object
    if request.config_file is not None:  # read by the workers, whose directory is not ours
        request = dataclasses.replace(
            request, config_file=str(Path(request.config_file).absolute())
        )

    rows: dict[str, ObjectResult] = {}
    to_run: list[BatchObject] = []
    for obj in objects:
        if obj.kind == UNKNOWN:
            rows[obj.name] = ObjectResult(obj.name, FAILED, error=unknown_kind_error(obj))
        elif finished_earlier(obj.run_dir(out), request, options.steps):
            earlier = read_result(obj.run_dir(out)) or _plain_run_result(obj, out)
            earlier.status = DONE_EARLIER
            rows[obj.name] = earlier
        else:
            rows[obj.name] = ObjectResult(obj.name, QUEUED)
            to_run.append(obj)

    ray_seconds, nodes, started_here = 0.0, 0, False
    if to_run:  # connected before OUT is written: a wrong address leaves nothing behind
        ray_started = time.perf_counter()
        started_here = _connect(options.address, options.local_cpus, options.progress)
        ray_seconds = time.perf_counter() - ray_started
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_summaries(out, list(rows.values()))
        if to_run:
            nodes = len([n for n in ray.nodes() if n.get("Alive")])
            _run_objects(to_run, out, request, options, rows)
    finally:
        if started_here:
            ray.shutdown()
    results = [rows[obj.name] for obj in objects]
    return BatchResult(
        out,
        results,
        time.perf_counter() - started,
        ray_seconds,
        nodes,
        (out / SUMMARY_CSV, out / INDEX_HTML),
    )


def _plain_run_result(obj: BatchObject, out: Path) -> ObjectResult:
    """The row of an object finished by a plain ``iron run`` (no ``batch.json``)."""
    seconds = sum(read_progress(obj.run_dir(out))["done"].values())
    return ObjectResult(obj.name, DONE_EARLIER, seconds=seconds)


def _connect(address: str | None, local_cpus: int | None, verbose: bool) -> bool:
    """Connect to Ray (module docstring); True when this call started it (and must stop it)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if local_cpus is not None and (address != "local" or local_cpus < 1):
        raise IronError(
            "--cpus sets the CPUs of a local Ray (at least 1); a cluster's nodes declare theirs"
            " (`ray start --num-cpus N`)"
        )
    if address == "local":
        os.environ.setdefault(WORKER_NICENESS_ENV, "0")  # read by the raylet it starts
    else:
        _check_reachable(address)
    try:
        context = ray.init(
            address=address,
            num_cpus=local_cpus,
            log_to_driver=False,
            include_dashboard=None,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise IronError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    if verbose:
        where = "a local Ray" if address == "local" else f"the Ray cluster at {address}"
        dashboard = getattr(context, "dashboard_url", None)
        more = f"; dashboard: http://{dashboard}" if dashboard else ""
        print(f"[batch] running on {where}: {_resources_line()}{more}", flush=True)
    return True


def _check_reachable(address: str) -> None:
    """Refuse an address nothing answers at in seconds (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise IronError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with"
            " `ray start --head`, or check --address / RAY_ADDRESS"
        ) from None


def _resources_line() -> str:
    resources = ray.cluster_resources()
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    gpus = int(resources.get("GPU", 0))
    return f"{nodes} node(s), {int(resources.get('CPU', 0))} CPUs" + (
        f", {gpus} GPUs" if gpus else ""
    )


def task_resources(options: BatchOptions, objects: int) -> tuple[int, float]:
    """The CPUs and GPUs each task asks for (module docstring); at most one node's worth."""
    resources = ray.cluster_resources()
    total_cpus = max(1, int(resources.get("CPU", 1)))
    node_cpus = max(
        [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [1]
    )
    gpus = options.gpus_per_object
    if gpus is None:
        wants_cuda = (options.device or "").startswith("cuda")
        gpus = 1.0 if resources.get("GPU", 0) >= 1 or wants_cuda else 0.0
    cpus = options.cpus_per_object
    if cpus is None:
        at_once = max(1, objects)
        if gpus > 0:
            at_once = max(1, min(at_once, int(resources.get("GPU", 0) // gpus)))
        cpus = max(1, min(node_cpus, total_cpus // at_once))
    if cpus < 1:
        raise IronError(f"--cpus-per-object must be at least 1, not {cpus}")
    return int(cpus), float(gpus)


def _run_objects(
    objects: list[BatchObject],
    out: Path,
    request: ConfigRequest,
    options: BatchOptions,
    rows: dict[str, ObjectResult],
) -> None:
    """Submit one task per object, follow them to the end, rewrite the summaries on the way."""
    if not objects:
        return
    cpus, gpus = task_resources(options, len(objects))
    threads = {"OMP_NUM_THREADS": str(cpus), "MKL_NUM_THREADS": str(cpus)}
    if os.environ.get(KILL_HOOK_ENV):
        threads[KILL_HOOK_ENV] = os.environ[KILL_HOOK_ENV]  # the test hook (task.py)
    remote = _object_task.options(
        num_cpus=cpus,
        num_gpus=gpus,
        max_retries=options.max_retries,
        retry_exceptions=False,
        runtime_env={"env_vars": threads},
    )
    board = ProgressBoard.remote()
    pending = {}
    for obj in objects:
        job = ObjectJob(
            obj, out.resolve(), request, tuple(options.steps), options.device,
            options.downscale, options.import_config, cpus, options.command,
        )  # fmt: skip
        pending[remote.remote(job, board)] = obj
    if options.progress:
        print(
            f"[batch] {len(objects)} object(s) to run, {cpus} CPU(s)"
            + (f" and {gpus:g} GPU(s)" if gpus else "")
            + " each; logs in OUT/<object>/batch.log",
            flush=True,
        )
    bar = tqdm(
        total=len(rows),
        initial=len(rows) - len(objects),
        unit="object",
        desc="iron batch",
        disable=not options.progress,
        file=sys.stderr,
    )
    say = bar.write if options.progress else (lambda _line: None)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for name, host, attempt in ray.get(board.drain.remote()):
                rows[name] = ObjectResult(name, RUNNING, host=host, attempt=attempt)
                say(start_line(name, host, attempt))
                write_summaries(out, list(rows.values()))
            for ref in ready:
                obj = pending.pop(ref)
                try:
                    result = ray.get(ref)
                    result.attempt = max(1, rows[obj.name].attempt)  # the board counts starts
                    write_result(obj.run_dir(out), result)
                except ray.exceptions.RayError as exc:
                    result = _lost(obj, rows[obj.name], exc, options.max_retries)
                rows[obj.name] = result
                say(end_line(result))
                bar.update()
                write_summaries(out, list(rows.values()))
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
        write_summaries(out, list(rows.values()))


def _lost(obj: BatchObject, row: ObjectResult, exc: Exception, retries: int) -> ObjectResult:
    """The row of a task Ray gave up on (its worker died ``retries + 1`` times)."""
    first = " ".join(str(exc).split())[:300]
    return ObjectResult(
        obj.name,
        FAILED,
        error=f"the worker died {retries + 1} time(s) ({type(exc).__name__}): {first}",
        host=row.host,
        attempt=row.attempt,
    )


@ray.remote(max_calls=1)
def _object_task(job: ObjectJob, board) -> ObjectResult:
    """The Ray task: report the start, then :func:`run_object`."""
    # Not waited for: a task blocked in ray.get lends its CPUs to another task meanwhile.
    board.started.remote(job.obj.name, socket.gethostname())
    return run_object(job, ray.get_runtime_context().get_node_id())


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Where tasks say that they started, for the driver's lines; counts attempts per object."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []
        self.attempts: dict[str, int] = {}

    def started(self, name: str, host: str) -> None:
        self.attempts[name] = self.attempts.get(name, 0) + 1
        self.events.append((name, host, self.attempts[name]))

    def drain(self) -> list[tuple[str, str, int]]:
        events, self.events = self.events, []
        return events
