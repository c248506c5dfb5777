"""The dense grid encoding's fused CPU kernel (``dense_grid_kernel.cpp``), and how it is loaded.

Why: profiled on 2 CPU cores (BENCHMARKS.md, "Profiles"), about 60 % of a stage-1 step went
to ``F.grid_sample``: one call per level forward, its backward for the SDF's gradient, and in
the loss's backward the double backward that the eikonal term needs (PyTorch composes it from
hundreds of small tensor operations). The kernel reads all the levels a point needs in one
pass and returns the features with their Jacobian ``J = d features / d x``; the SDF's gradient
is then ``dS/dx = dS/dx_direct + J^T dS/d features`` (the chain rule, written out in
:meth:`ironrender.fields.sdf.NeuralSDF.with_gradients`), so no backward pass is needed to get
it, and the loss's backward is one kernel call that scatters both the features' and the
Jacobian's gradients into the grids.

The kernel is compiled on first use with PyTorch's C++ extension tool (a C++ compiler and
``ninja``; ``make setup`` builds it once) into ``$IRONRENDER_CACHE`` (default
``~/.cache/ironrender``). Where it cannot be built (no compiler), or with
``IRONRENDER_FUSED=0``, or for tensors that are not float CPU tensors (CUDA), the encoding uses
``F.grid_sample`` as before: the same numbers within float rounding
(``tests/test_fused_grid.py``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType

import torch
from filelock import FileLock
from torch import Tensor

from ironrender.storage import atomic_write_text

KERNEL_SOURCE = Path(__file__).with_name("dense_grid_kernel.cpp")
DISABLE_VARIABLE = "IRONRENDER_FUSED"
TWICE = (
    "the fused dense-grid kernel is differentiated once; for a gradient of its gradient"
    " (create_graph through the encoding) run under fused_grid.switched_off()"
)


def cache_dir() -> Path:
    """Where compiled kernels live: ``$IRONRENDER_CACHE`` or ``~/.cache/ironrender``."""
    root = os.environ.get("IRONRENDER_CACHE") or Path.home() / ".cache" / "ironrender"
    return Path(root) / "extensions"


LIBRARY = "ironrender_dense_grid"
FLAGS = ("-O3", "-fopenmp")


@cache
def kernel() -> ModuleType | None:
    """The compiled kernel, built on first call; None where it cannot be (the reason warned
    once) or where ``IRONRENDER_FUSED=0``.

    A kernel built for this source, this PyTorch and this Python (its fingerprint in a stamp
    beside it) is imported directly. PyTorch's own loader would take its build lock (a ``lock``
    file) on every start, even with nothing to build, and a process killed while holding it
    leaves the file behind: every later process then waits for it forever (found by
    ``tests/test_reliability.py``'s kill storm). Builds are serialised by a ``filelock`` lock
    instead, which the operating system releases when its holder dies.
    """
    if os.environ.get(DISABLE_VARIABLE, "1") == "0":
        return None
    build = cache_dir() / "dense_grid"
    try:
        build.mkdir(parents=True, exist_ok=True)
        if _built(build):
            return _import(build / f"{LIBRARY}.so")
        return _build(build)
    except Exception as error:  # no compiler, no ninja, headers missing: fall back, say why
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        warnings.warn(
            f"the fused dense-grid kernel could not be built ({reason}); using F.grid_sample"
            " (slower on the CPU, same results)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def _fingerprint() -> str:
    """What a built kernel depends on: its source, the flags, PyTorch's and Python's versions."""
    digest = hashlib.sha256(KERNEL_SOURCE.read_bytes())
    digest.update(f"{FLAGS} {torch.__version__} {sys.version}".encode())
    return digest.hexdigest()


def _built(build: Path) -> bool:
    stamp = build / f"{LIBRARY}.stamp"
    library = build / f"{LIBRARY}.so"
    return library.is_file() and stamp.is_file() and stamp.read_text() == _fingerprint()


def _import(library: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(LIBRARY, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(build: Path) -> ModuleType:
    """Compile under an exclusive lock (another process building: wait for it, then use its
    kernel), then stamp the result."""
    from torch.utils import cpp_extension

    with FileLock(build / "build.lock"):
        if _built(build):
            return _import(build / f"{LIBRARY}.so")
        # Holding our lock, no other process of ours is building: a torch lock file here was
        # left by a builder that was killed, and would make cpp_extension wait for ever.
        (build / "lock").unlink(missing_ok=True)
        print(f"compiling the fused dense-grid kernel into {build} (once, about 30 s)",
              file=sys.stderr, flush=True)  # fmt: skip
        module = cpp_extension.load(
            name=LIBRARY,
            sources=[str(KERNEL_SOURCE)],
            extra_cflags=list(FLAGS),
            extra_ldflags=["-fopenmp"],
            build_directory=str(build),
            verbose=False,
        )
        atomic_write_text(build / f"{LIBRARY}.stamp", _fingerprint())
        return module


_switched_off = False


@contextmanager
def switched_off() -> Iterator[None]:
    """Within it, the encodings use ``F.grid_sample`` (side-by-side benchmarks, tests)."""
    global _switched_off
    before, _switched_off = _switched_off, True
    try:
        yield
    finally:
        _switched_off = before


def fused_available(points: Tensor) -> bool:
    """Will the encodings take the fused kernel for these points? (float CPU tensors, the
    kernel built, not :func:`switched_off`)."""
    return (
        not _switched_off
        and points.device.type == "cpu"
        and points.dtype in (torch.float32, torch.float64)
        and kernel() is not None
    )


def encode(
    points: Tensor, grids: list[Tensor], bound: float, active: int, jacobian: bool
) -> tuple[Tensor, Tensor | None]:
    """Features (N, C) of ``grids`` (each (F, R, R, R)) at ``points`` (N, 3), and their
    Jacobian (N, C, 3) with respect to the points when ``jacobian``; differentiable in the
    points and the grids through both outputs, once (a second derivative raises)."""
    features, jac = _DenseGrid.apply(points.contiguous(), bound, active, jacobian, *grids)
    return features, (jac if jacobian else None)


class _DenseGrid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, bound, active, jacobian, *grids):
        grids = [g.contiguous() for g in grids]
        features, jac = kernel().forward(points, grids, bound, active, jacobian)
        ctx.save_for_backward(points, *grids)
        ctx.bound, ctx.active = bound, active
        if not jacobian:
            jac = points.new_zeros(0)
            ctx.mark_non_differentiable(jac)
        return features, jac

    @staticmethod
    def backward(ctx, grad_features, grad_jacobian):
        if torch.is_grad_enabled():  # create_graph: a second derivative is asked for
            raise RuntimeError(TWICE)
        points, *grids = ctx.saved_tensors
        empty = points.new_zeros(0)
        *grad_grids, grad_points = kernel().backward(
            points,
            grids,
            grad_features if grad_features is not None else empty,
            grad_jacobian if grad_jacobian is not None else empty,
            ctx.bound,
            ctx.active,
            ctx.needs_input_grad[0],
        )
        needs = ctx.needs_input_grad[4:]
        grad_grids = [g if need else None for g, need in zip(grad_grids, needs, strict=True)]
        return grad_points, None, None, None, *grad_grids


if __name__ == "__main__":  # `make setup`: build the kernel at install time
    if kernel() is None:
        print("fused dense-grid kernel: not built; F.grid_sample will be used", file=sys.stderr)
    else:
        print(f"fused dense-grid kernel: ready in {cache_dir() / 'dense_grid'}")
