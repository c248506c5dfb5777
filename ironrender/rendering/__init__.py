"""Rendering: images from fields, differentiably.

=====================  ========================================================================
``samplers``           where samples go along a ray (stratified, inverse CDF, a cached proposal)
``volume``             NeuS volume rendering (stage 1), with the background model
``surface``            sphere tracing and the differentiable ray-surface intersection
``edges``              edge sampling at silhouettes (IRON's Algorithm 1, Eqs. 5-9)
``brdf``               the GGX microfacet BRDF under a co-located flash
``surface_renderer``   edge-aware surface rendering of a camera or a crop (stage 2)
``material_shader``    the stage-2 shader: neural materials under the flash
=====================  ========================================================================

The equations, their place in the IRON and NeuS papers, and the functions that compute them:
docs/architecture.md.
"""
