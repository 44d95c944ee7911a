"""Dataset readers: LeRobot v3.0 folders (through lerobot itself) and CALVIN-format folders."""

import numpy as np
import pytest

from emu3_vla.data.calvin_format import STEP_KEYS, CalvinSource, CalvinWriter
from emu3_vla.data.episodes import DatasetFormatError, action_chunks
from emu3_vla.data.mapping import CameraSpec, DataMapping
from emu3_vla.data.sources import open_dataset

FEATURES = {
    "observation.images.static": {"dtype": "image", "shape": (48, 48, 3), "names": ["height", "width", "channels"]},
    "observation.images.gripper": {"dtype": "video", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": (15,), "names": None},
    "action": {"dtype": "float32", "shape": (7,), "names": None},
}


def _frame(step, episode, size):
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0] = 10 * step
    img[..., 1] = 100 + 50 * episode
    img[: size // 2, :, 2] = 200
    return img


@pytest.fixture(scope="module")
def lerobot_root(tmp_path_factory):
    from lerobot.datasets import LeRobotDataset

    root = tmp_path_factory.mktemp("lr") / "ds"
    ds = LeRobotDataset.create("local/ds", fps=30, features=FEATURES, root=root, use_videos=True)
    for ep, length in enumerate((12, 9)):
        for t in range(length):
            ds.add_frame(
                {
                    "observation.images.static": _frame(t, ep, 48),
                    "observation.images.gripper": _frame(t, ep, 32),
                    "observation.state": np.full(15, t, np.float32),
                    "action": np.arange(7, dtype=np.float32) + 100 * ep + t,
                    "task": f"open the drawer {ep}",
                }
            )
        ds.save_episode()
    ds.finalize()
    return root


def mapping(static=48, gripper=32):
    return DataMapping(
        cameras={
            "static": CameraSpec("observation.images.static", static, static),
            "gripper": CameraSpec("observation.images.gripper", gripper, gripper),
        }
    )


def test_lerobot_episodes_match_what_was_recorded(lerobot_root):
    src = open_dataset(lerobot_root, mapping())
    assert len(src) == 2 and src.fps == 30 and src.action_dim == 7
    for ep, length in enumerate((12, 9)):
        e = src.episode(ep)
        assert e.instruction == f"open the drawer {ep}" and len(e) == length
        assert np.array_equal(e.actions, np.arange(7)[None] + 100 * ep + np.arange(length)[:, None])
        assert np.array_equal(e.state[:, 0], np.arange(length))
        expected_static = np.stack([_frame(t, ep, 48) for t in range(length)])
        assert np.array_equal(e.frames["static"], expected_static)  # image features are lossless
        expected_wrist = np.stack([_frame(t, ep, 32) for t in range(length)]).astype(float)
        assert np.abs(e.frames["gripper"] - expected_wrist).mean() < 8  # video is lossy
        assert np.array_equal(src.actions(ep), e.actions)


def test_lerobot_views_are_resized(lerobot_root):
    src = open_dataset(lerobot_root, mapping(static=24, gripper=16))
    e = src.episode(1)
    assert e.frames["static"].shape == (9, 24, 24, 3) and e.frames["gripper"].shape == (9, 16, 16, 3)


def test_frames_at_chosen_steps_are_the_episodes_frames_there(lerobot_root, tmp_path):
    """``frames(i, steps)`` (what the VQ trainer samples, decoding only those steps) returns exactly
    the whole episode's frames at those steps, for every reader."""
    lerobot = open_dataset(lerobot_root, mapping(static=24, gripper=16))
    both = open_dataset([lerobot_root, lerobot_root], mapping(static=24, gripper=16))
    writer = CalvinWriter(tmp_path / "training")
    writer.add_episode(_calvin_steps(5, 0), "open the drawer", "open_drawer")
    writer.finalize()
    calvin = open_dataset(tmp_path / "training")
    for source, index, steps in [
        (lerobot, 0, [0, 5, 10]),
        (lerobot, 1, [8]),
        (lerobot, 1, [3, 4]),
        (both, 3, [2, 7]),
        (calvin, 0, [1, 4]),
    ]:
        whole, part = source.episode(index).frames, source.frames(index, np.array(steps))
        assert part.keys() == whole.keys()
        for view in whole:
            assert np.array_equal(part[view], whole[view][steps]), (source, index, steps, view)
    for source, index, length in [(lerobot, 1, 9), (calvin, 0, 5)]:
        with pytest.raises(IndexError, match=f"outside episode {index}'s {length} steps"):
            source.frames(index, np.array([length]))


def test_vq_training_frames_come_from_the_start_or_from_the_whole_episode(lerobot_root):
    """With room for one frame per episode, ``start`` takes frame 0 of each (what older VQ tokenizers
    were trained on); ``spread`` draws encoded frames (every ``frame_stride``-th) from all of it."""
    from emu3_vla.training.cli import collect_frames

    src = open_dataset(lerobot_root, mapping())
    start = collect_frames(src, ["static"], frame_stride=2, max_frames=2)["static"]
    assert np.array_equal(start, np.stack([src.episode(i).frames["static"][0] for i in range(2)]))
    draws = [collect_frames(src, ["static"], 2, 2, sampling="spread", seed=s)["static"] for s in range(4)]
    steps = {int(frame[0, 0, 0]) // 10 for frames in draws for frame in frames}  # _frame: red = 10 * step
    assert steps <= {0, 2, 4, 6, 8, 10} and steps - {0}
    with pytest.raises(ValueError, match="frame_sampling='middle'"):
        collect_frames(src, ["static"], 2, 2, sampling="middle")


def test_lerobot_missing_key_lists_the_keys_it_has(lerobot_root):
    bad = DataMapping(cameras={"static": CameraSpec("observation.images.top", 48, 48)})
    expected = r"no key\(s\) \['observation.images.top'\].*observation.images.static"
    with pytest.raises(DatasetFormatError, match=expected):
        open_dataset(lerobot_root, bad)


def test_not_a_dataset_is_reported(tmp_path):
    with pytest.raises(DatasetFormatError, match="neither a LeRobot dataset"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetFormatError, match="meta/info.json is missing"):
        open_dataset(tmp_path, fmt="lerobot")
    with pytest.raises(DatasetFormatError, match="does not exist"):
        open_dataset(tmp_path / "missing")


def _calvin_steps(n, offset):
    rng = np.random.default_rng(offset)
    return {
        "rgb_static": rng.integers(0, 255, (n, 200, 200, 3), dtype=np.uint8),
        "rgb_gripper": rng.integers(0, 255, (n, 84, 84, 3), dtype=np.uint8),
        "actions": rng.normal(size=(n, 7)).astype(np.float32),
        "rel_actions": rng.uniform(-1, 1, (n, 7)).astype(np.float32),
        "robot_obs": rng.normal(size=(n, 15)).astype(np.float32),
        "scene_obs": rng.normal(size=(n, 24)).astype(np.float32),
    }


def test_calvin_format_round_trip(tmp_path):
    writer = CalvinWriter(tmp_path / "training")
    eps = [_calvin_steps(5, 0), _calvin_steps(3, 1)]
    assert writer.add_episode(eps[0], "open the drawer", "open_drawer") == (0, 4)
    assert writer.add_episode(eps[1], "turn on the led", "turn_on_led") == (5, 7)
    writer.finalize()
    assert sorted(p.name for p in (tmp_path / "training").glob("episode_*.npz"))[-1] == "episode_0000007.npz"
    assert np.load(tmp_path / "training" / "ep_start_end_ids.npy").tolist() == [[0, 4], [5, 7]]
    src = open_dataset(tmp_path / "training")
    assert isinstance(src, CalvinSource) and len(src) == 2
    e = src.episode(1)
    assert e.instruction == "turn on the led" and e.task == "turn_on_led"
    assert np.array_equal(e.actions, eps[1]["rel_actions"]) and np.array_equal(e.state, eps[1]["robot_obs"])
    assert np.array_equal(e.frames["static"], eps[1]["rgb_static"])
    assert e.frames["gripper"].shape == (3, 80, 80, 3)
    assert set(STEP_KEYS) <= set(np.load(tmp_path / "training" / "episode_0000000.npz").files)


def test_calvin_top_folder_gets_a_hint(tmp_path):
    (tmp_path / "ep_start_end_ids.npy").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="training"):
        open_dataset(tmp_path)


def test_chunk_length_in_seconds_follows_fps():
    m = DataMapping(cameras={"s": CameraSpec("k", 8, 8)}, chunk_steps=None, chunk_seconds=1 / 3)
    assert m.chunk_length(30) == 10 and m.chunk_length(15) == 5
    with pytest.raises(ValueError, match="multiple of 8"):
        CameraSpec("k", 84, 84)


def test_action_chunks_pad_by_repeating_the_last_action():
    a = np.arange(5, dtype=np.float32)[:, None]
    chunks = action_chunks(a, chunk=3, stride=2)
    assert chunks[:, :, 0].tolist() == [[0, 1, 2], [2, 3, 4], [4, 4, 4]]


def test_fast_fit_reads_a_lerobot_folder(lerobot_root, tmp_path):
    from action_tokenizer import load_action_tokenizer
    from emu3_vla.cli import main

    assert main(["fast", "fit", "--data", str(lerobot_root), "--out", str(tmp_path / "fast"), "--horizon", "5"]) == 0
    tok = load_action_tokenizer(tmp_path / "fast")
    assert tok.time_horizon == 5 and tok.action_dim == 7
