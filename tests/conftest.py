import os

# Two CPU devices so chain_method="parallel" really runs chains with pmap.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import pathlib  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
