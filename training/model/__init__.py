"""The SRGAN networks as the article gives them, and the spec that rebuilds them from a checkpoint."""

from core.model_spec import ModelSpec
from training.model.discriminator import build_discriminator
from training.model.generator import build_generator
from training.model.layers import PixelShuffle

__all__ = ["ModelSpec", "PixelShuffle", "build_discriminator", "build_generator"]
