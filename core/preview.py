"""Live previews: latents -> a small RGB image, by the model's tiny autoencoder when it has one
(TAESD: a real decode, ~0.1 s at preview size on a CPU), else by a fixed linear projection.

Stable Diffusion's 4 latent channels are close to a linear function of colour, so a 4x3 matrix
gives a recognisable preview at the latent size (64x64 for a 512-px image) in a few
milliseconds, with no extra model. The coefficients are the widely used least-squares fits (as
in ComfyUI and A1111's "approximate" preview); SDXL's VAE has its own latent space and factors.
"""

from __future__ import annotations

import torch
from PIL import Image

# family -> (4x3 matrix: latent channel -> R, G, B; bias per colour), giving colours in [-1, 1]
_PROJECTIONS: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]] = {
    "sd": (
        (
            (0.3512, 0.2297, 0.3227),
            (0.3250, 0.4974, 0.2350),
            (-0.2829, 0.1762, 0.2721),
            (-0.2120, -0.2616, -0.7177),
        ),
        (0.0, 0.0, 0.0),
    ),
    "sdxl": (
        (
            (0.3651, 0.4232, 0.4341),
            (-0.2533, -0.0042, 0.1068),
            (0.1076, 0.1111, -0.0362),
            (-0.3165, -0.2492, -0.2188),
        ),
        (0.1084, -0.0175, -0.0011),
    ),
}
FAMILIES = tuple(_PROJECTIONS)


PREVIEW_LATENT_SIDE = 48  # latents are shrunk to this before a tiny decode: a 384-px preview


def tiny_decoded(latents: torch.Tensor, tiny_vae) -> Image.Image:
    """The first image of a latent batch through a diffusers AutoencoderTiny, at preview size.
    Latents are the UNet's (scaled) ones, which is what TAESD decodes (its scaling factor is 1)."""
    with torch.inference_mode():
        first = latents[:1].detach().to(device=tiny_vae.device, dtype=tiny_vae.dtype)
        side = max(first.shape[-2:])
        if side > PREVIEW_LATENT_SIDE:
            scale = PREVIEW_LATENT_SIDE / side
            size = (max(1, round(first.shape[-2] * scale)), max(1, round(first.shape[-1] * scale)))
            first = torch.nn.functional.interpolate(first, size=size, mode="area")
        rgb = tiny_vae.decode(first).sample[0].float().cpu()  # in [-1, 1]
        pixels = ((rgb.permute(1, 2, 0) + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


def latents_to_rgb(latents: torch.Tensor, family: str = "sd") -> Image.Image:
    """The first image of a (batch, 4, h, w) or (4, h, w) latent tensor as an RGB image of w x h."""
    if family not in _PROJECTIONS:
        raise ValueError(f"latent family must be one of {FAMILIES}, got {family!r}")
    matrix, bias = _PROJECTIONS[family]
    with torch.inference_mode():
        first = latents[0] if latents.ndim == 4 else latents
        if first.ndim != 3 or first.shape[0] != len(matrix):
            raise ValueError(f"expected latents with {len(matrix)} channels, got shape {tuple(latents.shape)}")
        first = first.detach().to(device="cpu", dtype=torch.float32)
        rgb = torch.einsum("chw,cr->hwr", first, torch.tensor(matrix)) + torch.tensor(bias)
        pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")
