"""Picture quality of exported model versions and shipped generators against bicubic and Lanczos, on photographs
never trained on and on the standard benchmark sets.

    python benchmarks/quality.py                                     # newest version, held-out photographs
    python benchmarks/quality.py --model-dir models/srgan --model-dir models/srgan_gan \
        --dataset Set5=~/sr/Set5 --dataset Set14=~/sr/Set14        # both models, beside the SRGAN paper
    python benchmarks/quality.py --weights training/pretrained/photos --weights training/pretrained/photos-gan \
        --sweep training/pretrained/photos training/pretrained/photos-gan   # + the α sweep
    python benchmarks/quality.py --checkpoint runs/photos-gan --dataset Set14=~/sr/Set14   # a run, mid-training

Held-out photographs are cropped to a multiple of 4 and degraded as training degrades them (antialiased bicubic
×4; `--no-antialias` for the article's plain bicubic). A benchmark set (`--dataset NAME=DIR`, repeatable) is read
as its papers read it (training.benchmark_sets: its own LR where it ships one, HR cropped to a multiple of 4).
Every model and the classical baselines upscale every image. Reported per set, by the same code as training's
held-out evaluation: PSNR and SSIM on Y (BT.601, 4-pixel border cropped) and their gain over bicubic; NIQE
(training.niqe; lower is more natural; HR's own NIQE is the floor; images under 192 pixels a side get none and
are counted); the high-frequency energy ratio against HR in the band the ×4 LR lacks (a diagnostic); the colour
shift (mean SR − HR per RGB channel, in uint8 levels), the worst photograph's gain and how many photographs are
below bicubic. The SRGAN paper's figures stand beside Set5, Set14 and BSD100.

Writes quality.json, quality.md, comparison.png (bicubic | each model | original with a zoomed detail),
textures.png (1:1 crops of foliage, fur, hair and fabric, water), learning_curve.png (from the training run's
metrics.jsonl: PSNR, NIQE, the discriminator's accuracy) and, with --sweep, perception_distortion.png: ESRGAN's
network interpolation θ = (1 − α)·θ_PSNR + α·θ_GAN at each --alphas, PSNR against NIQE.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import repo_path  # noqa: F401  (first: the packages importable, TensorFlow quiet)
import quality_plots as plots
from core.cli import UserError, exit_on_user_error, find_version, parser
from core.export_record import ExportRecord
from core.repository import version_dirs
from serving.local import photo_upscaler

HELD_OUT = "held-out"
DEFAULT_MODEL_DIR = Path("models/srgan")


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    model_dirs: tuple[Path, ...] = ()  # model folders (their newest version) or versions; default: models/srgan
    versions: tuple[int, ...] = ()  # of the one --model-dir; default: the newest
    backends: tuple[str, ...] = ("onnx",)  # onnx | onnx-fp16 | onnx-int8 | savedmodel
    weights: tuple[Path, ...] = ()  # shipped generators (training/pretrained/…), scored through Keras
    checkpoints: tuple[Path, ...] = ()  # training runs (their latest checkpoint) or checkpoint prefixes, in Keras
    images: Path | None = None  # default: the photos data set's held-out photographs
    held_out: bool = True  # False: the benchmark sets only
    datasets: tuple[tuple[str, Path], ...] = ()  # (name, folder) of standard benchmark sets
    sweep: tuple[Path, Path] | None = None  # (PSNR generator, GAN generator) to interpolate between
    alphas: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    antialias: bool = True
    metrics: Path | None = None  # a run's metrics.jsonl; default: found from the version's source
    out: Path = Path("results/quality")


def _dataset(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR (such as Set5=~/sr/Set5), got {text!r}")
    return name, Path(folder).expanduser()


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0,0.5,1, got {text!r}") from None


def parse_args(argv=None) -> QualityConfig:
    d = QualityConfig()
    p = parser("python benchmarks/quality.py", __doc__)
    p.add_argument("--model-dir", dest="model_dirs", type=Path, action="append", default=[],
                   help="a model folder (its newest version) or one version; repeatable (default: models/srgan "
                        "unless --weights or --sweep is given)")
    p.add_argument("--versions", type=lambda s: tuple(int(v) for v in s.split(",") if v), default=d.versions,
                   help="comma-separated versions of the one --model-dir (default: the newest)")
    p.add_argument("--backends", type=lambda s: tuple(s.split(",")), default=d.backends,
                   help="any of onnx, onnx-fp16, onnx-int8, savedmodel")
    p.add_argument("--weights", type=Path, action="append", default=[],
                   help="a shipped generator (a folder with generator.weights.h5 and model.json, such as "
                        "training/pretrained/photos-gan), scored in Keras; repeatable")
    p.add_argument("--checkpoint", dest="checkpoints", type=Path, action="append", default=[],
                   help="a training run (its latest checkpoint; the moving average where the run kept one) or a "
                        "checkpoint prefix, scored in Keras; repeatable")
    p.add_argument("--images", type=Path, help="a folder of photographs (default: the held-out photographs)")
    p.add_argument("--held-out", action=argparse.BooleanOptionalAction, default=d.held_out,
                   help="score the held-out photographs (or --images); --no-held-out: the --dataset sets only")
    p.add_argument("--dataset", dest="datasets", type=_dataset, action="append", default=[],
                   help="NAME=DIR: a benchmark set (*_HR/*_LR pairs, GTmod12/ + LRbicx4/, or HR images alone); "
                        "repeatable")
    p.add_argument("--sweep", type=Path, nargs=2, metavar=("PSNR_WEIGHTS", "GAN_WEIGHTS"),
                   help="interpolate between two shipped generators at each --alphas and plot PSNR against NIQE")
    p.add_argument("--alphas", type=_floats, default=d.alphas, help="the sweep's α values (0: the first model)")
    p.add_argument("--antialias", action=argparse.BooleanOptionalAction, default=d.antialias,
                   help="antialiased bicubic degradation (the literature's); --no-antialias: the article's")
    p.add_argument("--metrics", type=Path, help="metrics.jsonl of the training run, for the learning curve")
    p.add_argument("--out", type=Path, default=d.out)
    args = vars(p.parse_args(argv))
    for name in ("model_dirs", "weights", "checkpoints"):
        args[name] = tuple(args[name])
    args["datasets"], args["sweep"] = tuple(args["datasets"]), tuple(args["sweep"]) if args["sweep"] else None
    return QualityConfig(**args)


# -- models ---------------------------------------------------------------------------------------------
def _model_dirs(config: QualityConfig) -> tuple[Path, ...]:
    if config.model_dirs or config.weights or config.checkpoints or config.sweep:
        return config.model_dirs
    return (DEFAULT_MODEL_DIR,)


def _version_dirs(config: QualityConfig) -> list[Path]:
    model_dirs = _model_dirs(config)
    if not config.versions:
        return [find_version(model_dir) for model_dir in model_dirs]
    if len(model_dirs) != 1:
        raise UserError("--versions needs exactly one --model-dir.")
    try:
        folders = version_dirs(model_dirs[0])
    except OSError:
        folders = {}
    missing = [v for v in config.versions if v not in folders]
    if missing:
        raise UserError(f"{model_dirs[0]} has no version {missing[0]} (it has {sorted(folders)}).")
    return [folders[v] for v in config.versions]


def _upscalers(config: QualityConfig, version_folders: list[Path]) -> dict:
    """Every model to score, by the name its rows carry: "v3 onnx" (one model folder), "srgan_gan v3 onnx"
    (several), or a shipped generator's folder name."""
    from export.checkpoint import find_checkpoint
    from training.checkpointing import load_generator, load_weights
    from training.evaluation import keras_upscaler
    several = len({v.parent for v in version_folders}) > 1
    upscalers = {}
    for version_dir in version_folders:
        for backend in config.backends:
            name = f"{version_dir.parent.name} v{version_dir.name}" if several else f"v{version_dir.name}"
            upscalers[f"{name} {backend}"] = photo_upscaler(version_dir, backend)
    for weights in config.weights:
        upscalers[weights.name if weights.is_dir() else weights.stem] = keras_upscaler(load_weights(weights).model)
    for checkpoint in config.checkpoints:
        found = find_checkpoint(checkpoint, None) if checkpoint.is_dir() else find_checkpoint(None, checkpoint)
        trained = load_generator(found)
        upscalers[f"{Path(found).parent.parent.name} step {trained.step}"] = keras_upscaler(trained.model)
    return upscalers


def _source_metrics(version_dir: Path) -> Path | None:
    """The metrics.jsonl of the run (or shipped generator) a version was exported from, if it is still there."""
    source_checkpoint = ExportRecord.load(version_dir).source_checkpoint
    if not source_checkpoint:
        return None
    source = Path(source_checkpoint)
    for folder in (source.parent, source.parent.parent):
        if (folder / "metrics.jsonl").is_file():
            return folder / "metrics.jsonl"
    return None


# -- report ---------------------------------------------------------------------------------------------
def _shift(values) -> str:
    return ", ".join(f"{v:+.2f}" for v in values)


def _niqe(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def set_table(name: str, result: dict) -> list[str]:
    """One row per method on a set, HR's NIQE (the floor) and the paper's figures where it has them."""
    methods = result["methods"]
    lines = [f"**{name}**: {result['description']}; PSNR (dB) / SSIM on Y, 4-pixel border cropped; NIQE on Y "
             "(lower is more natural); HF = high-frequency energy against HR; colour shift = mean SR − HR per "
             "channel in uint8 levels.", "",
             "| method | PSNR | SSIM | vs bicubic | NIQE | HF | worst image | below bicubic (PSNR / SSIM) "
             "| largest colour shift |", "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for method, r in methods.items():
        worst = "" if method == "bicubic" else f"{r['worst']} {r['worst_gain']:+.2f} dB"
        below = "" if method == "bicubic" else f"{r['below_bicubic']} / {r['ssim_below_bicubic']}"
        gain = "" if method == "bicubic" else f"{r['gain']:+.2f} dB"
        lines.append(f"| {method} | {r['psnr']:.2f} | {r['ssim']:.4f} | {gain} | {_niqe(r['niqe'])} | "
                     f"{r['hf_ratio']:.3f} | {worst} | {below} | {r['colour_shift_max']:.2f} |")
    lines.append(f"| HR (the original) | | | | {_niqe(result['hr']['niqe'])} | 1 | | | |")
    skipped = result["hr"]["niqe_skipped"]
    if skipped:
        lines.append(f"\n{skipped} of {len(methods['bicubic']['images'])} images are under 192 pixels a side "
                     "after the border: NIQE's 96-pixel blocks leave too few samples there, so they have no NIQE "
                     "and the means are over the others.")
    paper = result.get("paper")
    if paper:
        lines.append("\n" + result["paper_source"] + ": " + "; ".join(
            f"{method} {psnr:.2f} / {ssim:.4f}" for method, (psnr, ssim) in paper.items())
            + " (their SSIM implementation differs from ours; compare PSNR).")
    return lines


def markdown(results: dict) -> str:
    """A table per set, then per held-out photograph each model's gain over bicubic, NIQE and colour shift."""
    lines = []
    for name, result in results["sets"].items():
        lines += set_table(name, result) + [""]
    held_out = results["sets"].get(HELD_OUT)
    if held_out:
        methods = held_out["methods"]
        models = [m for m in methods if m not in plots.BASELINE_COLUMNS]
        lines += ["| photograph | bicubic PSNR / SSIM / NIQE | " + " | ".join(
            f"{m}: gain, SSIM gain, NIQE, colour shift" for m in models) + " |",
            "|---|---:|" + "---:|" * len(models)]
        for image in methods["bicubic"]["images"]:
            b = methods["bicubic"]["images"][image]
            cells = [f"{v['psnr'] - b['psnr']:+.2f} dB, {v['ssim'] - b['ssim']:+.4f}, {_niqe(v['niqe'])}, "
                     f"{_shift(v['colour_shift'])}" for v in (methods[m]["images"][image] for m in models)]
            lines.append(f"| {image} | {b['psnr']:.2f} / {b['ssim']:.4f} / {_niqe(b['niqe'])} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    sweep = results.get("sweep")
    if sweep:
        lines += [f"Interpolation sweep θ = (1 − α)·{sweep['psnr_model']} + α·{sweep['gan_model']}:", "",
                  "| set | " + " | ".join(f"α = {a:g}" for a in sweep["alphas"]) + " |",
                  "|---|" + "---:|" * len(sweep["alphas"])]
        for set_name, points in sweep["sets"].items():
            lines.append(f"| {set_name} (PSNR / NIQE) | " + " | ".join(
                f"{p['psnr']:.2f} / {_niqe(p['niqe'])}" for p in points) + " |")
        lines.append("")
    curve = results.get("learning_curve")
    if curve:
        line = (f"Learning curve ({curve['source']}): held-out PSNR {curve['final_psnr']:.2f} dB at step "
                f"{curve['final_step']} against bicubic {curve['bicubic_psnr']:.2f} dB")
        if curve.get("final_niqe") is not None:
            line += f"; NIQE {curve['first_niqe']:.2f} → {curve['final_niqe']:.2f}"
        if curve.get("final_d_real_accuracy") is not None:
            line += (f"; the discriminator ends {curve['final_d_real_accuracy']:.2f} right on real, "
                     f"{curve['final_d_fake_accuracy']:.2f} on fake")
        lines.append(line + ".")
    return "\n".join(lines)


def _sets(config: QualityConfig) -> dict:
    """{name: (pairs, description, paper figures or None)} for the held-out photographs and every --dataset."""
    from training.benchmark_sets import PAPER, read_set
    from training.evaluation import held_out_pairs
    sets = {}
    if config.held_out:
        pairs = held_out_pairs(antialias=config.antialias, image_dir=config.images)  # the article's scale
        if not pairs:
            raise UserError(f"no images in {config.images}.")
        degradation = "antialiased bicubic" if config.antialias else "bicubic"
        what = f"{config.images}" if config.images else "held-out photographs (never trained on)"
        sets[HELD_OUT] = (pairs, f"{len(pairs)} {what}, ×4 by {degradation}", None)
    for name, folder in config.datasets:
        if name in sets:
            raise UserError(f"--dataset {name} is given twice; give each set its own name.")
        benchmark = read_set(name, folder)
        sets[name] = (benchmark.pairs, benchmark.describe(), benchmark.paper_figures and (PAPER, benchmark.paper_figures))
    if not sets:
        raise UserError("nothing to score: --no-held-out needs at least one --dataset NAME=DIR.")
    return sets


def _sweep(config: QualityConfig, sets: dict) -> dict:
    from training.evaluation import keras_upscaler, score
    from training.interpolation import interpolate
    from training.checkpointing import load_weights
    psnr_model, gan_model = (load_weights(path) for path in config.sweep)
    points = {name: [] for name in sets}
    for alpha in config.alphas:
        upscale = keras_upscaler(interpolate(psnr_model, gan_model, alpha).model)
        for name, (pairs, _, _) in sets.items():
            r = score({"model": upscale}, pairs)["model"]
            points[name].append({"alpha": alpha, "psnr": r["psnr"], "ssim": r["ssim"], "niqe": r["niqe"],
                                 "colour_shift_max": r["colour_shift_max"]})
        print(f"  α = {alpha:g}: " + "; ".join(f"{n} PSNR {p[-1]['psnr']:.2f} NIQE {_niqe(p[-1]['niqe'])}"
                                               for n, p in points.items()), flush=True)
    return {"psnr_model": config.sweep[0].name, "gan_model": config.sweep[1].name, "alphas": list(config.alphas),
            "sets": points}


@exit_on_user_error
def run(config: QualityConfig) -> dict:
    from training.evaluation import BASELINES, hr_niqe, score
    if any(not 0 <= a <= 1 for a in config.alphas):
        raise UserError(f"--alphas must lie between 0 and 1, got {','.join(map(str, config.alphas))}.")
    sets = _sets(config)
    version_folders = _version_dirs(config)
    upscalers = {**BASELINES, **_upscalers(config, version_folders)}
    results = {"versions": [str(v.resolve()) for v in version_folders], "weights": [str(w) for w in config.weights],
               "sets": {}}
    config.out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, (pairs, description, paper) in sets.items():
        scored = score(upscalers, pairs, keep_outputs=True)
        outputs = {method: r.pop("outputs") for method, r in scored.items()}
        results["sets"][name] = {"description": description, "methods": scored, "hr": hr_niqe(pairs, 4),
                                 **({"paper_source": paper[0], "paper": paper[1]} if paper else {})}
        if name == next(iter(sets)):  # the sheets: of the held-out photographs (or the first set)
            results["images"] = [p.name for p in pairs]
            results["methods"] = scored
            shown = plots.sheet_photographs(pairs, scored)
            files.append(plots.comparison_sheet([p for p in pairs if p.name in shown], outputs,
                                                config.out / "comparison.png"))
            files.append(plots.texture_sheet(pairs, outputs, config.out / "textures.png"))
            results["sheet"] = shown
    if config.sweep:
        results["sweep"] = _sweep(config, sets)
        files.append(plots.perception_distortion(results["sweep"], config.out / "perception_distortion.png"))
    metrics_path = config.metrics or (_source_metrics(version_folders[-1]) if version_folders else None)
    if metrics_path is not None and metrics_path.is_file():
        results["learning_curve"] = plots.learning_curve(metrics_path, config.out / "learning_curve.png")
        files.append(config.out / "learning_curve.png")
    (config.out / "quality.json").write_text(json.dumps(results, indent=2) + "\n")
    (config.out / "quality.md").write_text(markdown(results) + "\n")
    results["files"] = [str(config.out / "quality.json"), str(config.out / "quality.md"), *map(str, files)]
    return results


def main(argv=None) -> int:
    results = run(parse_args(argv))
    print(markdown(results))
    print("\nwritten " + ", ".join(results["files"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
