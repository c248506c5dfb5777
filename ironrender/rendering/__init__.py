"""Rendering: NeuS volume rendering (stage 1) and ray sampling."""
