"""The deployment gate's judgement (TFX's Evaluator): is a staged version good enough to serve?

The version is scored the way it will be served (its SavedModel through TF Serving's loader) on the held-out
photographs, by the quality benchmark's code (training.evaluation's scores, serving.local's upscaler): PSNR and
SSIM on Y, gain over bicubic, colour shift. Value thresholds bound the candidate alone; change thresholds compare
it with the baseline, the newest blessed version already in the repository (skipped when there is none, as
TFX's GenericChangeThreshold). The verdict, with every metric, threshold, the baseline's numbers and the infra
validation's outcome, is `blessing.json` in the version.
"""

import dataclasses
import datetime
import hashlib
import json
import logging
from pathlib import Path

from core.repository import BLESSING, version_dirs

log = logging.getLogger(__name__)
BACKEND = "savedmodel"  # scored as TF Serving runs it


@dataclasses.dataclass(frozen=True)
class Thresholds:
    # Value thresholds (the candidate alone). The shipped generator: +1.04 dB mean, worst +0.16 dB, largest
    # shift 0.85 levels on the 15 held-out photographs; the 2-minute demo run: about 13 dB below bicubic.
    min_gain: float = 0.0  # dB: mean PSNR gain over bicubic
    min_worst_gain: float = -0.5  # dB: the worst photograph's PSNR gain over bicubic
    max_colour_shift: float = 1.0  # uint8 levels: the largest mean shift of one channel on one photograph
    # Change thresholds (against the baseline, on the photographs both were scored on).
    max_mean_drop: float = 0.05  # dB of mean PSNR
    max_photo_drop: float = 0.3  # dB of PSNR on any one photograph


@dataclasses.dataclass(frozen=True)
class EvaluationSet:
    pairs: list  # training.evaluation.Pair
    digest: str  # names and pixels: two blessings with the same digest were scored on the same photographs
    source: str


def evaluation_set(image_dir: Path | None) -> EvaluationSet:
    from training.evaluation import held_out_pairs
    pairs = held_out_pairs(antialias=True, image_dir=image_dir)
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(pair.name.encode() + b"\0" + pair.hr.tobytes() + pair.lr.tobytes())
    source = str(image_dir) if image_dir else "the held-out photographs (training.data.photos)"
    return EvaluationSet(pairs, digest.hexdigest()[:16], source)


def score_version(version_dir: Path, evaluation: EvaluationSet) -> dict:
    """{"model": …, "bicubic": …} as training.evaluation.score gives them, for one version served as TF Serving
    serves it."""
    from serving.local import photo_upscaler
    from training.evaluation import score
    return score({"model": photo_upscaler(version_dir, BACKEND)}, evaluation.pairs)


def read_blessing(version_dir: Path) -> dict | None:
    try:
        return json.loads((Path(version_dir) / BLESSING).read_text())
    except (OSError, ValueError):
        return None


def is_blessed(version_dir: Path) -> bool:
    blessing = read_blessing(version_dir)
    return bool(blessing and blessing.get("blessed") is True)


def newest_blessed(model_path: Path) -> tuple[int, Path] | None:
    """The baseline: the newest version of the model folder whose blessing.json says blessed."""
    try:
        found = version_dirs(model_path)
    except OSError:
        return None
    for version in sorted(found, reverse=True):
        if is_blessed(found[version]):
            return version, found[version]
    return None


def _baseline(model_path: Path, evaluation: EvaluationSet) -> dict | None:
    found = newest_blessed(model_path)
    if found is None:
        return None
    version, directory = found
    recorded = read_blessing(directory)["evaluation"]
    if recorded.get("digest") == evaluation.digest:
        model, how = recorded["model"], "recorded in its blessing.json"
    else:  # scored on other photographs: score it now on these
        log.info("scoring the baseline, version %d, on this evaluation set", version)
        model, how = score_version(directory, evaluation)["model"], "scored now (its blessing used other photographs)"
    return {"version": version, "how": how, "psnr": model["psnr"], "ssim": model["ssim"], "gain": model.get("gain"),
            "images": {n: {"psnr": v["psnr"]} for n, v in model["images"].items()}}


def _check(name: str, kind: str, value: float, bound: float, at_least: bool, unit: str, detail: str = "") -> dict:
    ok = value >= bound if at_least else value <= bound
    return {"name": name, "kind": kind, "value": round(value, 4),
            "threshold": f"{'≥' if at_least else '≤'} {bound:g}", "unit": unit, "ok": bool(ok),
            **({"detail": detail} if detail else {})}


def checks(model: dict, baseline: dict | None, t: Thresholds) -> list[dict]:
    """Every threshold applied; a change threshold only when there is a baseline."""
    shifts = {n: max(abs(c) for c in v["colour_shift"]) for n, v in model["images"].items()}
    shifted = max(shifts, key=shifts.get)
    found = [_check("mean PSNR gain over bicubic", "value", model["gain"], t.min_gain, True, "dB"),
             _check("worst photograph's gain over bicubic", "value", model["worst_gain"], t.min_worst_gain, True, "dB",
                    model["worst"]),
             _check("largest colour shift", "value", shifts[shifted], t.max_colour_shift, False, "levels", shifted)]
    if baseline is not None:
        common = [n for n in model["images"] if n in baseline["images"]]
        mean = lambda source: sum(source[n]["psnr"] for n in common) / max(len(common), 1)  # noqa: E731
        drops = {n: baseline["images"][n]["psnr"] - model["images"][n]["psnr"] for n in common}
        worst = max(drops, key=drops.get) if drops else ""
        found += [_check(f"mean PSNR drop against version {baseline['version']}", "change",
                         mean(baseline["images"]) - mean(model["images"]), t.max_mean_drop, False, "dB"),
                  _check(f"largest PSNR drop on one photograph against version {baseline['version']}", "change",
                         drops.get(worst, 0.0), t.max_photo_drop, False, "dB", worst)]
    return found


def bless(staging: Path, model_path: Path, evaluation: EvaluationSet, thresholds: Thresholds,
          infra: dict) -> dict:
    """Score the staged version and apply the thresholds: the blessing (for blessing.json)."""
    import time
    started = time.monotonic()
    scored = score_version(staging, evaluation)
    baseline = _baseline(model_path, evaluation)
    found = checks(scored["model"], baseline, thresholds)
    reasons = [f"{c['name']}: {c['value']:+.2f} {c['unit']}{' (' + c['detail'] + ')' if c.get('detail') else ''}, "
               f"required {c['threshold']}" for c in found if not c["ok"]]
    if not infra["passed"]:
        reasons.append(f"infra validation: {infra.get('reason', 'failed')}")
    blessing = {
        "blessed": not reasons, "reasons": reasons, "checks": found, "thresholds": dataclasses.asdict(thresholds),
        "evaluation": {"source": evaluation.source, "digest": evaluation.digest, "backend": f"{BACKEND} (TF "
                       "Serving's graph-mode loader)", "degradation": "antialiased bicubic ×4",
                       "images": [p.name for p in evaluation.pairs], **scored,
                       "seconds": round(time.monotonic() - started, 2)},
        "baseline": baseline, "infra_validation": infra,
        "evaluated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return blessing


def unevaluated(reason: str) -> dict:
    """The blessing of a version the gate did not judge (--no-bless, or parity failed)."""
    return {"blessed": False, "skipped": True, "reasons": [reason],
            "evaluated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write_blessing(version_dir: Path, blessing: dict) -> None:
    (Path(version_dir) / BLESSING).write_text(json.dumps(blessing, indent=2) + "\n")


def table(blessing: dict) -> str:
    """The verdict in one short table."""
    lines = ["| check | value | threshold | |", "|---|---:|---:|---|"]
    for c in blessing.get("checks", []):
        where = f" ({c['detail']})" if c.get("detail") else ""
        lines.append(f"| {c['name']}{where} | {c['value']:+.2f} {c['unit']} | {c['threshold']} {c['unit']} | "
                     f"{'pass' if c['ok'] else '**FAIL**'} |")
    infra = blessing.get("infra_validation")
    if infra:
        verdict = "pass" if infra["passed"] else f"**FAIL**: {infra.get('reason', '')[:160]}"
        lines.append(f"| infra validation: {infra.get('server') or 'a server'} loads it, answers over gRPC | "
                     f"{infra['seconds']:.1f} s | | {verdict} |")
    return "\n".join(lines)
