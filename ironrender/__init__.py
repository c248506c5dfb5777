"""ironrender: IRON inverse rendering of flash photographs into relightable meshes.

The library is usable directly from Python; the ``iron`` command is a thin layer over it. Each
folder is one idea, and each layer imports only the layers below it (``pyproject.toml``'s
import-linter contracts, checked by ``make lint`` and ``tests/test_layout.py``):

=================  ===============================================================================
``cli``            the ``iron`` command, one module per sub-command
``pipeline``       the whole job as uniform, resumable steps (synth, import, stage 1, stage 2,
                   export, eval)
``evaluation``     metrics on held-out views, geometry, materials, relighting; the HTML report
``export``         mesh, UV atlas, baked textures, OBJ/MTL, glTF and Mitsuba files
``training``       stage 1 and stage 2 (configs, steps, checkpoints), a trained run loaded back
``rendering``      volume rendering, sphere tracing, edge sampling, the GGX BRDF
``fields``         the neural fields (SDF, radiance, materials, background), their level set
``data``           images, cameras, the dataset layout and checks, photo import, synthetic captures
``config``         typed configuration dataclasses from and to JSON, ``--set`` overrides
``run_folder``     the names of a run folder's files and its record of finished steps
``storage``        atomic file writes
``threads``        the CPU threads a run may use (affinity, cgroup quota)
``errors``         the one-line errors users see
=================  ===============================================================================
"""

__version__ = "0.1.0"
