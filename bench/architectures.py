"""Real-size Stable Diffusion architectures with random weights, built offline from their configs.

Speed and memory depend only on the architecture, so these stand in for the real downloads (the
Hub is not reachable here): SD-Turbo (= SD 2.1: 865 M UNet, OpenCLIP-H text encoder, SD VAE) and
SD 1.5 Inpainting (9-input-channel UNet, CLIP-L text encoder, SD VAE), plus TAESD (diffusers
`AutoencoderTiny` with its default config, which is TAESD's). Configs are those the public repos
ship (stabilityai/sd-turbo, stable-diffusion-v1-5/stable-diffusion-inpainting, madebyollin/taesd).
The tokenizer is the test suite's small CLIP-style BPE: token ids, not vocabulary, reach the model.

    python -m bench.architectures FOLDER   # builds sd-turbo/, sd15-inpainting/, taesd/ once
"""

from __future__ import annotations

import sys
from pathlib import Path

_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
_UNET_COMMON = {
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
}
ARCHITECTURES = {
    "sd-turbo": {
        "unet": {
            **_UNET_COMMON,
            "in_channels": 4,
            "cross_attention_dim": 1024,
            "attention_head_dim": (5, 10, 20, 20),
            "use_linear_projection": True,
        },
        # OpenCLIP ViT-H/14's text tower as diffusers loads it (SD 2.x uses the penultimate layer: 23).
        "text": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16, "hidden_act": "gelu"},
        "scheduler": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
        "pipeline": "StableDiffusionPipeline",
    },
    "sd15-inpainting": {
        "unet": {**_UNET_COMMON, "in_channels": 9, "cross_attention_dim": 768, "attention_head_dim": 8},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12, "hidden_act": "quick_gelu"},
        "scheduler": ("PNDMScheduler", {"skip_prk_steps": True}),
        "pipeline": "StableDiffusionInpaintPipeline",
    },
}


def build(root: Path, names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Save every architecture (or only `names`) and TAESD under `root`, skipping those already there."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.tiny_pipelines import write_tokenizer_files

    root = Path(root)
    chosen = {name: parts for name, parts in ARCHITECTURES.items() if names is None or name in names}
    folders = {name: root / name for name in (*chosen, "taesd")}
    if not (folders["taesd"] / "config.json").is_file():
        torch.manual_seed(0)
        diffusers.AutoencoderTiny().save_pretrained(folders["taesd"])
    for name, parts in chosen.items():
        if (folders[name] / "model_index.json").is_file():
            continue
        vocab = write_tokenizer_files(root / "tokenizer-source")
        tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer-source", model_max_length=77)
        torch.manual_seed(0)
        text = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                max_position_embeddings=77,
                bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|endoftext|>"],
                **parts["text"],
            )
        )
        unet = diffusers.UNet2DConditionModel(**parts["unet"])
        vae = diffusers.AutoencoderKL(**_VAE)
        scheduler_class, scheduler_settings = parts["scheduler"]
        scheduler = getattr(diffusers, scheduler_class)(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, **scheduler_settings
        )
        pipeline = getattr(diffusers, parts["pipeline"])(
            vae=vae,
            text_encoder=text,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipeline.save_pretrained(folders[name])
        del pipeline, unet, vae, text
    return folders


if __name__ == "__main__":
    for name, folder in build(Path(sys.argv[1])).items():
        print(name, folder)
