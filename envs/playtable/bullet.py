"""pybullet, imported once with its build banner ("pybullet build time: ...") kept off the terminal.

pybullet's C module writes that line to stderr while it is imported, so every command that touches
the simulator (and every worker process) used to print it. Importing it here with stderr pointed at
``/dev/null`` for the duration of the import removes the noise and nothing else: import errors still
raise, and later pybullet messages go wherever stderr goes.
"""

from __future__ import annotations

import os
import sys


def _import_quietly():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import pybullet
        import pybullet_data
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return pybullet, pybullet_data


p, pybullet_data = _import_quietly()
