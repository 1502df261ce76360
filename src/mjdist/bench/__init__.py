"""The ``bench`` command's measurements (physics, env, train, scaling, launch, sync), their JSON Lines records and
the report (``docs/performance.md`` and its plots) generated from them."""
