"""Images and video clips <-> VQ codes, around ``transformers.Emu3VQVAE``.

Shapes follow the Emu3 tokenizer: 8x spatial compression and 4x temporal compression.

* images ``(B, H, W, 3) uint8`` -> codes ``(B, H/8, W/8)``; an image is a 4-frame still clip
  (Emu3 repeats it in time) that yields one code frame;
* a clip ``(T, H, W, 3)`` -> codes ``(T/4, H/8, W/8)``;
* codes -> images / clips (``uint8``).

Camera views are resized to their configured size first (:class:`ViewSpec`): CALVIN's 200x200
static view stays 200x200 (25x25 codes), the 84x84 wrist view becomes 80x80 (10x10 codes).

For still images the 2-D part of the encoder and decoder runs once per image instead of once per
repeated frame: the four repeated frames are identical and the 2-D layers treat frames
independently, so the result equals ``Emu3VQVAE.encode`` / ``decode`` exactly at a quarter of the
cost (``tests/test_vision.py`` checks the equality against the stock methods).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Emu3VQVAE

from emu3_vla.views import CALVIN_VIEWS, ViewSpec


def to_pixels(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(..., H, W, 3) uint8`` -> ``(..., 3, H, W) float32`` in [-1, 1] (Emu3's normalisation)."""
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (…, H, W, 3), got dtype {t.dtype}")
    if t.shape[-1] != 3:
        raise ValueError(f"images must have 3 channels last, got shape {tuple(t.shape)}")
    return t.to(device).movedim(-1, -3).float().div_(127.5).sub_(1.0)


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` in [-1, 1] -> ``(..., H, W, 3) uint8``."""
    return pixels.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(-3, -1).cpu()


def resize_images(images: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``(B, H, W, 3) uint8`` with antialiased bilinear filtering; a no-op at the same size."""
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if t.shape[-3:-1] == (height, width):
        return t
    x = t.movedim(-1, -3).float()
    lead = x.shape[:-3]
    x = x.reshape(-1, *x.shape[-3:])
    y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8).reshape(*lead, 3, height, width).movedim(-3, -1)


class VisionTokenizer:
    """The Emu3 VQ tokenizer with uint8 images in and out, camera views, and training hooks."""

    def __init__(self, vq: Emu3VQVAE, views: Mapping[str, ViewSpec] | None = None) -> None:
        self.vq = vq
        self.views = dict(CALVIN_VIEWS if views is None else views)
        self.spatial_factor = 2 ** (len(vq.config.channel_multiplier) - 1)
        self.temporal_factor = int(vq.config.temporal_downsample_factor)
        self.codebook_size = int(vq.config.codebook_size)

    @property
    def device(self) -> torch.device:
        return next(self.vq.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vq.parameters()).dtype

    # ------------------------------------------------------------------ checks
    def _check_spatial(self, height: int, width: int) -> None:
        f = self.spatial_factor
        if height % f or width % f:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of the tokenizer's {f}x compression; "
                f"resize to a multiple of {f} (e.g. with ViewSpec / resize_images)"
            )

    def view(self, name: str) -> ViewSpec:
        try:
            return self.views[name]
        except KeyError:
            raise KeyError(f"unknown camera view {name!r}; configured views: {sorted(self.views)}") from None

    # ------------------------------------------------------- continuous parts
    def encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, 3, H, W)`` (images) or ``(B, T, 3, H, W)`` (clips) -> pre-quantisation
        latents ``(B, T/4, E, h, w)``. Differentiable; used by encoding and by VQ training."""
        enc = self.vq.encoder
        is_image = pixels.ndim == 4
        if is_image:
            b = pixels.shape[0]
            t = self.temporal_factor
        else:
            b, t = pixels.shape[:2]
            if t % self.temporal_factor:
                raise ValueError(
                    f"a clip of {t} frames is not a multiple of the temporal compression "
                    f"{self.temporal_factor}; trim or pad it to {t - t % self.temporal_factor or self.temporal_factor}"
                )
            pixels = pixels.reshape(b * t, *pixels.shape[2:])
        self._check_spatial(*pixels.shape[-2:])
        h = enc.conv_in(pixels.to(self.dtype))
        h = enc.down_block(h)
        h = enc.middle_block(h)
        h = enc.norm_out(h)
        h = h * torch.sigmoid(h)
        h = enc.conv_out(h)
        if is_image:  # the 4 repeated frames are identical after the 2-D stack
            h = h.unsqueeze(1).expand(b, t, *h.shape[1:])
        else:
            h = h.reshape(b, t, *h.shape[1:])
        h = h.permute(0, 2, 1, 3, 4)  # b c t h w
        for conv in enc.time_conv:
            h = conv(h)
            h = h * torch.sigmoid(h)
        for layer in enc.time_res_stack:
            h = layer(h)
        h = self.vq.quant_conv(h)
        return h.permute(0, 2, 1, 3, 4).contiguous()

    def nearest_codes(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, T, E, h, w)`` latents -> ``(B, T, h, w)`` code indices (the stock quantiser)."""
        return self.vq.quantize(latents)

    def code_embeddings(self, codes: torch.Tensor) -> torch.Tensor:
        """``(B, T, h, w)`` codes -> ``(B, T, E, h, w)`` codebook vectors."""
        return self.vq.quantize.embedding(codes).permute(0, 1, 4, 2, 3)

    def decode_latents(self, quant: torch.Tensor, *, still: bool = False) -> torch.Tensor:
        """Quantised latents ``(B, T, E, h, w)`` -> pixels ``(B, 4T, 3, H, W)``, or ``(B, 3, H, W)``
        with ``still=True`` (only the first decoded frame, as ``Emu3VQVAE.decode`` returns for an
        image, computed without decoding the other three)."""
        dec = self.vq.decoder
        b = quant.shape[0]
        q = quant.permute(0, 2, 1, 3, 4)  # b e t h w
        post = self.vq.post_quant_conv(q)
        both = torch.cat([post, q], dim=0)
        for layer in dec.time_res_stack:
            both = layer(both)
        for layer in dec.time_conv:
            both = layer(both)
            both = both * torch.sigmoid(both)
        both = both.permute(0, 2, 1, 3, 4)  # 2b t' c h w
        hidden, qs = torch.chunk(both, 2, dim=0)
        frames = hidden.shape[1]
        if still:
            hidden, qs, frames = hidden[:, :1], qs[:, :1], 1
        hidden = hidden.reshape(-1, *hidden.shape[2:])
        qs = qs.reshape(-1, *qs.shape[2:])
        x = dec.conv_in(hidden)
        x = dec.middle_block(x, qs)
        x = dec.up_block(x, qs)
        x = dec.norm_out(x, qs)
        x = x * torch.sigmoid(x)
        x = dec.conv_out(x)
        x = x.reshape(b, frames, *x.shape[1:])
        return x[:, 0] if still else x

    # --------------------------------------------------------------- uint8 API
    @torch.no_grad()
    def encode_images(self, images: np.ndarray | torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """``(B, H, W, 3) uint8`` -> ``(B, H/8, W/8) int64`` codes (on CPU)."""
        t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if t.ndim != 4:
            raise ValueError(f"expected images (B, H, W, 3), got shape {tuple(t.shape)}")
        out = []
        for start in range(0, t.shape[0], batch_size):
            pixels = to_pixels(t[start : start + batch_size], self.device)
            out.append(self.nearest_codes(self.encode_latents(pixels))[:, 0].cpu())
        if not out:
            h, w = t.shape[1] // self.spatial_factor, t.shape[2] // self.spatial_factor
            return torch.empty(0, h, w, dtype=torch.long)
        return torch.cat(out)

    @torch.no_grad()
    def encode_video(self, clip: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(T, H, W, 3) uint8`` -> ``(T/4, H/8, W/8) int64`` codes."""
        t = torch.as_tensor(np.asarray(clip) if not isinstance(clip, torch.Tensor) else clip)
        if t.ndim != 4:
            raise ValueError(f"expected a clip (T, H, W, 3), got shape {tuple(t.shape)}")
        pixels = to_pixels(t, self.device).unsqueeze(0)
        return self.nearest_codes(self.encode_latents(pixels))[0].cpu()

    @torch.no_grad()
    def decode_images(self, codes: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """``(B, h, w)`` codes -> ``(B, 8h, 8w, 3) uint8`` images."""
        codes = torch.as_tensor(codes, dtype=torch.long)
        self._check_codes(codes)
        out = []
        for start in range(0, codes.shape[0], batch_size):
            chunk = codes[start : start + batch_size].to(self.device).unsqueeze(1)
            out.append(to_uint8(self.decode_latents(self.code_embeddings(chunk), still=True)))
        return torch.cat(out) if out else torch.empty(0, 0, 0, 3, dtype=torch.uint8)

    @torch.no_grad()
    def decode_video(self, codes: torch.Tensor) -> torch.Tensor:
        """``(T', h, w)`` codes -> ``(4T', 8h, 8w, 3) uint8`` frames."""
        codes = torch.as_tensor(codes, dtype=torch.long)
        self._check_codes(codes)
        quant = self.code_embeddings(codes.to(self.device).unsqueeze(0))
        return to_uint8(self.decode_latents(quant)[0])

    def _check_codes(self, codes: torch.Tensor) -> None:
        if codes.ndim != 3:
            raise ValueError(f"expected codes (N, h, w), got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}); got [{int(codes.min())}, {int(codes.max())}]"
            )

    # ------------------------------------------------------------------ views
    def prepare_view(self, images: np.ndarray | torch.Tensor, view: str) -> torch.Tensor:
        spec = self.view(view)
        return resize_images(images, spec.height, spec.width)

    def encode_view(self, images: np.ndarray | torch.Tensor, view: str) -> torch.Tensor:
        """Resize camera images to the view's size, then encode: ``(B, H, W, 3)`` -> ``(B, h, w)``."""
        return self.encode_images(self.prepare_view(images, view))
