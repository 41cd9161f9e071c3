"""The deployment gate's judgement (TFX's Evaluator): is a staged version good enough to serve?

The version is scored the way it will be served (its SavedModel through TF Serving's loader) on the held-out
photographs, by the quality benchmark's code (training.evaluation's scores, serving.local's upscaler): PSNR and
SSIM on Y, gain over bicubic, NIQE, colour shift. A model is judged by what it was trained for (its objective), as
ESRGAN and BasicSR ship both kinds:
- distortion (PSNR-oriented, SRResNet): value thresholds on its PSNR gain over bicubic (mean and worst photograph)
  and its colour shift; change thresholds against the newest blessed distortion version of the model;
- perception (a GAN): its mean NIQE must be below the PSNR baseline's (the newest blessed distortion version in the
  repository, or --psnr-baseline) by a margin, with a PSNR floor against bicubic (mean and worst photograph, looser
  than a PSNR model's), the same colour bound, and change thresholds against the newest blessed perceptual
  version (NIQE must not rise, PSNR must not fall far).
Change thresholds are skipped when there is no such version, as TFX's GenericChangeThreshold. The verdict, with
every metric, threshold, the baselines' numbers and the infra validation's outcome, is `blessing.json` in the
version.
"""

import dataclasses
import datetime
import hashlib
import json
import logging
from pathlib import Path

from core.repository import BLESSING, EXPORT_RECORD, version_dirs

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
    # A perceptual model (objective "perception"): NIQE against the PSNR baseline, a looser PSNR floor, and change
    # thresholds against the newest blessed perceptual version. min_gain and max_colour_shift apply to it too.
    min_niqe_gain: float = 0.1  # mean NIQE below the PSNR baseline's by at least this
    perceptual_min_worst_gain: float = -1.0  # dB: the worst photograph's PSNR gain over bicubic
    max_niqe_rise: float = 0.1  # mean NIQE above the newest blessed perceptual version's, at most
    perceptual_max_mean_drop: float = 0.5  # dB of mean PSNR below the newest blessed perceptual version, at most


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


def objective_of(version_dir: Path) -> str:
    """What a version was exported as: its blessing's objective, else export.json's (distortion before both)."""
    blessing = read_blessing(version_dir) or {}
    if "objective" in blessing:
        return blessing["objective"]
    from core.export_record import ExportRecord
    return ExportRecord.load(version_dir).objective


def newest_blessed(model_path: Path, objective: str | None = None) -> tuple[int, Path] | None:
    """The newest version of the model folder whose blessing.json says blessed (of that objective, if given)."""
    try:
        found = version_dirs(model_path)
    except OSError:
        return None
    for version in sorted(found, reverse=True):
        if is_blessed(found[version]) and (objective is None or objective_of(found[version]) == objective):
            return version, found[version]
    return None


def psnr_baseline(where: Path, exclude: Path | None = None) -> tuple[str, int, Path] | None:
    """(model name, version, folder) of the PSNR model a perceptual candidate is compared with: `where` as a
    version folder, else the newest blessed distortion version of `where` as a model folder, else the most
    recently blessed distortion version of any model in `where` as a repository."""
    where = Path(where)
    if (where / BLESSING).is_file() or (where / EXPORT_RECORD).is_file():  # a version folder
        return where.parent.name, int(where.name), where
    found = newest_blessed(where, "distortion")
    if found is not None:
        return where.name, *found
    candidates = []
    for model in sorted(p for p in where.iterdir() if p.is_dir() and p != exclude) if where.is_dir() else []:
        found = newest_blessed(model, "distortion")
        if found is not None:
            candidates.append(((read_blessing(found[1]) or {}).get("evaluated_at", ""), model.name, *found))
    return max(candidates)[1:] if candidates else None


def _scores_on(directory: Path, evaluation: EvaluationSet, fields: tuple[str, ...]) -> tuple[dict, str]:
    """A blessed version's model scores on this evaluation set: those of its blessing.json when they were made
    on the same photographs and hold every field needed, else scored now."""
    recorded = (read_blessing(directory) or {}).get("evaluation", {})
    if recorded.get("digest") == evaluation.digest and all(k in recorded.get("model", {}) for k in fields):
        return recorded["model"], "recorded in its blessing.json"
    log.info("scoring %s on this evaluation set", directory)
    return score_version(directory, evaluation)["model"], "scored now (its blessing used other photographs)"


def _baseline(model_path: Path, evaluation: EvaluationSet, objective: str) -> dict | None:
    found = newest_blessed(model_path, objective)
    if found is None:
        return None
    version, directory = found
    model, how = _scores_on(directory, evaluation, ("psnr", "niqe") if objective == "perception" else ("psnr",))
    return {"version": version, "how": how, "psnr": model["psnr"], "ssim": model["ssim"], "gain": model.get("gain"),
            "niqe": model.get("niqe"), "images": {n: {"psnr": v["psnr"]} for n, v in model["images"].items()}}


def _psnr_reference(where: Path, model_path: Path, evaluation: EvaluationSet, bicubic: dict) -> dict:
    """The NIQE a perceptual candidate must beat: the PSNR baseline's, or bicubic's where there is none."""
    found = psnr_baseline(where, exclude=model_path)
    if found is None:
        return {"model": "bicubic", "niqe": bicubic["niqe"],
                "how": f"no blessed PSNR model in {where}: compared with bicubic"}
    name, version, directory = found
    model, how = _scores_on(directory, evaluation, ("niqe",))
    return {"model": f"{name} version {version}", "niqe": model["niqe"], "psnr": model["psnr"], "how": how}


def _check(name: str, kind: str, value: float, bound: float, at_least: bool, unit: str, detail: str = "") -> dict:
    ok = value >= bound if at_least else value <= bound
    return {"name": name, "kind": kind, "value": round(value, 4),
            "threshold": f"{'≥' if at_least else '≤'} {bound:g}", "unit": unit, "ok": bool(ok),
            **({"detail": detail} if detail else {})}


def _niqe_check(name: str, kind: str, value: float | None, bound: float, at_least: bool) -> dict:
    """A NIQE threshold; failed, saying why, where NIQE could not be measured (photographs under 192 pixels)."""
    if value is not None:
        return _check(name, kind, value, bound, at_least, "NIQE")
    from training.niqe import MIN_SIDE
    return {"name": name, "kind": kind, "value": float("nan"), "threshold": f"{'≥' if at_least else '≤'} {bound:g}",
            "unit": "NIQE", "ok": False,
            "detail": f"no NIQE: its photographs are under {MIN_SIDE} pixels a side; pass --eval-images "
                      "with larger ones"}


def checks(model: dict, baseline: dict | None, t: Thresholds, objective: str = "distortion",
           psnr_reference: dict | None = None) -> list[dict]:
    """Every threshold of the objective applied; a change threshold only when there is a baseline."""
    shifts = {n: max(abs(c) for c in v["colour_shift"]) for n, v in model["images"].items()}
    shifted = max(shifts, key=shifts.get)
    perceptual = objective == "perception"
    found = []
    if perceptual:
        reference = psnr_reference["niqe"]
        found.append(_niqe_check(f"mean NIQE below {psnr_reference['model']}'s"
                                 + ("" if reference is None else f" ({reference:.2f})"), "value",
                                 None if None in (reference, model["niqe"]) else reference - model["niqe"],
                                 t.min_niqe_gain, True))
    found += [_check("mean PSNR gain over bicubic", "value", model["gain"], t.min_gain, True, "dB"),
              _check("worst photograph's gain over bicubic", "value", model["worst_gain"],
                     t.perceptual_min_worst_gain if perceptual else t.min_worst_gain, True, "dB", model["worst"]),
              _check("largest colour shift", "value", shifts[shifted], t.max_colour_shift, False, "levels", shifted)]
    if baseline is None:
        return found
    common = [n for n in model["images"] if n in baseline["images"]]
    mean = lambda source: sum(source[n]["psnr"] for n in common) / max(len(common), 1)  # noqa: E731
    mean_drop = _check(f"mean PSNR drop against version {baseline['version']}", "change",
                       mean(baseline["images"]) - mean(model["images"]),
                       t.perceptual_max_mean_drop if perceptual else t.max_mean_drop, False, "dB")
    if perceptual:
        rise = None if None in (model["niqe"], baseline["niqe"]) else model["niqe"] - baseline["niqe"]
        return found + [_niqe_check(f"mean NIQE rise against version {baseline['version']}", "change", rise,
                                    t.max_niqe_rise, False), mean_drop]
    drops = {n: baseline["images"][n]["psnr"] - model["images"][n]["psnr"] for n in common}
    worst = max(drops, key=drops.get) if drops else ""
    return found + [mean_drop, _check(f"largest PSNR drop on one photograph against version {baseline['version']}",
                                      "change", drops.get(worst, 0.0), t.max_photo_drop, False, "dB", worst)]


def bless(staging: Path, model_path: Path, evaluation: EvaluationSet, thresholds: Thresholds,
          infra: dict, objective: str = "distortion", psnr_baseline_at: Path | None = None) -> dict:
    """Score the staged version and apply its objective's thresholds: the blessing (for blessing.json).
    `psnr_baseline_at`: where a perceptual model's PSNR baseline is looked for (`psnr_baseline`)."""
    import time
    started = time.monotonic()
    scored = score_version(staging, evaluation)
    baseline = _baseline(model_path, evaluation, objective)
    reference = (_psnr_reference(psnr_baseline_at or model_path.parent, model_path, evaluation, scored["bicubic"])
                 if objective == "perception" else None)
    found = checks(scored["model"], baseline, thresholds, objective, reference)
    reasons = [f"{c['name']}: {c['value']:+.2f} {c['unit']}{' (' + c['detail'] + ')' if c.get('detail') else ''}, "
               f"required {c['threshold']}" for c in found if not c["ok"]]
    if not infra["passed"]:
        reasons.append(f"infra validation: {infra.get('reason', 'failed')}")
    blessing = {
        "blessed": not reasons, "objective": objective, "reasons": reasons, "checks": found,
        "thresholds": dataclasses.asdict(thresholds), "psnr_reference": reference,
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
