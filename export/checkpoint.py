"""Rebuilding the trained generator from a training run's checkpoint and its model.json."""

from pathlib import Path

import tensorflow as tf

from core.cli import UserError
from training.checkpointing import TrainedGenerator, load_generator, load_weights  # noqa: F401 - re-exported


def find_checkpoint(run_dir: Path | None, checkpoint: Path | None) -> str:
    """The checkpoint prefix to export: --checkpoint as given (a prefix or a folder), else the run's latest."""
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if checkpoint.is_dir():
            latest = tf.train.latest_checkpoint(str(checkpoint))
            if latest is None:
                raise UserError(f"no checkpoint in {checkpoint}; pass a checkpoint prefix such as "
                                f"{checkpoint}/ckpt-100 or a run directory with --run-dir.")
            return latest
        if not Path(f"{checkpoint}.index").exists():
            raise UserError(f"checkpoint {checkpoint} does not exist (no {checkpoint}.index); pass a prefix "
                            "such as runs/demo/checkpoints/ckpt-32.")
        return str(checkpoint)
    if run_dir is None:
        raise UserError("nothing to export: pass --run-dir (a training run) or --checkpoint.")
    latest = tf.train.latest_checkpoint(str(Path(run_dir) / "checkpoints"))
    if latest is None:
        raise UserError(f"no checkpoint in {Path(run_dir) / 'checkpoints'}; train first "
                        f"(python -m training.run --run-dir {run_dir}) or pass --checkpoint.")
    return latest
