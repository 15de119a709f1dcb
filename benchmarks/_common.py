"""What the benchmark scripts that time whole processes share."""
import os
import subprocess
import sys
import time

# The children import memlens as this process does (a relative PYTHONPATH
# would not survive a temporary working directory).
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(os.path.abspath(p) for p in sys.path if p))


def wall(cmd, cwd):
    """Seconds `cmd` takes as a whole process; RuntimeError if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=cwd, env=ENV)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}")
    return took


def best(cmd, cwd, repeat):
    return min(wall(cmd, cwd) for _ in range(repeat))
