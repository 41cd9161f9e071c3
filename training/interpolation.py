"""ESRGAN's network interpolation (Wang et al., 2018, section 3.4): a generator whose every weight is
θ = (1 − α)·θ_PSNR + α·θ_GAN, between a distortion-oriented model (α = 0) and a perceptual one (α = 1) of the same
architecture: one knob along the perception–distortion trade-off (Blau & Michaeli, CVPR 2018), no training."""

import dataclasses

from core.cli import UserError
from training.checkpointing import TrainedGenerator


def interpolate(psnr: TrainedGenerator, gan: TrainedGenerator, alpha: float) -> TrainedGenerator:
    """A new generator between the two; at α = 0 and α = 1 exactly one of them (every weight identical)."""
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"--alpha must be between 0 (the first model) and 1 (the second), got {alpha}.")
    if psnr.spec != gan.spec:
        raise UserError(f"the two generators differ in shape ({psnr.spec} against {gan.spec}); interpolation "
                        "needs the same architecture.")
    from training.model import build_generator
    blended = build_generator(psnr.spec)
    blended.set_weights([a if alpha == 0 else b if alpha == 1 else (1.0 - alpha) * a + alpha * b
                         for a, b in zip(psnr.model.get_weights(), gan.model.get_weights())])
    return dataclasses.replace(psnr, model=blended, step=gan.step if alpha == 1 else psnr.step)

