"""What every side of the toolkit shares and nothing else: the command-line layer (`core.cli`), the serving
contract (`core.contract`), TF Serving's model repository layout and the version's file names
(`core.repository`), and the image reader (`core.images`). It imports none of training, export, serving or
benchmarks, and not TensorFlow: those stand on it."""

from core.cli import quiet_tensorflow

quiet_tensorflow()  # TensorFlow's start-up lines would drown our output (core.cli)
