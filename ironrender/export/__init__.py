"""Export: SDF to mesh, UV atlas, texture baking, OBJ/MTL/GLB/Mitsuba writers."""
