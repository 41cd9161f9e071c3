"""Checkpoints of a training run: generator, discriminator, both optimizers, step, epoch and phase.

`tf.train.CheckpointManager` writes them; the model spec (model.json) sits beside them so that export can
rebuild the generator without guessing. Restoring tries the newest checkpoint first and falls back to an
older one if the newest is unreadable (a truncated file after a crash).
"""

import sys
from pathlib import Path

import tensorflow as tf

from training.errors import UserError
from training.model import ModelSpec
from training.step import Networks

PRETRAIN, GAN = 0, 1  # values of the `phase` variable


class RunCheckpoints:
    def __init__(self, directory: Path, nets: Networks, spec: ModelSpec, max_to_keep: int = 3):
        self.directory = Path(directory)
        self.spec = spec
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.phase = tf.Variable(PRETRAIN, dtype=tf.int64, trainable=False, name="phase")
        # Optimizer slots exist before any restore, so restored values land at once, not deferred.
        nets.g_optimizer.build(nets.generator.trainable_variables)
        nets.d_optimizer.build(nets.discriminator.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(
            generator=nets.generator, discriminator=nets.discriminator, g_optimizer=nets.g_optimizer,
            d_optimizer=nets.d_optimizer, step=self.step, epoch=self.epoch, phase=self.phase)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=max_to_keep)

    def check_spec(self) -> None:
        """Refuse to resume a run whose networks were a different size."""
        if (self.directory / "model.json").exists():
            saved = ModelSpec.load(self.directory)
            if saved != self.spec:
                raise UserError(f"{self.directory} holds a run with a different model ({saved}); use another "
                                "--out-dir or the same model flags.")

    def restore_latest(self) -> str | None:
        """Restore the newest readable checkpoint; None when there is none (a fresh run)."""
        self.check_spec()
        candidates = list(reversed(self.manager.checkpoints))
        for path in candidates:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
                return path
            except (tf.errors.OpError, ValueError, AssertionError, IndexError) as error:  # Index: truncated
                print(f"warning: checkpoint {path} is unreadable ({type(error).__name__}); trying an older one",
                      file=sys.stderr)
        if candidates:
            raise UserError(f"no readable checkpoint in {self.directory}; move it away to start afresh.")
        return None

    def save(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.spec.save(self.directory)
        return self.manager.save(checkpoint_number=int(self.step.numpy()))
