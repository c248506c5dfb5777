"""``iron batch``: many objects, each one Ray task running ``iron import`` (for photographs) and
``iron run`` into ``OUT/<object>/``, locally or on a Ray cluster.

============  =================================================================================
``objects``   the objects under ``CAPTURES``, what each folder holds, which ones are finished
``task``      one object's work in a Ray worker: threads, device, log, errors, its result
``summary``   the lines per object, ``OUT/summary.csv`` and ``OUT/index.html``
``driver``    ``run_batch``: Ray, resources per task, retries, progress, the summaries
============  =================================================================================

Use from Python::

    from ironrender.batch import BatchOptions, run_batch
    from ironrender.run_config import ConfigRequest
    result = run_batch("captures/", "out/", ConfigRequest("fast"), BatchOptions())
    print([(r.name, r.status, r.error) for r in result.results])
"""

from ironrender.batch.driver import BatchOptions, BatchResult, run_batch
from ironrender.batch.task import ObjectResult

__all__ = ["BatchOptions", "BatchResult", "ObjectResult", "run_batch"]
