"""Writing the exported asset: OBJ/MTL, texture maps, glTF binary, Mitsuba 3 scene, light.

Material model (the project's GGX at a co-located flash, :mod:`ironrender.rendering.brdf`)::

    f_r = rho_d / pi + rho_s D(alpha) G1^2 / (4 cos_i cos_o)

with ``rho_d`` the diffuse albedo, ``rho_s`` the specular albedo (= F0, the Fresnel factor is
folded into it) and ``alpha`` the GGX alpha.

Files written to ``out_dir`` (the names of IRON's code where they exist; docs/architecture.md
(A31)):

* ``mesh.obj`` + ``mesh.mtl``: positions, UVs, vertex normals; ``mtllib``/``usemtl`` (IRON wrote
  ``usemtl ./mesh.mtl`` where ``mtllib`` belongs). MTL lines: ``map_Kd diffuse_albedo.png``,
  ``map_Ks specular_albedo.png`` and the PBR extension's ``map_Pr perceptual_roughness.png`` with
  ``Pm 0`` (dielectric).
* Texture maps. **PNG colour maps** (``diffuse_albedo``, ``specular_albedo``) are gamma-encoded
  with 2.2 (:func:`ironrender.data.images.write_image`, the project's approximation of sRGB), as
  viewers expect for colour textures; **PNG data maps** (``roughness`` = GGX alpha,
  ``perceptual_roughness`` = sqrt(alpha)) are linear. PNG clips to [0, 1]; every map is also
  written as linear float **EXR**, unclipped (the specular albedo has no upper bound).
* ``model.glb``: glTF 2.0 with ``KHR_materials_specular`` and ``KHR_materials_ior``, so that the
  specular albedo survives (:mod:`ironrender.export.gltf` derives the mapping and where glTF's
  BRDF differs from ours).
* ``scene.xml``: a Mitsuba 3 scene that renders exactly ``f_r`` above:
  ``blendbsdf(weight 0.5, diffuse(2 rho_d), roughconductor(material=none, ggx, alpha,
  specular_reflectance=2 rho_s))``. ``blendbsdf`` evaluates ``(1 - w) f_0 + w f_1``, so
  ``w = 0.5`` and doubled textures (``mitsuba_diffuse_x2.exr``, ``mitsuba_specular_x2.exr``) give
  the sum; ``material=none`` makes the conductor's Fresnel 1, leaving ``rho_s`` as F0 and
  Mitsuba's separable Smith G and GGX D are the project's. A point light of the estimated
  intensity sits at the camera (the capture setting); an environment map is a commented-out
  placeholder. The integrator is ``path`` with ``max_depth`` 2 (direct light only, like IRON's
  single-bounce model); raise it for global illumination. A run trained with the Burley diffuse
  lobe (``materials.diffuse_model=burley``) gets ``principled`` (specular 0, roughness =
  ``perceptual_roughness.exr``) in place of ``diffuse``: exactly that lobe. OBJ/MTL and glTF
  have no switch for it; glTF viewers' diffuse is Lambert or Burley depending on the viewer.
* ``light.json``: the estimated flash intensity ``I`` (radiance ``I / d^2``, IRON Eq. 3).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ironrender.data.images import write_data_png, write_image
from ironrender.errors import IronError
from ironrender.export.uv import UVMesh
from ironrender.storage import atomic_write_text

DIFFUSE = "diffuse_albedo"
SPECULAR = "specular_albedo"
ROUGHNESS = "roughness"  # GGX alpha
PERCEPTUAL_ROUGHNESS = "perceptual_roughness"  # sqrt(alpha), glTF / MTL-PBR convention
REQUIRED_MAPS = (DIFFUSE, SPECULAR, ROUGHNESS)
COLOUR_MAPS = (DIFFUSE, SPECULAR)  # gamma-encoded in PNG; every other map is linear data
MATERIAL_NAME = "iron_material"
OBJ_NAME = "mesh.obj"
MTL_NAME = "mesh.mtl"
GLB_NAME = "model.glb"
SCENE_NAME = "scene.xml"
LIGHT_NAME = "light.json"
MITSUBA_DIFFUSE = "mitsuba_diffuse_x2.exr"
MITSUBA_SPECULAR = "mitsuba_specular_x2.exr"
#: blendbsdf weight: (1 - w) f_diffuse + w f_specular with both textures scaled by 1 / w.
BLEND_WEIGHT = 0.5
#: Mitsuba ``path`` depth 2 = emitted + direct light, IRON's single-bounce model.
MITSUBA_MAX_DEPTH = 2
#: Placeholder camera of the Mitsuba scene: on +z, looking at the unit sphere holding the object.
MITSUBA_CAMERA_DISTANCE = 3.0
MITSUBA_FOV_DEG = 45.0
MITSUBA_IMAGE_SIZE = 512
MITSUBA_SPP = 64
OBJ_FLOAT_FORMAT = "%.6f"


def standard_maps(maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check the required maps, broadcast grey specular to RGB, add perceptual roughness."""
    missing = [name for name in REQUIRED_MAPS if name not in maps]
    if missing:
        raise IronError(f"the material function did not return {missing} (got {sorted(maps)})")
    out = dict(maps)
    if out[DIFFUSE].shape[-1] != 3:
        raise IronError(f"{DIFFUSE} must have 3 channels, got {out[DIFFUSE].shape[-1]}")
    if out[SPECULAR].shape[-1] == 1:
        out[SPECULAR] = np.repeat(out[SPECULAR], 3, axis=-1)
    alpha = out[ROUGHNESS][..., :1]
    out[ROUGHNESS] = alpha
    out[PERCEPTUAL_ROUGHNESS] = np.sqrt(np.maximum(alpha, 0.0))
    return out


def write_texture_maps(
    maps: dict[str, np.ndarray], out_dir: Path, suffix: str = ""
) -> dict[str, Path]:
    """Each map as linear EXR and as PNG (gamma 2.2 for colour maps, linear for data maps),
    named ``<name><suffix>`` (``_baked``: the bake kept beside maps the texture stage fitted).

    Returns the PNG paths by name (the EXR sits next to each with the same stem).
    """
    paths = {}
    for name, texture in maps.items():
        rgb = texture if texture.shape[-1] == 3 else np.repeat(texture[..., :1], 3, axis=-1)
        write_image(out_dir / f"{name}{suffix}.exr", rgb)
        png = out_dir / f"{name}{suffix}.png"
        if name in COLOUR_MAPS:
            write_image(png, rgb)
        else:
            write_data_png(png, rgb if texture.shape[-1] == 3 else texture[..., 0])
        paths[name] = png
    return paths


def write_obj(uv_mesh: UVMesh, path: Path, mtl_name: str) -> None:
    """Wavefront OBJ with ``v``/``vt``/``vn`` sharing one index per (seam-duplicated) vertex."""
    lines = [
        "# ironrender export: GGX materials, see mesh.mtl and scene.xml\n",
        f"mtllib {mtl_name}\n",
    ]
    lines += _rows("v", uv_mesh.vertices, OBJ_FLOAT_FORMAT)
    lines += _rows("vt", uv_mesh.uvs, OBJ_FLOAT_FORMAT)
    lines += _rows("vn", uv_mesh.normals, OBJ_FLOAT_FORMAT)
    lines.append(f"usemtl {MATERIAL_NAME}\n")
    one_based = uv_mesh.faces + 1
    lines += [f"f {a}/{a}/{a} {b}/{b}/{b} {c}/{c}/{c}\n" for a, b, c in one_based.tolist()]
    atomic_write_text(path, "".join(lines))


def _rows(tag: str, values: np.ndarray, fmt: str) -> list[str]:
    buffer = io.StringIO()
    np.savetxt(buffer, values, fmt=fmt)
    return [f"{tag} {line}\n" for line in buffer.getvalue().splitlines()]


def mtl_text(maps: dict[str, np.ndarray]) -> str:
    """The MTL: classic ``Kd``/``Ks`` maps plus the PBR extension's ``Pr``/``Pm``."""
    lines = [
        "# ironrender export. f_r = rho_d/pi + rho_s D G / (4 cos_i cos_o), GGX.",
        "# map_Kd: diffuse albedo rho_d (PNG gamma 2.2); map_Ks: specular albedo rho_s = F0",
        "# (PNG gamma 2.2); map_Pr: perceptual roughness sqrt(alpha) (linear PNG).",
        "# Linear float EXR versions of every map sit next to the PNGs.",
        f"newmtl {MATERIAL_NAME}",
        "Ka 0 0 0",
        "Kd 1 1 1",
        "Ks 1 1 1",
        "Ke 0 0 0",
        "illum 2",
        "Pm 0",
        f"map_Kd {DIFFUSE}.png",
        f"map_Ks {SPECULAR}.png",
        f"map_Pr {PERCEPTUAL_ROUGHNESS}.png",
    ]
    return "\n".join(lines) + "\n"


def light_json(light_intensity: float, diffuse_model: str = "lambert") -> str:
    return (
        json.dumps(
            {
                "light_intensity": float(light_intensity),
                "model": "point light co-located with the camera; radiance I / d^2 (IRON Eq. 3)",
                "diffuse_model": diffuse_model,
            },
            indent=2,
        )
        + "\n"
    )


def _bitmap_xml(name: str, filename: str, raw: bool = False) -> str:
    """A Mitsuba ``bitmap`` texture element (inside a ``bsdf``, indented to sit there)."""
    raw_line = '\n                <boolean name="raw" value="true"/>' if raw else ""
    return f"""<texture type="bitmap" name="{name}">
                <string name="filename" value="{filename}"/>
                <string name="wrap_mode" value="clamp"/>{raw_line}
            </texture>"""


def preview_camera(up: np.ndarray | None, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """The preview camera's position and up vector: ``distance`` along world +Z made
    perpendicular to the capture's ``up`` (+X if up is along Z), so the asset stands upright;
    ``up = None`` is +Y, the camera at ``(0, 0, distance)``."""
    up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    reference = np.array([0.0, 0.0, 1.0]) if abs(up[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    front = reference - (reference @ up) * up
    return distance * front / np.linalg.norm(front), up


def mitsuba_scene_xml(
    light_intensity: float, diffuse_model: str = "lambert", up: np.ndarray | None = None
) -> str:
    """Mitsuba 3 scene for the asset; ``$spp``, ``$width``... can be overridden at load time.
    The preview camera and its flash look at the asset upright for the capture's ``up``."""
    eye, up = preview_camera(up, MITSUBA_CAMERA_DISTANCE)
    origin = ", ".join(f"{v:.6g}" for v in eye)
    up_text = ", ".join(f"{v:.6g}" for v in up)
    if diffuse_model == "burley":
        diffuse = f"""<bsdf type="principled">
            {_bitmap_xml("base_color", MITSUBA_DIFFUSE)}
            {_bitmap_xml("roughness", f"{PERCEPTUAL_ROUGHNESS}.exr", raw=True)}
            <float name="specular" value="0"/>
            <float name="metallic" value="0"/>
        </bsdf>"""
    elif diffuse_model == "lambert":
        diffuse = f"""<bsdf type="diffuse">
            {_bitmap_xml("reflectance", MITSUBA_DIFFUSE)}
        </bsdf>"""
    else:
        raise IronError(f"unknown diffuse model {diffuse_model!r} (lambert or burley)")
    return f"""<?xml version="1.0" encoding="utf-8"?>
<!-- ironrender export: f_r = rho_d/pi + rho_s D G / (4 cos_i cos_o) (GGX, F0 = rho_s).
     blendbsdf evaluates (1 - w) f0 + w f1; with w = {BLEND_WEIGHT} the scaled textures sum up.
     Override defaults when loading, e.g. mi.load_file("scene.xml", spp=256). -->
<scene version="3.0.0">
    <default name="spp" value="{MITSUBA_SPP}"/>
    <default name="width" value="{MITSUBA_IMAGE_SIZE}"/>
    <default name="height" value="{MITSUBA_IMAGE_SIZE}"/>
    <default name="fov" value="{MITSUBA_FOV_DEG}"/>
    <default name="max_depth" value="{MITSUBA_MAX_DEPTH}"/>
    <default name="light_intensity" value="{float(light_intensity)!r}"/>

    <integrator type="path">
        <integer name="max_depth" value="$max_depth"/>
    </integrator>

    <sensor type="perspective">
        <float name="fov" value="$fov"/>
        <string name="fov_axis" value="x"/>
        <transform name="to_world">
            <lookat origin="{origin}" target="0, 0, 0" up="{up_text}"/>
        </transform>
        <sampler type="independent">
            <integer name="sample_count" value="$spp"/>
        </sampler>
        <film type="hdrfilm">
            <integer name="width" value="$width"/>
            <integer name="height" value="$height"/>
            <rfilter type="box"/>
        </film>
    </sensor>

    <!-- The capture setting: a point light at the camera centre (flash). -->
    <emitter type="point">
        <point name="position" x="{eye[0]:.6g}" y="{eye[1]:.6g}" z="{eye[2]:.6g}"/>
        <rgb name="intensity" value="$light_intensity"/>
    </emitter>
    <!-- Relighting placeholder: replace the point light by an environment map.
    <emitter type="envmap">
        <string name="filename" value="envmap.exr"/>
    </emitter>
    -->

    <bsdf type="blendbsdf" id="{MATERIAL_NAME}">
        <float name="weight" value="{BLEND_WEIGHT}"/>
        {diffuse}
        <bsdf type="roughconductor">
            <string name="material" value="none"/>
            <string name="distribution" value="ggx"/>
            {_bitmap_xml("alpha", f"{ROUGHNESS}.exr", raw=True)}
            {_bitmap_xml("specular_reflectance", MITSUBA_SPECULAR)}
        </bsdf>
    </bsdf>

    <shape type="obj">
        <string name="filename" value="{OBJ_NAME}"/>
        <ref id="{MATERIAL_NAME}"/>
    </shape>
</scene>
"""
