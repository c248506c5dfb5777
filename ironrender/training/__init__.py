"""Training: fitting the fields to the photographs, saving them and loading them back.

==================  ===========================================================================
``stage1_config``   stage 1's settings and presets
``pixel_batches``   stage 1's ray batches: foreground-weighted pixel sampling, pixel rays
``stage1``          stage 1: NeuS SDF + radiance by volume rendering; its mesh and previews
``stage2_config``   stage 2's settings and presets
``stage2_step``     one stage-2 iteration: state, optimisers, patch sampling, the step
``stage2_views``    whole-view renders, object masks, the flash's starting intensity
``stage2``          stage 2's loop, checkpoints, previews and entry points
``losses``          stage 2's losses (pyramid L2, SSIM, eikonal, roughness range)
``schedules``       learning-rate, annealing and coarse-to-fine schedules (pure functions)
``runlog``          progress bars, TensorBoard scalars, preview panels
``checkpoint``      checkpoints written atomically
``trained_model``   a trained run loaded back: the model export and evaluation use
==================  ===========================================================================
"""
