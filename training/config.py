"""The configuration of `python -m training.run`: one frozen dataclass, presets as named instances."""

import argparse
import dataclasses
import math
from pathlib import Path

from core.cli import UserError, parser
from core.model_spec import ModelSpec
from training.data.photos import TRAIN_SIDES


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    preset: str = "demo"
    # Data
    dataset: str = "auto"  # auto | demo | photos | celeba | folder
    data_dir: Path | None = None
    max_images: int | None = None  # the first N files (CelebA: the article's 10 661)
    cache_dir: Path = Path("cache")
    crop_size: int = 128
    eval_size: int | None = None  # side of the held-out centre crops; default: crop_size
    antialias: bool = False
    augment: bool = True
    channel_shuffle: bool = False  # a random RGB order per crop (colour augmentation)
    photo_sides: tuple[int, ...] = TRAIN_SIDES  # photos data set: long sides the training photographs are reduced to
    # Model
    model: ModelSpec = ModelSpec()
    # Optimisation
    epochs: int = 60
    steps_per_epoch: int | None = None  # default: one pass over the training images
    batch_size: int = 30
    pretrain_steps: int = 0
    pixel_loss: str = "mse"  # mse | l1: the pre-training loss
    lr_consistency: float = 0.0  # weight of the L1 between the degraded output and the LR input (both phases)
    content_loss: str = "vgg"  # vgg | mse | l1 | auto (vgg where its weights are on disk, else mse)
    vgg_weights: Path | None = None
    vgg_imagenet_preprocessing: bool = False
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"  # constant | cosine (over the pre-training)
    lr_cycles: int = 1  # cosine cycles (warm restarts) in the pre-training, each peak half the one before
    gan_learning_rate: float | None = None  # the generator's in the GAN phase; default: learning_rate
    gan_warmup: int = 0  # GAN-phase steps over which the generator's rate ramps up from 0
    disc_learning_rate: float | None = None  # the discriminator's; default: the generator's GAN-phase rate
    gan_loss: str = "vanilla"  # vanilla (the article's) | ragan (ESRGAN's relativistic average GAN)
    adversarial_weight: float = 1e-3  # generator loss = content + weight × adversarial (+ consistency)
    content_weight: float = 1.0  # GAN phase: the weight of the content loss
    sharpen_target: float = 0.0  # GAN phase: the content loss compares SR with HR unsharp-masked by this amount
    feature_matching: float = 0.0  # GAN phase: weight of the L1 between D's inner activations on SR and HR
    disc_spectral_norm: bool = False  # spectral normalisation of every discriminator layer
    disc_high_pass: float = 0.0  # GAN phase: the discriminator sees image − Gaussian blur of this σ (0: the image)
    colour_weight: float = 0.0  # weight of |mean colour of SR − of LR| (both phases)
    periodic_weight: float = 0.0  # GAN phase: weight of the pixel-shuffle grid penalty (losses.periodic_pattern)
    ema_decay: float = 0.0  # GAN phase: evaluate and export a moving average of the generator (0: off)
    objective: str = "perception"  # what the model is for: perception (a GAN) | distortion (PSNR); the gate's rules
    residual_init_scale: float = 1.0  # × the initial weights of each residual block's second conv
    init_generator: Path | None = None  # generator weights (.weights.h5) a fresh run starts from
    seed: int | None = None
    # Speed
    compile_mode: str = "auto"  # auto | xla | graph: how the step is compiled (auto: the faster, timed here)
    precision: str = "float32"  # auto | float32 | mixed_bfloat16 | mixed_float16 (Keras' policies; training.precision)
    strategy: str = "default"  # default | mirrored | multi-worker
    logical_cpus: int | None = None
    # Output
    out_dir: Path = Path("runs/demo")
    checkpoint_every: int = 20  # epochs
    keep_checkpoints: int = 3
    log_every: int = 10  # steps between TensorBoard scalars
    eval_every: int = 0  # pre-training steps between held-out evaluations (+ checkpoint); 0: at its end


PRESETS = {
    # The article's settings (sections 3–5) on CelebA; VGG content loss as the article chose.
    "seed": TrainConfig(preset="seed", dataset="celeba", data_dir=Path("data/img_align_celeba"),
                        max_images=10_661, out_dir=Path("runs/seed")),
    # Runs anywhere in minutes: the article's networks on photographs shipped with scikit-image, pixel-MSE
    # content loss (the article's alternative, needing no ImageNet weights), mostly generator pre-training
    # since a GAN step costs several times more on a CPU.
    "demo": TrainConfig(preset="demo", objective="distortion", dataset="auto", epochs=2, steps_per_epoch=4, batch_size=4,
                        pretrain_steps=24, content_loss="mse", checkpoint_every=1, log_every=4,
                        out_dir=Path("runs/demo")),
    # A real model on a 2-core CPU: the article's generator, unchanged, pre-trained on the photographs that
    # ship with scikit-image, matplotlib and Debian's wallpaper packages (training.data.photos; whole
    # photographs held out), antialiased bicubic degradation, BasicSR's SRResNet recipe (L1, Adam 2e-4
    # cosine-decayed, residual branches initialised ×0.1, 96×96 crops as in the SRGAN paper) with colour kept
    # by a random RGB order per crop and the LR-consistency term, then a short GAN fine-tune with the
    # article's losses (and the same consistency term). Mixed bfloat16 where it is native and faster: it
    # followed float32 within 0.03 dB over the first 5 000 steps (benchmarks/results/precision).
    "photos": TrainConfig(preset="photos", objective="distortion", dataset="photos", crop_size=96, eval_size=256, antialias=True,
                          channel_shuffle=True, epochs=3, steps_per_epoch=40, batch_size=16, pretrain_steps=15_000,
                          pixel_loss="l1", lr_consistency=1.0, content_loss="auto", learning_rate=2e-4,
                          lr_schedule="cosine", lr_cycles=3, gan_learning_rate=1e-5, residual_init_scale=0.1, seed=1,
                          precision="auto",
                          checkpoint_every=1, log_every=25, eval_every=250, out_dir=Path("runs/photos")),
    # The perceptual model: the GAN phase alone, started from the photos preset's SRResNet, on the same data.
    # No VGG19 weights are needed: L1 content against an unsharp-masked HR (Real-ESRGAN), the discriminator's
    # feature matching standing in for a perceptual loss, a spectrally normalised discriminator (Real-ESRGAN's)
    # with the article's GAN loss at a weight that counts against L1, the LR-consistency and mean-colour terms so
    # that colour stays the input's, a warm-up, and a moving average of the generator (what is evaluated and
    # exported). Chosen by short runs (docs/training.md#the-photos-gan-recipe-a-gan-without-vgg19).
    "photos-gan": TrainConfig(preset="photos-gan", dataset="photos", crop_size=96, eval_size=256, antialias=True,
                              channel_shuffle=True, epochs=16, steps_per_epoch=250, batch_size=16,
                              pretrain_steps=0, lr_consistency=1.0, content_loss="l1", learning_rate=2e-5,
                              disc_learning_rate=1e-4, gan_loss="vanilla", adversarial_weight=5e-2,
                              disc_spectral_norm=True, feature_matching=1.0, sharpen_target=0.5, colour_weight=1.0,
                              gan_warmup=200, ema_decay=0.999,
                              init_generator=Path("training/pretrained/photos/srresnet.weights.h5"), seed=1,
                              precision="auto", checkpoint_every=1, keep_checkpoints=20, log_every=25,
                              out_dir=Path("runs/photos-gan"))
}

_MODEL_FLAGS = {"channels": int, "residual_blocks": int, "disc_channels": int, "disc_dense": int,
                "disc_head": str}


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS: a flag not given leaves the preset's value; the help says what each preset has (_preset_defaults).
    p = parser("python -m training.run",
               "Train the article's SRGAN (×4 super-resolution). Re-running with the same --run-dir resumes from "
               "its latest checkpoint.", argument_default=argparse.SUPPRESS)
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                   help="demo: runs in minutes on a CPU, no download; photos: trains a real model on a CPU "
                        "(~3 h on 2 cores), no download; photos-gan: the perceptual model, a GAN phase started from "
                        "photos' SRResNet, no VGG19 weights needed; seed: the article's settings on CelebA")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", choices=["auto", "demo", "photos", "celeba", "folder"],
                      help="auto: demo without --data-dir, celeba for img_align_celeba, else folder; "
                           "photos: whole photographs shipped with scikit-image and matplotlib")
    data.add_argument("--data-dir", type=Path, help="CelebA's img_align_celeba or any folder of images")
    data.add_argument("--max-images", type=int, help="use the first N files (sorted)")
    data.add_argument("--cache-dir", type=Path, help="where centre crops and converted images are kept")
    data.add_argument("--crop-size", type=int, help="HR crop side; LR is crop-size / scale")
    data.add_argument("--eval-size", type=int, help="side of the held-out centre crops (default: crop size)")
    data.add_argument("--antialias", action=argparse.BooleanOptionalAction,
                      help="antialiased bicubic downsampling (the literature's benchmarks) instead of the "
                           "article's plain tf.image.resize bicubic")
    data.add_argument("--photo-sides", type=int, nargs="+",
                      help="photos data set: the long sides (pixels) each training photograph is reduced to, one "
                           "copy per side; smaller sides reduce JPEG's 8×8 blocks, which a discriminator would "
                           "otherwise learn as a mark of real photographs")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction,
                      help="the article's flip/saturation/brightness/contrast/hue augmentation")
    data.add_argument("--channel-shuffle", action=argparse.BooleanOptionalAction,
                      help="a random order of the RGB channels per crop, so the network carries colour "
                           "through instead of learning the training photographs' colours")
    model = p.add_argument_group("model (defaults: the article's)")
    model.add_argument("--channels", type=int, help="generator width (article: 64)")
    model.add_argument("--residual-blocks", type=int, help="generator residual blocks (article: 16)")
    model.add_argument("--disc-channels", type=int, help="discriminator base width (article: 64)")
    model.add_argument("--disc-dense", type=int, help="discriminator dense width (article: 1024)")
    model.add_argument("--disc-head", choices=["patch", "flatten"],
                       help="patch: logits per 8×8-map position (article); flatten: one per image")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int)
    opt.add_argument("--steps-per-epoch", type=int, help="default: one pass over the training images")
    opt.add_argument("--batch-size", type=int, help="global batch (article: 30)")
    opt.add_argument("--pretrain-steps", type=int, help="generator-only pixel-MSE steps before the GAN")
    opt.add_argument("--pixel-loss", choices=["mse", "l1"], help="the pre-training loss")
    opt.add_argument("--lr-consistency", type=float,
                     help="weight of the L1 between the output degraded as the data is and the LR input, in "
                          "both phases: ties the output's colour and low frequencies to the input (0: off)")
    opt.add_argument("--content-loss", choices=["vgg", "mse", "l1", "auto"],
                     help="the GAN phase's content loss. vgg: MSE of VGG19 block5_conv4 features (article); "
                          "mse: pixel MSE; l1: pixel L1 (ESRGAN); auto: vgg when the weights are on disk "
                          "(--vgg-weights or Keras' cache), else mse")
    opt.add_argument("--vgg-weights", type=Path, help="VGG19 ImageNet weights file (notop .h5)")
    opt.add_argument("--vgg-imagenet-preprocessing", action=argparse.BooleanOptionalAction,
                     help="feed VGG19 its ImageNet input (BGR, mean-subtracted) instead of the article's "
                          "[-1, 1] images")
    opt.add_argument("--learning-rate", type=float, help="Adam learning rate (article: 1e-4)")
    opt.add_argument("--lr-schedule", choices=["constant", "cosine"],
                     help="cosine: decay the pre-training rate to 1/1000 by its last step")
    opt.add_argument("--lr-cycles", type=int,
                     help="with cosine: restart the decay this many times in equal parts of the pre-training, "
                          "each peak half the one before (warm restarts)")
    opt.add_argument("--gan-learning-rate", type=float,
                     help="the generator's rate in the GAN phase (default: --learning-rate)")
    opt.add_argument("--gan-warmup", type=int,
                     help="GAN-phase steps over which the generator's rate ramps up linearly from 0 (0: none)")
    opt.add_argument("--disc-learning-rate", type=float,
                     help="the discriminator's Adam rate (default: the generator's GAN-phase rate)")
    opt.add_argument("--gan-loss", choices=["vanilla", "ragan"],
                     help="vanilla: the article's sigmoid cross-entropy GAN; ragan: ESRGAN's relativistic "
                          "average GAN")
    opt.add_argument("--adversarial-weight", type=float,
                     help="weight of the adversarial term in the generator's loss (article: 1e-3)")
    opt.add_argument("--content-weight", type=float,
                     help="GAN phase: weight of the content loss in the generator's (article: 1)")
    opt.add_argument("--sharpen-target", type=float,
                     help="GAN phase: compare SR with HR unsharp-masked by this amount (Real-ESRGAN; 0: off)")
    opt.add_argument("--feature-matching", type=float,
                     help="GAN phase: weight of the L1 between the discriminator's inner activations on SR and on "
                          "HR, a perceptual loss that needs no ImageNet weights (0: off)")
    opt.add_argument("--disc-spectral-norm", action=argparse.BooleanOptionalAction,
                     help="spectral normalisation of the discriminator's layers (Miyato et al. 2018; Real-ESRGAN)")
    opt.add_argument("--disc-high-pass", type=float,
                     help="GAN phase: the discriminator judges the image minus its Gaussian blur of this σ "
                          "(frequency separation: texture only; 0: the whole image)")
    opt.add_argument("--colour-weight", type=float,
                     help="weight of the L1 between the mean colour of the output and of the LR input, in both "
                          "phases: a direct pull against casts (0: off)")
    opt.add_argument("--periodic-weight", type=float,
                     help="GAN phase: weight of the L1 between SR's and HR's pattern of period ×scale in each "
                          "32-pixel block, against the pixel shuffle's grid (0: off)")
    opt.add_argument("--ema-decay", type=float,
                     help="GAN phase: keep an exponential moving average of the generator's weights with this "
                          "decay (e.g. 0.999) and evaluate and export it (0: off)")
    opt.add_argument("--objective", choices=["perception", "distortion"],
                     help="what the model is for, recorded in the run and its exports: perception (a GAN, gated by "
                          "NIQE) or distortion (PSNR-oriented, gated by PSNR)")
    opt.add_argument("--residual-init-scale", type=float,
                     help="scale of the initial weights of each residual block's second conv")
    opt.add_argument("--init-generator", type=Path,
                     help="generator weights (a shipped generator's .weights.h5) that a fresh run starts from")
    opt.add_argument("--seed", type=int, help="random seed for weights and data order")
    speed = p.add_argument_group("speed")
    speed.add_argument("--compile", dest="compile_mode", choices=["auto", "xla", "graph"],
                       help="auto: time XLA and the plain TensorFlow graph on the first batch of each phase and "
                            "keep the faster; xla; graph")
    speed.add_argument("--xla", dest="compile_mode", action="store_const", const="xla",
                       help="the same as --compile xla")
    speed.add_argument("--no-xla", dest="compile_mode", action="store_const", const="graph",
                       help="the same as --compile graph")
    speed.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"],
                       help="auto: mixed_bfloat16 where this machine has bfloat16 arithmetic and a step timed here "
                            "is faster in it, else float32; mixed_float16 (with loss scaling) for GPUs")
    speed.add_argument("--mixed-precision", dest="precision", action="store_const", const="mixed_float16",
                       help="the same as --precision mixed_float16")
    speed.add_argument("--strategy", choices=["default", "mirrored", "multi-worker"],
                       help="tf.distribute strategy; multi-worker reads TF_CONFIG")
    speed.add_argument("--logical-cpus", type=int,
                       help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)")
    out = p.add_argument_group("output")
    out.add_argument("--run-dir", dest="out_dir", type=Path,
                     help="the run's folder (checkpoints, samples, logs); an existing one is resumed; the run "
                          "export.to_onnx --run-dir reads")
    out.add_argument("--checkpoint-every", type=int, help="epochs between checkpoints (article: 20)")
    out.add_argument("--keep-checkpoints", type=int, help="how many checkpoints to keep")
    out.add_argument("--log-every", type=int, help="steps between TensorBoard scalars")
    out.add_argument("--eval-every", type=int,
                     help="pre-training steps between held-out evaluations and checkpoints (0: at its end)")
    _preset_defaults(p)
    return p


def _preset_value(config: TrainConfig, dest: str):
    return getattr(config.model if dest in _MODEL_FLAGS else config, dest)


def _preset_defaults(p: argparse.ArgumentParser) -> None:
    """Append each flag's value in every preset to its help: "(default: 60)" or "(demo: 2, photos: 3, seed: 60)"."""
    for action in p._actions:
        if action.dest in ("help", "preset") or action.help == argparse.SUPPRESS:
            continue
        values = {name: _preset_value(preset, action.dest) for name, preset in sorted(PRESETS.items())}
        shown = {name: "none" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
                 for name, v in values.items()}
        text = (f"default: {next(iter(shown.values()))}" if len(set(shown.values())) == 1
                else ", ".join(f"{name}: {v}" for name, v in shown.items()))
        action.help = f"{action.help} ({text})" if action.help else f"({text})"


# (field, smallest allowed value) for every number a flag sets; None values mean "the default" and pass.
_MINIMUMS = {"max_images": 1, "crop_size": 1, "eval_size": 1, "epochs": 0, "steps_per_epoch": 1, "batch_size": 1,
             "pretrain_steps": 0, "checkpoint_every": 1, "keep_checkpoints": 1, "log_every": 1, "eval_every": 0,
             "logical_cpus": 1, "lr_cycles": 1, "gan_warmup": 0}
_SIDE_MINIMUM = 16
_PACKAGES_ROOT = Path(__file__).resolve().parent.parent  # where training/pretrained/ lies, installed or not
_POSITIVE_FLOATS = ("learning_rate", "gan_learning_rate", "disc_learning_rate", "residual_init_scale")
_NON_NEGATIVE_FLOATS = ("lr_consistency", "adversarial_weight", "content_weight", "sharpen_target", "colour_weight",
                        "periodic_weight", "feature_matching", "disc_high_pass")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def validate(config: TrainConfig) -> TrainConfig:
    """Every numeric setting in range, or a UserError naming the flag: one sentence, exit status 2."""
    for name, minimum in _MINIMUMS.items():
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise UserError(f"{_flag(name)} must be {'at least 1' if minimum else '0 or more'}, got {value}.")
    for name in _NON_NEGATIVE_FLOATS:
        if not getattr(config, name) >= 0:
            raise UserError(f"{_flag(name)} must be 0 or more, got {getattr(config, name)}.")
    if config.init_generator is not None and not config.init_generator.is_absolute() \
            and not config.init_generator.is_file() and (_PACKAGES_ROOT / config.init_generator).is_file():
        # A preset's path (training/pretrained/…) is the package's, wherever the command runs from.
        config = dataclasses.replace(config, init_generator=_PACKAGES_ROOT / config.init_generator)
    if config.init_generator is not None and not config.init_generator.is_file():
        raise UserError(f"--init-generator {config.init_generator} is not a file; pass a .weights.h5 file such "
                        "as training/pretrained/photos/srresnet.weights.h5.")
    for name in _POSITIVE_FLOATS:
        value = getattr(config, name)
        if value is not None and not value > 0:
            raise UserError(f"{_flag(name)} must be a positive number, got {value}.")
    if any(side < _SIDE_MINIMUM for side in config.photo_sides):
        raise UserError(f"--photo-sides must be at least {_SIDE_MINIMUM} pixels each, got "
                        f"{' '.join(map(str, config.photo_sides))}.")
    if not 0 <= config.ema_decay < 1:
        raise UserError(f"--ema-decay must be 0 (off) or between 0 and 1, such as 0.999; got {config.ema_decay}.")
    scale = config.model.scale
    for name in ("crop_size", "eval_size"):
        value = getattr(config, name)
        if value is not None and value % scale:
            raise UserError(f"{_flag(name)} must be a multiple of the scale ({scale}), got {value}.")
    multiple = math.lcm(16, scale)  # the discriminator halves the crop four times
    if config.crop_size % multiple:
        raise UserError(f"--crop-size must be a multiple of {multiple}, got {config.crop_size}.")
    return config


def command_line(saved: dict) -> str:
    """The `python -m training.run` command that gives a run's saved config.json: its preset and every setting
    that differs from it (the flags of the model's layout included). Not the run's folder: where a run lived (an
    absolute path of the machine it was resumed on) is not part of its recipe."""
    import json
    preset = PRESETS[saved["preset"]]
    default = json.loads(json.dumps(dataclasses.asdict(preset), default=str))
    flags = []
    for name, value in saved.items():
        if name == "model":
            flags += [f"{_flag(k)} {v}" for k, v in value.items() if k in _MODEL_FLAGS and v != default["model"][k]]
        elif name not in ("preset", "out_dir") and value != default.get(name) and value is not None:
            flags.append(_flag(name) if value is True else f"--no-{_flag(name)[2:]}" if value is False
                         else f"{_flag(name)} {' '.join(map(str, value))}" if isinstance(value, list)
                         else f"{_flag(name)} {value}")
    return " ".join([f"python -m training.run --preset {saved['preset']}", *flags])


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """The preset, with every flag given on the command line replacing its value."""
    args = vars(build_parser().parse_args(argv))
    if "photo_sides" in args:
        args["photo_sides"] = tuple(args["photo_sides"])
    preset = PRESETS[args.pop("preset", "demo")]
    model_changes = {k: args.pop(k) for k in list(args) if k in _MODEL_FLAGS}
    config = dataclasses.replace(preset, **args)
    if model_changes:
        try:
            config = dataclasses.replace(config, model=dataclasses.replace(config.model, **model_changes))
        except ValueError as error:
            name, _, rest = str(error).partition(" ")
            raise UserError(f"{_flag(name)} {rest}.") from None
    return validate(config)
