"""``iron import PHOTOS DATA``: flash photos to an IRON dataset, camera poses from COLMAP."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Turn a folder of flash photos of one object into an IRON dataset (DATA/train, DATA/test with
image/ and cam_dict_norm.json). Camera poses and the focal length come from structure from
motion (COLMAP, through pycolmap: pip install 'ironrender[colmap]'), or from an existing COLMAP
model (--colmap-model). The scene is normalized so the object lies inside the unit sphere
(DATA/normalization.json holds the similarity); DATA/import_report.json lists what was
registered, what was not, and any warning.

Photos: JPEG or PNG, one camera with locked zoom, focus, exposure and white balance, flash on,
in a dark room, 100-200 views around the object (see docs/capture-guide.md). EXIF orientation
is applied. At least 10 photos are needed; photos SfM cannot place are left out and listed.

A WARNING about folding means SfM probably put the back of a repetitive object onto its front:
do not train on such a dataset (see the capture guide)."""

EPILOG = """\
examples:
  iron import photos/ data/mug                          # SfM, 512 px images, 10% test views
  iron import photos/ data/mug --resolution 800 --matcher sequential --overlap 15
  iron import photos/ data/mug --colmap-model colmap/sparse/0   # poses from your own COLMAP run
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ironrender.data.capture.config import CAMERA_MODELS, MATCHERS, ImportConfig

    defaults = ImportConfig()
    parser = sub.add_parser(
        "import",
        help="flash photos -> IRON dataset with COLMAP camera poses",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("photos", help="folder with the photos (JPEG/PNG)")
    parser.add_argument("data", help="output dataset folder")
    parser.add_argument(
        "--resolution", type=int, default=defaults.resolution,
        help="max side of the dataset's images in pixels; 0 keeps the photos' size"
        " (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--sfm-resolution", type=int, default=defaults.sfm_resolution,
        help="max side of the images SfM works on (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--test-fraction", type=float, default=defaults.test_fraction,
        help="fraction of the registered views held out for testing (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of the split and of SfM"
    )
    parser.add_argument(
        "--matcher", choices=MATCHERS, default=defaults.matcher,
        help="exhaustive: every pair (best, slow beyond ~200 photos); sequential: each photo"
        " with the next --overlap ones (photos in capture order) (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--overlap", type=int, default=defaults.sequential_overlap,
        help="sequential matcher: neighbours per photo (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--camera-model", choices=CAMERA_MODELS, default=defaults.camera_model,
        help="COLMAP camera model; radial models are undistorted (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--per-image-camera", action="store_true",
        help="one camera per photo instead of one shared camera (zoom changed)",
    )  # fmt: skip
    parser.add_argument(
        "--max-features", type=int, default=defaults.max_features,
        help="SIFT features per photo (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--colmap-model", metavar="DIR", default=None,
        help="import this COLMAP model (e.g. sparse/0) instead of running SfM; its image"
        " names must be the photo file names",
    )  # fmt: skip
    parser.add_argument(
        "--keep-sfm-images", action="store_true",
        help="keep the upright, resized copies SfM used in DATA/colmap/images",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=defaults.num_threads, help="SfM threads (-1: all cores)"
    )
    parser.add_argument(
        "--flash-offset",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="where the flash sat relative to the lens, in metres along the camera's axes"
        " (x right, y down, z forward): a phone's LED 1 cm right: 0.01 0 0; a hot-shoe flash"
        " 10 cm above: 0 -0.1 0. Needs --object-distance. Default: in the lens (IRON)",
    )
    parser.add_argument(
        "--object-distance",
        type=float,
        metavar="METRES",
        help="typical distance from the camera to the object's centre, in metres (converts"
        " --flash-offset into the dataset's units)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's log")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ironrender.data.capture import ImportConfig, import_photos

    config = ImportConfig(
        resolution=args.resolution,
        sfm_resolution=args.sfm_resolution,
        test_fraction=args.test_fraction,
        seed=args.seed,
        matcher=args.matcher,
        sequential_overlap=args.overlap,
        camera_model=args.camera_model,
        shared_camera=not args.per_image_camera,
        max_features=args.max_features,
        num_threads=args.threads,
        colmap_model=args.colmap_model,
        keep_sfm_images=args.keep_sfm_images,
        overwrite=args.overwrite,
        verbose=args.verbose,
        flash_offset=tuple(args.flash_offset) if args.flash_offset else None,
        object_distance=args.object_distance,
    )

    def progress(message: str) -> None:
        print(f"iron import: {message}", file=sys.stderr, flush=True)

    report = import_photos(args.photos, args.data, config, progress=progress)
    print(report.summary())
    if report.folding.suspicious:
        print(
            "iron import: WARNING: the reconstruction may be folded; inspect it before training"
            " (docs/capture-guide.md, 'folding')",
            file=sys.stderr,
        )
    return 0
