"""Data: images, cameras and rays, IRON's dataset layout, validation and synthetic captures."""
