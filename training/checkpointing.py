"""Checkpoints of a training run: generator, discriminator, both optimizers, step, epoch and phase.

`tf.train.CheckpointManager` writes them; the model spec (model.json) sits beside them so that export can
rebuild the generator without guessing. Restoring tries the newest checkpoint first and falls back to an
older one if the newest is unreadable (a truncated file after a crash).
"""

import dataclasses
import logging
from pathlib import Path

import keras
import tensorflow as tf

from core.cli import UserError
from core.model_spec import SPEC_FILENAME
from training.model import ModelSpec, build_generator
from training.step import Networks

WEIGHTS_FILENAME = "generator.weights.h5"  # a shipped generator: these weights with model.json beside them
SRRESNET = "srresnet"  # the checkpoint kept at the end of pre-training (outside the rotation)
SRRESNET_WEIGHTS = "srresnet.weights.h5"  # the same, shipped

log = logging.getLogger(__name__)

PRETRAIN, GAN = 0, 1  # values of the `phase` variable
EMA_GENERATOR = "generator_ema"  # the averaged generator's name in a checkpoint: the one exported when present


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
        averaged = {} if nets.generator_ema is None else {EMA_GENERATOR: nets.generator_ema}
        self.checkpoint = tf.train.Checkpoint(
            generator=nets.generator, discriminator=nets.discriminator, g_optimizer=nets.g_optimizer,
            d_optimizer=nets.d_optimizer, step=self.step, epoch=self.epoch, phase=self.phase, **averaged)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=max_to_keep)

    def keep(self, name: str) -> str:
        """A checkpoint outside the manager's rotation (the end of pre-training: the SRResNet)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.spec.save(self.directory)
        return self.checkpoint.write(str(self.directory / name))

    def check_spec(self) -> None:
        """Refuse to resume a run whose networks were a different size."""
        if (self.directory / SPEC_FILENAME).exists():
            saved = ModelSpec.load(self.directory)
            if saved != self.spec:
                raise UserError(f"{self.directory} holds a run with a different model ({saved}); use another "
                                "--run-dir or the same model flags.")

    def restore_latest(self) -> str | None:
        """Restore the newest readable checkpoint; None when there is none (a fresh run)."""
        self.check_spec()
        candidates = list(reversed(self.manager.checkpoints))
        for path in candidates:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
                return path
            except (tf.errors.OpError, ValueError, AssertionError, IndexError) as error:  # Index: truncated
                log.warning("checkpoint %s is unreadable (%s); trying an older one", path, type(error).__name__)
        if candidates:
            raise UserError(f"no readable checkpoint in {self.directory}; move it away to start afresh.")
        return None

    def save(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.spec.save(self.directory)
        return self.manager.save(checkpoint_number=int(self.step.numpy()))


@dataclasses.dataclass(frozen=True)
class TrainedGenerator:
    model: keras.Model
    spec: ModelSpec
    checkpoint: str  # the checkpoint prefix or weights file it was loaded from
    step: int
    # What it was trained for, from its run's configuration: "distortion" (PSNR-oriented) or "perception" (a GAN).
    # The end of a pre-training and anything whose run does not say (made before the field existed): distortion.
    objective: str = "distortion"


def _objective(run_config: Path, pretrained_only: bool) -> str:
    import json
    if pretrained_only or not run_config.is_file():
        return "distortion"
    config = json.loads(run_config.read_text())
    return (config.get("config", config)).get("objective", "distortion")  # a card holds the run's under "config"


def load_generator(checkpoint: str) -> TrainedGenerator:
    """The float32 generator with the checkpoint's weights (its moving average where the run kept one);
    UserError if they cannot be read."""
    spec, generator = _empty_generator(Path(checkpoint).parent)
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        step = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE")) if reader.has_tensor(
            "step/.ATTRIBUTES/VARIABLE_VALUE") else 0
        averaged = any(name.startswith(EMA_GENERATOR + "/") for name in reader.get_variable_to_shape_map())
        # read(), not restore(): a checkpoint kept with write() (the SRResNet's) has no save counter to match.
        tf.train.Checkpoint(**{EMA_GENERATOR if averaged else "generator": generator}).read(checkpoint) \
            .expect_partial().assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as error:  # Index: truncated
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"checkpoint {checkpoint} is unreadable or does not hold a generator of {spec} "
                        f"({first_line[:200]}).") from None
    objective = _objective(Path(checkpoint).parent.parent / "config.json", Path(checkpoint).name == SRRESNET)
    return TrainedGenerator(generator, spec, checkpoint, step, objective)


def _empty_generator(spec_dir: Path) -> tuple[ModelSpec, keras.Model]:
    if not (spec_dir / SPEC_FILENAME).exists():
        raise UserError(f"{spec_dir / SPEC_FILENAME} is missing: it records the generator's sizes and is "
                        "written by training.run beside its checkpoints.")
    spec = ModelSpec.load(spec_dir)
    keras.mixed_precision.set_global_policy("float32")  # a mixed-precision run still exports float32
    return spec, build_generator(spec)


def load_weights(path: Path) -> TrainedGenerator:
    """A shipped generator: a folder holding generator.weights.h5 and model.json, or such a weights file."""
    path = Path(path)
    weights = path / WEIGHTS_FILENAME if path.is_dir() else path
    if not weights.is_file():
        raise UserError(f"{weights} does not exist; pass a folder with {WEIGHTS_FILENAME} and {SPEC_FILENAME} "
                        "(such as training/pretrained/photos) or a .weights.h5 file.")
    spec, generator = _empty_generator(weights.parent)
    try:
        generator.load_weights(str(weights))
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{weights} does not hold a generator of {spec} ({str(error).splitlines()[0][:200]}).") \
            from None
    card = weights.parent / "card.json"  # written by training.publish: the step each weights file comes from
    step = 0
    if card.is_file():
        import json
        step = int(json.loads(card.read_text()).get("steps", {}).get(weights.name, 0))
    objective = _objective(card, weights.name == SRRESNET_WEIGHTS)
    return TrainedGenerator(generator, spec, str(weights), step, objective)
