"""Dataset folders as action sources for ``emu3-vla fast fit --data <folder>``.

``action_tokenizer`` knows only arrays; it discovers readers for dataset folders through the
``emu3_vla.action_sources`` entry-point group (see pyproject.toml), so it never imports this
package. These readers return every action of a LeRobot v3.0 or CALVIN-format folder with the
episode boundaries, which the tokenizer uses to cut chunks that never cross an episode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from action_tokenizer import ActionSource
from emu3_vla.data.calvin_format import is_calvin_dataset
from emu3_vla.data.lerobot_source import is_lerobot_dataset


def _read_all(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import json

    from emu3_vla.data.calvin_format import CalvinSource
    from emu3_vla.data.lerobot_source import LeRobotSource
    from emu3_vla.data.mapping import CameraSpec, DataMapping

    if is_lerobot_dataset(path):
        features = json.loads((path / "meta" / "info.json").read_text())["features"]
        cameras = [k for k, f in features.items() if f.get("dtype") in ("video", "image")]
        if not cameras:
            raise ValueError(f"{path} has no camera feature")
        state = "observation.state" if "observation.state" in features else None
        mapping = DataMapping(cameras={"cam": CameraSpec(cameras[0], 8, 8)}, state_key=state)
        source = LeRobotSource(path, mapping)
    else:
        source = CalvinSource(path)
    parts = [source.actions(i) for i in range(len(source))]
    ends = np.cumsum([len(p) for p in parts])
    return np.concatenate(parts).astype(np.float64), ends


LEROBOT_ACTION_SOURCE = ActionSource("lerobot", is_lerobot_dataset, _read_all)
CALVIN_ACTION_SOURCE = ActionSource("calvin", is_calvin_dataset, _read_all)
