"""SRGAN training: the article's generator and discriminator, data, losses and the training loop."""

import os

# TensorFlow's C++ INFO and WARNING lines drown the progress bar; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
