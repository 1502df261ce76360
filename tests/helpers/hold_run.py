"""Hold a run directory as a training job does (``hold_run.py RUN_DIR``): print ``held`` once it is held, then
sleep until killed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mjdist.run_lock import hold_run_dir

with hold_run_dir(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(3600)
