"""The pictures of `benchmarks/quality.py`: the comparison sheet, 1:1 texture crops, the learning curve and the
perception–distortion curve of an interpolation sweep."""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BASELINE_COLUMNS = ("bicubic", "lanczos")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _detail_box(hr: np.ndarray, size: int, fine: bool = False) -> tuple[int, int]:
    """Top-left corner of the size×size window with the most detail: the largest luminance variance, or with
    `fine` the largest mean difference between neighbouring pixels (texture, not a broad gradient)."""
    grey = hr.astype(np.float32).mean(axis=2)
    if fine:
        detail = np.zeros_like(grey)
        detail[:, 1:] += np.abs(np.diff(grey, axis=1))
        detail[1:, :] += np.abs(np.diff(grey, axis=0))
        grey = detail
    best, corner = -1.0, (0, 0)
    step = max(size // 2, 1)
    for top in range(0, max(grey.shape[0] - size, 0) + 1, step):
        for left in range(0, max(grey.shape[1] - size, 0) + 1, step):
            window = grey[top:top + size, left:left + size]
            variance = float(window.mean() if fine else window.var())
            if variance > best:
                best, corner = variance, (top, left)
    return corner


SHEET_PHOTOGRAPHS = ("Kite", "BytheWater", "Picture_0B", "grace_hopper")  # sky, water, saturated, a face
SHEET_ROWS = 6


def sheet_photographs(pairs, scored: dict) -> list[str]:
    """The rows of the comparison sheet: the newest model's worst photographs (by PSNR gain over bicubic)
    first, then sky, water, a saturated picture and a face where they are held out, at most `SHEET_ROWS`."""
    names = [p.name for p in pairs]
    model = [m for m in scored if m not in BASELINE_COLUMNS][-1]
    bicubic = scored["bicubic"]["images"]
    by_gain = sorted(names, key=lambda n: scored[model]["images"][n]["psnr"] - bicubic[n]["psnr"])
    chosen = by_gain[:2] + [n for n in SHEET_PHOTOGRAPHS if n in names] + by_gain[2:]
    return list(dict.fromkeys(chosen))[:SHEET_ROWS]


def _columns(outputs: dict) -> list[str]:
    return ["bicubic", *[k for k in outputs if k not in BASELINE_COLUMNS], "original"]


def comparison_sheet(pairs, outputs: dict, path: Path, panel_width: int = 320) -> Path:
    """Per photograph: one row of whole images (bicubic | each model | original), the zoomed detail below."""
    rows = []
    for pair in pairs:
        images = {**{k: v[pair.name] for k, v in outputs.items()}, "original": pair.hr}
        h, w = pair.hr.shape[:2]
        box = min(96, h, w)
        top, left = _detail_box(pair.hr, box)
        panels = []
        for column in _columns(outputs):
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
        rows.append(_row(panels))
    return _stack(rows, path)


def _row(panels: list[Image.Image], gap: int = 6) -> Image.Image:
    row = Image.new("RGB", (len(panels) * (panels[0].width + gap), max(p.height for p in panels)), "white")
    for i, panel in enumerate(panels):
        row.paste(panel, (i * (panels[0].width + gap), 0))
    return row


def _stack(rows: list[Image.Image], path: Path) -> Path:
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 10 for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 10
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


# Which held-out photograph shows which texture; the crop inside it is the window with the most detail.
TEXTURES = (("foliage", "OneStandsOut"), ("fur", "chelsea"), ("hair and fabric", "grace_hopper"),
            ("water", "life"), ("grass and flowers", "seeding"), ("wood and fur", "friends"))


def texture_crops(pairs) -> list[tuple[str, str]]:
    """(label, photograph) for the texture sheet: the named textures that are held out here, else the
    photographs with the most detail."""
    names = {p.name for p in pairs}
    chosen = [(label, name) for label, name in TEXTURES if name in names]
    if len(chosen) < 4:
        rest = sorted((p for p in pairs if p.name not in dict(chosen).values()),
                      key=lambda p: -float(p.hr.astype(np.float32).mean(axis=2).var()))
        chosen += [("detail", p.name) for p in rest[:4 - len(chosen)]]
    return chosen


def texture_sheet(pairs, outputs: dict, path: Path, crop: int = 128) -> Path:
    """1:1 crops, no resampling: per texture one row of bicubic | each model | original, so the reader sees
    the pixels each method made (the zoomed sheet above shows where they lie)."""
    by_name = {p.name: p for p in pairs}
    rows = []
    for label, name in texture_crops(pairs):
        pair = by_name[name]
        size = min(crop, *pair.hr.shape[:2])
        top, left = _detail_box(pair.hr, size, fine=True)
        images = {**{k: v[name] for k, v in outputs.items()}, "original": pair.hr}
        panels = []
        for column in _columns(outputs):
            panel = Image.new("RGB", (max(size, 150), size + 30), "white")
            ImageDraw.Draw(panel).text((2, 2), f"{label} ({name})", fill=(0, 0, 0))
            ImageDraw.Draw(panel).text((2, 14), column, fill=(0, 0, 0))
            panel.paste(Image.fromarray(images[column][top:top + size, left:left + size]), (0, 30))
            panels.append(panel)
        rows.append(_row(panels))
    return _stack(rows, path)


def learning_curve(metrics_path: Path, path: Path) -> dict | None:
    """From a run's metrics.jsonl: held-out PSNR against step with the bicubic line; NIQE (with bicubic's and
    HR's) and the discriminator's accuracy on real and fake where the run logged them. Returns the key facts."""
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    points = sorted((r for r in records if "psnr" in r and "psnr_bicubic" in r), key=lambda r: r["step"])
    if not points:
        return None
    steps = [r["step"] for r in points]
    psnr = [r["psnr"] for r in points]
    bicubic = points[-1]["psnr_bicubic"]
    above = next((r["step"] for r in points if r["psnr"] > r["psnr_bicubic"]), None)
    gan_start = max((r["step"] for r in points if r["kind"] == "pretrain"), default=None)
    niqe = [(r["step"], r["niqe"]) for r in points if r.get("niqe") is not None]
    accuracy = sorted(((r["step"], r["d_real_accuracy"], r["d_fake_accuracy"]) for r in records
                       if r.get("kind") == "train" and "d_real_accuracy" in r))
    panels = 1 + bool(niqe) + bool(accuracy)
    plt = _pyplot()
    fig, axes = plt.subplots(panels, 1, figsize=(7, 3.2 * panels), sharex=True, squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, psnr, marker="o", markersize=3, label="model, mean of the held-out crops")
    ax.axhline(bicubic, color="grey", linestyle="--", label=f"bicubic {bicubic:.2f} dB")
    worst = [(r["step"], bicubic + r["worst_gain"]) for r in points if "worst_gain" in r]
    if worst:  # the worst photograph's gain, drawn against the mean bicubic line
        ax.plot(*zip(*worst), marker=".", markersize=3, color="tab:orange", label="worst crop: bicubic + its gain")
    if above is not None:
        ax.annotate(f"above bicubic from step {above}", (above, bicubic), xytext=(10, -30),
                    textcoords="offset points", arrowprops={"arrowstyle": "->"})
    lowest = min(psnr + [w for _, w in worst])
    ax.set_ylim(max(lowest, bicubic - 8) - 0.2, max(max(psnr), bicubic) + 0.5)
    ax.set_ylabel("PSNR on Y (dB)")
    row = 1
    if niqe:
        ax = axes[row][0]
        row += 1
        ax.plot(*zip(*niqe), marker="o", markersize=3, color="tab:green", label="model")
        ax.axhline(points[-1]["niqe_bicubic"], color="grey", linestyle="--",
                   label=f"bicubic {points[-1]['niqe_bicubic']:.2f}")
        ax.axhline(points[-1]["niqe_hr"], color="black", linestyle=":", label=f"HR {points[-1]['niqe_hr']:.2f}")
        ax.set_ylabel("NIQE (lower: more natural)")
    if accuracy:
        ax = axes[row][0]
        at, real, fake = zip(*accuracy)
        ax.plot(at, real, marker=".", label="on real (HR)")
        ax.plot(at, fake, marker=".", label="on fake (SR)")
        ax.axhline(0.5, color="grey", linestyle="--", label="chance")
        ax.set_ylim(0, 1)
        ax.set_ylabel("discriminator accuracy")
    for (ax,) in axes:
        if gan_start is not None and gan_start < steps[-1]:
            ax.axvline(gan_start, color="tab:red", linestyle=":", label="GAN phase starts")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    axes[-1][0].set_xlabel("training step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    facts = {"first_step_above_bicubic": above, "final_step": steps[-1], "final_psnr": psnr[-1],
             "bicubic_psnr": bicubic, "gan_start_step": gan_start, "source": str(metrics_path)}
    if niqe:
        facts.update({"first_niqe": niqe[0][1], "final_niqe": niqe[-1][1]})
    if accuracy:
        facts.update({"final_d_real_accuracy": accuracy[-1][1], "final_d_fake_accuracy": accuracy[-1][2]})
    return facts


def perception_distortion(sweep: dict, path: Path) -> Path:
    """PSNR (distortion, x) against NIQE (perception, y) of every α of an interpolation sweep, one line per set
    (Blau & Michaeli's plane: lower right is better on both)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for set_name, points in sweep["sets"].items():
        xs, ys = [p["psnr"] for p in points], [p["niqe"] for p in points]
        line, = ax.plot(xs, ys, marker="o", label=set_name)
        for p in points:
            ax.annotate(f"α={p['alpha']:g}", (p["psnr"], p["niqe"]), xytext=(4, 4), textcoords="offset points",
                        fontsize=7, color=line.get_color())
    ax.set_xlabel("PSNR on Y (dB): distortion, higher is better")
    ax.set_ylabel("NIQE: perception, lower is better")
    ax.set_title(f"θ = (1 − α)·{sweep['psnr_model']} + α·{sweep['gan_model']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
