"""Synthetic co-located flash captures with ground truth, rendered by Mitsuba 3.

Mitsuba is an independent renderer: a dataset written here tests our whole pipeline against
physics we did not write. The capture follows IRON's setting (Sec. 3 of the paper): a textured
object normalized into the unit sphere, Mitsuba's ``principled`` material, one point light at
each camera centre and nothing else (single-bounce light transport, black background), one
global exposure. Optional nuisances of real captures (a dim room, a support table) surround the
object; the ground truth (``gt/``: mesh, material maps, masks, relit views) stays the object's.

=============  ===================================================================================
module         what lives there
=============  ===================================================================================
``config``     :class:`SynthConfig` (everything that defines a capture), the ``bsdf`` and ``room``
               choices, the world's up axis
``assets``     the object: loading and normalizing the textured mesh, its material maps (texture,
               roughness map or a procedural one), writing both into ``gt/``
``poses``      camera poses around the object, the field of view that frames it, the cameras
``nuisances``  the dim room and the support table: procedural textures, Mitsuba rectangles, the
               check that neither can come between a camera and the object
``photometric`` what a real camera and room do to the light: an off-axis flash, ambient room
               light, exposure and white-balance gains, shot noise (tone curve and JPEG: config)
``render``     Mitsuba: the BSDF, the scene, rendering views, automatic exposure, relit views;
               the image formation and the co-located ground-truth formulas
``synthesis``  :func:`synthesize`: validation, the output folders, the capture from its config to
               ``train/``, ``test/`` and ``gt/`` (with ``gt/light.json``)
=============  ===================================================================================

Modules import only those above them in this table; this file re-exports the public names, so
``from ironrender.data.synth import SynthConfig, synthesize`` is the way in.
"""

from ironrender.data.synth.assets import (
    ASSET_DIR,
    DEFAULT_MESH,
    DEFAULT_TEXTURE,
    Materials,
    Normalization,
    TexturedMesh,
    load_roughness_map,
    load_texture,
    load_textured_mesh,
    normalize_mesh,
    procedural_roughness,
    write_materials,
    write_mtl,
    write_obj,
)
from ironrender.data.synth.config import BSDFS, MATERIALS, ROOMS, WORLD_UP, SynthConfig
from ironrender.data.synth.nuisances import (
    SUPPORT_HALF_SIZE,
    check_nuisances_cannot_occlude,
    nuisance_shapes,
    rectangle_to_world,
    room_walls,
    smooth_noise,
    support_height,
    support_texture,
    support_to_world,
    wall_texture,
)
from ironrender.data.synth.photometric import flash_offset_for_angle
from ironrender.data.synth.poses import cameras_from_poses, fit_field_of_view, sample_poses
from ironrender.data.synth.render import (
    auto_exposure,
    build_scene,
    render_relit_views,
    render_views,
)
from ironrender.data.synth.synthesis import synthesize

__all__ = [
    "ASSET_DIR",
    "BSDFS",
    "MATERIALS",
    "DEFAULT_MESH",
    "DEFAULT_TEXTURE",
    "ROOMS",
    "SUPPORT_HALF_SIZE",
    "WORLD_UP",
    "Materials",
    "Normalization",
    "SynthConfig",
    "TexturedMesh",
    "auto_exposure",
    "build_scene",
    "cameras_from_poses",
    "check_nuisances_cannot_occlude",
    "fit_field_of_view",
    "flash_offset_for_angle",
    "load_roughness_map",
    "load_texture",
    "load_textured_mesh",
    "normalize_mesh",
    "nuisance_shapes",
    "procedural_roughness",
    "rectangle_to_world",
    "render_relit_views",
    "render_views",
    "room_walls",
    "sample_poses",
    "smooth_noise",
    "support_height",
    "support_texture",
    "support_to_world",
    "synthesize",
    "wall_texture",
    "write_materials",
    "write_mtl",
    "write_obj",
]
