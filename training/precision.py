"""Which numeric precision trains: float32, or mixed bfloat16 where this machine runs it natively and faster.

`--precision auto` takes mixed_bfloat16 only where the processor has bfloat16 arithmetic (AVX512_BF16 or AMX on
a CPU, a GPU from Ampere on) and only when a pre-training step of the article's generator, timed here in both,
is faster in it; everywhere else float32. bfloat16 keeps float32's range (no loss scaling) and, in the photos
recipe's comparison (docs/training.md), followed float32's held-out PSNR; float16 is never chosen for you.
"""

import dataclasses

import keras
import tensorflow as tf

from training.compilation import images_per_second

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
MIN_GAIN = 1.1  # bfloat16 must be this much faster: timing noise alone does not switch precision


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    policy: str
    reason: str
    images_per_second: dict = dataclasses.field(default_factory=dict)  # policy -> rate of the timed step

    def describe(self) -> str:
        rates = ", ".join(f"{p} {r:.1f} img/s" for p, r in self.images_per_second.items())
        return f"precision: {self.policy} ({self.reason}{'; timed here: ' + rates if rates else ''})"


def native_low_precisions() -> list[str]:
    """The mixed-precision policies this machine runs natively: bfloat16 on CPUs with AVX512_BF16 or AMX (and
    GPUs from Ampere on), float16 on GPUs. Others would be emulated, and slow."""
    found = []
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next(line for line in cpuinfo if line.startswith("flags")).split()
    except (OSError, StopIteration):
        flags = []
    gpus = tf.config.list_physical_devices("GPU")
    ampere = any(tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) >= (8, 0)
                 for g in gpus)
    if {"avx512_bf16", "amx_bf16"} & set(flags) or ampere:
        found.append("mixed_bfloat16")
    if gpus:
        found.append("mixed_float16")
    return found


def choose(requested: str, build_generator, lr_size: int, batch_size: int, native=None,
           started_with: str | None = None, timed: bool = True) -> PrecisionChoice:
    """`requested` itself unless it is `auto`; a resumed run keeps the policy it `started_with`.
    `build_generator()` builds the generator under the global policy; `native` (for tests) stands in for
    `native_low_precisions()`. Not `timed` (the workers of one multi-worker run, which must all choose alike):
    bfloat16 wherever it is native. Leaves the global policy as it found it."""
    if requested != "auto":
        return PrecisionChoice(requested, "as asked")
    if started_with in POLICIES:
        return PrecisionChoice(started_with, "as this run started")
    if "mixed_bfloat16" not in (native_low_precisions() if native is None else native):
        return PrecisionChoice("float32", "bfloat16 is not native on this machine")
    if not timed:
        return PrecisionChoice("mixed_bfloat16", "native here; not timed, so that every worker chooses alike")
    before = keras.mixed_precision.global_policy().name
    try:
        rates = {policy: _step_rate(policy, build_generator, lr_size, batch_size)
                 for policy in ("float32", "mixed_bfloat16")}
    finally:
        keras.mixed_precision.set_global_policy(before)
    if rates["mixed_bfloat16"] >= MIN_GAIN * rates["float32"]:
        return PrecisionChoice("mixed_bfloat16", "native and faster here", rates)
    return PrecisionChoice("float32", f"bfloat16 not {MIN_GAIN}× faster here", rates)


def _step_rate(policy: str, build_generator, lr_size: int, batch_size: int) -> float:
    """Images per second of an L1 gradient step of a fresh generator under `policy` (the pre-training's work)."""
    keras.mixed_precision.set_global_policy(policy)
    generator = build_generator()
    lr = tf.random.uniform((batch_size, lr_size, lr_size, 3), -1.0, 1.0)

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(tf.cast(generator(lr, training=True), tf.float32)))
        return tape.gradient(loss, generator.trainable_variables)

    return images_per_second(gradients, (), batch_size)
