"""Training data: image sources prepared into a cached manifest, and the tf.data pipeline."""
