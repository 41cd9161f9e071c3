"""SRGAN training: the article's generator and discriminator, data, losses and the training loop."""

import core  # noqa: F401  (first: TensorFlow's start-up lines kept off the terminal, core.cli)
