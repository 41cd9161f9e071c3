"""`python -m training.publish`: turn a finished run into a shipped generator that needs no training.

    python -m training.publish --run-dir runs/photos --out training/pretrained/photos

Writes generator.weights.h5 (the run's latest checkpoint), srresnet.weights.h5 (the end of its pre-training,
when kept), model.json, the run's metrics.jsonl (the learning curve) and card.json: the command that trained
it, its configuration, the data it saw (with sources and licences) and its scores on the held-out
photographs beside bicubic and Lanczos, computed by `training.evaluation`.
"""

import dataclasses
import json
import shutil
import sys
from pathlib import Path

from core.cli import UserError, exit_on_user_error, parser
from training.config import command_line


@dataclasses.dataclass(frozen=True)
class PublishConfig:
    run_dir: Path = Path("runs/photos")
    out: Path = Path("training/pretrained/photos")


def _scores(generator, pairs, scale: int) -> dict:
    from training.evaluation import BASELINES, keras_upscaler, score
    return score({"model": keras_upscaler(generator), **BASELINES}, pairs, scale)


@exit_on_user_error
def publish(config: PublishConfig) -> dict:
    import tensorflow as tf

    from training.checkpointing import SRRESNET, SRRESNET_WEIGHTS, WEIGHTS_FILENAME, load_generator
    from training.data import photos
    from training.evaluation import held_out_pairs

    run_config = json.loads((config.run_dir / "config.json").read_text()) if (
        config.run_dir / "config.json").is_file() else None
    if run_config is None:
        raise UserError(f"{config.run_dir} is not a training run (no config.json); pass --run-dir.")
    latest = tf.train.latest_checkpoint(str(config.run_dir / "checkpoints"))
    if latest is None:
        raise UserError(f"no checkpoint in {config.run_dir / 'checkpoints'}; train first.")
    pairs = held_out_pairs(run_config["model"]["scale"], antialias=run_config["antialias"])
    config.out.mkdir(parents=True, exist_ok=True)
    final = load_generator(latest)
    final.model.save_weights(str(config.out / WEIGHTS_FILENAME))
    final.spec.save(config.out)
    from training.evaluation import hr_niqe
    held_out = {"final": _scores(final.model, pairs, final.spec.scale), "hr": hr_niqe(pairs, final.spec.scale)}
    srresnet_prefix = config.run_dir / "checkpoints" / SRRESNET
    if Path(f"{srresnet_prefix}.index").exists():
        srresnet = load_generator(str(srresnet_prefix))
        srresnet.model.save_weights(str(config.out / SRRESNET_WEIGHTS))
        held_out["srresnet"] = {"model": _scores(srresnet.model, pairs, srresnet.spec.scale)["model"]}
    if (config.run_dir / "metrics.jsonl").is_file():
        shutil.copy(config.run_dir / "metrics.jsonl", config.out / "metrics.jsonl")
    summary = json.loads((config.run_dir / "summary.json").read_text()) if (
        config.run_dir / "summary.json").is_file() else {}
    steps = {WEIGHTS_FILENAME: final.step}
    if "srresnet" in held_out:
        steps[SRRESNET_WEIGHTS] = srresnet.step
    recipe = {k: v for k, v in run_config.items() if k != "out_dir"}  # where it ran is not part of the recipe
    card = {
        "command": command_line(run_config), "objective": final.objective,
        "step": final.step, "steps": steps, "config": recipe, "data": photos.catalogue(),
        "held_out_evaluation": {"photos": [p.name for p in pairs], "scale": final.spec.scale,
                                "degradation": "antialiased bicubic" if run_config["antialias"] else "bicubic",
                                "metric": f"PSNR/SSIM and NIQE on Y (BT.601), {final.spec.scale}-pixel border "
                                          "cropped"},
        "held_out": held_out, "training_summary": summary,
    }
    (config.out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv=None) -> int:
    p = parser("python -m training.publish", __doc__)
    p.add_argument("--run-dir", type=Path, default=PublishConfig.run_dir)
    p.add_argument("--out", type=Path, default=PublishConfig.out)
    config = PublishConfig(**vars(p.parse_args(argv)))
    card = publish(config)
    scores = card["held_out"]
    for name, result in [("final", scores["final"]["model"]), *(
            [("srresnet", scores["srresnet"]["model"])] if "srresnet" in scores else []),
            ("bicubic", scores["final"]["bicubic"]), ("lanczos", scores["final"]["lanczos"])]:
        against = "" if name == "bicubic" else (
            f"  {result['gain']:+.2f} dB over bicubic, worst {result['worst']} {result['worst_gain']:+.2f} dB, "
            f"{result['below_bicubic']} below bicubic")
        print(f"{name:9s} PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.4f}  NIQE {result['niqe']:.2f}  "
              f"largest colour shift {result['colour_shift_max']:.2f}{against}")
    print(f"written {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
