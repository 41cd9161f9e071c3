"""Does a low precision train like float32? Two runs' held-out curves, step by step.

    python benchmarks/precision_curve.py --run float32=runs/photos-f32/metrics.jsonl \
        --run mixed_bfloat16=runs/photos/metrics.jsonl --steps 5000 --out benchmarks/results/precision

Reads the `metrics.jsonl` of runs of the same recipe and seed that differ in `--precision` only, and prints, for
every step both evaluated (up to --steps), the held-out PSNR of each, the difference from the first run, the
worst held-out crop and the largest colour shift; then the images per second each trained at (median of its
logged rates; compare them only when both ran on the same machine). Writes `precision.json`, `precision.md` and
`precision.png` (PSNR over steps) to --out. `--precision auto` chooses bfloat16 only where it follows float32
within 0.1 dB at the end of such a comparison (docs/training.md).
"""

import dataclasses
import json
import statistics
from pathlib import Path

import repo_path  # noqa: F401  (first: the packages importable)

from core.cli import parser
from report import save_plot

CURVE_KINDS = ("pretrain-curve", "pretrain")  # evaluations along the pre-training, and its last one


@dataclasses.dataclass(frozen=True)
class CurveConfig:
    runs: tuple[tuple[str, Path], ...]
    steps: int | None = None
    out: Path = Path("results/precision")


def parse_args(argv=None) -> CurveConfig:
    p = parser("python benchmarks/precision_curve.py", __doc__)
    p.add_argument("--run", action="append", required=True, metavar="NAME=METRICS",
                   help="a run's metrics.jsonl, named (the first is the reference); twice or more")
    p.add_argument("--steps", type=int, help="compare up to this step (default: all both have)")
    p.add_argument("--out", type=Path, default=CurveConfig.out)
    args = p.parse_args(argv)
    runs = tuple((name, Path(path)) for name, _, path in (item.partition("=") for item in args.run))
    if len(runs) < 2 or any(not name or not path.name for name, path in runs):
        p.error("give two or more --run NAME=path/to/metrics.jsonl")
    return CurveConfig(runs, args.steps, args.out)


def read_run(path: Path) -> tuple[dict, float | None]:
    """{step: evaluation record} of the pre-training, and the median images/s it trained at."""
    curve, rates = {}, []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["kind"] in CURVE_KINDS:
            curve[record["step"]] = record
        elif record["kind"] == "train" and "pretrain_loss" in record:
            rates.append(record["images_per_second"])
    return curve, (statistics.median(rates) if rates else None)


def compare(config: CurveConfig) -> dict:
    curves = {name: read_run(path) for name, path in config.runs}
    reference = config.runs[0][0]
    steps = sorted(set.intersection(*(set(curve) for curve, _ in curves.values())))
    steps = [s for s in steps if config.steps is None or s <= config.steps]
    rows = [{"step": step, **{name: {k: curve[step][k] for k in ("psnr", "ssim", "worst_gain", "colour_shift_max")}
                              for name, (curve, _) in curves.items()}} for step in steps]
    last = rows[-1] if rows else None
    return {"reference": reference, "rows": rows,
            "images_per_second": {name: rate for name, (_, rate) in curves.items()},
            "end": None if last is None else {name: round(last[name]["psnr"] - last[reference]["psnr"], 3)
                                              for name in curves if name != reference}}


def markdown(result: dict) -> str:
    names = list(result["images_per_second"])
    reference = result["reference"]
    head = ["step", *(f"{n} PSNR" for n in names), *(f"{n} − {reference}" for n in names[1:]),
            *(f"{n} worst / shift" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in result["rows"]:
        cells = [str(row["step"]), *(f"{row[n]['psnr']:.2f}" for n in names),
                 *(f"{row[n]['psnr'] - row[reference]['psnr']:+.3f}" for n in names[1:]),
                 *(f"{row[n]['worst_gain']:+.2f} / {row[n]['colour_shift_max']:.2f}" for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    rates = ", ".join(f"{n} {r:.1f}" for n, r in result["images_per_second"].items() if r)
    return "\n".join(lines) + f"\n\nmedian images/s while training: {rates}\n"


def plot(result: dict, out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in result["images_per_second"]:
        ax.plot([r["step"] for r in result["rows"]], [r[name]["psnr"] for r in result["rows"]], marker=".",
                label=name)
    ax.set(xlabel="pre-training step", ylabel="held-out PSNR (dB)", title="The same recipe and seed, two precisions")
    ax.set_ylim(bottom=max(min(r[n]["psnr"] for r in result["rows"] for n in result["images_per_second"]), 24))
    return save_plot(fig, ax, out / "precision.png")


def main(argv=None) -> int:
    config = parse_args(argv)
    result = compare(config)
    if not result["rows"]:
        print("the runs have no evaluated step in common")
        return 1
    config.out.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    print(text)
    (config.out / "precision.json").write_text(json.dumps(result, indent=2) + "\n")
    (config.out / "precision.md").write_text(text)
    print(f"wrote {config.out / 'precision.json'}, {config.out / 'precision.md'}, {plot(result, config.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
