"""On-policy hand-over data: several datasets read as one, fine-tuning keeps the checkpoint's state
bins, and ``collect-on-policy`` records the expert from the state the driving policy leaves."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ctrl_c_after_episode, episodes_written, tiny_train_overrides, write_tiny_lerobot_dataset
from emu3_vla.data.episodes import DatasetFormatError
from emu3_vla.data.sources import ConcatSource, open_dataset
from emu3_vla.training.config import load_config
from emu3_vla.training.trainer import train
from emu3_vla.vla import VLAModel


@pytest.fixture(scope="module")
def second_dataset(tmp_path_factory):
    return write_tiny_lerobot_dataset(tmp_path_factory.mktemp("data2") / "tiny2", episodes=3, length=25, seed=7)


def test_a_list_of_folders_reads_as_one_dataset(tiny_dataset, second_dataset):
    first, second = open_dataset(tiny_dataset), open_dataset(second_dataset)
    both = open_dataset([str(tiny_dataset), str(second_dataset)])
    assert isinstance(both, ConcatSource) and len(both) == len(first) + len(second) == 7
    assert [both.episode(i).index for i in range(len(both))] == list(range(7))
    np.testing.assert_array_equal(both.actions(len(first)), second.actions(0))
    np.testing.assert_array_equal(both.episode(len(first) + 2).frames["static"], second.episode(2).frames["static"])
    assert both.episode(1).instruction == first.episode(1).instruction
    assert both.fingerprint() not in (first.fingerprint(), second.fingerprint())
    assert open_dataset([str(second_dataset), str(tiny_dataset)]).fingerprint() != both.fingerprint()
    assert open_dataset([str(tiny_dataset)]).fingerprint() == first.fingerprint()
    with pytest.raises(IndexError):
        both.episode(7)
    with pytest.raises(DatasetFormatError, match="empty"):
        open_dataset([])
    second.fps = 15.0  # a dataset recorded at another rate cannot be read with the first
    with pytest.raises(DatasetFormatError, match="15.0 fps"):
        ConcatSource([first, second])


def test_fine_tuning_on_added_data_keeps_the_checkpoint_state_bins(tiny_dataset, second_dataset, tiny_vq_dir, tmp_path):
    state = {"sequence.state_dims": "[0,1,2]"}
    base = train(
        load_config("train", tiny_train_overrides(tiny_dataset, tiny_vq_dir, tmp_path / "a", tmp_path / "c", **state))
    )
    before = VLAModel.load(base.run_dir / "model").spec
    both = f"[{tiny_dataset},{second_dataset}]"
    overrides = tiny_train_overrides(both, tiny_vq_dir, tmp_path / "b", tmp_path / "c", steps=2, **state)
    tuned = train(load_config("train", [*overrides, f"model.checkpoint={base.run_dir / 'model'}"]))
    after = VLAModel.load(tuned.run_dir / "model").spec
    assert after.state_low == before.state_low and after.state_high == before.state_high
    # one token cache per dataset: the first one's was reused, only the added one was encoded
    caches = [p for p in (tmp_path / "c").iterdir() if (p / "manifest.json").is_file()]
    assert sorted(json.loads((p / "manifest.json").read_text())["episodes"] for p in caches) == [3, 4]
    # the second dataset's states (another seed) would have given other bins if they were refitted
    fresh = train(
        load_config("train", tiny_train_overrides(both, tiny_vq_dir, tmp_path / "f", tmp_path / "c", **state))
    )
    assert VLAModel.load(fresh.run_dir / "model").spec.state_low != before.state_low
    # other state dims: the checkpoint's bins do not apply, they are fitted on the data
    other = {"sequence.state_dims": "[0,1]"}
    overrides = tiny_train_overrides(both, tiny_vq_dir, tmp_path / "d", tmp_path / "c", steps=2, **other)
    refit = train(load_config("train", [*overrides, f"model.checkpoint={base.run_dir / 'model'}"]))
    assert VLAModel.load(refit.run_dir / "model").spec.state_low != before.state_low[:2]


def test_repeats_draw_one_dataset_more_often(tiny_dataset, second_dataset, tiny_vq_dir, tmp_path):
    """``data.repeats`` lists each folder's windows that many times per epoch, through the trainer's
    own data preparation; a count that does not fit the folders stops before anything is encoded."""
    from collections import Counter

    from emu3_vla.training import data_prep
    from emu3_vla.training.config import ConfigError

    both = f"[{tiny_dataset},{second_dataset}]"

    def windows(*extra: str):
        cfg = load_config("train", [*tiny_train_overrides(both, tiny_vq_dir, tmp_path / "r", tmp_path / "c"), *extra])
        source, mapping = data_prep.open_source(cfg), data_prep.data_mapping(cfg)
        chunk = mapping.chunk_length(source.fps)
        tokenizer = data_prep.make_action_tokenizer(cfg, source, chunk)
        vla = data_prep.build_model(cfg, tokenizer, data_prep.sequence_spec(cfg, mapping, chunk, None), mapping)
        return data_prep.build_windows(cfg, vla, source, progress=False)

    def per_part(w) -> Counter:
        return Counter("second" if int(ep) >= 4 else "first" for ep, _ in w.index)

    plain, tripled = per_part(windows()), per_part(windows("data.repeats=[1,3]"))
    assert tripled == Counter(first=plain["first"], second=3 * plain["second"])
    assert per_part(windows("data.repeats=[0,1]")) == Counter(second=plain["second"])
    for bad, says in (("[1]", "1 entries for 2"), ("[1,0.5]", "whole number"), ("[0,0]", "one of them > 0")):
        with pytest.raises(ConfigError, match=says):
            windows(f"data.repeats={bad}")


def test_the_expert_records_from_the_state_the_driving_policy_leaves(tmp_path):
    """A (randomised) scripted expert drives: it completes subtask 1, then the recording expert takes
    over at the very step of success and records subtask 2 as one episode at the dataset's sizes."""
    from eval.chains import chain_key, load_standard_chains
    from eval.collection.on_policy import REPORT_NAME, OnPolicyConfig, collect_on_policy

    out = tmp_path / "op"
    report = collect_on_policy(
        OnPolicyConfig(policy="expert", out=out, chains=3, workers=1, envs=2, static_size=64, gripper_size=32)
    )
    rows = report["chain_list"]
    assert len(rows) == 3 and json.loads((out / REPORT_NAME).read_text())["episodes"] == report["episodes"]
    standard = {chain_key(state, tasks) for state, tasks in load_standard_chains()}
    assert not any(chain_key(r["start_state"], r["tasks"]) in standard for r in rows)
    handed = [r for r in rows if r["kind"] == "handover"]
    assert handed, rows
    for row in handed:
        assert row["policy_successes"] == 1 and row["expert_from"] == 1
        assert [e["position"] for e in row["episodes"]] == [1][: row["expert_successes"]]
        assert all(e["task"] == row["tasks"][1] for e in row["episodes"])
    source = open_dataset(out / "lerobot")
    assert len(source) == report["episodes"] == sum(len(r["episodes"]) for r in rows) >= 1
    episode = source.episode(0)
    assert episode.frames["static"].shape[1:] == (200, 200, 3)  # resized to the default mapping's views
    from envs import task_instructions

    first = next(r for r in rows if r["episodes"])
    assert episode.instruction in task_instructions("training")[first["episodes"][0]["task"]]
    assert len(episode.actions) == first["episodes"][0]["length"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        collect_on_policy(OnPolicyConfig(policy="expert", out=out, chains=1, workers=1))


def test_after_the_policy_fails_the_expert_takes_over_the_same_subtask(tmp_path):
    from eval.collection.on_policy import OnPolicyConfig, collect_on_policy

    report = collect_on_policy(OnPolicyConfig(policy="random", out=tmp_path / "op", chains=1, workers=1, envs=1))
    (row,) = report["chain_list"]
    assert row["policy_successes"] == 0 and row["kind"] == "recovery" and row["expert_from"] == 0
    assert all(e["position"] == 0 and e["task"] == row["tasks"][0] for e in row["episodes"])
    no_recovery = collect_on_policy(
        OnPolicyConfig(policy="random", out=tmp_path / "none", chains=1, workers=1, envs=1, recover=False)
    )
    assert no_recovery["chain_list"][0]["kind"] is None and no_recovery["episodes"] == 0


def test_chains_can_be_limited_to_the_tasks_a_policy_was_trained_on(tmp_path):
    from eval.collection.on_policy import OnPolicyConfig, chain_outcomes

    tasks = ["open_drawer", "close_drawer", "turn_on_led", "turn_off_led", "move_slider_left", "move_slider_right"]
    config = OnPolicyConfig(policy="expert", out=tmp_path, chains=20, tasks=tasks)
    chains = chain_outcomes(config)
    assert len(chains) == 20 and all(set(c.tasks[:2]) <= set(tasks) for c in chains)
    assert [c.index for c in chains] == list(range(20))
    with pytest.raises(ValueError, match="at least 2 tasks"):
        chain_outcomes(OnPolicyConfig(policy="expert", out=tmp_path, chains=1, tasks=["open_drawer"]))
    with pytest.raises(ValueError, match="unknown tasks"):
        OnPolicyConfig(policy="expert", out=tmp_path, tasks=["open_the_fridge"])


def test_collect_on_policy_refuses_what_is_not_a_policy(tmp_path, capsys):
    from emu3_vla.cli import main

    assert main(["collect-on-policy", "--policy", str(tmp_path), "--out", str(tmp_path / "op")]) == 1
    assert "is not a VLA checkpoint folder" in capsys.readouterr().err
    assert not (tmp_path / "op").exists()


def test_on_policy_episodes_render_like_collect(tmp_path):
    """``render_every`` / ``render_sizes`` reach the expert's episodes: frames held between every 5th
    step, rendered at CALVIN's sizes and stored at the dataset's, and the dataset says so."""
    from emu3_vla.data.held_frames import render_every
    from eval.collection.on_policy import OnPolicyConfig, collect_on_policy

    config = OnPolicyConfig(
        policy="random", out=tmp_path / "op", chains=1, workers=1, envs=1, render_every=5, render_sizes=(200, 84)
    )
    report = collect_on_policy(config)
    assert report["episodes"] >= 1 and render_every(tmp_path / "op" / "lerobot") == 5
    from lerobot.datasets import LeRobotDataset

    dataset = LeRobotDataset("local/op", root=tmp_path / "op" / "lerobot")
    assert tuple(dataset.meta.features["observation.images.static"]["shape"])[:2] == (96, 96)
    episode = open_dataset(tmp_path / "op" / "lerobot").episode(0)
    frames = np.asarray(episode.frames["static"])
    assert len(frames) > 5 and not np.array_equal(frames[0], frames[5])
    for t in range(len(frames)):
        assert np.array_equal(frames[t], frames[t - t % 5])


def test_an_interrupted_on_policy_collection_resumes_with_the_same_chains(tmp_path, monkeypatch):
    """Ctrl-C after the first chain's episode: that chain stays, the report says where to go on, and
    ``resume`` (here with two workers) ends with the uninterrupted run's chains and episodes."""
    import dataclasses

    from eval.collection.on_policy import REPORT_NAME, OnPolicyConfig, collect_on_policy

    settings = {"policy": "expert", "chains": 3, "chains_per_call": 1, "workers": 1, "envs": 1}
    sizes = {"static_size": 48, "gripper_size": 32, "progress": False}
    reference = collect_on_policy(OnPolicyConfig(out=tmp_path / "reference", **settings, **sizes))
    first = next(i for i, row in enumerate(reference["chain_list"]) if row["episodes"])
    config = OnPolicyConfig(out=tmp_path / "op", **settings, **sizes)
    ctrl_c_after_episode(monkeypatch, 0, lambda: collect_on_policy(config))
    stopped = json.loads((config.out / REPORT_NAME).read_text())
    assert stopped["interrupted"] is True and stopped["next_chain"] == first + 1 == stopped["chains"] < 3

    written = episodes_written(monkeypatch)
    resumed = collect_on_policy(dataclasses.replace(config, workers=2, resume=True))
    assert not resumed["interrupted"] and resumed["chain_list"] == reference["chain_list"]
    assert written == list(range(stopped["episodes"], reference["episodes"])), "it continues, not starts over"
    ours, theirs = open_dataset(config.out / "lerobot"), open_dataset(tmp_path / "reference" / "lerobot")
    assert len(ours) == len(theirs) == reference["episodes"]
    for i in range(len(ours)):
        np.testing.assert_array_equal(ours.episode(i).actions, theirs.episode(i).actions)
    with pytest.raises(ValueError, match=r"other settings \(chains: 3 -> 4\)"):
        collect_on_policy(dataclasses.replace(config, chains=4, resume=True))
