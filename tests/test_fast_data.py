"""Loading action data for the tokenizers: files, episode boundaries, windows, dataset-folder hook."""

import numpy as np
import pytest

from action_tokenizer import ActionSource, load_chunks, make_chunks, register_action_source
from action_tokenizer.data import _SOURCES, as_chunk_array


def test_windows_never_cross_episode_boundaries():
    steps = np.arange(25, dtype=float)
    actions = np.stack([steps, -steps], axis=1)  # value = global step index
    chunks = make_chunks(actions, horizon=4, stride=2, episode_ends=np.array([10, 13, 25]))
    starts = chunks[:, 0, 0].astype(int).tolist()
    assert starts == [0, 2, 4, 6, 13, 15, 17, 19, 21]  # episode 2 (3 steps) is too short
    np.testing.assert_array_equal(np.diff(chunks[..., 0], axis=1), 1)  # consecutive steps only


def test_episode_ends_are_validated():
    actions = np.zeros((20, 7))
    with pytest.raises(ValueError, match="must equal the number of actions"):
        make_chunks(actions, 5, episode_ends=np.array([10, 15]))
    with pytest.raises(ValueError, match="strictly increasing"):
        make_chunks(actions, 5, episode_ends=np.array([10, 10, 20]))
    with pytest.raises(ValueError, match="no window of 30 steps"):
        make_chunks(actions, 30)


def test_npy_of_chunks_and_npz_of_actions_with_episode_ends(tmp_path):
    actions = np.random.default_rng(0).normal(size=(50, 7))
    chunks = make_chunks(actions, 10, 5)
    np.save(tmp_path / "chunks.npy", chunks)
    np.testing.assert_array_equal(load_chunks(tmp_path / "chunks.npy"), chunks)
    with pytest.raises(ValueError, match="chunks of 10 steps but horizon 5"):
        load_chunks(tmp_path / "chunks.npy", horizon=5)
    np.savez(tmp_path / "acts.npz", actions=actions, episode_ends=np.array([20, 50]))
    got = load_chunks(tmp_path / "acts.npz", horizon=10, stride=5)
    np.testing.assert_array_equal(got, make_chunks(actions, 10, 5, np.array([20, 50])))
    np.save(tmp_path / "ends.npy", np.array([50]))  # a separate file overrides the npz's ends
    assert len(load_chunks(tmp_path / "acts.npz", horizon=10, stride=5, episode_ends=tmp_path / "ends.npy")) == 9


def test_npz_array_selection(tmp_path):
    a = np.zeros((30, 7))
    np.savez(tmp_path / "one.npz", whatever=a)
    assert load_chunks(tmp_path / "one.npz").shape == (21, 10, 7)
    np.savez(tmp_path / "two.npz", a=a, b=a)
    with pytest.raises(ValueError, match="name the actions with --key"):
        load_chunks(tmp_path / "two.npz")
    assert load_chunks(tmp_path / "two.npz", key="b").shape == (21, 10, 7)
    with pytest.raises(KeyError, match="no array 'c'"):
        load_chunks(tmp_path / "two.npz", key="c")


def test_bad_files_say_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_chunks(tmp_path / "missing.npy")
    (tmp_path / "a.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"expected an \.npy or \.npz"):
        load_chunks(tmp_path / "a.csv")
    np.save(tmp_path / "flat.npy", np.zeros(10))
    with pytest.raises(ValueError, match=r"actions \(N, D\) or chunks \(N, T, D\)"):
        load_chunks(tmp_path / "flat.npy")
    with pytest.raises(ValueError, match="no registered action source"):
        load_chunks(tmp_path)


def test_dataset_folders_go_through_a_registered_action_source(tmp_path):
    (tmp_path / "meta.txt").write_text("my format")
    actions = np.arange(40, dtype=float).reshape(20, 2)
    source = ActionSource(
        name="test-format",
        accepts=lambda p: (p / "meta.txt").is_file(),
        load=lambda p: (actions, np.array([8, 20])),
    )
    register_action_source(source)
    try:
        chunks = load_chunks(tmp_path, horizon=4, stride=4)
        np.testing.assert_array_equal(chunks, make_chunks(actions, 4, 4, np.array([8, 20])))
    finally:
        _SOURCES.pop("test-format")


def test_as_chunk_array_accepts_iterators_of_chunks_and_batches():
    a, b = np.zeros((10, 7)), np.ones((3, 10, 7))
    assert as_chunk_array(iter([a, b])).shape == (4, 10, 7)
    with pytest.raises(ValueError, match="same shape"):
        as_chunk_array([a, np.zeros((5, 7))])
