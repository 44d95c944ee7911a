"""Client-side ("edge") VQ tokenisation: turn camera images into the codes a server would compute.

The Emu3 paper tokenises images on the robot so that only a few hundred integers travel to the
model. A client does that with :class:`EdgeTokenizer`, built from the served checkpoint; it loads
only the VQ tokenizer and the camera view sizes, never the decoder. Because codes from a different
VQ are still valid integers, server and client compare a fingerprint of the VQ weights
(:func:`vq_fingerprint`, sent in the server metadata) before any code is trusted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from emu3_vla.checkpoint import MARKER, CheckpointError, load_vq
from emu3_vla.vision import ViewSpec, VisionTokenizer


def vq_fingerprint(vq: torch.nn.Module) -> str:
    """A short hash of every VQ weight (as float32), stable across devices and processes."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(vq.state_dict().items()):
        array = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
        digest.update(f"{name}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def checkpoint_views(folder: str | Path) -> dict[str, ViewSpec]:
    """The camera views (name -> size) a VLA checkpoint was trained with, read from its marker file."""
    marker = Path(folder) / MARKER
    try:
        views = json.loads(marker.read_text())["extra"]["vla"]["views"]
    except FileNotFoundError:
        raise CheckpointError(f"{folder} is not an emu3-vla checkpoint (no {MARKER})") from None
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{marker} has no VLA camera views ({err}); is this a trained VLA checkpoint?") from err
    return {name: ViewSpec(name, int(h), int(w)) for name, (h, w) in views.items()}


class EdgeTokenizer:
    """Images -> VQ codes with a checkpoint's VQ tokenizer, exactly as the server's VQ pass does."""

    def __init__(self, vision: VisionTokenizer) -> None:
        self.vision = vision
        self.fingerprint = vq_fingerprint(vision.vq)

    @classmethod
    def from_checkpoint(cls, folder: str | Path, *, device: str | torch.device = "cpu") -> EdgeTokenizer:
        views = checkpoint_views(folder)
        return cls(VisionTokenizer(load_vq(folder, device=device), views))

    @property
    def views(self) -> dict[str, ViewSpec]:
        return self.vision.views

    def encode(self, view: str, images: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` or ``(B, H, W, 3)`` uint8 -> ``(h, w)`` or ``(B, h, w)`` int32 codes."""
        images = np.asarray(images)
        if not images.flags.writeable:  # decoded files and simulator frames may be read-only; torch wants writable
            images = images.copy()
        single = images.ndim == 3
        batch = images[None] if single else images
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise ValueError(
                f"view {view!r}: expected uint8 images (H, W, 3) or (B, H, W, 3), got {images.shape} {images.dtype}"
            )
        codes = self.vision.encode_view(batch, view).numpy().astype(np.int32)
        return codes[0] if single else codes
