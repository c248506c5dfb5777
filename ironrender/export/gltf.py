"""``model.glb``: the asset as glTF 2.0, with the whole material (diffuse, specular, roughness).

Ours (:mod:`ironrender.rendering.brdf`, every light and view direction ``l``, ``v``)::

    f_ours = rho_d / pi + rho_s D(h; alpha) G1(l) G1(v) / (4 cos_l cos_v)

glTF's dielectric (metallic 0) with ``KHR_materials_specular`` and ``KHR_materials_ior`` (the
extensions' reference BRDF, as three.js's ``MeshPhysicalMaterial`` implements it)::

    f_gltf = (1 - F) base / pi + F D(h; alpha) V(l, v)
    F      = F0 + (F90 - F0) (1 - v.h)^5                          (Schlick)
    F0     = min(((ior - 1) / (ior + 1))^2 specularColor, 1) specular,   F90 = specular
    V      = G2(l, v) / (4 cos_l cos_v),  G2 = 1 / (1 + Lambda(l) + Lambda(v))  (height-correlated)
    alpha  = roughness^2

The mapping written here: ``base = rho_d``; ``roughness = sqrt(alpha)`` (metallic 0, so the
metallic-roughness texture is (0, sqrt(alpha), 0)); ``ior = 1.5`` (``((ior-1)/(ior+1))^2 =
0.04``), ``specular = 1`` and ``specularColor = rho_s / 0.04``, stored as a texture
``rho_s / s`` (sRGB-encoded, as the extension requires, in [0, 1]) times a factor
``s / 0.04`` per channel with ``s`` the largest value of that channel (the extension's factor has
no upper bound). Then ``F0 = rho_s`` wherever ``rho_s <= 1``.

Where the two still differ (no glTF parameter reaches ours; measured on the demo asset in
BENCHMARKS.md, "A GLB that keeps every material"):

* **At the flash** (``l = v``, how IRON's photographs were lit): ``v.h = 1`` so Schlick's ``F``
  is exactly ``F0 = rho_s``; the specular lobes differ only by Smith's correlation,
  ``G2 / G1^2 = (1 + Lambda)^2 / (1 + 2 Lambda) >= 1`` (1 at normal incidence, growing towards
  grazing angles and with roughness), and the diffuse term is darkened by ``(1 - rho_s)``
  (three.js per channel; the extension's text uses ``max(rho_s)``). three.js also multiplies the
  specular lobe by its multiple-scattering compensation ``1 + F0 (1 / E_ss - 1)`` (under 1 % for
  ``F0 <= 0.1``), and widens it by its specular anti-aliasing (the roughness grows by the
  normal's change across a pixel: seen on small images, gone at the photographs' size).
* **Away from the flash** (relighting), Schlick's ``F`` rises towards 1 at grazing half-vectors,
  where ours keeps ``rho_s``: glTF's asset is the more physical one there.

A viewer that ignores both extensions reads a dielectric with ``F0 = 0.04`` (IRON's initial
specular albedo) and still the right base colour and roughness. Colour textures are sRGB, as
glTF requires (:func:`ironrender.data.tone_curve.encode` with ``"srgb"``), data textures linear.

The file is built by trimesh (mesh, UVs, base colour, metallic-roughness) and then given the
extensions and the specular texture with pygltflib.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pygltflib
import trimesh
from PIL import Image

from ironrender.data.tone_curve import encode
from ironrender.export.uv import UVMesh
from ironrender.export.writers import DIFFUSE, MATERIAL_NAME, PERCEPTUAL_ROUGHNESS, SPECULAR

#: glTF's default dielectric: ((1.5 - 1) / (1.5 + 1))^2 = 0.04.
IOR = 1.5
IOR_F0 = ((IOR - 1.0) / (IOR + 1.0)) ** 2
SPECULAR_EXTENSION = "KHR_materials_specular"
IOR_EXTENSION = "KHR_materials_ior"
#: Smallest per-channel maximum of rho_s used as the texture's scale (an all-black specular map).
MIN_SPECULAR_SCALE = 1e-4


def _png(rgb_8bit: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb_8bit).save(buffer, format="PNG")
    return buffer.getvalue()


def _8bit(values: np.ndarray) -> np.ndarray:
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def specular_color(rho_s: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """``KHR_materials_specular``'s colour texture (linear, in [0, 1]) and factor for ``rho_s``:
    ``texture * factor * 0.04 = rho_s`` (module docstring)."""
    scale = np.maximum(rho_s.reshape(-1, 3).max(axis=0), MIN_SPECULAR_SCALE)
    return rho_s / scale, [float(s / IOR_F0) for s in scale]


def metallic_roughness(perceptual_roughness: np.ndarray) -> np.ndarray:
    """glTF's packed texture: G = roughness, B = metallic (0), R unused (0)."""
    packed = np.zeros((*perceptual_roughness.shape[:2], 3), dtype=np.float32)
    packed[..., 1] = np.clip(perceptual_roughness[..., 0], 0.0, 1.0)
    return packed


def _base_glb(uv_mesh: UVMesh, maps: dict[str, np.ndarray]) -> bytes:
    """Mesh, UVs, vertex normals, base colour and metallic-roughness, written by trimesh."""
    material = trimesh.visual.material.PBRMaterial(
        name=MATERIAL_NAME,
        baseColorTexture=Image.fromarray(_8bit(encode(maps[DIFFUSE], "srgb"))),
        metallicRoughnessTexture=Image.fromarray(
            _8bit(metallic_roughness(maps[PERCEPTUAL_ROUGHNESS]))
        ),
        metallicFactor=1.0,  # times the texture's 0
        roughnessFactor=1.0,
    )
    mesh = trimesh.Trimesh(
        vertices=uv_mesh.vertices,
        faces=uv_mesh.faces,
        vertex_normals=uv_mesh.normals,
        visual=trimesh.visual.TextureVisuals(uv=uv_mesh.uvs, material=material),
        process=False,
    )
    return mesh.export(file_type="glb")


def _append_png(gltf: pygltflib.GLTF2, png: bytes) -> int:
    """Add a PNG to the binary chunk as a new image; returns its texture index."""
    blob = gltf.binary_blob() or b""
    offset = len(blob) + (-len(blob)) % 4  # buffer views start 4-byte aligned
    blob = blob.ljust(offset, b"\0") + png
    gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=offset, byteLength=len(png)))
    gltf.images.append(pygltflib.Image(bufferView=len(gltf.bufferViews) - 1, mimeType="image/png"))
    sampler = gltf.textures[0].sampler if gltf.textures else None
    gltf.textures.append(pygltflib.Texture(source=len(gltf.images) - 1, sampler=sampler))
    gltf.buffers[0].byteLength = len(blob)
    gltf.set_binary_blob(blob)
    return len(gltf.textures) - 1


def write_glb(uv_mesh: UVMesh, maps: dict[str, np.ndarray], path: Path) -> Path:
    """``model.glb`` with ``KHR_materials_specular`` and ``KHR_materials_ior`` (module
    docstring). ``maps`` are the linear texture maps of
    :func:`ironrender.export.writers.standard_maps`."""
    gltf = pygltflib.GLTF2.load_from_bytes(_base_glb(uv_mesh, maps))
    texture, factor = specular_color(maps[SPECULAR])
    specular_texture = _append_png(gltf, _png(_8bit(encode(texture, "srgb"))))
    material = gltf.materials[0]
    material.extensions = {
        SPECULAR_EXTENSION: {
            "specularFactor": 1.0,
            "specularColorFactor": factor,
            "specularColorTexture": {"index": specular_texture},
        },
        IOR_EXTENSION: {"ior": IOR},
    }
    used = set(gltf.extensionsUsed or [])
    gltf.extensionsUsed = sorted(used | {SPECULAR_EXTENSION, IOR_EXTENSION})
    path.write_bytes(b"".join(gltf.save_to_bytes()))
    return path
