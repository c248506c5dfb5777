"""Training: fitting the fields to the photographs, saving them and loading them back.

======================  =======================================================================
``stage1_config``       stage 1's settings and presets
``pixel_batches``       stage 1's targets (8-bit photographs decoded per batch) and ray batches
``stage1``              stage 1: NeuS SDF + radiance by volume rendering, its loop and checkpoints
``stage1_outputs``      stage 1's previews and marching-cubes mesh
``time_budget``         ``--minutes``: timing probes, schedules scaled to a step count, plan.json
``stage2_config``       stage 2's settings and presets
``photometric``         what photographs hold besides the flash: room light, gains, flash offset
``stage2_model``        everything stage 2 learns as one module; built from stage 1, loaded back
``stage2_step``         one stage-2 step: state, optimisers, patch sampling, the step
``stage2_views``        whole-view renders, object masks, the flash's starting intensity
``stage2``              stage 2's loop, checkpoints, previews and entry points
``losses``              stage 2's losses (pyramid L2, SSIM, eikonal, roughness range)
``schedules``           learning-rate, annealing and coarse-to-fine schedules (pure functions)
``runlog``              progress bars, TensorBoard scalars, preview panels
``checkpoint``          checkpoints written atomically
``trained_model``       a trained run loaded back: the model export and evaluation use
======================  =======================================================================
"""
