"""Tasks bundled with mjdist, installed as the package ``mjdist_tasks``; each registers via ``mjdist.tasks``."""
