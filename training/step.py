"""The compiled training steps: generator-only pre-training and the article's GAN step.

Gradients are computed in a `tf.function` that XLA may compile (see `training.compilation`); the optimizers
apply them outside it, where a distribution strategy can all-reduce them. Losses are per example, averaged
over the global batch, so the same code is right on one device and on many.
"""

import dataclasses
import functools

import keras
import tensorflow as tf
from tqdm import tqdm

from training import compilation, losses


@dataclasses.dataclass
class Networks:
    generator: keras.Model
    discriminator: keras.Model
    g_optimizer: keras.optimizers.Optimizer
    d_optimizer: keras.optimizers.Optimizer
    content_loss: object  # (hr, sr) -> per-example loss
    pixel_loss: object = losses.pixel_mse  # (hr, sr) -> per-example loss of the pre-training
    consistency_loss: object = None  # (lr, sr) -> per-example loss, added in both phases with its weight
    consistency_weight: float = 0.0
    adversarial: losses.Adversarial = losses.GAN_LOSSES["vanilla"]
    adversarial_weight: float = losses.ADVERSARIAL_WEIGHT
    content_weight: float = 1.0  # of the GAN phase's content loss
    colour_weight: float = 0.0  # of the mean-colour term (losses.mean_colour_difference), both phases
    # An exponential moving average of the generator's weights, updated after each GAN step: what is evaluated
    # and exported when present (ESRGAN's and Real-ESRGAN's practice: it smooths the GAN's step-to-step swings).
    generator_ema: keras.Model | None = None
    ema_decay: float = 0.0
    # Discriminator feature matching: the L1 between D's inner activations on SR and on HR, a perceptual loss
    # that needs no ImageNet weights (Salimans et al. 2016; pix2pixHD). 0: off.
    feature_matching_weight: float = 0.0
    discriminator_input: object = None  # images -> what the discriminator sees (losses.HighPass); None: the images
    # GAN phase: the weight of losses.periodic_pattern, against the pixel shuffle's grid (0: off).
    periodic_weight: float = 0.0
    scale: int = 4

    def discriminate(self, images):
        """(logits, inner activations or [] when feature matching is off) of the discriminator."""
        if self.discriminator_input is not None:
            images = self.discriminator_input(images)
        if not self.feature_matching_weight:
            return self.discriminator(images, training=True), []
        *features, logits = self._discriminator_features(images, training=True)
        return logits, features

    @functools.cached_property
    def _discriminator_features(self) -> keras.Model:
        # The same layers (and weights): the activation after each stride-2 conv, then the logits.
        d = self.discriminator
        taps = [d.get_layer(f"lrelu{i}").output for i in (2, 4, 6, 8)]
        return keras.Model(d.inputs, [*taps, d.output], name="discriminator_features")

    @property
    def generator_to_evaluate(self) -> keras.Model:
        return self.generator if self.generator_ema is None else self.generator_ema

    def consistency(self, lr, sr):
        """The weighted LR-consistency and mean-colour terms per example (0 when both are off)."""
        total = tf.zeros([tf.shape(sr)[0]])
        if self.consistency_weight:
            total += self.consistency_weight * self.consistency_loss(lr, sr)
        if self.colour_weight:
            total += self.colour_weight * losses.mean_colour_difference(lr, sr)
        return total


def _scale(optimizer, loss):
    # Under mixed precision the optimizer is a LossScaleOptimizer, whose `apply` unscales and skips
    # non-finite steps; other optimizers return the loss as it is. Must run inside the tape.
    return optimizer.scale_loss(loss)


class TrainSteps:
    """`pretrain(batch)` and `gan(batch)`: one optimizer step each, returning a dict of scalar logs.

    `compile_mode` is xla, graph or auto; auto decides per phase on its first batch (`choices` records it).
    """

    def __init__(self, nets: Networks, strategy: tf.distribute.Strategy, global_batch_size: int,
                 compile_mode: str = "auto"):
        self.nets = nets
        self.strategy = strategy
        self.global_batch_size = global_batch_size
        self.compile_mode = compile_mode
        self.choices: dict[str, compilation.CompileChoice] = {}
        self._gradients = {"pretrain": compilation.gradient_functions(self._pretrain_gradients),
                           "gan": compilation.gradient_functions(self._gan_gradients)}
        self._replicas = {"pretrain": self._pretrain_replica, "gan": self._gan_replica}
        self._compiled = {}
        self._average_weights = tf.function(self._update_ema)

    def pretrain(self, batch) -> dict:
        return self._step("pretrain", batch)

    def gan(self, batch) -> dict:
        logs = self._step("gan", batch)
        if self.nets.generator_ema is not None:
            self._average_weights()
        return logs

    def _update_ema(self):
        decay = self.nets.ema_decay
        for average, current in zip(self.nets.generator_ema.weights, self.nets.generator.weights):
            average.assign(decay * average + (1.0 - decay) * tf.cast(current, average.dtype))

    def _step(self, phase: str, batch) -> dict:
        step = self._compiled.get(phase)
        if step is None:
            choice = self.choices[phase] = self._choose(phase, batch)
            tqdm.write(choice.describe(phase))  # a progress bar may be on screen
            replica = functools.partial(self._replicas[phase], self._gradients[phase][choice.mode])
            step = self._compiled[phase] = tf.function(lambda b: self._run(replica, b))
        return step(batch)

    def _choose(self, phase: str, batch) -> compilation.CompileChoice:
        # Timed on this worker's first replica's share of the batch, outside the distribution strategy.
        local = tuple(self.strategy.experimental_local_results(part)[0] for part in batch)
        state = self.nets.generator.non_trainable_variables + self.nets.discriminator.non_trainable_variables
        return compilation.choose(self.compile_mode, self._gradients[phase], local, int(local[0].shape[0]),
                                  state)

    def _average(self, per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

    def _pretrain_gradients(self, lr, hr):
        g = self.nets.generator
        with tf.GradientTape() as tape:
            sr = g(lr, training=True)
            pixel = self._average(self.nets.pixel_loss(hr, sr))
            consistency = self._average(self.nets.consistency(lr, sr))
            loss = pixel + consistency
            scaled = _scale(self.nets.g_optimizer, loss)
        grads = tape.gradient(scaled, g.trainable_variables)
        return grads, {"pretrain_loss": loss, "pixel_loss": pixel, "consistency_loss": consistency}

    def _gan_gradients(self, lr, hr):
        g, d = self.nets.generator, self.nets.discriminator
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            sr = g(lr, training=True)
            # Real and fake in separate calls, not one concatenated batch: the generator's gradient then
            # flows back through the discriminator for the fake half only.
            real_logits, real_features = self.nets.discriminate(hr)
            fake_logits, fake_features = self.nets.discriminate(sr)
            content = self._average(self.nets.content_loss(hr, sr))
            matching = (self._average(losses.feature_matching(real_features, fake_features)) if real_features
                        else tf.zeros([]))
            gan = self.nets.adversarial
            adversarial = self._average(gan.generator(real_logits, fake_logits))
            consistency = self._average(self.nets.consistency(lr, sr))
            periodic = (self._average(losses.periodic_pattern(hr, sr, self.nets.scale)) if self.nets.periodic_weight
                        else tf.zeros([]))
            g_loss = (self.nets.content_weight * content + self.nets.adversarial_weight * adversarial + consistency
                      + self.nets.feature_matching_weight * matching + self.nets.periodic_weight * periodic)
            d_loss = self._average(gan.discriminator(real_logits, fake_logits))
            g_scaled, d_scaled = _scale(self.nets.g_optimizer, g_loss), _scale(self.nets.d_optimizer, d_loss)
        g_grads = g_tape.gradient(g_scaled, g.trainable_variables)
        d_grads = d_tape.gradient(d_scaled, d.trainable_variables)
        real_decision, fake_decision = gan.decision_logits(real_logits, fake_logits)
        logs = {"g_loss": g_loss, "d_loss": d_loss, "content_loss": content, "feature_matching_loss": matching,
                "adversarial_loss": adversarial, "consistency_loss": consistency, "periodic_loss": periodic,
                "d_real": self._average(tf.reduce_mean(tf.sigmoid(real_decision), axis=[1, 2, 3])),
                "d_fake": self._average(tf.reduce_mean(tf.sigmoid(fake_decision), axis=[1, 2, 3])),
                # The share of patches the discriminator classes right: 0.5 each is chance, i.e. no signal.
                "d_real_accuracy": self._average(losses.accuracy(real_decision, real=True)),
                "d_fake_accuracy": self._average(losses.accuracy(fake_decision, real=False))}
        return g_grads, d_grads, logs

    def _pretrain_replica(self, gradients, lr, hr):
        grads, logs = gradients(lr, hr)
        g = self.nets.generator
        self.nets.g_optimizer.apply_gradients(zip(grads, g.trainable_variables))
        return logs

    def _gan_replica(self, gradients, lr, hr):
        g_grads, d_grads, logs = gradients(lr, hr)
        g, d = self.nets.generator, self.nets.discriminator
        self.nets.g_optimizer.apply_gradients(zip(g_grads, g.trainable_variables))
        self.nets.d_optimizer.apply_gradients(zip(d_grads, d.trainable_variables))
        return logs

    def _run(self, replica_fn, batch):
        per_replica = self.strategy.run(replica_fn, args=batch)
        # Each replica's loss is already divided by the global batch size, so the sum is the global mean.
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}
