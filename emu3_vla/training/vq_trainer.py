"""Train or fine-tune the Emu3 VQ tokenizer on camera frames (``emu3-vla train-vq``).

No pretrained Emu3 VQ weights exist on these machines, so the small presets' tokenizer is trained
here from playtable frames. The network is ``transformers.Emu3VQVAE`` unchanged; training adds what
the stock (inference-only) class lacks:

* straight-through quantisation with the VQ-VAE losses: reconstruction L2, codebook
  ``|sg(z) - e|^2`` and commitment ``beta |z - sg(e)|^2``;
* codebook initialisation from encoder outputs and restarts of dead codes (codes unused for a
  while are moved onto random recent encoder outputs), so a small codebook is actually used;
* an optional PatchGAN adversarial loss (hinge), switched on after ``gan_start`` steps;
* a perceptual (LPIPS) loss only when its weights exist locally (``perceptual_weights``); nothing is
  downloaded;
* training on random crops: the tokenizer is convolutional, so crops teach it at a fraction of the
  cost of whole 200x200 frames; reconstruction PSNR is measured on whole held-out frames.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from emu3_vla.checkpoint import quiet_transformers
from emu3_vla.modeling import build_vq
from emu3_vla.vision import VisionTokenizer, to_pixels

log = logging.getLogger(__name__)


@dataclasses.dataclass
class VQTrainConfig:
    preset: str = "tiny"
    init: str | None = None  # a VQ folder to fine-tune instead of starting from random weights
    steps: int = 2000
    batch_size: int = 16
    crop: int = 64
    lr: float = 4e-4
    beta: float = 0.25  # commitment weight
    gan_weight: float = 0.0
    gan_start: int = 1000
    perceptual_weights: str | None = None
    dead_code_every: int = 100
    ae_warmup: int = 0  # first steps train a plain autoencoder (no quantisation); the codebook then
    #                     starts from k-means of its latents: much faster than learning both at once
    seed: int = 0
    eval_every: int = 500
    progress: bool = True


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio of two uint8 image batches, in dB."""
    mse = F.mse_loss(a.float(), b.float()).item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


class PatchDiscriminator(torch.nn.Module):
    """A small PatchGAN critic (the usual VQGAN adversary), sized for CPU training."""

    def __init__(self, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        mods: list[torch.nn.Module] = [torch.nn.Conv2d(3, channels, 4, 2, 1), torch.nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(1, layers):
            mods += [torch.nn.Conv2d(c, c * 2, 4, 2, 1), torch.nn.GroupNorm(8, c * 2), torch.nn.LeakyReLU(0.2)]
            c *= 2
        mods += [torch.nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = torch.nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FramePool:
    """Frames of each camera view held in memory, split into training and held-out frames."""

    def __init__(self, frames_by_view: dict[str, np.ndarray], held_out: float = 0.1, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.train: dict[str, np.ndarray] = {}
        self.test: dict[str, np.ndarray] = {}
        for view, frames in frames_by_view.items():
            n_test = max(1, int(len(frames) * held_out))
            # hold out a contiguous tail (later episodes), not random frames of the same episodes
            self.test[view] = frames[-n_test:]
            self.train[view] = frames[:-n_test] if len(frames) > n_test else frames
        self.rng = rng

    def crops(self, n: int, size: int) -> np.ndarray:
        """``n`` random ``size`` x ``size`` crops, views mixed in proportion to their frame counts."""
        views = list(self.train)
        weights = np.array([len(self.train[v]) for v in views], dtype=np.float64)
        choice = self.rng.choice(len(views), size=n, p=weights / weights.sum())
        out = np.empty((n, size, size, 3), dtype=np.uint8)
        for k, vi in enumerate(choice):
            frames = self.train[views[vi]]
            img = frames[self.rng.integers(len(frames))]
            h, w = img.shape[:2]
            s = min(size, h, w)
            y, x = self.rng.integers(0, h - s + 1), self.rng.integers(0, w - s + 1)
            patch = img[y : y + s, x : x + s]
            if s != size:
                patch = np.asarray(
                    torch.nn.functional.interpolate(
                        torch.as_tensor(patch).permute(2, 0, 1)[None].float(), size=(size, size), mode="bilinear"
                    )[0]
                    .permute(1, 2, 0)
                    .round()
                    .clamp(0, 255)
                    .to(torch.uint8)
                )
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[k] = patch
        return out


class VQTrainer:
    def __init__(self, cfg: VQTrainConfig, pool: FramePool, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.pool = pool
        self.device = torch.device(device)
        torch.manual_seed(cfg.seed)
        if cfg.init:
            from emu3_vla.checkpoint import load_vq

            vq = load_vq(cfg.init, device=self.device)
        else:
            vq = build_vq(cfg.preset, seed=cfg.seed, device=self.device)
        self.vision = VisionTokenizer(vq)
        self.vq = vq.train()
        self.opt = torch.optim.Adam(self.vq.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.disc = PatchDiscriminator().to(self.device) if cfg.gan_weight > 0 else None
        self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9)) if self.disc else None
        self.perceptual = self._perceptual(cfg.perceptual_weights)
        self.usage = torch.zeros(self.vision.codebook_size, device=self.device)
        self.recent: torch.Tensor | None = None
        self.history: list[dict[str, float]] = []

    def _perceptual(self, weights: str | None):
        if not weights:
            return None
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"perceptual_weights={weights} does not exist; LPIPS needs local weights (nothing is downloaded)"
            )
        return torch.jit.load(str(path), map_location=self.device).eval()

    # --------------------------------------------------------------- codebook
    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z (B, T, E, h, w)`` -> straight-through quantised latents, codebook+commitment loss, codes."""
        codes = self.vision.nearest_codes(z)
        e = self.vision.code_embeddings(codes)
        vq_loss = F.mse_loss(e, z.detach()) + self.cfg.beta * F.mse_loss(z, e.detach())
        return z + (e - z).detach(), vq_loss, codes

    @torch.no_grad()
    def _init_codebook(self, z: torch.Tensor, kmeans_iters: int = 0) -> None:
        """Codebook from encoder outputs: random picks, refined by a few k-means iterations."""
        flat = z.permute(0, 1, 3, 4, 2).reshape(-1, z.shape[2])
        idx = torch.randint(len(flat), (self.vision.codebook_size,))
        codebook = flat[idx] + 1e-3 * torch.randn_like(flat[idx])
        for _ in range(kmeans_iters):
            assign = torch.cdist(flat, codebook).argmin(1)
            sums = torch.zeros_like(codebook).index_add_(0, assign, flat)
            counts = torch.bincount(assign, minlength=len(codebook)).float()
            codebook = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], codebook)
        self.vq.quantize.embedding.weight.copy_(codebook)

    @torch.no_grad()
    def _latents_for_kmeans(self, batches: int = 8) -> torch.Tensor:
        return torch.cat(
            [
                self.vision.encode_latents(to_pixels(self.pool.crops(self.cfg.batch_size, self.cfg.crop), self.device))
                for _ in range(batches)
            ]
        )

    @torch.no_grad()
    def _restart_dead_codes(self) -> int:
        dead = self.usage < 1e-3
        if self.recent is None or not dead.any():
            return 0
        idx = torch.randint(len(self.recent), (int(dead.sum()),))
        self.vq.quantize.embedding.weight[dead] = self.recent[idx] + 1e-3 * torch.randn_like(self.recent[idx])
        self.usage.zero_()
        return int(dead.sum())

    # ------------------------------------------------------------------ steps
    def step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        images = self.pool.crops(cfg.batch_size, cfg.crop)
        x = to_pixels(images, self.device)
        z = self.vision.encode_latents(x)
        warming = step < cfg.ae_warmup and not cfg.init
        if step == cfg.ae_warmup and not cfg.init:
            self._init_codebook(self._latents_for_kmeans(), kmeans_iters=10 if cfg.ae_warmup else 0)
        if warming:  # continuous latents straight into the decoder
            zq, vq_loss, codes = z, torch.zeros((), device=z.device), self.vision.nearest_codes(z.detach())
        else:
            zq, vq_loss, codes = self._quantize(z)
        recon = self.vision.decode_latents(zq, still=True)
        rec_loss = F.mse_loss(recon, x)
        loss = rec_loss + vq_loss
        out = {"rec": rec_loss.item(), "vq": vq_loss.item()}
        if self.perceptual is not None:
            p = self.perceptual(recon, x).mean()
            loss = loss + p
            out["perceptual"] = p.item()
        use_gan = self.disc is not None and step >= cfg.gan_start
        if use_gan:
            g = -self.disc(recon).mean()
            loss = loss + cfg.gan_weight * g
            out["gan_g"] = g.item()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.vq.parameters(), 1.0)
        self.opt.step()
        if use_gan:
            d_loss = F.relu(1 - self.disc(x)).mean() + F.relu(1 + self.disc(recon.detach())).mean()
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()
            out["gan_d"] = d_loss.item()
        with torch.no_grad():
            counts = torch.bincount(codes.flatten(), minlength=self.vision.codebook_size).float()
            self.usage.mul_(0.99).add_(counts, alpha=0.01)
            self.recent = z.detach().permute(0, 1, 3, 4, 2).reshape(-1, z.shape[2])
        if not warming and cfg.dead_code_every and (step + 1) % cfg.dead_code_every == 0 and step + 1 < cfg.steps * 0.8:
            out["restarted"] = float(self._restart_dead_codes())
        out["used_codes"] = float((counts > 0).sum())
        return out

    @torch.no_grad()
    def evaluate(self, max_frames: int = 64) -> dict[str, float]:
        """PSNR of whole held-out frames (encode -> codes -> decode), per view, and codebook usage."""
        self.vq.eval()
        report: dict[str, float] = {}
        used = torch.zeros(self.vision.codebook_size, dtype=torch.bool)
        for view, frames in self.pool.test.items():
            frames = frames[:max_frames]
            codes = self.vision.encode_images(frames, batch_size=16)
            used[codes.flatten().unique()] = True
            recon = self.vision.decode_images(codes, batch_size=16)
            report[f"psnr_{view}"] = psnr(recon, torch.as_tensor(frames))
        report["codebook_usage"] = float(used.float().mean())
        self.vq.train()
        return report

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        t0 = time.perf_counter()
        bar = tqdm(range(cfg.steps), desc="train-vq", disable=not cfg.progress)
        for step in bar:
            m = self.step(step)
            m["step"] = step + 1
            self.history.append(m)
            bar.set_postfix(rec=f"{m['rec']:.4f}", codes=int(m["used_codes"]))
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
                log.info("step %d: %s", step + 1, self.evaluate(16))
        report = self.evaluate()
        report.update(steps=cfg.steps, seconds=round(time.perf_counter() - t0, 1))
        return report

    def save(self, folder: str | Path, report: dict[str, Any]) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.vq.eval()
        with quiet_transformers():
            self.vq.save_pretrained(folder / "vq", safe_serialization=True)
        (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        with (folder / "metrics.jsonl").open("w") as f:
            for m in self.history:
                f.write(json.dumps(m) + "\n")
        self._save_examples(folder / "reconstructions.png")
        return folder

    @torch.no_grad()
    def _save_examples(self, path: Path) -> None:
        from PIL import Image

        rows = []
        for frames in self.pool.test.values():
            sample = frames[:4]
            recon = self.vision.decode_images(self.vision.encode_images(sample)).numpy()
            rows.append(np.concatenate([np.concatenate(list(sample), axis=1), np.concatenate(list(recon), axis=1)]))
        width = max(r.shape[1] for r in rows)
        padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
        Image.fromarray(np.concatenate(padded)).save(path)
