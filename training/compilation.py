"""How the training step is compiled: XLA or a plain TensorFlow graph, chosen by timing both on this machine.

Neither wins everywhere: on one 2-core Xeon with AVX-512 the plain graph (oneDNN convolutions) trained 1.5×
faster than XLA, on an AMD EPYC of another day XLA was ahead. `auto` therefore times the gradient computation
of both on the first real batch of each phase and keeps the faster one.
"""

import dataclasses

import tensorflow as tf

from core.timing import median_seconds

MODES = ("auto", "xla", "graph")
TIMED_CALLS = 3  # after one untimed call that traces (and, for XLA, compiles)


@dataclasses.dataclass(frozen=True)
class CompileChoice:
    mode: str  # xla | graph
    images_per_second: dict  # mode -> rate of the gradient computation; empty when nothing was timed
    failed: dict = dataclasses.field(default_factory=dict)  # mode -> why it could not compile

    def describe(self, phase: str) -> str:
        if not self.images_per_second:
            return f"{phase} step: {self.mode} (as asked)"
        rates = ", ".join([f"{m} {r:.1f} img/s" for m, r in self.images_per_second.items()]
                          + [f"{m} cannot compile this step" for m in self.failed])
        return f"{phase} step: {self.mode} (timed here: {rates})"


def gradient_functions(python_fn) -> dict:
    """One `tf.function` per compiled mode; only those that are called are ever traced."""
    return {"xla": tf.function(python_fn, jit_compile=True), "graph": tf.function(python_fn, jit_compile=False)}


def choose(mode: str, functions: dict, args: tuple, batch_size: int, state: list) -> CompileChoice:
    """`mode` itself unless it is `auto`; then the faster of `functions` on `args`.

    Timing runs the forward pass in training mode, which moves batch-norm statistics: `state` (the networks'
    non-trainable variables) is put back afterwards, so choosing leaves the model as it found it.
    """
    if mode != "auto":
        return CompileChoice(mode, {})
    saved = [v.numpy() for v in state]
    rates, failed = {}, {}
    for name, fn in functions.items():
        try:
            rates[name] = images_per_second(fn, args, batch_size)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            # XLA lacks a kernel for some ops (the antialiased resize's gradient): that mode is out.
            failed[name] = str(error).strip().splitlines()[0][:200]
    for variable, value in zip(state, saved):
        variable.assign(value)
    if not rates:
        raise RuntimeError(f"the training step compiles in no mode: {failed}")
    return CompileChoice(max(rates, key=rates.get), rates, failed)


def images_per_second(fn, args: tuple, batch_size: int) -> float:
    """`fn(*args)` once untimed (it traces, and for XLA compiles), then the median of TIMED_CALLS calls."""
    return batch_size / median_seconds(lambda: _wait(fn(*args)), TIMED_CALLS)


def _wait(result) -> None:
    # TensorFlow may run ahead asynchronously: reading every output back makes the timing honest.
    for tensor in tf.nest.flatten(result):
        tensor.numpy()
