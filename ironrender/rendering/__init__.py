"""Renderers: stage-1 volume rendering, stage-2 sphere-traced surfaces, edges and the flash BRDF."""
