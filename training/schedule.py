"""The generator's learning rate over a run: pre-training (constant or cosine-decayed), then the GAN phase."""

import math

import keras
import tensorflow as tf


class PretrainThenGan(keras.optimizers.schedules.LearningRateSchedule):
    """`pretrain_rate` for the first `pretrain_steps` optimizer steps, cosine-decayed to `floor`×rate when
    `cosine` (BasicSR's SRResNet recipe), then `gan_rate` for every later step. With `cycles` > 1 the cosine
    restarts (SGDR's warm restarts) that many times in equal parts of the pre-training, each peak half the
    one before: the same as training again from the previous end at half the rate, in one run."""

    def __init__(self, pretrain_rate: float, pretrain_steps: int, gan_rate: float, cosine: bool,
                 floor: float = 1e-3, cycles: int = 1):
        self.pretrain_rate = pretrain_rate
        self.pretrain_steps = pretrain_steps
        self.gan_rate = gan_rate
        self.cosine = cosine
        self.floor = floor
        self.cycles = cycles

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.pretrain_rate, tf.float32)
        if self.cosine and self.pretrain_steps:
            position = tf.minimum(step / self.pretrain_steps, 1.0) * self.cycles
            cycle = tf.minimum(tf.floor(position), self.cycles - 1)
            progress = position - cycle
            rate *= tf.pow(0.5, cycle) * (self.floor + (1.0 - self.floor) * 0.5 * (1.0 + tf.cos(math.pi * progress)))
        return tf.where(step < self.pretrain_steps, rate, tf.constant(self.gan_rate, tf.float32))

    def get_config(self):
        return {"pretrain_rate": self.pretrain_rate, "pretrain_steps": self.pretrain_steps,
                "gan_rate": self.gan_rate, "cosine": self.cosine, "floor": self.floor, "cycles": self.cycles}
