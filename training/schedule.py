"""The generator's learning rate over a run: pre-training (constant or cosine-decayed), then the GAN phase."""

import math

import keras
import tensorflow as tf


class PretrainThenGan(keras.optimizers.schedules.LearningRateSchedule):
    """`pretrain_rate` for the first `pretrain_steps` optimizer steps, cosine-decayed to `floor`×rate when
    `cosine` (BasicSR's SRResNet recipe), then `gan_rate` for every later step. With `cycles` > 1 the cosine
    restarts (SGDR's warm restarts) that many times in equal parts of the pre-training, each peak half the
    one before: the same as training again from the previous end at half the rate, in one run. `gan_warmup`
    steps ramp the GAN phase's rate up from zero (linearly), so that a fine-tune does not jolt a trained model."""

    def __init__(self, pretrain_rate: float, pretrain_steps: int, gan_rate: float, cosine: bool,
                 floor: float = 1e-3, cycles: int = 1, gan_warmup: int = 0):
        self.pretrain_rate = pretrain_rate
        self.pretrain_steps = pretrain_steps
        self.gan_rate = gan_rate
        self.cosine = cosine
        self.floor = floor
        self.cycles = cycles
        self.gan_warmup = gan_warmup

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.pretrain_rate, tf.float32)
        if self.cosine and self.pretrain_steps:
            position = tf.minimum(step / self.pretrain_steps, 1.0) * self.cycles
            cycle = tf.minimum(tf.floor(position), self.cycles - 1)
            progress = position - cycle
            rate *= tf.pow(0.5, cycle) * (self.floor + (1.0 - self.floor) * 0.5 * (1.0 + tf.cos(math.pi * progress)))
        gan_rate = tf.constant(self.gan_rate, tf.float32)
        if self.gan_warmup:  # Adam's first steps move every weight by about the rate, whatever its gradient
            gan_rate *= tf.minimum(1.0, (step - self.pretrain_steps + 1.0) / self.gan_warmup)
        return tf.where(step < self.pretrain_steps, rate, gan_rate)

    def get_config(self):
        return {"pretrain_rate": self.pretrain_rate, "pretrain_steps": self.pretrain_steps,
                "gan_rate": self.gan_rate, "cosine": self.cosine, "floor": self.floor, "cycles": self.cycles, "gan_warmup": self.gan_warmup}
