"""Fields: functions of a 3D point learnt by networks, and what is read off them directly.

==============  ===============================================================================
``base``        the contract of a signed-distance field (neural or analytic), gradients
``encodings``   positional encoding and multi-resolution dense grids
``fused_grid``  the dense grid's fused CPU kernel (``dense_grid_kernel.cpp``), built on first use
``sdf``         the neural SDF (IRON's ``SDFNetwork``) and NeuS's variance
``radiance``    stage 1's colour network (stage 2's diffuse albedo starts from it)
``background``  the room behind the object, outside the unit sphere (NeRF++-style)
``materials``   stage 2's neural materials and flash intensity; the material-function type
``ambient``     a dim room's light on the object: order-2 spherical-harmonic irradiance
``level_set``   the SDF's zero level set as a triangle mesh (marching cubes)
==============  ===============================================================================
"""
