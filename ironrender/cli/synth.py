"""``iron synth OUT``: render a synthetic flash capture with ground truth (Mitsuba 3)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Render a synthetic IRON dataset with Mitsuba 3: a textured mesh (default: the public-domain
'spot' cow) with Mitsuba's principled BSDF (base colour = the texture, spatially varying
roughness, specular level -> F0 = 0.08 * specular), lit only by a point light at each camera
centre (a co-located flash), black background.

Real captures are not that clean; two options add their nuisances, the ground truth staying the
object's (gt/ mesh, maps and masks describe the object only; relit views show it alone):
--room dim puts the scene in a box room of textured walls lit only by the flash (dim, not
black), --support-plane stands the object on a textured table top (cameras then stay above it).
Others break IRON's assumptions about the light and the camera, each by a known amount:
--flash-angle/--flash-offset move the light out of the lens, --ambient adds a uniform room
light, --exposure-jitter/--white-balance-jitter/--noise/--jpeg-quality develop the training
photographs as an automatic camera would, --tone-curve srgb encodes both splits with sRGB.

Writes OUT/train and OUT/test (gamma-2.2 PNG + linear EXR twin, cam_dict_norm.json) and OUT/gt:
mesh.obj (normalized into the unit sphere, with UVs), diffuse_albedo.exr/.png,
specular_albedo.exr (F0), roughness.exr (GGX alpha = perceptual^2), light.json (light
intensity in dataset units: radiance = I / d^2 * f_r * cos), masks/, envmap.exr and relit/
(the test views under a procedural sky).
"""

EPILOG = """\
examples:
  iron synth data/spot                      # default capture: 64+16 views at 128x128
  iron synth data/bunny --mesh bunny.obj --texture bunny.png --views 100 --resolution 256
  iron synth data/spot_room --room dim --support-plane            # realistic nuisances
  iron synth data/spot_cloth --support-plane --support-albedo 0.04  # on a black cloth
  iron synth data/spot_phone --flash-angle 5 --ambient 0.05 --exposure-jitter 0.15 \
      --tone-curve srgb --jpeg-quality 90 --noise 0.02           # a phone in a lit room
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ironrender.data.synth import BSDFS, MATERIALS, ROOMS, SUPPORT_HALF_SIZE, SynthConfig
    from ironrender.data.tone_curve import TONE_CURVES

    defaults = SynthConfig()
    parser = sub.add_parser(
        "synth",
        help="render a synthetic flash capture with ground truth (Mitsuba 3)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", help="output folder (gets train/, test/ and gt/)")
    parser.add_argument("--mesh", help="triangle mesh with UVs (OBJ/PLY/GLB); default: spot")
    parser.add_argument("--texture", help="base colour image over the UVs; default: spot's")
    parser.add_argument(
        "--roughness-map",
        help="perceptual roughness in [0,1] over the UVs (PNG as raw data, or EXR);"
        " default: derived from the texture",
    )
    parser.add_argument(
        "--views", type=int, default=defaults.views, help="training views (default %(default)s)"
    )
    parser.add_argument(
        "--test-views", type=int, default=defaults.test_views,
        help="held-out views, disjoint from training (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--resolution",
        type=int,
        default=defaults.resolution,
        help="image width = height (default %(default)s)",
    )
    parser.add_argument(
        "--spp",
        type=int,
        default=defaults.spp,
        help="samples per pixel of the flash views (default %(default)s)",
    )
    parser.add_argument(
        "--relight-spp",
        type=int,
        default=defaults.relight_spp,
        help="samples per relit pixel (default %(default)s)",
    )
    parser.add_argument("--no-relight", action="store_true", help="skip the relit test views")
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="camera/sampler seed (default %(default)s)"
    )
    parser.add_argument(
        "--exposure",
        type=float,
        help="global scale of the flash images = light intensity; default: automatic"
        f" (the {defaults.exposure_percentile}th percentile of object pixels ->"
        f" {defaults.exposure_target})",
    )
    parser.add_argument(
        "--specular",
        type=float,
        default=defaults.specular,
        help="principled specular level, F0 = 0.08 * specular (default %(default)s)",
    )
    parser.add_argument(
        "--bsdf",
        choices=BSDFS,
        help="principled: Mitsuba's Disney-style material, which the model only approximates"
        " (default); iron: exactly the model stage 2 fits (Lambert + GGX), to isolate its error"
        " (the default, and the only choice, for --material gilded)",
    )
    parser.add_argument(
        "--material",
        choices=MATERIALS,
        default=defaults.material,
        help="texture: the texture as a dielectric's base colour (default); gilded: a gilt bronze"
        " statuette (gold's coloured highlights, near-black diffuse albedo, rough dark patina on"
        " the texture's darkest --patina fraction), the kind of object that fogs stage 1",
    )
    parser.add_argument(
        "--patina",
        type=float,
        default=defaults.patina,
        help="with --material gilded: the fraction of the surface under patina (default"
        " %(default)s; 0: all gold)",
    )
    parser.add_argument(
        "--room",
        choices=ROOMS,
        default=defaults.room,
        help="none: black background (default); dim: a box room of textured diffuse walls"
        " (albedo 0.3-0.6) 2.6-4.2 camera distances from the object, lit only by the flash, so the"
        " background is dim but not black and varies across views",
    )
    parser.add_argument(
        "--support-plane",
        action="store_true",
        help="stand the object on a horizontal textured diffuse square (a table top, half-size"
        f" {SUPPORT_HALF_SIZE}, reaching beyond the unit sphere) touching its lowest point"
        " along +Y; cameras are then sampled above --min-elevation only",
    )
    parser.add_argument(
        "--support-albedo",
        type=float,
        default=defaults.support_albedo,
        help="mean diffuse albedo of the support plane (default %(default)s: a table;"
        " 0.04: a black cloth)",
    )
    parser.add_argument(
        "--min-elevation",
        type=float,
        default=defaults.min_elevation,
        help="with --support-plane, the lowest camera elevation in degrees above the horizontal"
        " through the object's centre (default %(default)s)",
    )
    flash = parser.add_mutually_exclusive_group()
    flash.add_argument(
        "--flash-offset",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="the light's position in every view's camera coordinates (OpenCV axes: x right,"
        " y down, z forward; scene units, the camera is 3 from the object); written to"
        ' cam_dict_norm.json as "flash". Default: in the lens (IRON)',
    )
    flash.add_argument(
        "--flash-angle",
        type=float,
        metavar="DEGREES",
        help="put the light straight above the lens, this many degrees off the optical axis"
        " seen from the object (a phone's LED: 2-3, a hot-shoe flash: 5-10)",
    )
    parser.add_argument(
        "--ambient",
        type=float,
        default=defaults.ambient,
        help="uniform room light whose irradiance is this fraction of the flash's at the object"
        " (default %(default)s: a dark room; 0.05: a dim room)",
    )
    parser.add_argument(
        "--exposure-jitter",
        type=float,
        default=defaults.exposure_jitter,
        help="each training photo's exposure varies by up to this fraction (0.15: +-15%%)",
    )
    parser.add_argument(
        "--white-balance-jitter",
        type=float,
        default=defaults.white_balance_jitter,
        help="each training photo's colour channels vary by up to this fraction",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=defaults.noise,
        help="shot noise of the training photos: standard deviation at full scale (0.02)",
    )
    parser.add_argument(
        "--tone-curve",
        choices=TONE_CURVES,
        default=defaults.tone_curve,
        help="how the 8-bit files encode radiance (default %(default)s, IRON's; srgb: cameras'"
        " and phones'); train with the same --set stage2.tone_curve=...",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=int,
        default=defaults.jpeg_quality,
        help="store the training photos as JPEG of this quality (1-100; default 0: PNG)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace OUT/train, OUT/test and OUT/gt if present"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ironrender.data.synth import SynthConfig, flash_offset_for_angle, synthesize

    defaults = SynthConfig()
    offset = defaults.flash_offset
    if args.flash_offset is not None:
        offset = tuple(args.flash_offset)
    elif args.flash_angle is not None:
        offset = flash_offset_for_angle(args.flash_angle, defaults.camera_distance)
    config = SynthConfig(
        mesh=args.mesh,
        texture=args.texture,
        roughness_map=args.roughness_map,
        views=args.views,
        test_views=args.test_views,
        resolution=args.resolution,
        spp=args.spp,
        relight=not args.no_relight,
        relight_spp=args.relight_spp,
        seed=args.seed,
        exposure=args.exposure,
        specular=args.specular,
        bsdf=args.bsdf or ("iron" if args.material == "gilded" else defaults.bsdf),
        material=args.material,
        patina=args.patina,
        room=args.room,
        support_plane=args.support_plane,
        support_albedo=args.support_albedo,
        min_elevation=args.min_elevation,
        flash_offset=offset,
        ambient=args.ambient,
        exposure_jitter=args.exposure_jitter,
        white_balance_jitter=args.white_balance_jitter,
        noise=args.noise,
        tone_curve=args.tone_curve,
        jpeg_quality=args.jpeg_quality,
    )
    out = synthesize(config, args.out, progress=not args.quiet, overwrite=args.force)
    light = json.loads((Path(out) / "gt" / "light.json").read_text())
    timing = light["timing_seconds"]
    print(f"wrote {out}/train ({config.views} views), {out}/test ({config.test_views} views)")
    print(f"ground truth in {out}/gt (mesh.obj, material maps, light.json, masks, relit)")
    print(
        f"light intensity {light['intensity']:.4g} (= exposure; radiance = I / d^2 * f_r * cos),"
        f" Mitsuba {light['render']['mitsuba_variant']}, {timing['total']:.1f} s"
        f" (flash views {timing['flash_views']:.1f} s, relit {timing['relit_views']:.1f} s)"
    )
    return 0
