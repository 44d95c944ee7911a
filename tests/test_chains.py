"""CALVIN's standard evaluation chains: our generator reproduces eval_sequences.json byte for byte."""

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eval.chains import (
    CHAIN_LENGTH,
    TransitionTable,
    _draw_choices,
    chains_per_state,
    chains_to_json,
    generate_chains,
    generate_state_chains,
    load_standard_chains,
    standard_chains_path,
)
from eval.symbolic import (
    BLOCK_KEYS,
    TaskNotApplicableError,
    applicable_branches,
    apply_task,
    is_valid_chain,
    load_task_definitions,
    valid_start_states,
)

SHIPPED_MD5 = "dd9695b40bec35035451a1e3610bca51"
SHARED_CALVIN = Path(__file__).resolve().parents[2] / "shared" / "calvin"


def shipped_text() -> str:
    return standard_chains_path().read_text(encoding="utf-8")


def test_shipped_file_is_the_standard_one():
    assert hashlib.md5(standard_chains_path().read_bytes()).hexdigest() == SHIPPED_MD5


@pytest.mark.skipif(not (SHARED_CALVIN / "eval_sequences.json").is_file(), reason="no shared CALVIN copy here")
def test_shipped_file_equals_shared_reference_copy():
    assert standard_chains_path().read_bytes() == (SHARED_CALVIN / "eval_sequences.json").read_bytes()


def test_generated_chains_are_byte_identical_to_eval_sequences():
    chains = generate_chains(use_cache=False)
    assert len(chains) == 1000
    assert chains_to_json(chains).encode("utf-8") == standard_chains_path().read_bytes()


@pytest.mark.parametrize("state_index", [0, 1, 39, 40, 117, 191])
def test_one_state_draws_the_chains_the_file_holds_for_it(state_index):
    # Undo the final seed-0 shuffle to find the file's chains of each state, in drawing order.
    counts = chains_per_state(1000, 192)
    position = np.empty(1000, dtype=int)
    position[np.random.RandomState(0).permutation(1000)] = np.arange(1000)
    first = sum(counts[:state_index])
    shipped = load_standard_chains()
    entries = [shipped[k] for k in position[first : first + counts[state_index]]]
    assert all(state == valid_start_states()[state_index] for state, _ in entries)
    assert generate_state_chains(state_index, counts[state_index]) == [tasks for _, tasks in entries]


def test_serialising_the_shipped_chains_reproduces_the_file():
    assert chains_to_json(load_standard_chains()) == shipped_text()


def test_start_states_follow_the_rules():
    states = valid_start_states()
    assert len(states) == 192
    assert len({json.dumps(s) for s in states}) == 192
    for state in states:
        places = [state[b] for b in BLOCK_KEYS]
        assert state["grasped"] == 0
        assert 1 <= places.count("table") <= 2
        assert places.count("slider_left") <= 1 and places.count("slider_right") <= 1
        assert set(places) <= {"table", "slider_left", "slider_right"}


def test_start_state_order_matches_how_the_file_shares_chains():
    # array_split gives the first 1000 % 192 = 40 states six chains, the rest five: the file's
    # per-state counts therefore pin down our enumeration order independently of generation.
    per_state = Counter(json.dumps(state) for state, _ in load_standard_chains())
    expected = chains_per_state(1000, 192)
    assert [per_state[json.dumps(s)] for s in valid_start_states()] == expected
    assert expected[:41] == [6] * 40 + [5]


def test_every_standard_chain_is_valid_step_by_step():
    definitions = load_task_definitions()
    for state, tasks in load_standard_chains():
        assert len(tasks) == CHAIN_LENGTH and len(set(tasks)) == CHAIN_LENGTH
        assert len({definitions.categories[t] for t in tasks}) == CHAIN_LENGTH
        current = state
        for task in tasks:
            assert len(applicable_branches(current, task)) == 1
            current = apply_task(current, task)
        assert is_valid_chain(state, tasks)


def test_apply_task_effects_and_errors():
    state = valid_start_states()[0]
    assert state["drawer"] == "closed"
    opened = apply_task(state, "open_drawer")
    assert opened["drawer"] == "open" and state["drawer"] == "closed"
    with pytest.raises(TaskNotApplicableError, match="0 applicable branches"):
        apply_task(state, "close_drawer")
    lifted = apply_task(opened, "lift_red_block_table")
    assert lifted["red_block"] == "grasped" and lifted["grasped"] == 1
    assert apply_task(lifted, "place_in_drawer")["red_block"] == "drawer"
    # Two grasped blocks make place_in_slider ambiguous: two branches apply.
    ambiguous = dict(lifted, blue_block="grasped")
    assert len(applicable_branches(ambiguous, "place_in_slider")) == 2
    with pytest.raises(TaskNotApplicableError, match="2 applicable branches"):
        apply_task(ambiguous, "place_in_slider")
    with pytest.raises(ValueError, match="unknown CALVIN task 'open_the_door'"):
        apply_task(state, "open_the_door")
    with pytest.raises(ValueError, match="lacks keys"):
        apply_task({"led": 0}, "turn_on_led")


def test_is_valid_chain_rejects_shared_categories_and_inapplicable_steps():
    state = valid_start_states()[0]  # drawer closed, slider right, red and blue on the table
    assert is_valid_chain(state, ["open_drawer", "move_slider_left", "turn_on_led", "rotate_red_block_left"])
    assert not is_valid_chain(state, ["open_drawer", "close_drawer"])  # same category
    assert not is_valid_chain(state, ["close_drawer"])  # not applicable


def test_transition_table_agrees_with_the_plain_rules():
    definitions = load_task_definitions()
    starts = valid_start_states()
    table = TransitionTable(definitions, starts)
    rng = np.random.default_rng(7)
    index = {name: i for i, name in enumerate(definitions.names)}
    for state, tasks in load_standard_chains(200):
        rows = np.vstack([[index[t] for t in tasks], rng.integers(0, len(index), size=(50, CHAIN_LENGTH))])
        fast = table.valid_rows(table.id_of(state), rows)
        slow = [is_valid_chain(state, [definitions.names[i] for i in row]) for row in rows]
        assert fast[0]
        assert fast.tolist() == slow


def test_batched_draws_consume_the_stream_like_numpy_choice():
    names = load_task_definitions().names
    reference = np.random.RandomState(11)
    expected = [list(reference.choice(list(names), size=CHAIN_LENGTH, replace=False)) for _ in range(300)]
    ours = np.random.RandomState(11)
    drawn = _draw_choices(ours, 300, len(names), CHAIN_LENGTH)
    assert [[names[i] for i in row] for row in drawn] == expected
    assert ours.random_sample() == reference.random_sample()  # both generators are at the same point


@given(st.integers(0, 5000), st.integers(1, 300))
def test_chains_per_state_is_array_split(num_chains, num_states):
    expected = [len(part) for part in np.array_split(np.arange(num_chains), num_states)]
    assert chains_per_state(num_chains, num_states) == expected


def test_small_generation_is_valid_and_independent_of_worker_count():
    serial = generate_chains(30, use_cache=False)
    assert len(serial) == 30
    assert all(is_valid_chain(state, tasks) for state, tasks in serial)
    assert len({json.dumps(state) for state, _ in serial}) == 30  # 30 < 192: one chain per state
    assert generate_chains(30, use_cache=False, workers=2) == serial


def test_cache_is_written_atomically_reused_and_survives_corruption(tmp_path):
    fresh = generate_chains(12, cache_dir=tmp_path)
    (cache_file,) = tmp_path.iterdir()
    assert cache_file.read_text() == chains_to_json(fresh)
    # A second call must come from the cache: make the cached content recognisably different.
    tampered = [(state, list(reversed(tasks))) for state, tasks in fresh]
    cache_file.write_text(chains_to_json(tampered))
    assert generate_chains(12, cache_dir=tmp_path) == tampered
    assert generate_chains(12, cache_dir=tmp_path, use_cache=False) == fresh
    cache_file.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable chain cache"):
        assert generate_chains(12, cache_dir=tmp_path) == fresh
    assert cache_file.read_text() == chains_to_json(fresh)
    assert sorted(p.name for p in tmp_path.iterdir()) == [cache_file.name]  # no temp files left


def test_load_standard_chains_prefix_and_bad_num():
    chains = load_standard_chains()
    assert len(chains) == 1000
    assert load_standard_chains(7) == chains[:7]
    assert load_standard_chains(0) == []
    for bad in (-1, 1001, 2.5):
        with pytest.raises(ValueError, match="num must be an int between 0 and 1000"):
            load_standard_chains(bad)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="state_index must be in"):
        generate_state_chains(192, 1)
    with pytest.raises(ValueError, match="non-negative int"):
        generate_chains(-3, use_cache=False)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        generate_chains(5, use_cache=False, workers=0)
    with pytest.raises(ValueError, match="chain 0 must pair a state mapping"):
        chains_to_json([({"led": 0}, "open_drawer")])
    with pytest.raises(ValueError, match="chain 1 must be a \\(state, tasks\\) pair"):
        chains_to_json([({"led": 0}, ["open_drawer"]), 5])


def test_training_chains_are_valid_distinct_seeded_and_never_standard():
    from eval.chains import chain_key, training_chains
    from eval.symbolic import is_valid_chain

    chains = training_chains(400, seed=0)
    standard = {chain_key(state, tasks) for state, tasks in load_standard_chains()}
    keys = [chain_key(state, tasks) for state, tasks in chains]
    assert len(chains) == 400 and len(set(keys)) == 400
    assert not set(keys) & standard
    assert all(is_valid_chain(state, tasks) for state, tasks in chains)
    assert training_chains(400, seed=0) == chains and training_chains(400, seed=1) != chains
    with pytest.raises(ValueError, match="non-negative"):
        training_chains(-1)
