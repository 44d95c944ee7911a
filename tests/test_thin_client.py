"""The robot-side client needs numpy, websockets and msgpack only: importing it (and building a
RemotePolicy's request) loads neither torch nor transformers, checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "pybullet", "lerobot", "gymnasium", "emu3_vla.vla")


def test_importing_the_client_loads_no_model_library():
    code = (
        "import json, sys\n"
        "import policies.client\n"
        "from policies.client import RemotePolicy, ServerChunks, policy_from_uri, resize_image\n"
        "import numpy as np\n"
        "resize_image(np.zeros((200, 200, 3), np.uint8), 96, 96)\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
