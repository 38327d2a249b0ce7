"""Tiny randomly-initialised Stable Diffusion pipelines, built offline, for fast tests.

A pytest plugin (tests/conftest.py lists it in `pytest_plugins`). The pipelines have the real
architecture of Stable Diffusion 1.x — CLIP text encoder, a UNet with cross-attention, a VAE that
downsamples by 8 — at a few hundred thousand parameters, so a 512x512 run takes about a second on
a CPU. They are saved with `save_pretrained` and loaded back through the application's real
loading code. Everything is seeded, so two builds hold identical weights.

The tokenizer's vocabulary is written here: every byte-level base character (alone and as a word
end), a few English merges and CLIP's two special tokens. Any prompt tokenizes (unknown words fall
back to single characters) and pads or truncates to 77 tokens, as CLIP's does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TEXT_LENGTH = 77  # CLIP's context length; SD pipelines pad and truncate prompts to it
TEXT_WIDTH = 32  # hidden size of the tiny text encoder = the UNet's cross-attention width
_START, _END = "<|startoftext|>", "<|endoftext|>"
_WORD_END = "</w>"
# (left, right) pairs, applied in order; each result joins the vocabulary.
_MERGES = (
    ("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("in", "g</w>"),
    ("o", "n</w>"), ("e", "r</w>"), ("a", "t</w>"), ("o", "f</w>"), ("c", "a"), ("ca", "t</w>"),
    ("r", "e"), ("e", "d</w>"), ("o", "r"), ("s", "t"), ("e", "n"), ("a", "r"),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Tokenizer files


def _byte_characters() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes: printable Latin-1 bytes stand
    for themselves, the rest are shifted past 255 so no byte maps to whitespace or a control."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    characters: list[str] = []
    shifted = 0
    for byte in range(256):
        if byte in printable:
            characters.append(chr(byte))
        else:
            characters.append(chr(256 + shifted))
            shifted += 1
    return characters


def write_tokenizer_files(folder: Path) -> dict[str, int]:
    """vocab.json and merges.txt for a small CLIP-style BPE; returns the vocabulary."""
    base = _byte_characters()
    tokens = [*base, *(character + _WORD_END for character in base)]
    tokens += [left + right for left, right in _MERGES]
    tokens += [_START, _END]
    vocab = {token: index for index, token in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges = "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in _MERGES)
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    return vocab


# ---------------------------------------------------------------------------------------------
# Components


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder)
    return CLIPTokenizer.from_pretrained(folder, model_max_length=TEXT_LENGTH)


def _text_encoder(vocab_size: int, start_id: int, end_id: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TEXT_LENGTH,
        bos_token_id=start_id,
        eos_token_id=end_id,  # the pooled output is read at the first end-of-text token
        pad_token_id=end_id,
    )
    return CLIPTextModel(config).eval()


def _unet(in_channels: int):
    from diffusers import UNet2DConditionModel

    # Three levels with cross-attention only at the lowest one: attention over 64x64 latents is
    # what makes a tiny UNet slow on a CPU, and one attention level exercises the same code.
    return UNet2DConditionModel(
        sample_size=64,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(16, 16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=(2, 2, 4),
        norm_num_groups=8,
    ).eval()


def _vae():
    from diffusers import AutoencoderKL

    # Four levels, like SD's VAE, so images are 8x the latent size.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=512,
    ).eval()


def _scheduler():
    from diffusers import PNDMScheduler

    # Stable Diffusion 1.5's own scheduler settings.
    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )


def _components(root: Path, unet_in_channels: int) -> dict:
    import torch

    tokenizer = _tokenizer(root / "tokenizer-source")
    vocab = tokenizer.get_vocab()
    torch.manual_seed(0)
    text_encoder = _text_encoder(len(vocab), vocab[_START], vocab[_END])
    torch.manual_seed(1)
    unet = _unet(unet_in_channels)
    torch.manual_seed(2)
    vae = _vae()
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": _scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
        "requires_safety_checker": False,
    }


def build_tiny_pipelines(root: Path) -> dict[str, Path]:
    """Save a text-to-image pipeline (4-channel UNet) and an inpainting one (9-channel UNet)
    under `root`; returns {"txt2img": folder, "inpaint": folder}."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    root = Path(root)
    folders = {"txt2img": root / "tiny-sd", "inpaint": root / "tiny-sd-inpaint"}
    with torch.random.fork_rng():  # seeded builds leave the session's random state alone
        StableDiffusionPipeline(**_components(root, 4)).save_pretrained(folders["txt2img"])
        StableDiffusionInpaintPipeline(**_components(root, 9)).save_pretrained(folders["inpaint"])
    return folders


def build_tiny_autoencoder(folder: Path) -> Path:
    """A tiny AutoencoderTiny (TAESD's architecture: 4 levels, so it too scales by 8, 4 latent
    channels), saved like the public TAESD weights: config.json and a safetensors file."""
    import torch
    from diffusers import AutoencoderTiny

    with torch.random.fork_rng():
        torch.manual_seed(4)
        tiny = AutoencoderTiny(
            encoder_block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
            latent_channels=4,
        ).eval()
    tiny.save_pretrained(folder)
    return Path(folder)


# ---------------------------------------------------------------------------------------------
# A tiny safety checker


def add_safety_checker(pipeline_folder: Path, target: Path, *, flag_everything: bool) -> Path:
    """Copy of a saved pipeline with a tiny StableDiffusionSafetyChecker and feature extractor.

    The checker compares image embeddings with concept embeddings against per-concept thresholds;
    a threshold below -1 flags every image (cosine similarity is at least -1) and one above 1 flags
    none, so the tests know the answer without real weights."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    with torch.random.fork_rng():
        torch.manual_seed(3)
        checker = StableDiffusionSafetyChecker(config).eval()
    threshold = -2.0 if flag_everything else 2.0
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    feature_extractor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=True
    )
    pipeline = StableDiffusionPipeline.from_pretrained(pipeline_folder)
    pipeline.register_modules(safety_checker=checker, feature_extractor=feature_extractor)
    pipeline.register_to_config(requires_safety_checker=True)
    pipeline.save_pretrained(target)
    return target


# ---------------------------------------------------------------------------------------------
# A single-file checkpoint in the original (CompVis/LDM) layout


def _ldm_resnet(key: str) -> str:
    return (
        key.replace("norm1", "in_layers.0")
        .replace("conv1", "in_layers.2")
        .replace("norm2", "out_layers.0")
        .replace("conv2", "out_layers.3")
        .replace("time_emb_proj", "emb_layers.1")
        .replace("conv_shortcut", "skip_connection")
    )


def _ldm_unet_key(key: str, layers_per_block: int, attention_blocks: set[int]) -> str:
    """A diffusers UNet2DConditionModel key -> the original "model.diffusion_model." key."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    if key in fixed:
        return fixed[key]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # downsampler "op" after the block's layers
            return f"input_blocks.{(block + 1) * (layers_per_block + 1)}.0.op." + ".".join(parts[5:])
        layer = int(parts[3])
        index = 1 + block * (layers_per_block + 1) + layer
        rest = ".".join(parts[4:])
        return f"input_blocks.{index}.0.{_ldm_resnet(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
    if parts[0] == "mid_block":
        kind, layer, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * layer}.{_ldm_resnet(rest)}"
        return f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        up_layers = layers_per_block + 1
        if kind == "upsamplers":  # after the last layer, behind its attention if it has one
            slot = 2 if block in attention_blocks else 1
            return f"output_blocks.{block * up_layers + layers_per_block}.{slot}.conv." + ".".join(parts[5:])
        layer = int(parts[3])
        index = block * up_layers + layer
        rest = ".".join(parts[4:])
        return f"output_blocks.{index}.0.{_ldm_resnet(rest)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
    raise ValueError(f"no original-layout name for UNet weight {key}")


def _ldm_vae_key(key: str, blocks: int) -> str:
    """A diffusers AutoencoderKL key -> the original "first_stage_model." key."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    if key in fixed:
        return fixed[key]
    parts = key.split(".")
    coder, group = parts[0], parts[1]
    if group in ("down_blocks", "up_blocks"):
        block = int(parts[2])
        level = block if group == "down_blocks" else blocks - 1 - block  # the decoder counts upwards
        prefix = f"{coder}.{'down' if group == 'down_blocks' else 'up'}.{level}"
        if parts[3] in ("downsamplers", "upsamplers"):
            return f"{prefix}.{'downsample' if group == 'down_blocks' else 'upsample'}.conv.{parts[-1]}"
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{prefix}.block.{parts[4]}.{rest}"
    if group == "mid_block":
        if parts[2] == "resnets":
            return f"{coder}.mid.block_{int(parts[3]) + 1}." + ".".join(parts[4:])
        names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
        layer = parts[4]
        return f"{coder}.mid.attn_1.{names[layer]}.{parts[-1]}"
    raise ValueError(f"no original-layout name for VAE weight {key}")


def write_single_file_checkpoint(pipeline_folder: Path, target: Path) -> Path:
    """The pipeline's UNet, VAE and text encoder in one original-layout .safetensors file, as
    Stable Diffusion checkpoints are shared (what `from_single_file` reads)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(pipeline_folder, subfolder="vae")
    text_encoder = CLIPTextModel.from_pretrained(pipeline_folder, subfolder="text_encoder")
    layers_per_block = unet.config.layers_per_block
    attention_blocks = {i for i, kind in enumerate(unet.config.up_block_types) if "CrossAttn" in kind}
    blocks = len(vae.config.block_out_channels)
    weights = {}
    for key, tensor in unet.state_dict().items():
        weights["model.diffusion_model." + _ldm_unet_key(key, layers_per_block, attention_blocks)] = tensor
    for key, tensor in vae.state_dict().items():
        if ".mid_block.attentions." in key and key.endswith("weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # the original VAE attention uses 1x1 convolutions
        weights["first_stage_model." + _ldm_vae_key(key, blocks)] = tensor
    for key, tensor in text_encoder.state_dict().items():
        text_key = key if key.startswith("text_model.") else "text_model." + key
        weights["cond_stage_model.transformer." + text_key] = tensor
    save_file({key: tensor.contiguous() for key, tensor in weights.items()}, str(target))
    return target


# ---------------------------------------------------------------------------------------------
# Fixtures


def write_catalogue(
    path: Path, folders: dict[str, Path], *, working_resolution: int = 64, tiny_vae: Path | None = None
) -> Path:
    """A catalogue file (the format of core/models.toml) registering the tiny pipelines (with a
    tiny autoencoder for the fast decoder when `tiny_vae` is given)."""
    common = (
        'engine = "diffusers"\n'
        f"working_resolution = {working_resolution}\n"
        "size_multiple = 8\n"
        "max_side = 512\n"
        "default_steps = 2\n"
        "default_guidance = 7.5\n"
        'licence = "test weights"\n'
    ) + (f"tiny_vae = {json.dumps(str(tiny_vae))}\n" if tiny_vae else "")
    path.write_text(
        "[models.tiny-sd]\n"
        'name = "Tiny SD (test)"\n'
        'tasks = ["txt2img", "inpaint"]\n'
        f"path = {json.dumps(str(folders['txt2img']))}\n"
        + common
        + "\n[models.tiny-sd-inpaint]\n"
        'name = "Tiny SD Inpainting (test)"\n'
        'tasks = ["inpaint"]\n'
        f"path = {json.dumps(str(folders['inpaint']))}\n" + common,
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def tiny_pipeline_dirs(tmp_path_factory) -> dict[str, Path]:
    return build_tiny_pipelines(tmp_path_factory.mktemp("tiny-pipelines"))


@pytest.fixture(scope="session")
def tiny_catalogue_file(tiny_pipeline_dirs, tmp_path_factory) -> Path:
    return write_catalogue(tmp_path_factory.mktemp("tiny-catalogue") / "models.toml", tiny_pipeline_dirs)


@pytest.fixture(scope="session")
def tiny_autoencoder(tmp_path_factory) -> Path:
    return build_tiny_autoencoder(tmp_path_factory.mktemp("tiny-vae") / "tiny-taesd")


@pytest.fixture(scope="session")
def safety_pipelines(tiny_pipeline_dirs, tmp_path_factory) -> dict[str, Path]:
    """The tiny text-to-image pipeline with a safety checker that flags every image, and one that flags none."""
    root = tmp_path_factory.mktemp("safety")
    return {
        "flag_all": add_safety_checker(tiny_pipeline_dirs["txt2img"], root / "flag-all", flag_everything=True),
        "flag_none": add_safety_checker(tiny_pipeline_dirs["txt2img"], root / "flag-none", flag_everything=False),
    }


@pytest.fixture
def tiny_catalogue(tiny_catalogue_file, monkeypatch):
    from core.catalogue import Catalogue

    monkeypatch.setenv("STUDIO_MODELS_FILE", str(tiny_catalogue_file))
    return Catalogue.load(tiny_catalogue_file)
