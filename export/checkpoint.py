"""Rebuilding the trained generator from a training run's checkpoint and its model.json."""

import dataclasses
from pathlib import Path

import keras
import tensorflow as tf

from training.errors import UserError
from training.model import ModelSpec, build_generator
from training.model.spec import SPEC_FILENAME


@dataclasses.dataclass(frozen=True)
class TrainedGenerator:
    model: keras.Model
    spec: ModelSpec
    checkpoint: str  # the checkpoint prefix it was restored from
    step: int


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
                        f"(python -m training.run --out-dir {run_dir}) or pass --checkpoint.")
    return latest


def load_generator(checkpoint: str) -> TrainedGenerator:
    """The float32 generator with the checkpoint's weights; UserError if they cannot be read."""
    spec_dir = Path(checkpoint).parent
    if not (spec_dir / SPEC_FILENAME).exists():
        raise UserError(f"{spec_dir / SPEC_FILENAME} is missing: it records the generator's sizes and is "
                        "written by training.run beside its checkpoints.")
    spec = ModelSpec.load(spec_dir)
    keras.mixed_precision.set_global_policy("float32")  # a mixed-precision run still exports float32
    generator = build_generator(spec)
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) if reader.has_tensor(
            "step/.ATTRIBUTES/VARIABLE_VALUE") else 0
        tf.train.Checkpoint(generator=generator).restore(checkpoint).expect_partial() \
            .assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as error:  # Index: truncated
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"checkpoint {checkpoint} is unreadable or does not hold a generator of {spec} "
                        f"({first_line[:200]}).") from None
    return TrainedGenerator(generator, spec, checkpoint, step)
