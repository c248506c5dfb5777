"""Data: what a capture is on disk and in memory, with no knowledge of fields or training.

===================  ==========================================================================
``tone_curve``       how 8-bit files encode radiance: gamma 2.2 (IRON) or sRGB
``images``           reading and writing images as linear radiance (PNG/JPEG, EXR)
``cameras``          pinhole cameras and rays (OpenCV axes), the capture's up direction
``camera_file``      ``cam_dict_norm.json``: names, reader, writer, cameras without images
``check``            dataset validation, one line per problem (``iron check``, every loader)
``dataset``          loading and saving a split (images + cameras) in IRON's layout
``envmap``           latitude-longitude environment maps (relighting ground truth)
``mitsuba_backend``  choosing Mitsuba 3's variant once per process
``capture/``         ``iron import``: photographs to a dataset, camera poses by SfM (pycolmap)
``synth/``           ``iron synth``: synthetic flash captures with ground truth (Mitsuba 3)
===================  ==========================================================================
"""
