"""Benchmark: the SDF encodings and the two ways of getting normals, side by side.

One stage-1-sized training step of the ``fast`` SDF network (2 x 64 MLP, 15-d feature) on
``--points`` random points in the unit ball (default 384 rays x 32 samples): forward pass, the
spatial gradient dS/dx, and the backward pass of a loss on S, the features and the eikonal term
``(|dS/dx| - 1)^2``. Variants:

* encoding: ``dense`` (multi-resolution dense grid), ``hash`` (Instant-NGP hash grid, same
  levels and resolutions), ``pe`` (NeRF positional encoding with 6 frequencies, no grid);
* normals: ``autograd`` (exact gradient; the eikonal loss then needs a double backward) or
  ``fd`` (central finite differences, 6 extra forward passes and a plain backward; step 1/R of
  the finest grid so that the stencil spans a cell).

Variants run interleaved, repeated, median reported, so that the ratios are measured side by
side on a shared machine. Also reports how far the finite-difference normal is from the exact
one (mean angle, degrees) on the trained-like random field. Appends rows to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time

import torch
from bench_table import append_row

from ironrender.fields.encodings import GridConfig
from ironrender.fields.sdf import NeuralSDF, SDFConfig

SECTION = "## SDF encodings and normals (`benchmarks/bench_encodings.py`)"
TABLE_HEADER = (
    "| date | machine | encoding | normals | points | parameters | median ms/step |"
    " vs dense+autograd | normal error (deg) |\n|---|---|---|---|---|---|---|---|---|\n"
)


def make_sdf(encoding: str) -> NeuralSDF:
    """The ``fast`` SDF network with the named encoding, its grid features randomised."""
    torch.manual_seed(0)
    if encoding == "pe":
        config = SDFConfig(use_grid=False, pe_freqs=6)
    else:
        config = SDFConfig(grid=dataclasses.replace(GridConfig(), kind=encoding))
    sdf = NeuralSDF(config)
    with torch.no_grad():  # a field with structure at every level, as after training; the
        # geometric init zeroes the MLP's weights on grid features, so perturb those too
        for name, parameter in sdf.named_parameters():
            if name.startswith("grid."):
                parameter.normal_(0.0, 0.05)
            else:
                parameter.add_(torch.randn_like(parameter), alpha=0.05)
    return sdf


def gradient(sdf: NeuralSDF, points: torch.Tensor, normals: str, step: float):
    """S, features and dS/dx, differentiable with respect to the network's parameters."""
    if normals == "autograd":
        out = sdf.with_gradients(points, create_graph=True)
        return out.sdf, out.features, out.gradients
    out = sdf(points)
    offsets = torch.eye(3, dtype=points.dtype) * step
    shifted = torch.cat([points + o for o in offsets] + [points - o for o in offsets])
    values = sdf(shifted).sdf.reshape(6, -1)
    return out.sdf, out.features, ((values[:3] - values[3:]) / (2 * step)).t()


def step_seconds(sdf: NeuralSDF, points: torch.Tensor, normals: str, fd_step: float) -> float:
    sdf.zero_grad(set_to_none=True)
    start = time.perf_counter()
    value, features, grad = gradient(sdf, points, normals, fd_step)
    loss = (
        value.square().mean() + features.square().mean() + (grad.norm(dim=-1) - 1).square().mean()
    )
    loss.backward()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=384 * 32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(1)
    directions = torch.nn.functional.normalize(
        torch.randn(args.points, 3, generator=generator), dim=-1
    )
    points = directions * torch.rand(args.points, 1, generator=generator).pow(1 / 3)
    fd_step = 2.0 / GridConfig().max_resolution
    variants = [("dense", "autograd"), ("dense", "fd"), ("hash", "autograd"), ("hash", "fd")]
    variants += [("pe", "autograd"), ("pe", "fd")]
    sdfs = {name: make_sdf(name) for name in ("dense", "hash", "pe")}
    times: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    for variant in variants:  # warm-up
        step_seconds(sdfs[variant[0]], points, variant[1], fd_step)
    for _ in range(args.repeats):
        for variant in variants:
            times[variant].append(step_seconds(sdfs[variant[0]], points, variant[1], fd_step))

    errors = {}
    for name, sdf in sdfs.items():
        exact = sdf.with_gradients(points[:4096], create_graph=False).gradients
        _, _, approx = gradient(sdf, points[:4096], "fd", fd_step)
        cosine = torch.nn.functional.cosine_similarity(exact, approx.detach(), dim=-1)
        errors[name] = torch.rad2deg(torch.acos(cosine.clamp(-1, 1))).mean().item()

    base = statistics.median(times[("dense", "autograd")])
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    for encoding, normals in variants:
        median = statistics.median(times[(encoding, normals)])
        parameters = sum(p.numel() for p in sdfs[encoding].parameters())
        error = f"{errors[encoding]:.2f}" if normals == "fd" else "0 (exact)"
        cells = [
            time.strftime("%Y-%m-%d"),
            machine,
            encoding,
            normals,
            str(args.points),
            f"{parameters:,}",
            f"{1000 * median:.1f}",
            f"{median / base:.2f}",
            error,
        ]
        print("| " + " | ".join(cells) + " |")
        if not args.no_write:
            append_row(SECTION, TABLE_HEADER, cells)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
