"""Picture quality of exported model versions against bicubic and Lanczos, on photographs never trained on.

    python benchmarks/quality.py                                     # newest version, held-out photographs
    python benchmarks/quality.py --versions 1,2 --backends onnx,savedmodel --images ~/photos --out results/q

Each photograph is cropped to a multiple of 4 and degraded as training degrades it (antialiased bicubic ×4;
`--no-antialias` for the article's plain bicubic), then upscaled by every version on every backend and by
the classical baselines. Reported per photograph and overall, by the same code as training's held-out
evaluation: PSNR and SSIM on Y (BT.601, 4-pixel border cropped) and their gain over bicubic, the colour shift
(mean SR − HR per RGB channel, in uint8 levels), the worst photograph's gain and how many photographs are below
bicubic. Writes quality.json, quality.md, comparison.png (bicubic | each model | original with a zoomed detail,
for the worst photographs and a sky, water, saturated and face picture) and, from the training run's
metrics.jsonl, learning_curve.png (the mean and the worst held-out crop against bicubic).
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import repo_path  # noqa: F401  (first: the packages importable, TensorFlow quiet)
from core.cli import UserError, exit_on_user_error, find_version, parser
from core.export_record import ExportRecord
from core.repository import version_dirs
from serving.local import photo_upscaler


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    model_dir: Path = Path("models/srgan")
    versions: tuple[int, ...] = ()  # default: the newest
    backends: tuple[str, ...] = ("onnx",)  # onnx | onnx-fp16 | onnx-int8 | savedmodel
    images: Path | None = None  # default: the photos data set's held-out photographs
    antialias: bool = True
    metrics: Path | None = None  # a run's metrics.jsonl; default: found from the version's source
    out: Path = Path("results/quality")


def parse_args(argv=None) -> QualityConfig:
    d = QualityConfig()
    p = parser("python benchmarks/quality.py", __doc__)
    p.add_argument("--model-dir", type=Path, default=d.model_dir, help="a model folder (its versions) or one version")
    p.add_argument("--versions", type=lambda s: tuple(int(v) for v in s.split(",") if v), default=d.versions,
                   help="comma-separated versions (default: the newest)")
    p.add_argument("--backends", type=lambda s: tuple(s.split(",")), default=d.backends,
                   help="any of onnx, onnx-fp16, onnx-int8, savedmodel")
    p.add_argument("--images", type=Path, help="a folder of photographs (default: the held-out photographs)")
    p.add_argument("--antialias", action=argparse.BooleanOptionalAction, default=d.antialias,
                   help="antialiased bicubic degradation (the literature's); --no-antialias: the article's")
    p.add_argument("--metrics", type=Path, help="metrics.jsonl of the training run, for the learning curve")
    p.add_argument("--out", type=Path, default=d.out)
    return QualityConfig(**vars(p.parse_args(argv)))


# -- models ---------------------------------------------------------------------------------------------
def _version_dirs(config: QualityConfig) -> list[Path]:
    if not config.versions:
        return [find_version(config.model_dir)]
    try:
        folders = version_dirs(config.model_dir)
    except OSError:
        folders = {}
    missing = [v for v in config.versions if v not in folders]
    if missing:
        raise UserError(f"{config.model_dir} has no version {missing[0]} (it has {sorted(folders)}).")
    return [folders[v] for v in config.versions]


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


# -- pictures -------------------------------------------------------------------------------------------
def _detail_box(hr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size×size window with the most detail (largest luminance variance)."""
    grey = hr.astype(np.float32).mean(axis=2)
    best, corner = -1.0, (0, 0)
    step = max(size // 2, 1)
    for top in range(0, max(grey.shape[0] - size, 0) + 1, step):
        for left in range(0, max(grey.shape[1] - size, 0) + 1, step):
            variance = float(grey[top:top + size, left:left + size].var())
            if variance > best:
                best, corner = variance, (top, left)
    return corner


SHEET_PHOTOGRAPHS = ("Kite", "BytheWater", "Picture_0B", "grace_hopper")  # sky, water, saturated, a face
SHEET_ROWS = 6


def sheet_photographs(pairs, scored: dict) -> list[str]:
    """The rows of the comparison sheet: the newest model's worst photographs (by PSNR gain over bicubic)
    first, then sky, water, a saturated picture and a face where they are held out, at most `SHEET_ROWS`."""
    names = [p.name for p in pairs]
    model = [m for m in scored if m not in ("bicubic", "lanczos")][-1]
    bicubic = scored["bicubic"]["images"]
    by_gain = sorted(names, key=lambda n: scored[model]["images"][n]["psnr"] - bicubic[n]["psnr"])
    chosen = by_gain[:2] + [n for n in SHEET_PHOTOGRAPHS if n in names] + by_gain[2:]
    return list(dict.fromkeys(chosen))[:SHEET_ROWS]


def comparison_sheet(pairs, outputs: dict, path: Path, panel_width: int = 320) -> Path:
    """Per photograph: one row of whole images (bicubic | each model | original), the zoomed detail below."""
    rows = []
    columns = ["bicubic", *[k for k in outputs if k not in ("bicubic", "lanczos")], "original"]
    for pair in pairs:
        images = {**{k: v[pair.name] for k, v in outputs.items()}, "original": pair.hr}
        h, w = pair.hr.shape[:2]
        box = min(96, h, w)
        top, left = _detail_box(pair.hr, box)
        panels = []
        for column in columns:
            whole = Image.fromarray(images[column])
            scaled = whole.resize((panel_width, round(h * panel_width / w)), Image.LANCZOS)
            marker = ImageDraw.Draw(scaled)
            k = panel_width / w
            marker.rectangle([left * k, top * k, (left + box) * k, (top + box) * k], outline=(255, 0, 0), width=2)
            detail = whole.crop((left, top, left + box, top + box)).resize((panel_width, panel_width), Image.NEAREST)
            panel = Image.new("RGB", (panel_width, 20 + scaled.height + 4 + panel_width), "white")
            ImageDraw.Draw(panel).text((4, 4), f"{pair.name}: {column}", fill=(0, 0, 0))
            panel.paste(scaled, (0, 20))
            panel.paste(detail, (0, 24 + scaled.height))
            panels.append(panel)
        row = Image.new("RGB", (len(panels) * (panel_width + 6), max(p.height for p in panels)), "white")
        for i, panel in enumerate(panels):
            row.paste(panel, (i * (panel_width + 6), 0))
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 10 for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 10
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def learning_curve(metrics_path: Path, path: Path) -> dict | None:
    """Held-out PSNR against step from a run's metrics.jsonl, with the bicubic line; returns the key facts."""
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    points = [r for r in records if "psnr" in r and "psnr_bicubic" in r]
    if not points:
        return None
    points.sort(key=lambda r: r["step"])
    steps = [r["step"] for r in points]
    psnr = [r["psnr"] for r in points]
    bicubic = points[-1]["psnr_bicubic"]
    above = next((r["step"] for r in points if r["psnr"] > r["psnr_bicubic"]), None)
    gan_start = max((r["step"] for r in points if r["kind"] == "pretrain"), default=None)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, psnr, marker="o", markersize=3, label="model, mean of the held-out crops")
    ax.axhline(bicubic, color="grey", linestyle="--", label=f"bicubic {bicubic:.2f} dB")
    worst = [(r["step"], bicubic + r["worst_gain"]) for r in points if "worst_gain" in r]
    if worst:  # the worst photograph's gain, drawn against the mean bicubic line
        ax.plot(*zip(*worst), marker=".", markersize=3, color="tab:orange",
                label="worst crop: bicubic + its gain")
    if gan_start is not None and gan_start < steps[-1]:
        ax.axvline(gan_start, color="tab:red", linestyle=":", label="GAN fine-tune starts")
    if above is not None:
        ax.annotate(f"above bicubic from step {above}", (above, bicubic), xytext=(10, -30),
                    textcoords="offset points", arrowprops={"arrowstyle": "->"})
    ax.set_xlabel("training step")
    ax.set_ylabel("PSNR on Y (dB)")
    lowest = min(psnr + [w for _, w in worst])
    ax.set_ylim(max(lowest, bicubic - 8) - 0.2, max(max(psnr), bicubic) + 0.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"first_step_above_bicubic": above, "final_step": steps[-1], "final_psnr": psnr[-1],
            "bicubic_psnr": bicubic, "gan_start_step": gan_start, "source": str(metrics_path)}


# -- report ---------------------------------------------------------------------------------------------
def _shift(values) -> str:
    return ", ".join(f"{v:+.2f}" for v in values)


def markdown(results: dict) -> str:
    """A summary row per method, then per photograph each model's gain over bicubic and colour shift."""
    methods = results["methods"]
    names = list(methods["bicubic"]["images"])
    models = [m for m in methods if m not in ("bicubic", "lanczos")]
    lines = [f"{len(names)} held-out photographs (×4, {results['degradation']} degradation); PSNR (dB) / SSIM on "
             "Y, 4-pixel border cropped; colour shift = mean SR − HR per channel (R, G, B) in uint8 levels.", "",
             "| method | mean PSNR | mean SSIM | vs bicubic | worst photograph | below bicubic (PSNR / SSIM) "
             "| largest colour shift |", "|---|---:|---:|---:|---|---:|---:|"]
    for method, r in methods.items():
        worst = "" if method == "bicubic" else f"{r['worst']} {r['worst_gain']:+.2f} dB"
        below = "" if method == "bicubic" else f"{r['below_bicubic']} / {r['ssim_below_bicubic']}"
        gain = "" if method == "bicubic" else f"{r['gain']:+.2f} dB"
        lines.append(f"| {method} | {r['psnr']:.2f} | {r['ssim']:.4f} | {gain} | {worst} | {below} | "
                     f"{r['colour_shift_max']:.2f} |")
    lines += ["", "| photograph | bicubic | " + " | ".join(f"{m}: gain, SSIM gain, colour shift" for m in models)
              + " |", "|---|---:|" + "---:|" * len(models)]
    for name in names:
        b = methods["bicubic"]["images"][name]
        cells = []
        for m in models:
            v = methods[m]["images"][name]
            cells.append(f"{v['psnr'] - b['psnr']:+.2f} dB, {v['ssim'] - b['ssim']:+.4f}, {_shift(v['colour_shift'])}")
        lines.append(f"| {name} | {b['psnr']:.2f} / {b['ssim']:.4f} | " + " | ".join(cells) + " |")
    curve = results.get("learning_curve")
    if curve:
        lines += ["", f"Learning curve ({curve['source']}): held-out PSNR {curve['final_psnr']:.2f} dB at step "
                      f"{curve['final_step']} against bicubic {curve['bicubic_psnr']:.2f} dB; above bicubic from "
                      f"step {curve['first_step_above_bicubic']}."]
    return "\n".join(lines)


@exit_on_user_error
def run(config: QualityConfig) -> dict:
    from training.evaluation import BASELINES, held_out_pairs, score
    pairs = held_out_pairs(antialias=config.antialias, image_dir=config.images)  # the article's scale
    if not pairs:
        raise UserError(f"no images in {config.images}.")
    upscalers = dict(BASELINES)
    version_dirs = _version_dirs(config)
    for version_dir in version_dirs:
        for backend in config.backends:
            upscalers[f"v{version_dir.name} {backend}"] = photo_upscaler(version_dir, backend)
    scored = score(upscalers, pairs, keep_outputs=True)
    outputs = {method: r.pop("outputs") for method, r in scored.items()}
    results = {"versions": [str(v.resolve()) for v in version_dirs], "images": [p.name for p in pairs],
               "degradation": "antialiased bicubic" if config.antialias else "bicubic", "methods": scored}
    config.out.mkdir(parents=True, exist_ok=True)
    shown = sheet_photographs(pairs, scored)
    files = [comparison_sheet([p for p in pairs if p.name in shown], outputs, config.out / "comparison.png")]
    results["sheet"] = shown
    metrics_path = config.metrics or _source_metrics(version_dirs[-1])
    if metrics_path is not None and metrics_path.is_file():
        results["learning_curve"] = learning_curve(metrics_path, config.out / "learning_curve.png")
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
