"""Recovery data from a perturbed expert: bursts of noise are flagged per step, stored in the
dataset, carried into the token cache, and the training windows that touch them are left out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import write_tiny_lerobot_dataset
from emu3_vla.data.episodes import Episode
from emu3_vla.data.token_cache import clean_chunks
from eval.collection.jobs import task_job
from eval.collection.pool import JobRunner, RunSettings
from policies.experts import ScriptedExpert
from policies.experts.expert import BURST_GAP, BURST_STEPS


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(int), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist(), strict=True))


@pytest.fixture(scope="module")
def burst_episodes():
    """The same open_drawer jobs recorded with clean (DART) and with executed labels."""
    jobs = [task_job("open_drawer", i, seed=11) for i in range(3)]
    out = {}
    for labels in ("clean", "executed"):
        runner = JobRunner(RunSettings(record_frames=False, noise=0.6, noise_kind="bursts", labels=labels))
        try:
            out[labels] = [runner(job).episodes[-1] for job in jobs]
        finally:
            runner.close()
    return out


def test_bursts_are_short_pushes_with_clean_recovery_after_them(burst_episodes):
    flags = [e.perturbed for e in burst_episodes["clean"]]
    runs = [run for f in flags for run in _runs(f)]
    assert runs, "three episodes with a 5 % chance per free-space step should contain a push"
    assert all(length <= BURST_STEPS for _, length in runs)
    for f in flags:
        starts = [s for s, _ in _runs(f)]
        ends = [s + n for s, n in _runs(f)]
        assert all(nxt - end >= BURST_GAP for end, nxt in zip(ends, starts[1:], strict=False))
    assert all(e.success_step > 0 for e in burst_episodes["clean"])  # the expert still does the task


def test_flags_mark_exactly_the_steps_whose_executed_action_was_not_the_label(burst_episodes):
    for clean, executed in zip(burst_episodes["clean"], burst_episodes["executed"], strict=True):
        np.testing.assert_array_equal(clean.robot_obs, executed.robot_obs)  # same states either way
        np.testing.assert_array_equal(clean.perturbed, executed.perturbed)
        differs = np.abs(clean.actions - executed.actions).max(axis=1) > 0
        np.testing.assert_array_equal(differs, clean.perturbed)
        # A push moves the position only; orientation and gripper are the expert's.
        np.testing.assert_array_equal(clean.actions[:, 3:], executed.actions[:, 3:])


def test_no_noise_means_nothing_is_flagged():
    runner = JobRunner(RunSettings(record_frames=False, noise=0.0, noise_kind="bursts"))
    try:
        episode = runner(task_job("open_drawer", 0, seed=11)).episodes[-1]
    finally:
        runner.close()
    assert episode.perturbed.dtype == bool and not episode.perturbed.any()


def test_unknown_noise_kind_is_refused():
    with pytest.raises(ValueError, match="smooth, bursts"):
        ScriptedExpert(noise=0.3, noise_kind="gusts")


def test_clean_chunks_look_at_every_step_of_each_chunk():
    flags = np.zeros(30, bool)
    flags[12] = True
    episode = Episode(0, "x", {}, np.zeros((30, 7), np.float32), perturbed=flags)
    starts = np.arange(0, 30, 5)
    # chunks of 10 from 0, 5, 10, 15, 20, 25: the ones from 5 and 10 contain step 12
    np.testing.assert_array_equal(clean_chunks(episode, starts, 10), [True, False, False, True, True, True])
    unflagged = Episode(0, "x", {}, np.zeros((30, 7), np.float32))
    assert clean_chunks(unflagged, starts, 10).all()
    with pytest.raises(ValueError, match="perturbed flags"):
        Episode(0, "x", {}, np.zeros((30, 7), np.float32), perturbed=np.zeros(29, bool))


def test_windows_touching_a_perturbed_chunk_are_left_out(tmp_path, tiny_vq_dir):
    """Through the trainer's own data preparation: dataset flags -> token cache -> window index."""
    from conftest import tiny_train_overrides
    from emu3_vla.training import data_prep
    from emu3_vla.training.config import load_config

    length = 45
    flags = [np.zeros(length, bool) for _ in range(2)]
    flags[1][22:25] = True  # episode 1: a push at steps 22-24
    root = write_tiny_lerobot_dataset(tmp_path / "data", episodes=2, length=length, perturbed=flags)
    cfg = load_config("train", tiny_train_overrides(root, tiny_vq_dir, tmp_path / "run", tmp_path / "cache"))
    source = data_prep.open_source(cfg)
    np.testing.assert_array_equal(source.episode(1).perturbed, flags[1])
    assert not source.episode(0).perturbed.any()

    mapping = data_prep.data_mapping(cfg)
    chunk = mapping.chunk_length(source.fps)
    tokenizer = data_prep.make_action_tokenizer(cfg, source, chunk)
    spec = data_prep.sequence_spec(cfg, mapping, chunk, None)
    vla = data_prep.build_model(cfg, tokenizer, spec, mapping)
    windows = data_prep.build_windows(cfg, vla, source, progress=False)

    stride, frames = windows.episodes[0].frame_steps[1], spec.frames
    assert stride == int(cfg.data.frame_stride)

    def expected(perturbed: np.ndarray) -> list[int]:
        """Window start steps whose every frame's chunk is complete and free of perturbed steps."""
        starts = []
        for s in range(0, length, stride):
            chunk_starts = [s + j * chunk for j in range(frames)]
            if chunk_starts[-1] + chunk > length:
                continue
            if not any(perturbed[c : c + chunk].any() for c in chunk_starts):
                starts.append(s)
        return starts

    by_episode = {0: [], 1: []}
    for i in range(len(windows)):
        ep, k = windows.window(i)
        by_episode[ep].append(int(windows.episodes[ep].frame_steps[k]))
    assert by_episode[0] == expected(flags[0])
    assert by_episode[1] == expected(flags[1]) and len(by_episode[1]) < len(by_episode[0])
    assert windows.skipped_perturbed == len(by_episode[0]) - len(by_episode[1])


def test_token_cache_counts_chunks_the_action_tokenizer_had_to_clamp(tmp_path, tiny_vq_dir):
    """FAST fitted on gentle chunks, a dataset with a violent episode: the cache says how many of its
    chunks were clamped to the fitted range instead of silently training on the approximations."""
    from action_tokenizer import FastTokenizer
    from conftest import tiny_train_overrides
    from emu3_vla.data.token_cache import CacheSettings, TokenCache
    from emu3_vla.training import data_prep
    from emu3_vla.training.config import load_config

    root = write_tiny_lerobot_dataset(tmp_path / "data", episodes=2, length=40)
    cfg = load_config("train", tiny_train_overrides(root, tiny_vq_dir, tmp_path / "run", tmp_path / "cache"))
    source = data_prep.open_source(cfg)
    gentle = data_prep.all_chunks(source, 10)
    gentle[..., :6] *= 0.2  # the fit sees small arm motions only
    tokenizer = FastTokenizer.fit(gentle, scale=10.0, vocab_size=256)
    mapping = data_prep.data_mapping(cfg)
    vla = data_prep.build_model(cfg, tokenizer, data_prep.sequence_spec(cfg, mapping, 10, None), mapping)
    settings = CacheSettings(chunk=10, frame_stride=5)
    cache = TokenCache.build(source, vla.vision(), tokenizer, tmp_path / "cache", settings=settings, progress=False)
    manifest = json.loads((cache.root / "manifest.json").read_text())
    expected = 0
    for i in range(len(source)):
        actions = source.actions(i)
        starts = np.arange(0, len(actions) - 10 + 1, 5)
        expected += tokenizer.encode_with_report(np.stack([actions[s : s + 10] for s in starts])).num_clamped_chunks
    assert manifest["clamped_chunks"] == expected > 0
