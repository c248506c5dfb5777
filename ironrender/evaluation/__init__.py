"""Evaluation: the trained model against held-out photographs and ground truth.

==============  ===============================================================================
``evaluate``    :func:`evaluate_run` (``iron eval``): every measurement below, ``metrics.json``
``config``      ``EvalConfig``: what is computed
``views``       held-out views rendered, written and scored (PSNR, SSIM, object PSNR)
``geometry``    the mesh against a GT mesh (Chamfer, F-score) or SfM points (real captures)
``materials``   albedo, roughness, specular and light against GT material maps
``relight``     the exported asset in Mitsuba 3: relit views and their scores, a turntable
``metrics``     the metric functions themselves
``report``      ``report.html``, self-contained
``viewer``      the report's 3D viewer of ``model.glb`` (three.js) and the data it reads
``diagnosis``   what the object's error is made of: colour, fine detail, silhouettes
``browser``     what that viewer draws, read in headless Chromium (tests, benchmarks)
==============  ===============================================================================
"""
