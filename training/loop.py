"""The training loop: pre-training then GAN epochs, resumable at any step, with progress and evaluation."""

import dataclasses
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.contract import to_uint8, to_unit
from training import metrics, samples
from training.checkpointing import GAN, PRETRAIN, SRRESNET, RunCheckpoints
from training.interrupt import StopRequest
from training.run_log import RunLog
from training.step import TrainSteps


@dataclasses.dataclass(frozen=True)
class Schedule:
    pretrain_steps: int
    epochs: int
    steps_per_epoch: int
    batch_size: int
    checkpoint_every: int
    log_every: int
    eval_every: int = 0  # pre-training steps between held-out evaluations and checkpoints; 0: at the end


class Interrupted(Exception):
    def __init__(self, signal_number: int, checkpoint: str):
        super().__init__(f"signal {signal_number}")
        self.signal_number = signal_number
        self.checkpoint = checkpoint


@dataclasses.dataclass
class HeldOut:
    """The held-out images as uint8, with their model input and the bicubic baseline precomputed."""

    lr: np.ndarray
    hr: np.ndarray
    bicubic: np.ndarray
    scale: int

    @property
    def lr_unit(self) -> np.ndarray:
        return to_unit(self.lr)


class Trainer:
    def __init__(self, steps: TrainSteps, batches, checkpoints: RunCheckpoints, schedule: Schedule,
                 held_out: HeldOut, log: RunLog, out_dir: Path, write_files: bool = True):
        self.steps = steps
        self.batches = batches  # an endless iterator of (LR, HR), distributed if a strategy needs it
        self.ckpt = checkpoints
        self.schedule = schedule
        self.held_out = held_out
        self.log = log
        self.out_dir = Path(out_dir)
        self.write_files = write_files
        self.images_trained = 0
        self.seconds_training = 0.0
        self.last_checkpoint: str | None = checkpoints.manager.latest_checkpoint
        self.last_quality: dict = {}

    # -- the loop -------------------------------------------------------------------------------------
    def run(self) -> None:
        s = self.schedule
        with StopRequest() as stop:
            if int(self.ckpt.phase.numpy()) == PRETRAIN:
                done = int(self.ckpt.step.numpy())
                if done < s.pretrain_steps:
                    if done == 0 and s.eval_every:
                        self.evaluate("pretrain-curve", self.out_dir / "samples" / "pretrain_000000.png")
                    self._pretrain(done, stop)
                    self.evaluate("pretrain", self.out_dir / "samples" / "pretrain.png")
                self._start_average()
                if not s.pretrain_steps:  # a GAN-only run: where its starting generator stands, for the curve
                    self.evaluate("start", self.out_dir / "samples" / "start.png")
                if done < s.pretrain_steps and self.write_files:
                    self.ckpt.keep(SRRESNET)  # the pre-trained generator, kept past the rotation
                self.ckpt.phase.assign(GAN)
                if s.pretrain_steps:
                    self._checkpoint()
            while int(self.ckpt.epoch.numpy()) < s.epochs:
                epoch = int(self.ckpt.epoch.numpy())
                done = int(self.ckpt.step.numpy()) - s.pretrain_steps - epoch * s.steps_per_epoch
                remaining = s.steps_per_epoch - min(max(done, 0), s.steps_per_epoch)
                self._steps(self.steps.gan, remaining, f"epoch {epoch + 1}/{s.epochs}", stop)
                self.ckpt.epoch.assign_add(1)
                self.evaluate("epoch", self.out_dir / "samples" / f"epoch_{epoch + 1:04d}.png")
                if (epoch + 1) % s.checkpoint_every == 0 or epoch + 1 == s.epochs:
                    self._checkpoint()

    def _start_average(self) -> None:
        """The GAN phase's moving average starts from the generator as the phase begins (pre-trained here, or
        loaded by --init-generator)."""
        nets = self.steps.nets
        if nets.generator_ema is not None:
            nets.generator_ema.set_weights(nets.generator.get_weights())

    def _pretrain(self, done: int, stop: StopRequest) -> None:
        """Pre-training up to its last step, evaluated and checkpointed every `eval_every` steps."""
        s = self.schedule
        while done < s.pretrain_steps:
            chunk = s.pretrain_steps - done
            if s.eval_every:
                chunk = min(chunk, s.eval_every - done % s.eval_every)
            self._steps(self.steps.pretrain, chunk, f"pre-training {done}→{done + chunk}/{s.pretrain_steps}",
                        stop)
            done = int(self.ckpt.step.numpy())
            if done < s.pretrain_steps:
                self.evaluate("pretrain-curve", self.out_dir / "samples" / f"pretrain_{done:06d}.png")
                self._checkpoint()

    def _steps(self, step_fn, count: int, description: str, stop: StopRequest) -> None:
        s = self.schedule
        totals, started = {}, time.perf_counter()
        bar = tqdm(total=count * s.batch_size, desc=description, unit="img", dynamic_ncols=True,
                   mininterval=0.5)
        try:
            for i in range(count):
                logs = {k: float(v) for k, v in step_fn(next(self.batches)).items()}
                self.ckpt.step.assign_add(1)
                step = int(self.ckpt.step.numpy())
                for k, v in logs.items():
                    totals[k] = totals.get(k, 0.0) + v
                bar.update(s.batch_size)
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k in ("g_loss", "d_loss",
                                                                                  "pretrain_loss")})
                if self.write_files and step % s.log_every == 0:
                    self.log.scalars(step, logs, "step/")
                if stop.requested:
                    self._account(i + 1, started)
                    raise Interrupted(stop.signal_number, self._checkpoint())
        finally:
            bar.close()
        self._account(count, started)
        if count and self.write_files:
            seconds = time.perf_counter() - started
            self.log.record("train", int(self.ckpt.step.numpy()),
                            {"phase": description, **{k: v / count for k, v in totals.items()},
                             "images_per_second": count * s.batch_size / seconds})

    def _account(self, steps_done: int, started: float) -> None:
        self.images_trained += steps_done * self.schedule.batch_size
        self.seconds_training += time.perf_counter() - started

    def _checkpoint(self) -> str | None:
        if self.write_files:
            self.last_checkpoint = self.ckpt.save()
        return self.last_checkpoint

    # -- evaluation on the held-out images ------------------------------------------------------------
    def evaluate(self, kind: str, sheet_path: Path) -> dict:
        h = self.held_out
        nets = self.steps.nets
        generator = nets.generator if int(self.ckpt.phase.numpy()) == PRETRAIN else nets.generator_to_evaluate
        sr = to_uint8(generator(h.lr_unit, training=False))
        self.last_quality = metrics.quality_report(sr, h.bicubic, h.hr, h.scale)
        if self.write_files:
            samples.save_sample_sheet(h.bicubic, sr, h.hr, sheet_path)
            self.log.record(kind, int(self.ckpt.step.numpy()),
                            {"epoch": int(self.ckpt.epoch.numpy()), **self.last_quality})
        q = self.last_quality
        niqe = "" if q["niqe"] is None else (f", NIQE {q['niqe']:.2f} (bicubic {q['niqe_bicubic']:.2f}, "
                                             f"HR {q['niqe_hr']:.2f})")
        tqdm.write(f"  held-out PSNR {q['psnr']:.2f} dB, SSIM {q['ssim']:.4f} "
                   f"(bicubic {q['psnr_bicubic']:.2f} dB, {q['ssim_bicubic']:.4f}){niqe}; worst "
                   f"{q['worst_gain']:+.2f} dB, {q['below_bicubic']} below bicubic, colour shift ≤ "
                   f"{q['colour_shift_max']:.2f} → {sheet_path.name}")
        return q
