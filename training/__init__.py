"""SRGAN training: the article's generator and discriminator, data, losses and the training loop."""

from training.cli import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's start-up lines would drown our output (training.cli)
