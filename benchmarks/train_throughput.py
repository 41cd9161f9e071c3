"""Training throughput: the project's step against the article's own eager loop, in one run.

    python benchmarks/train_throughput.py                       # the article's settings: batch 30, VGG loss
    python benchmarks/train_throughput.py --content-loss mse --batch-size 8 --steps 5

Both loops train the same networks (the article's sizes) with the same loss on the same batch, held in memory
so that only the step is timed; a third row times the project's whole loop, its tf.data pipeline on the demo
photographs included. VGG19 runs with random weights (ImageNet weights cannot be assumed here; the cost is the
same). A row per low precision this machine runs natively (mixed_bfloat16 on CPUs with AVX512_BF16 or AMX,
mixed_float16 on GPUs), then a check that such a precision trains like float32: the same short pre-training
(--follow-steps, seed 1, demo photographs) in each, held-out PSNR within 0.2 dB of float32's. Prints images/s
for each row, their ratio, and the arithmetic rate each reaches beside this machine's float32 matrix-multiply
rate (numpy, measured in the same run); writes JSON to --out.

FLOPs of one training image, counted from the layers: generator 3 × forward (forward, input and weight
gradients); discriminator 7 × forward (real and fake forward, both backward for its weights, the fake one
backward again for the generator); VGG19 3 × forward (HR and SR forward, SR backward for the generator).
"""

import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import repo_path  # noqa: F401  (first: the packages importable, TensorFlow quiet)

import keras
import tensorflow as tf

import article_reference as article
import measure
from measure import matmul_gflops
from core.cli import parser
from training import losses
from training.data import pipeline, sources
from training.model import build_discriminator, build_generator
from training.model.flops import forward_flops
from training.precision import native_low_precisions
from training.step import Networks, TrainSteps
from training.vgg import FEATURE_LAYER


@dataclasses.dataclass(frozen=True)
class ThroughputConfig:
    batch_size: int = 30
    content_loss: str = "vgg"
    steps: int = 2
    warmup: int = 1
    compile_mode: str = "auto"  # as training.run's --compile
    follow_steps: int = 100  # pre-training steps of the low-precision check (0: skip it)
    cache_dir: Path = Path("cache")
    out: Path = Path("results")


def parse_args(argv=None) -> ThroughputConfig:
    d = ThroughputConfig()
    p = parser("python benchmarks/train_throughput.py", __doc__)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--content-loss", choices=["vgg", "mse"], default=d.content_loss)
    p.add_argument("--steps", type=int, default=d.steps, help="timed steps per loop")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed steps first (tracing, compilation)")
    p.add_argument("--compile", dest="compile_mode", choices=["auto", "xla", "graph"], default=d.compile_mode,
                   help="how the project's step is compiled, as in training.run (auto: the faster, timed here)")
    p.add_argument("--follow-steps", type=int, default=d.follow_steps,
                   help="pre-training steps on the demo photographs, in float32 and in each low precision the "
                        "machine runs, to check that the held-out PSNR follows float32's within 0.2 dB (0: skip)")
    p.add_argument("--cache-dir", type=Path, default=d.cache_dir)
    p.add_argument("--out", type=Path, default=d.out)
    return ThroughputConfig(**vars(p.parse_args(argv)))


def _time(step, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        float(step())  # wait for the result: TensorFlow may run ahead asynchronously
        times.append(time.perf_counter() - started)
    return times


def _measure(name: str, step, config: ThroughputConfig) -> dict:
    print(f"{name}: {config.warmup} warm-up + {config.steps} timed steps of {config.batch_size} images …",
          flush=True)
    warmup = _time(step, config.warmup)
    times = _time(step, config.steps)
    median = statistics.median(times)
    return {"name": name, "warmup_seconds": warmup, "step_seconds": times, "median_step_seconds": median,
            "images_per_second": config.batch_size / median}


def _random_batch(batch_size: int):
    tf.random.set_seed(0)
    return (tf.random.uniform((batch_size, 32, 32, 3), -1, 1), tf.random.uniform((batch_size, 128, 128, 3), -1, 1))


def article_loop(config: ThroughputConfig, lr, hr):
    generator, discriminator = article.Generator(), article.Discriminator()
    g_optimizer, d_optimizer = article.create_optimizers()
    loss_model = article.vgg19(weights=None) if config.content_loss == "vgg" else None
    return lambda: article.train_step(lr, hr, loss_model, generator, discriminator, g_optimizer,
                                      d_optimizer)[0]


def follows_float32(precisions: list[str], config: ThroughputConfig) -> list[dict]:
    """The same short pre-training (seed, data, steps) in float32 and each low precision: held-out PSNR."""
    import tempfile

    from training.config import config_from_args
    from training.run import train
    runs = []
    for precision in ["float32", *precisions]:
        out = Path(tempfile.mkdtemp(prefix=f"follow-{precision}-"))
        summary = train(config_from_args(["--preset", "demo", "--pretrain-steps", str(config.follow_steps),
                                          "--epochs", "0", "--seed", "1", "--precision", precision,
                                          "--run-dir", str(out), "--cache-dir", str(config.cache_dir)]))
        runs.append({"precision": precision, "steps": config.follow_steps, "psnr": summary["held_out"]["psnr"]})
    keras.mixed_precision.set_global_policy("float32")
    for run in runs[1:]:
        run["psnr_minus_float32"] = run["psnr"] - runs[0]["psnr"]
        run["follows"] = abs(run["psnr_minus_float32"]) <= 0.2
    return runs


def project_steps(config: ThroughputConfig, precision: str = "float32") -> TrainSteps:
    keras.mixed_precision.set_global_policy(precision)
    if config.content_loss == "vgg":
        vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
        content = losses.VggContentLoss(keras.Model(vgg.input, vgg.get_layer(FEATURE_LAYER).output))
    else:
        content = losses.pixel_mse
    def adam():
        optimizer = keras.optimizers.Adam(1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        return keras.optimizers.LossScaleOptimizer(optimizer) if precision == "mixed_float16" else optimizer
    nets = Networks(build_generator(), build_discriminator(), adam(), adam(), content)
    keras.mixed_precision.set_global_policy("float32")  # the networks keep the policy they were built with
    return TrainSteps(nets, tf.distribute.get_strategy(), config.batch_size, config.compile_mode)


def step_flops_per_image(content_loss: str) -> dict:
    g = forward_flops(build_generator(), 32, 32)
    d = forward_flops(build_discriminator(), 128, 128)
    flops = {"generator_forward": g, "discriminator_forward": d, "vgg_forward": 0}
    if content_loss == "vgg":
        vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
        flops["vgg_forward"] = forward_flops(keras.Model(vgg.input, vgg.get_layer(FEATURE_LAYER).output),
                                             128, 128)
    flops["training_step"] = 3 * g + 7 * d + 3 * flops["vgg_forward"]
    return flops


def main(argv=None) -> int:
    config = parse_args(argv)
    peak = matmul_gflops()
    flops = step_flops_per_image(config.content_loss)
    print(f"matrix multiply (numpy float32): {peak:.1f} GFLOP/s; one training image: "
          f"{flops['training_step'] / 1e9:.1f} GFLOP", flush=True)
    lr, hr = _random_batch(config.batch_size)
    results = [_measure("article (eager, as written)", article_loop(config, lr, hr), config)]
    steps = project_steps(config)
    steps.gan((lr, hr))  # the first call makes the compile choice (timing both under auto)
    results.append(_measure(f"project step ({steps.choices['gan'].mode}, --compile {config.compile_mode})",
                            lambda: steps.gan((lr, hr))["g_loss"], config))
    manifest = sources.prepare("demo", None, config.cache_dir, 128)
    batches = iter(pipeline.training_dataset(manifest.train, pipeline.PipelineConfig(), config.batch_size,
                                             manifest.fixed_size))
    results.append(_measure("project loop (step + tf.data on demo photos)",
                            lambda: steps.gan(next(batches))["g_loss"], config))
    precisions = native_low_precisions()
    for precision in precisions:
        low = project_steps(config, precision)
        low.gan((lr, hr))
        results.append(_measure(f"project step ({low.choices['gan'].mode}, {precision})",
                                lambda: low.gan((lr, hr))["g_loss"], config))
    follow = follows_float32(precisions, config) if config.follow_steps and precisions else []

    base = results[0]["images_per_second"]
    print(f"\n{'loop':48s} {'s/step':>8s} {'img/s':>8s} {'× article':>10s} {'GFLOP/s':>8s} {'of matmul':>10s}")
    for r in results:
        r["speedup_vs_article"] = r["images_per_second"] / base
        r["gflops_per_second"] = r["images_per_second"] * flops["training_step"] / 1e9
        r["fraction_of_matmul_rate"] = r["gflops_per_second"] / peak
        print(f"{r['name']:48s} {r['median_step_seconds']:8.2f} {r['images_per_second']:8.2f} "
              f"{r['speedup_vs_article']:9.2f}× {r['gflops_per_second']:8.1f} "
              f"{100 * r['fraction_of_matmul_rate']:9.0f}%")
    report = {"config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
              "matmul_gflops_per_second": peak, "flops_per_image": flops,
              "machine": {**measure.environment(),
                          "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]},
              "compile": dataclasses.asdict(steps.choices["gan"]), "results": results,
              "low_precisions": precisions, "follows_float32": follow}
    for run in follow:
        verdict = "" if "follows" not in run else (f", {run['psnr_minus_float32']:+.2f} dB: "
                                                   + ("follows float32" if run["follows"] else "DOES NOT follow"))
        print(f"pre-training {run['steps']} steps in {run['precision']}: held-out PSNR {run['psnr']:.2f} dB{verdict}")
    config.out.mkdir(parents=True, exist_ok=True)
    path = config.out / "train_throughput.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
