"""Export as a whole: an SDF and a material function in, a relightable asset's files out.

:func:`export_asset` runs the steps in order, each in a module of its own: the zero level set by
marching cubes (:mod:`ironrender.fields.level_set`), the object's part of it
(:mod:`ironrender.export.select`), decimation (:mod:`ironrender.export.mesh`), UV unwrapping
(:mod:`ironrender.export.uv`), texture baking (:mod:`ironrender.export.bake`), optionally the
texture stage that fits the maps to the photographs (:mod:`ironrender.export.texture_fit`,
given as ``refine_textures``) and the files (:func:`write_asset`, formats in
:mod:`ironrender.export.writers`). :class:`ExportConfig` holds
the options; ``fast`` uses :func:`fast_export_config`. Exporting a trained run folder is
:func:`ironrender.export.run.export_run`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ironrender.config import check_choices, option
from ironrender.data.images import write_image
from ironrender.errors import IronError
from ironrender.export.bake import DEFAULT_BAKE_CHUNK, BakedTextures, bake_textures
from ironrender.export.gltf import write_glb
from ironrender.export.mesh import decimate
from ironrender.export.select import ObjectSelection, check_object_options, select_object
from ironrender.export.texture_fit import TextureFitConfig
from ironrender.export.uv import DEFAULT_CHART_PADDING, UVMesh, unwrap
from ironrender.export.writers import (
    BLEND_WEIGHT,
    DIFFUSE,
    GLB_NAME,
    LIGHT_NAME,
    MITSUBA_DIFFUSE,
    MITSUBA_SPECULAR,
    MTL_NAME,
    OBJ_NAME,
    SCENE_NAME,
    SPECULAR,
    light_json,
    mitsuba_scene_xml,
    mtl_text,
    standard_maps,
    write_obj,
    write_texture_maps,
)
from ironrender.fields.level_set import DEFAULT_CHUNK, extract_mesh, grid_spacing
from ironrender.fields.materials import MaterialsFn
from ironrender.storage import atomic_write_text


@dataclass
class ExportConfig:
    """Export options. ``resolution``: marching-cubes grid per axis over [-bound, bound]^3;
    ``max_faces``: decimation budget before UV unwrapping (xatlas costs ~15 s per 57k faces);
    ``texture_size``: square texture side (IRON: 2048); ``padding``: texels between UV charts;
    ``texture``: the texture stage after the bake (:mod:`ironrender.export.texture_fit`; off
    while ``texture.steps`` is 0).

    What the object is (:mod:`ironrender.export.select`), in the normalised frame (the object in
    the unit sphere): ``object`` is ``largest`` (IRON's largest component), ``all`` (every
    component) or ``auto`` (cut away a support plane, then prefer a component away from the
    volume's boundary); ``crop_min``/``crop_max`` (x, y, z) keep the inside of a box and
    ``cut_plane`` (nx, ny, nz, d) the half-space ``n . x + d > 0``, before the mode applies.
    ``keep_largest_component`` is the older switch, kept so saved configurations load: False
    with ``object="largest"`` means ``all``.
    """

    resolution: int = option(256, "marching-cubes grid per axis over [-bound, bound]^3")
    bound: float = option(1.0, "half the side of the cube the mesh is extracted from")
    sdf_chunk: int = option(DEFAULT_CHUNK, "points per SDF evaluation in marching cubes")
    keep_largest_component: bool = option(
        True, "the older switch, kept so saved configurations load: false with largest means all"
    )
    object: Literal["largest", "all", "auto"] = option(
        "largest", "largest (IRON's largest component), all, or auto (cut a support plane away)"
    )
    crop_min: tuple[float, ...] | None = option(None, "(x, y, z): keep the inside of a box ...")
    crop_max: tuple[float, ...] | None = option(None, "... up to this corner (x, y, z)")
    cut_plane: tuple[float, ...] | None = option(
        None, "(nx, ny, nz, d): keep the half-space n . x + d > 0"
    )
    max_faces: int = option(
        50_000, "decimation budget before UV unwrapping (xatlas costs ~15 s per 57k faces)"
    )
    texture_size: int = option(2048, "square texture side, texels (IRON: 2048)")
    padding: int = option(DEFAULT_CHART_PADDING, "texels between UV charts")
    bake_chunk: int = option(DEFAULT_BAKE_CHUNK, "texels per batch when baking the textures")
    write_glb: bool = option(True, "also write the asset as a glTF binary (GLB)")
    write_mitsuba: bool = option(True, "also write a Mitsuba 3 scene")
    texture: TextureFitConfig = option(
        factory=TextureFitConfig,
        help="the texture stage: the baked maps fitted to the training photographs (off)",
    )
    progress: bool = option(True, "a progress bar on the terminal")

    def __post_init__(self) -> None:
        check_choices(self)
        try:
            check_object_options(self.object, self.crop_min, self.crop_max, self.cut_plane)
        except IronError as exc:  # configuration errors are ValueErrors (ironrender.config)
            raise ValueError(str(exc)) from None

    @property
    def object_mode(self) -> str:
        """The mode :func:`export_asset` uses: ``object``, or ``all`` for the legacy
        ``keep_largest_component=False`` with ``object="largest"``."""
        if self.object == "largest" and not self.keep_largest_component:
            return "all"
        return self.object


def fast_export_config() -> ExportConfig:
    """Quick on 2 CPU cores: xatlas time grows with faces, baking with texels. ``object=auto``:
    a support plane (table, cloth) found under the object is cut away, and the component kept
    is the largest one that does not run out of the unit sphere (export/select.py); an object
    without such clutter is exported exactly as ``largest`` would."""
    return ExportConfig(resolution=192, max_faces=20_000, texture_size=1024, object="auto")


#: The texture stage as :func:`export_asset` calls it: the unwrapped mesh and the bake in, the
#: maps to write out (:func:`ironrender.export.run.texture_stage`).
RefineTextures = Callable[[UVMesh, BakedTextures], BakedTextures]
#: What the bake's maps are called when the texture stage's are written in their place.
BAKED_SUFFIX = "_baked"


@dataclass
class ExportResult:
    """Paths of what :func:`export_asset` wrote, mesh statistics and step timings (seconds)."""

    out_dir: Path
    obj: Path
    mtl: Path
    light: Path
    textures: dict[str, Path]
    glb: Path | None
    scene: Path | None
    num_vertices: int
    num_faces: int
    texel_coverage: float
    timings: dict[str, float] = field(default_factory=dict)
    selection: ObjectSelection | None = None  # what was kept as the object, and why
    texture_fit: str | None = None  # the texture stage's summary line, when it ran


def export_asset(
    sdf_fn: Callable[[Tensor], Tensor],
    materials_fn: MaterialsFn,
    light_intensity: float,
    out_dir: str | Path,
    config: ExportConfig | None = None,
    device: torch.device | str = "cpu",
    diffuse_model: str = "lambert",
    up: np.ndarray | None = None,
    refine_textures: RefineTextures | None = None,
) -> ExportResult:
    """SDF + materials -> textured mesh files in ``out_dir`` (see the module docstring).

    ``sdf_fn(points (P,3)) -> (P,)``; ``materials_fn(points, normals) -> {diffuse_albedo (P,3),
    specular_albedo (P,1|3), roughness (P,1) GGX alpha, ...}`` (extra outputs are written as
    EXR maps too). The marching-cubes surface goes through
    :func:`~ironrender.export.select.select_object` (``config.object`` and the crop options);
    ``up`` points to the cameras' side of the scene (the capture's up), which ``object="auto"``
    uses to tell a support's side. ``result.selection`` says what was kept.
    ``refine_textures(uv_mesh, baked) -> maps``, when given, runs after the bake (the texture
    stage); every file is then written from its maps, and the bake's beside them as
    ``<map>_baked.png``/``.exr``.
    """
    config = config or ExportConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    total = 5 if refine_textures is None else 6
    steps = tqdm(total=total, desc="export", unit="step", disable=not config.progress)

    def done(name: str, start: float) -> None:
        timings[name] = time.perf_counter() - start
        steps.set_postfix_str(f"{name} {timings[name]:.1f}s")
        steps.update()

    start = time.perf_counter()
    mesh = extract_mesh(sdf_fn, config.resolution, config.bound, config.sdf_chunk, device)
    done("marching_cubes", start)
    start = time.perf_counter()
    mesh, selection = select_object(
        mesh,
        config.object_mode,
        crop_min=config.crop_min,
        crop_max=config.crop_max,
        cut_plane=config.cut_plane,
        up=up,
        bound=config.bound,
        spacing=grid_spacing(config.resolution, config.bound),
    )
    done("object", start)
    start = time.perf_counter()
    uv_mesh = unwrap(decimate(mesh, config.max_faces), config.texture_size, config.padding)
    done("uv_unwrap", start)
    start = time.perf_counter()
    baked = bake_textures(
        uv_mesh, materials_fn, config.texture_size, config.bake_chunk, device, config.progress
    )
    done("bake", start)
    if refine_textures is not None:
        start = time.perf_counter()
        write_texture_maps(standard_maps(baked.maps), out_dir, suffix=BAKED_SUFFIX)
        baked = refine_textures(uv_mesh, baked)
        done("texture_fit", start)
    start = time.perf_counter()
    result = write_asset(uv_mesh, baked, light_intensity, out_dir, config, diffuse_model, up)
    done("write", start)
    steps.close()
    result.timings = timings
    result.selection = selection
    return result


def write_asset(
    uv_mesh: UVMesh,
    baked: BakedTextures,
    light_intensity: float,
    out_dir: str | Path,
    config: ExportConfig | None = None,
    diffuse_model: str = "lambert",
    up: np.ndarray | None = None,
) -> ExportResult:
    """Write every file of the asset from an unwrapped mesh and its baked maps.

    ``diffuse_model``: the diffuse lobe the materials were fitted with (``lambert`` or
    ``burley``, :mod:`ironrender.rendering.brdf`); it selects the Mitsuba scene's diffuse BSDF.
    """
    config = config or ExportConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    maps = standard_maps(baked.maps)
    if not (light_intensity > 0 and np.isfinite(light_intensity)):
        raise IronError(f"light intensity must be positive and finite, got {light_intensity}")

    textures = write_texture_maps(maps, out_dir)
    obj = out_dir / OBJ_NAME
    mtl = out_dir / MTL_NAME
    write_obj(uv_mesh, obj, MTL_NAME)
    atomic_write_text(mtl, mtl_text(maps))
    light = out_dir / LIGHT_NAME
    atomic_write_text(light, light_json(light_intensity, diffuse_model))
    glb = write_glb(uv_mesh, maps, out_dir / GLB_NAME) if config.write_glb else None
    scene = None
    if config.write_mitsuba:
        write_image(out_dir / MITSUBA_DIFFUSE, maps[DIFFUSE] / (1.0 - BLEND_WEIGHT))
        write_image(out_dir / MITSUBA_SPECULAR, maps[SPECULAR] / BLEND_WEIGHT)
        scene = out_dir / SCENE_NAME
        atomic_write_text(scene, mitsuba_scene_xml(light_intensity, diffuse_model, up))
    return ExportResult(
        out_dir=out_dir,
        obj=obj,
        mtl=mtl,
        light=light,
        textures=textures,
        glb=glb,
        scene=scene,
        num_vertices=len(uv_mesh.vertices),
        num_faces=len(uv_mesh.faces),
        texel_coverage=float(baked.coverage.mean()),
    )
