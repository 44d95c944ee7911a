"""The VLA training loop: cached token ids in, weighted next-token cross-entropy out.

One optimiser step processes one global batch (``batch_size`` windows over all processes), split
into micro-batches. The loss of the step is ``sum(w * ce) / sum(w)`` over the *whole* global batch:
each micro-batch's weighted sum is divided by the global weight total (all-reduced before the
backward passes) and multiplied by the world size to undo DDP's gradient averaging. So one process
with 4 micro-batches and two processes with 2 each compute the same gradient.

Exact resume: the data order is a function of (seed, step) (:mod:`.sampler`), and the checkpoint
holds the weights, the optimiser state and the RNG states, so a killed run continues bitwise
identically on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from tqdm.auto import tqdm

from emu3_vla.data.sequence import IGNORE_INDEX, collate
from emu3_vla.interrupts import deferred_interrupts
from emu3_vla.loss import action_token_mask, model_weighted_loss
from emu3_vla.modeling import count_parameters
from emu3_vla.training import data_prep, distributed, lora
from emu3_vla.training.checkpoints import CheckpointManager
from emu3_vla.training.config import ConfigError, save_config
from emu3_vla.training.ema import WeightEMA
from emu3_vla.training.precision import autocast_context, prepare_for_precision, resolve_precision
from emu3_vla.training.sampler import GlobalBatchSampler
from emu3_vla.training.schedule import lr_factor
from emu3_vla.vla import VLAModel

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.jsonl"


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    final_checkpoint: Path
    steps: int
    metrics: list[dict[str, Any]]


def _rng_state() -> dict[str, Any]:
    """All RNG states as tensors and plain numbers (loadable with ``torch.load(weights_only=True)``)."""
    _, np_key, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "key": torch.from_numpy(np_key.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _param_groups(model: torch.nn.Module, weight_decay: float, *, row_trained: bool) -> list[dict[str, Any]]:
    """No weight decay on norms and embeddings (standard for Llama-style decoders), nor on matrices of
    which only some rows train (LoRA's action rows): decay would move the frozen rows."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or "embed" in name or "norm" in name or (row_trained and "lm_head" in name)
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.env = distributed.init_distributed()
        self.run_dir = Path(cfg.run_dir)
        self.ckpts = CheckpointManager(self.run_dir, int(cfg.checkpoint.keep_last))
        self.progress = bool(cfg.progress) and self.env.is_main
        self.precision = resolve_precision(str(cfg.precision), self.env.device)  # a bad value fails here, early

    # ------------------------------------------------------------------ setup
    def _resume_source(self) -> Path | None:
        resume = str(self.cfg.resume)
        if resume == "never":
            return None
        if resume == "auto":
            return self.ckpts.dir if self.ckpts.steps() else None
        path = Path(resume)
        if not (path / "model").is_dir():
            raise ConfigError(f"resume={resume}: not a training checkpoint (expected {path}/model)")
        return path

    def setup(self) -> None:
        cfg, env = self.cfg, self.env
        _seed_everything(int(cfg.seed))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        source = data_prep.open_source(cfg)
        mapping = data_prep.data_mapping(cfg)
        chunk = mapping.chunk_length(source.fps)
        self.start_step = 0
        state = None
        resume_from = self._resume_source()
        if resume_from is not None:
            loaded = self._load_checkpoint(resume_from)
            if loaded is not None:
                self.start_step, (vla, state) = loaded
                log.info("resuming from step %d", self.start_step)
        if state is None:
            if env.is_main:
                tok = data_prep.make_action_tokenizer(cfg, source, chunk)
                tok.save(self.run_dir / "action_tokenizer")
            distributed.barrier(env)
            from action_tokenizer import load_action_tokenizer

            tok = load_action_tokenizer(self.run_dir / "action_tokenizer")
            max_len = None
            spec = data_prep.sequence_spec(cfg, mapping, chunk, max_len)
            inputs = data_prep.model_inputs(cfg, mapping, spec, tok, source)
            vla = data_prep.build_model(cfg, tok, spec, mapping, inputs)
        max_len = int(vla.bundle.decoder.config.max_position_embeddings)
        vla.spec = dataclasses.replace(vla.spec, max_length=max_len)
        self.vla = vla
        if env.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
            self.windows = data_prep.build_windows(cfg, vla, source, progress=self.progress)
        distributed.barrier(env)
        if not env.is_main:
            self.windows = data_prep.build_windows(cfg, vla, source, progress=False)
        self.layout = vla.bundle.layout

        self.lora = bool(cfg.lora.enabled)
        if self.lora and state is not None:
            # The checkpoint's model/ holds merged (or adapter) weights; LoRA resumes from its base
            # plus the adapter state saved in trainer_state.pt.
            vla.bundle.decoder = data_prep.build_model(cfg, vla.action_tokenizer, vla.spec, mapping).bundle.decoder
        decoder = vla.bundle.decoder.to(env.device)
        if state is not None and "training_weights" in state:
            # With a weight average, model/ holds the average; training continues from the raw weights.
            decoder.load_state_dict(state["training_weights"])
        decoder.config.use_cache = False
        if prepare_for_precision(decoder, self.precision, env.device):
            log.info("bf16 autocast on CPU: attention computed in fp32 (%s)", decoder.config._attn_implementation)
        if cfg.gradient_checkpointing:
            decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        decoder.train()
        self.num_parameters = count_parameters(decoder)
        strategy = distributed.choose_strategy(str(cfg.distributed.strategy), self.num_parameters)
        trainable: torch.nn.Module = decoder
        if self.lora:
            if env.distributed and strategy == "fsdp":
                raise ConfigError("LoRA fine-tuning runs in one process or with distributed.strategy=ddp")
            if str(cfg.lora.save) not in ("merged", "adapter"):
                raise ConfigError(f"lora.save must be merged or adapter, got {cfg.lora.save!r}")
            trainable = lora.apply_lora(decoder, cfg.lora, vla.bundle.layout, with_state=vla.spec.uses_state)
            if state is not None:
                lora.load_trainable_state(trainable, state["lora"])
        self.peft_model = trainable if self.lora else None
        self.ema = self._make_ema(decoder, strategy, state)
        self.model = distributed.wrap_model(trainable, env, strategy)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, float(cfg.optim.weight_decay), row_trained=self.lora),
            lr=float(cfg.optim.lr),
            betas=tuple(cfg.optim.betas),
            eps=float(cfg.optim.eps),
        )
        if state is not None:
            set_optimizer_state_dict(
                self.model, self.optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True)
            )
            _set_rng_state(state["rng"])
        self.sampler = GlobalBatchSampler(len(self.windows), int(cfg.batch_size), int(cfg.seed))
        per_rank = int(cfg.batch_size) // env.world_size
        if int(cfg.batch_size) % env.world_size:
            raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the {env.world_size} processes")
        self.micro = int(cfg.micro_batch_size or per_rank)
        if per_rank % self.micro:
            raise ConfigError(f"micro_batch_size={self.micro} must divide the per-process batch {per_rank}")
        self._truncate_metrics(self.start_step)
        if env.is_main:
            log.info(
                "training %s parameters (%s) on %d windows from %d episodes, %d process(es) on %s",
                f"{self.num_parameters:,}",
                strategy if env.distributed else "single process",
                len(self.windows),
                len(self.windows.episodes),
                env.world_size,
                env.device,
            )

    def _make_ema(self, decoder: torch.nn.Module, strategy: str, state: dict | None) -> WeightEMA | None:
        decay = float(OmegaConf.select(self.cfg, "ema.decay", default=0.0) or 0.0)
        if decay == 0.0:
            return None
        if self.lora:
            raise ConfigError("ema.decay averages full weights; with lora.enabled=true set ema.decay=0")
        if self.env.distributed and strategy == "fsdp":
            raise ConfigError(
                "ema.decay needs whole weights on every process: use distributed.strategy=ddp or ema.decay=0"
            )
        try:
            ema = WeightEMA(decoder, decay)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        if state is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        return ema

    def _load_checkpoint(self, where: Path) -> tuple[int, tuple[VLAModel, dict]] | None:
        def load(path: Path) -> tuple[VLAModel, dict]:
            vla = VLAModel.load(path / "model")
            state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
            return vla, state

        if where == self.ckpts.dir:
            return self.ckpts.load_latest(load)
        state = torch.load(where / STATE_FILE, map_location="cpu", weights_only=True)
        return int(state["step"]), load(where)

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines a killed run logged after the checkpoint it resumes from."""
        path = self.run_dir / METRICS_FILE
        if not self.env.is_main or not path.is_file():
            return
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))

    # ------------------------------------------------------------------- step
    def _micro_batches(self, step: int) -> list[dict[str, torch.Tensor]]:
        idx = self.sampler.rank_slice(step, self.env.rank, self.env.world_size)
        pad = self.layout.pad_id
        batches = [
            collate([self.windows[int(i)] for i in idx[j : j + self.micro]], pad)
            for j in range(0, len(idx), self.micro)
        ]
        if step < int(self.cfg.loss.get("vision_from_step") or 0):  # the action-only phase of a schedule
            for batch in batches:
                actions = action_token_mask(batch["input_ids"], self.layout)
                batch["loss_weights"] = torch.where(actions, batch["loss_weights"], 0.0)
                batch["labels"] = torch.where(actions, batch["labels"], IGNORE_INDEX)
        return batches

    def train_step(self, step: int) -> dict[str, float]:
        cfg, env = self.cfg, self.env
        batches = self._micro_batches(step)
        local_weight = torch.stack([b["loss_weights"][:, 1:].sum() for b in batches]).sum().double()
        total_weight = distributed.all_reduce_sum(local_weight.to(env.device), env).float()
        sums = torch.zeros(5, dtype=torch.float64, device=env.device)  # wce, action ce, count, correct, tokens
        for k, batch in enumerate(batches):
            batch = {key: t.to(env.device) for key, t in batch.items()}
            with distributed.no_gradient_sync(self.model, sync=k == len(batches) - 1):
                parts = model_weighted_loss(
                    self.model, batch, self.layout, lambda: autocast_context(self.precision, env.device)
                )
                (parts.weighted_ce / total_weight * env.world_size).backward()
            sums += torch.stack(
                [
                    parts.weighted_ce.detach().double(),
                    parts.action_ce.double(),
                    parts.action_count.double(),
                    parts.action_correct.double(),
                    batch["attention_mask"].sum().double(),
                ]
            )
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(cfg.max_grad_norm))
        lr = float(cfg.optim.lr) * lr_factor(
            step,
            total_steps=int(cfg.steps),
            warmup_steps=int(cfg.schedule.warmup_steps),
            min_ratio=float(cfg.schedule.min_lr_ratio),
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.vla.bundle.decoder)
        sums = distributed.all_reduce_sum(sums, env)
        return {
            "step": step + 1,
            "loss": float(sums[0] / total_weight.double()),
            "action_ce": float(sums[1] / sums[2].clamp_min(1)),
            "action_acc": float(sums[3] / sums[2].clamp_min(1)),
            "lr": lr,
            "grad_norm": float(grad_norm),
            "tokens": float(sums[4]),
        }

    # ------------------------------------------------------------- checkpoint
    def save_checkpoint(self, step: int) -> Path:
        """Gather full (unsharded) weights and optimiser state on every process; rank 0 writes them."""
        distributed.barrier(self.env)
        path = self.ckpts.path(step)
        full = StateDictOptions(full_state_dict=True, cpu_offload=True)
        if self.lora:
            model_state = lora.merged_state_dict(self.peft_model)
        else:
            model_state = get_model_state_dict(self.model, options=full)
        optim_state = get_optimizer_state_dict(self.model, self.optimizer, options=full)
        if self.env.is_main:
            state = {"step": step, "optimizer": optim_state, "rng": _rng_state()}
            if self.ema is not None:  # deploy the average; keep the raw weights to train on
                state["training_weights"] = model_state
                state["ema"] = self.ema.state_dict()
                model_state = self.ema.averaged(model_state)
            adapter_writer = None
            if self.lora:
                state["lora"] = lora.trainable_state(self.peft_model)
                if str(self.cfg.lora.save) == "adapter":
                    base = {
                        "checkpoint": self.cfg.model.checkpoint,
                        "preset": self.cfg.model.preset,
                        "seed": int(self.cfg.seed),
                    }

                    def adapter_writer(tmp: Path) -> None:
                        lora.save_adapter(self.peft_model, tmp, self.layout, base, with_state=self.vla.spec.uses_state)

            def write(folder: Path) -> None:
                self.vla.save(folder / "model", decoder_state_dict=model_state, adapter_writer=adapter_writer)
                torch.save(state, folder / STATE_FILE)
                save_config(self.cfg, folder / "config.yaml")

            path = self.ckpts.save(step, write, replaces=self._off_schedule_steps())
            link = self.run_dir / "model"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(path.relative_to(self.run_dir) / "model", target_is_directory=True)
        distributed.barrier(self.env)
        return path

    def _off_schedule_steps(self) -> list[int]:
        """Saved steps that are neither a multiple of ``checkpoint.every`` nor the last: checkpoints an
        interrupted run left. The next checkpoint replaces them, so a resumed run keeps the same
        checkpoints (and the demo's learning curve the same points) as one never interrupted."""
        every, total = int(self.cfg.checkpoint.every), int(self.cfg.steps)
        return [s for s in self.ckpts.steps() if s % every and s != total]

    def _save_on_interrupt(self, finished: int) -> None:
        """Ctrl-C / SIGTERM: keep the steps finished since the last checkpoint, so a restart loses
        nothing (one process only: in a process group the others may be gone and the gather hang)."""
        if finished <= self.start_step or self.env.distributed:
            return
        path = self.ckpts.path(finished)
        if not path.exists():  # else the signal came right after a scheduled checkpoint
            with deferred_interrupts():
                path = self.save_checkpoint(finished)
        log.warning("interrupted after step %d: saved %s; run the same command again to continue", finished, path)

    def _report(self, m: dict[str, Any], metrics_path: Path, wandb_run, bar, *, log_line: bool) -> None:
        """One step's metrics: a line of ``metrics.jsonl``, wandb, the progress bar (or a log line)."""
        with metrics_path.open("a") as f:
            f.write(json.dumps(m) + "\n")
        if wandb_run is not None:
            wandb_run.log({k: v for k, v in m.items() if k != "step"}, step=m["step"])
        bar.set_postfix(loss=f"{m['loss']:.3f}", act_acc=f"{m['action_acc']:.2f}")
        if log_line:
            log.info("step %d loss %.4f action acc %.3f lr %.2e", m["step"], m["loss"], m["action_acc"], m["lr"])

    # -------------------------------------------------------------------- run
    def fit(self) -> TrainResult:
        cfg, env = self.cfg, self.env
        total = int(cfg.steps)
        wandb_run = self._init_wandb()
        metrics_path = self.run_dir / METRICS_FILE
        history: list[dict[str, Any]] = []
        bar = tqdm(
            range(self.start_step, total), desc="train", disable=not self.progress, initial=self.start_step, total=total
        )
        t_last, tokens_since = time.perf_counter(), 0.0
        last_path = self.ckpts.path(self.start_step)
        try:
            for step in bar:
                # Ctrl-C / SIGTERM land between steps, never inside one, and save what is finished.
                with deferred_interrupts():
                    m = self.train_step(step)
                    if not math.isfinite(m["loss"]):
                        raise FloatingPointError(f"loss became {m['loss']} at step {step + 1}; lower optim.lr")
                    tokens_since += m["tokens"]
                    now = time.perf_counter()
                    m["tokens_per_s"] = tokens_since / max(now - t_last, 1e-9)
                    m["epoch"] = self.sampler.epoch_of(step + 1)
                    history.append(m)
                    log_line = (step + 1) % int(cfg.log_every) == 0
                    if log_line:
                        t_last, tokens_since = now, 0.0
                    if env.is_main:
                        self._report(m, metrics_path, wandb_run, bar, log_line=log_line and not self.progress)
                    if (step + 1) % int(cfg.checkpoint.every) == 0 or step + 1 == total:
                        last_path = self.save_checkpoint(step + 1)
        except KeyboardInterrupt:
            self._save_on_interrupt(self.start_step + len(history))
            raise
        if env.is_main:
            plot_loss(metrics_path, self.run_dir / "loss.png")
        if wandb_run is not None:
            wandb_run.finish()
        distributed.shutdown(env)
        return TrainResult(self.run_dir, last_path / "model", total, history)

    def _init_wandb(self):
        if not self.env.is_main or str(self.cfg.wandb.mode) == "disabled":
            return None
        import wandb

        return wandb.init(
            project=str(self.cfg.wandb.project),
            name=self.cfg.wandb.name,
            mode=str(self.cfg.wandb.mode),
            dir=str(self.run_dir),
            config=OmegaConf.to_container(self.cfg, resolve=True),
            resume="allow",
        )


def plot_loss(metrics_path: Path, out: Path) -> None:
    """Loss and action accuracy against step, from ``metrics.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(steps, [r["loss"] for r in rows], label="weighted loss")
    ax[0].plot(steps, [r["action_ce"] for r in rows], label="action CE")
    ax[0].set_xlabel("step")
    ax[0].set_yscale("log")
    ax[0].legend()
    ax[1].plot(steps, [r["action_acc"] for r in rows])
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("action token accuracy")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def train(cfg: DictConfig) -> TrainResult:
    trainer = Trainer(cfg)
    trainer.setup()
    return trainer.fit()
