"""From a config to training inputs: dataset -> action tokenizer -> model -> token cache -> windows.

Each stage is cheap to repeat: the action tokenizer is fitted once and saved with the run, and the
token cache is keyed by everything it depends on, so a second run (or a resumed one) reuses it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from action_tokenizer import BinningTokenizer, FastTokenizer, load_action_tokenizer
from emu3_vla.checkpoint import Emu3Bundle, load_vq
from emu3_vla.data.episodes import EpisodeSource, action_chunks
from emu3_vla.data.held_frames import check_frame_stride
from emu3_vla.data.mapping import DataMapping
from emu3_vla.data.sequence import SequenceSpec
from emu3_vla.data.sources import ConcatSource, open_dataset
from emu3_vla.data.state_tokens import StateBinning
from emu3_vla.data.token_cache import CacheSettings, TokenCache
from emu3_vla.data.windows import WindowDataset
from emu3_vla.training.config import ConfigError, require
from emu3_vla.vision import ViewSpec
from emu3_vla.vla import ModelInputs, VLAModel

log = logging.getLogger(__name__)


def data_mapping(cfg: DictConfig) -> DataMapping:
    return DataMapping.from_dict(OmegaConf.to_container(cfg.data, resolve=True))


def open_source(cfg: DictConfig) -> EpisodeSource:
    root = require(cfg, "data.root", "the dataset folder, e.g. data.root=runs/demo/data")
    return open_dataset(root, data_mapping(cfg), fmt=cfg.data.format, repo_id=cfg.data.repo_id)


def episode_repeats(cfg: DictConfig, source: EpisodeSource) -> dict[int, int] | None:
    """``data.repeats``: with a list of dataset folders, how many times each folder's windows appear
    per epoch (e.g. ``[1, 2]`` draws the second dataset's windows twice as often; 0 leaves it out).

    Why: data added to a large set (a few hundred on-policy episodes beside thousands of
    demonstrations) is otherwise drawn only in proportion to its size."""
    repeats = OmegaConf.select(cfg, "data.repeats", default=None)
    if repeats is None:
        return None
    ranges = source.part_ranges() if isinstance(source, ConcatSource) else [range(len(source))]
    values = list(repeats) if not isinstance(repeats, (int, str)) else [repeats]
    if len(values) != len(ranges):
        raise ConfigError(
            f"data.repeats has {len(values)} entries for {len(ranges)} dataset folder(s) in data.root; "
            "give one whole number per folder, e.g. data.repeats=[1,2]"
        )
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values) or not any(values):
        raise ConfigError(
            f"data.repeats={values}: each entry must be a whole number >= 0 (times per epoch) and one of them > 0"
        )
    return {i: int(r) for part, r in zip(ranges, values, strict=True) for i in part}


def all_chunks(source: EpisodeSource, chunk: int) -> np.ndarray:
    """Every full action chunk of the dataset (stride 1), for fitting the action tokenizer."""
    parts = []
    for i in range(len(source)):
        actions = source.actions(i)
        n_full = len(actions) - chunk + 1
        if n_full > 0:
            parts.append(action_chunks(actions, chunk)[:n_full])
    if not parts:
        raise ValueError(f"no episode is at least {chunk} steps long")
    return np.concatenate(parts)


def make_action_tokenizer(cfg: DictConfig, source: EpisodeSource, chunk: int):
    """Load ``data.action_tokenizer``, else the one of the checkpoint being fine-tuned (its action
    tokens mean what they meant in training; a FAST refitted on new data would reassign them), else
    fit FAST / binning on the dataset's chunks."""
    path = cfg.data.action_tokenizer
    if not path and cfg.model.get("checkpoint") and (Path(cfg.model.checkpoint) / "action_tokenizer").is_dir():
        path = Path(cfg.model.checkpoint) / "action_tokenizer"
        log.info("action tokenizer: the checkpoint's (%s)", path)
    if path:
        tok = load_action_tokenizer(path)
        if tok.time_horizon not in (None, chunk):
            raise ConfigError(f"the action tokenizer's horizon {tok.time_horizon} differs from the chunk {chunk}")
        return tok
    chunks = all_chunks(source, chunk)
    log.info("fitting the %s action tokenizer on %d chunks", cfg.action_tokens, len(chunks))
    dims = gripper_dims(cfg, chunks)
    # a binary gripper dim is neither normalised nor treated as a continuous signal; None: the default
    grip = {} if dims is None else {"passthrough_dims": dims, "gripper_dims": dims}
    if cfg.action_tokens == "fast":
        return FastTokenizer.fit(chunks, scale=float(cfg.fast.scale), vocab_size=int(cfg.fast.vocab_size), **grip)
    if cfg.action_tokens == "binning":
        return BinningTokenizer.fit(chunks, **grip)
    raise ConfigError(f"action_tokens must be 'fast' or 'binning', got {cfg.action_tokens!r}")


def gripper_dims(cfg: DictConfig, chunks: np.ndarray) -> tuple[int, ...] | None:
    """``data.gripper_dims``: the action dims that are a binary -1/+1 gripper (executed actions are
    binarised there). ``null``: the action tokenizer's default (the last dim of 7-d CALVIN actions);
    ``auto``: the dims whose every value in the dataset is -1 or +1 (a 2-d PushT target or a
    continuous 7-d arm gets none); a list: those dims."""
    value = cfg.data.get("gripper_dims")
    if value is None:
        return None
    flat = np.asarray(chunks, dtype=np.float64).reshape(-1, chunks.shape[-1])
    if value == "auto":
        dims = tuple(int(d) for d in np.flatnonzero(np.all(np.abs(np.abs(flat) - 1.0) < 1e-6, axis=0)))
        log.info("gripper dims (binary -1/+1 in the data): %s", list(dims) or "none")
        return dims
    if isinstance(value, str):
        raise ConfigError(f"data.gripper_dims must be null, 'auto' or a list of dims, got {value!r}")
    dim = flat.shape[-1]
    if any(not -dim <= int(d) < dim for d in value):
        raise ConfigError(f"data.gripper_dims {list(value)} is out of range for {dim}-d actions")
    return tuple(sorted({int(d) % dim for d in value}))


def sequence_spec(cfg: DictConfig, mapping: DataMapping, chunk: int, max_length: int | None) -> SequenceSpec:
    """The layout the config asks for; state ranges are fitted later, by :func:`build_windows`."""
    state_dims = tuple(int(d) for d in (cfg.sequence.get("state_dims") or ()))
    if state_dims and not mapping.state_key:
        raise ConfigError(
            f"sequence.state_dims={list(state_dims)} reads the proprioceptive state but data.state_key is "
            "empty; name the dataset's state feature (e.g. data.state_key=observation.state)"
        )
    return SequenceSpec(
        views=mapping.views,
        frames=int(cfg.sequence.frames),
        chunk=chunk,
        vision_weight=float(cfg.loss.vision_weight),
        action_weight=float(cfg.loss.action_weight),
        with_eol=bool(cfg.sequence.with_eol),
        max_instruction_tokens=int(cfg.sequence.max_instruction_tokens),
        blind=bool(cfg.sequence.get("blind", False)),
        max_length=max_length,
        state_dims=state_dims,
        state_bins=int(cfg.sequence.get("state_bins", 256)),
    )


def action_bounds(cfg: DictConfig, source: EpisodeSource) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """What executed actions are clipped to: ``data.action_bounds`` ([low, high] for every dimension, or
    per-dimension lists), else each dimension's range in the dataset."""
    bounds = cfg.data.get("action_bounds")
    if bounds is not None:
        low, high = (np.atleast_1d(np.asarray(b, dtype=np.float64)) for b in bounds)
        return tuple(low.tolist()), tuple(high.tolist())
    actions = np.concatenate([source.actions(i) for i in range(len(source))])
    return tuple(actions.min(axis=0).tolist()), tuple(actions.max(axis=0).tolist())


def model_inputs(
    cfg: DictConfig, mapping: DataMapping, spec: SequenceSpec, action_tokenizer, source: EpisodeSource
) -> ModelInputs:
    """The inputs a checkpoint records: dataset keys of its views and state, its actions and their bounds."""
    low, high = action_bounds(cfg, source)
    return ModelInputs(
        view_keys={view: camera.key for view, camera in mapping.cameras.items()},
        state_key=mapping.state_key if spec.uses_state else None,
        action_key=mapping.action_key,
        action_dim=int(action_tokenizer.action_dim),
        action_low=low,
        action_high=high,
    )


def build_model(
    cfg: DictConfig, action_tokenizer, spec: SequenceSpec, mapping: DataMapping, inputs: ModelInputs | None = None
) -> VLAModel:
    """A fresh VLA: the decoder from ``model.checkpoint`` or a random ``model.preset``, and its VQ."""
    if cfg.model.checkpoint:
        bundle = Emu3Bundle.load(cfg.model.checkpoint)
    else:
        decoder = cfg.model.get("decoder")  # an empty DictConfig is falsy, and to_container refuses a plain {}
        shape = OmegaConf.to_container(decoder, resolve=True) if decoder else {}
        bundle = Emu3Bundle.from_preset(cfg.model.preset, seed=int(cfg.seed), with_vq=False, decoder_overrides=shape)
    if cfg.model.vq:
        bundle.vq = load_vq(cfg.model.vq)
    if bundle.vq is None:
        raise ConfigError(
            f"no VQ tokenizer for preset {cfg.model.preset!r}: set model.vq to a folder made by "
            "`emu3-vla train-vq` (or model.checkpoint to a checkpoint that has one)"
        )
    if int(bundle.vq.config.codebook_size) != bundle.layout.codebook_size:
        raise ConfigError(
            f"the VQ codebook has {bundle.vq.config.codebook_size} codes but the model's layout expects "
            f"{bundle.layout.codebook_size}"
        )
    views = {v: ViewSpec(v, c.height, c.width) for v, c in mapping.cameras.items()}
    return VLAModel(bundle, action_tokenizer, checkpoint_state_range(spec, bundle.extra), views, inputs)


def checkpoint_state_range(spec: SequenceSpec, extra: dict) -> SequenceSpec:
    """``spec`` with the state bins of the checkpoint it fine-tunes, when both read the same state.

    A state token means "this dim is in bin k of the range the model was trained with"; refitting
    the range on the fine-tuning data (on-policy states lie elsewhere) would silently move every bin.
    A checkpoint with other state dims or bins (or none) leaves the range to be fitted on the data."""
    saved = (extra.get("vla") or {}).get("spec") or {}
    if not spec.uses_state or not saved.get("state_low"):
        return spec
    if tuple(saved.get("state_dims") or ()) != spec.state_dims or int(saved.get("state_bins", 0)) != spec.state_bins:
        return spec
    log.info("state bins: kept from the checkpoint (dims %s)", spec.state_dims)
    return dataclasses.replace(spec, state_low=tuple(saved["state_low"]), state_high=tuple(saved["state_high"]))


def build_windows(cfg: DictConfig, vla: VLAModel, source: EpisodeSource, *, progress: bool) -> WindowDataset:
    """Token cache -> training windows. A model that reads state but has no state range yet (a fresh
    run) gets it fitted here on the cached states, so the checkpoint saves the range it trained with."""
    repeats = episode_repeats(cfg, source)
    check_frame_stride(cfg.data.root, int(cfg.data.frame_stride), "data.frame_stride")
    settings = CacheSettings(chunk=vla.spec.chunk, frame_stride=int(cfg.data.frame_stride))
    cache = TokenCache.build(
        source,
        vla.vision(),
        vla.action_tokenizer,
        Path(cfg.data.cache_dir),
        settings=settings,
        views=vla.spec.views,
        progress=progress,
    )
    if vla.spec.uses_state and not vla.spec.state_low:
        vla.spec = fit_state_range(vla.spec, cache)
    if vla.spec.uses_state and vla.inputs is not None and vla.inputs.state_size is None:
        first = next((ep.state for ep in cache.episodes() if ep.state is not None), None)
        if first is not None:
            vla.inputs = dataclasses.replace(vla.inputs, state_size=int(first.shape[-1]))
    return WindowDataset(cache, vla.builder(), repeats=repeats)


def fit_state_range(spec: SequenceSpec, cache: TokenCache) -> SequenceSpec:
    """``spec`` with the state bins' ranges fitted on every cached state."""
    states = [ep.state for ep in cache.episodes()]
    if any(s is None for s in states):
        raise ConfigError(
            "sequence.state_dims reads the proprioceptive state but the dataset has none; set "
            "data.state_key to its state feature or sequence.state_dims=[]"
        )
    try:
        binning = StateBinning.fit(np.concatenate(states), spec.state_dims, spec.state_bins)
    except ValueError as err:
        raise ConfigError(f"sequence.state_dims: {err}") from err
    log.info("state bins: dims %s, low %s, high %s", binning.dims, binning.low, binning.high)
    return dataclasses.replace(spec, state_low=binning.low, state_high=binning.high)
