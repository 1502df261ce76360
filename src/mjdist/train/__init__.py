"""Training: ``mjdist.train`` and the ``train`` command's flow (:mod:`~mjdist.train.run`), its config, the plan of a
run, the rank body, restarts and requeue, the kernel-cache wait, training clips, the run summary and the results.

Its data path: config → :mod:`~mjdist.train.plan` → :func:`mjdist.launch.launcher.run_ranks` (or rank mode) →
:mod:`~mjdist.train.rank` (environment, runner) → checkpoints, exports, ``summary.json``.
"""
