"""ironrender: IRON inverse rendering of flash photographs into relightable meshes.

The library is usable directly from Python; the ``iron`` command is a thin layer over it.
"""

__version__ = "0.1.0"
