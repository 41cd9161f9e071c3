"""`python -m training.run`: train the article's SRGAN; re-running with the same --run-dir resumes."""

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from core.cli import UserError, exit_on_user_error, setup_logging
from training.config import TrainConfig, config_from_args


def _content_loss(config: TrainConfig):
    from training import losses
    from training.vgg import load_vgg_features, vgg_weights_on_disk
    kind = config.content_loss
    if kind == "auto":
        kind = "vgg" if config.vgg_weights or vgg_weights_on_disk() else "mse"
        print(f"content loss: {kind} ({'VGG19 weights found' if kind == 'vgg' else 'no VGG19 weights on disk'})",
              flush=True)
    if kind in losses.PIXEL_LOSSES:
        pixel = losses.PIXEL_LOSSES[kind]
        return losses.SharpenedTarget(pixel, config.sharpen_target) if config.sharpen_target else pixel
    if config.sharpen_target:
        raise UserError("--sharpen-target applies to a pixel content loss (mse or l1), not to vgg.")
    return losses.VggContentLoss(load_vgg_features(config.vgg_weights), config.vgg_imagenet_preprocessing)


def _optimizer(config: TrainConfig, learning_rate):
    import keras
    adam = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    # float16's narrow range needs loss scaling; bfloat16 has float32's range and does not.
    return keras.optimizers.LossScaleOptimizer(adam) if config.precision == "mixed_float16" else adam


def _save_config(config: TrainConfig, out_dir: Path) -> None:
    (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2, default=str) + "\n")


@exit_on_user_error
def train(config: TrainConfig) -> dict:
    """Run (or resume) training; returns the run summary. Raises `Interrupted` after a saved stop."""
    if config.logical_cpus:
        from training.distribution import split_cpu
        split_cpu(config.logical_cpus)
    import keras

    from training.checkpointing import RunCheckpoints
    from training.data import pipeline, sources
    from training.distribution import is_chief, make_strategy
    from training.loop import HeldOut, Schedule, Trainer
    from training.model import build_discriminator, build_generator
    from training.run_log import RunLog
    from training.losses import GAN_LOSSES, PIXEL_LOSSES, HighPass, LowResolutionConsistency
    from training.samples import bicubic_upscale, save_held_out
    from training.schedule import PretrainThenGan
    from training.step import Networks, TrainSteps

    started = time.perf_counter()
    from training.precision import choose as choose_precision
    saved = config.out_dir / "config.json"
    precision = choose_precision(
        config.precision, lambda: build_generator(config.model, residual_init_scale=config.residual_init_scale),
        config.crop_size // config.model.scale, config.batch_size,
        started_with=json.loads(saved.read_text()).get("precision") if saved.is_file() else None,
        timed=config.strategy != "multi-worker")
    print(precision.describe(), flush=True)
    config = dataclasses.replace(config, precision=precision.policy)  # what config.json records
    if config.seed is not None:  # after the timing, whose networks would otherwise draw from the seeded stream
        keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    strategy = make_strategy(config.strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise UserError(f"--batch-size {config.batch_size} must be a multiple of the {replicas} replicas.")

    with strategy.scope():
        content_loss = _content_loss(config)  # first: a missing VGG19 stops the run before any work

    kind = sources.detect_kind(config.data_dir) if config.dataset == "auto" else config.dataset
    manifest = sources.prepare(kind, config.data_dir, config.cache_dir, config.crop_size, config.max_images,
                               config.photo_sides)
    print(f"data ({kind}): {manifest.report.summary()}; {len(manifest.train)} for training, "
          f"{len(manifest.test)} held out", flush=True)

    out_dir = config.out_dir
    chief = is_chief(strategy)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe_config = pipeline.PipelineConfig(config.crop_size, config.model.scale, config.augment,
                                          config.antialias, config.channel_shuffle)
    lr, hr = pipeline.held_out_pairs(manifest.test, pipe_config, config.eval_size)
    held_out = HeldOut(lr, hr, bicubic_upscale(lr, config.model.scale), config.model.scale)
    if chief:
        save_held_out(lr, hr, out_dir / "test_images")
        _save_config(config, out_dir)

    with strategy.scope():
        gan_rate = config.gan_learning_rate or config.learning_rate
        g_rate = PretrainThenGan(config.learning_rate, config.pretrain_steps, gan_rate,
                                 cosine=config.lr_schedule == "cosine", cycles=config.lr_cycles,
                                 gan_warmup=config.gan_warmup)
        nets = Networks(
            build_generator(config.model, residual_init_scale=config.residual_init_scale),
            build_discriminator(config.model, config.crop_size, spectral_norm=config.disc_spectral_norm),
            _optimizer(config, g_rate), _optimizer(config, config.disc_learning_rate or gan_rate), content_loss,
            pixel_loss=PIXEL_LOSSES[config.pixel_loss], consistency_loss=LowResolutionConsistency(config.antialias),
            consistency_weight=config.lr_consistency, adversarial=GAN_LOSSES[config.gan_loss],
            adversarial_weight=config.adversarial_weight, content_weight=config.content_weight,
            colour_weight=config.colour_weight, feature_matching_weight=config.feature_matching,
            generator_ema=build_generator(config.model, name="generator_ema") if config.ema_decay else None,
            ema_decay=config.ema_decay,
            discriminator_input=HighPass(config.disc_high_pass) if config.disc_high_pass else None,
            periodic_weight=config.periodic_weight, scale=config.model.scale)
        # Non-chief workers of a multi-worker run write their (identical) checkpoints where nobody reads them.
        checkpoint_dir = (out_dir / "checkpoints" if chief
                          else out_dir / f".worker-{strategy.cluster_resolver.task_id}")
        checkpoints = RunCheckpoints(checkpoint_dir, nets, config.model, config.keep_checkpoints)
        resumed = checkpoints.restore_latest()
    if resumed:
        print(f"resuming from {resumed} (step {int(checkpoints.step.numpy())}, "
              f"epoch {int(checkpoints.epoch.numpy())})", flush=True)
    elif config.init_generator is not None:
        nets.generator.load_weights(str(config.init_generator))
        print(f"generator initialised from {config.init_generator}", flush=True)

    steps_per_epoch = config.steps_per_epoch or max(1, len(manifest.train) // config.batch_size)
    schedule = Schedule(config.pretrain_steps, config.epochs, steps_per_epoch, config.batch_size,
                        config.checkpoint_every, config.log_every, config.eval_every)
    dataset = pipeline.training_dataset(manifest.train, pipe_config, config.batch_size, manifest.fixed_size,
                                        in_memory=kind == "photos")
    batches = iter(strategy.experimental_distribute_dataset(dataset) if replicas > 1 else dataset)
    log = RunLog(out_dir)
    steps = TrainSteps(nets, strategy, config.batch_size, config.compile_mode)
    trainer = Trainer(steps, batches, checkpoints, schedule, held_out, log, out_dir, write_files=chief)
    try:
        trainer.run()
        if not trainer.last_quality:  # nothing left to train: still report where the model stands
            trainer.evaluate("final", out_dir / "samples" / "final.png")
    finally:
        log.close()
    summary = {
        "steps": int(checkpoints.step.numpy()), "epochs": int(checkpoints.epoch.numpy()),
        "images_trained_this_run": trainer.images_trained,
        "training_seconds_this_run": round(trainer.seconds_training, 1),
        "images_per_second": round(trainer.images_trained / max(trainer.seconds_training, 1e-9), 3),
        "wall_seconds_this_run": round(time.perf_counter() - started, 1),
        "held_out": trainer.last_quality, "checkpoint": trainer.last_checkpoint,
        "compile": {phase: dataclasses.asdict(choice) for phase, choice in steps.choices.items()},
        "generator_fingerprint": _fingerprint(nets.generator),
        "replicas": replicas, "data": {"kind": kind, **manifest.report.to_dict(),
                                       "train": len(manifest.train), "test": len(manifest.test)},
    }
    if chief:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _fingerprint(model) -> str:
    """A short hash of the weights: every worker of a multi-worker run prints the same one when in step."""
    import hashlib
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(weights.tobytes())
    return digest.hexdigest()[:16]


def _print_summary(summary: dict, out_dir: Path) -> None:
    q = summary["held_out"]
    print(f"\ndone: step {summary['steps']}, epoch {summary['epochs']}; this run trained "
          f"{summary['images_trained_this_run']} images in {summary['training_seconds_this_run']} s "
          f"({summary['images_per_second']} img/s), {summary['wall_seconds_this_run']} s in all")
    print(f"held-out PSNR {q['psnr']:.2f} dB, SSIM {q['ssim']:.4f} "
          f"(bicubic {q['psnr_bicubic']:.2f} dB, {q['ssim_bicubic']:.4f})")
    print(f"checkpoint {summary['checkpoint']}; samples in {out_dir / 'samples'}; "
          f"metrics in {out_dir / 'metrics.jsonl'}")
    print(f"generator weights fingerprint {summary['generator_fingerprint']}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    setup_logging()
    config = config_from_args(argv)  # before TensorFlow is imported: a mistaken flag costs no start-up
    from training.loop import Interrupted
    try:
        summary = train(config)
    except Interrupted as stop:
        logging.getLogger("training").warning("stopped by signal %d; checkpoint %s saved. Run the same command "
                                              "again to resume.", stop.signal_number, stop.checkpoint)
        return 128 + stop.signal_number
    _print_summary(summary, config.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
