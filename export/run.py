"""The whole export (`python -m export.to_onnx`, the documented command, or `python -m export.run`): one new
version of the model repository (SavedModel for TF Serving, ONNX, the optional float16 and INT8 copies), with
parity measured between the Keras generator, the SavedModel and ONNX Runtime, then the deployment gate: the
version is published into `<repository>/<model>/<version>` only when it is blessed (export.bless: quality against
bicubic and against the newest blessed version; export.infra: a real server loads it and answers over gRPC).

Exit status: 0 published (blessed, or --no-bless); 1 parity failed; 2 bad input (no or unreadable checkpoint,
unwritable repository, impossible opset, no evaluation photographs); 3 not blessed. On 1 and 3 the version is
kept in `<repository>/<model>/.rejected/`, where no server loads it, with parity.json and blessing.json saying why.
"""

import argparse
import dataclasses
import datetime
import json
import logging
import sys
from pathlib import Path

from core import contract
from core.cli import exit_on_user_error, parser, setup_logging
from core.export_record import ExportRecord
from core.model_spec import DEFAULT_TILE
from core.repository import ONNX_FP16, PARITY_REPORT
from export.bless import Thresholds

log = logging.getLogger("export")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    run_dir: Path | None = Path("runs/demo")
    checkpoint: Path | None = None
    weights: Path | None = None  # a shipped generator (training/pretrained/photos) instead of a run
    interpolate: Path | None = None  # a second shipped generator: export θ = (1 − alpha)·weights + alpha·this
    alpha: float | None = None
    objective: str = "auto"  # auto (what the weights were trained for) | distortion | perception: the gate's rules
    psnr_baseline: Path | None = None  # a perceptual model's NIQE reference; default: the newest blessed PSNR model
    repository: Path = Path("models")  # TF Serving's base: <repository>/<model name>/<version>
    model_name: str = contract.MODEL_NAME
    version: int | None = None  # default: the next integer
    overwrite: bool = False
    opset: int | None = None  # default: the newest tf2onnx and onnx both know
    fp16: bool = False
    tile: int = DEFAULT_TILE  # input pixels per tile side in the SavedModel's bounded-memory tiling
    prelu_nodes: bool = False  # one ONNX PRelu node per PReLU (slower on ONNX Runtime's CPU provider today)
    int8: bool = False
    int8_max_loss: float = 0.1  # dB of held-out PSNR the INT8 copy may lose against the float model
    int8_float_layers: int = 4
    max_abs: float = 1e-4
    min_identical: float = 0.999
    max_uint8_diff: int = 1
    fp16_min_identical: float = 0.90
    fp16_max_uint8_diff: int = 8
    bless: bool = True  # the deployment gate; False (--no-bless): published unjudged, recorded as not blessed
    eval_images: Path | None = None  # the gate's photographs; default: the held-out photographs
    thresholds: Thresholds = Thresholds()
    infra_timeout: float = 120.0  # seconds for the infra validation's server to load the version


def parse_args(argv=None) -> ExportConfig:
    d = ExportConfig()
    p = parser("python -m export.to_onnx", __doc__)
    p.add_argument("--run-dir", type=Path, default=d.run_dir, help="training run: its latest checkpoint")
    p.add_argument("--checkpoint", type=Path, help="a checkpoint prefix (…/ckpt-N) or folder, instead")
    p.add_argument("--weights", type=Path,
                   help="a shipped generator instead: a folder with generator.weights.h5 and model.json "
                        "(training/pretrained/photos: the trained model that comes with the toolkit)")
    p.add_argument("--interpolate", type=Path, metavar="GAN_WEIGHTS",
                   help="with --weights (the PSNR model): a second shipped generator of the same shape, such as "
                        "training/pretrained/photos-gan; exports ESRGAN's interpolation (1 − α)·θ_weights + α·θ_this")
    p.add_argument("--alpha", type=float, help="with --interpolate: 0 is --weights, 1 is --interpolate")
    p.add_argument("--objective", choices=["auto", "distortion", "perception"], default=d.objective,
                   help="what the model is for, and so how the gate judges it: auto reads it from the run or the "
                        "shipped card (an interpolation takes the nearer model's); distortion: by PSNR; perception: "
                        "by NIQE with a PSNR floor")
    p.add_argument("--repository", type=Path, default=d.repository,
                   help="model repository: the version goes to <repository>/<model name>/<version>")
    p.add_argument("--model-name", default=d.model_name)
    p.add_argument("--version", type=int, help="version number (default: the next one)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --version")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the newest the installed tools make)")
    p.add_argument("--fp16", action="store_true", help="also write model_fp16.onnx for GPUs")
    p.add_argument("--tile", type=int, default=d.tile,
                   help="the SavedModel runs the generator on windows of tile + 2·receptive radius pixels at "
                        "most, so a request of any size costs bounded memory; 0: on the whole input (memory "
                        "grows with the request)")
    p.add_argument("--prelu-nodes", action="store_true",
                   help="write each PReLU as one ONNX PRelu node instead of tf2onnx's five (Relu, Neg, Relu, Mul, "
                        "Add); the same answers, a leaner graph, but 8 %% slower on ONNX Runtime's CPU provider in "
                        "our profile (benchmarks/onnx_profile.py)")
    p.add_argument("--int8", action="store_true",
                   help="also write model_int8.onnx for CPUs with VNNI: static quantisation calibrated on real "
                        "photographs, kept only if its held-out PSNR loss is within --int8-max-loss")
    p.add_argument("--int8-max-loss", type=float, default=d.int8_max_loss,
                   help="dB of held-out PSNR the INT8 copy may lose against the float model")
    p.add_argument("--int8-float-layers", type=int, default=d.int8_float_layers,
                   help="convolutions that may stay in float (chosen from the picture's ends) to meet it")
    p.add_argument("--max-abs", type=float, default=d.max_abs, help="float32 max abs error allowed")
    p.add_argument("--min-identical", type=float, default=d.min_identical,
                   help="share of identical uint8 values required")
    p.add_argument("--max-uint8-diff", type=int, default=d.max_uint8_diff, help="largest uint8 difference allowed")
    p.add_argument("--fp16-min-identical", type=float, default=d.fp16_min_identical)
    p.add_argument("--fp16-max-uint8-diff", type=int, default=d.fp16_max_uint8_diff)
    gate = p.add_argument_group("deployment gate", "a version is published only when it is blessed "
                                "(blessing.json); else it is kept in <model>/.rejected/ and the exit status is 3")
    gate.add_argument("--bless", action=argparse.BooleanOptionalAction, default=d.bless,
                      help="--no-bless: publish without evaluation, recorded as not blessed (export.push refuses it)")
    gate.add_argument("--eval-images", type=Path, help="a folder of photographs (default: the held-out photographs)")
    t = d.thresholds
    gate.add_argument("--min-gain", type=float, default=t.min_gain, help="dB: mean PSNR gain over bicubic, at least")
    gate.add_argument("--min-worst-gain", type=float, default=t.min_worst_gain,
                      help="dB: the worst photograph's PSNR gain over bicubic, at least")
    gate.add_argument("--max-colour-shift", type=float, default=t.max_colour_shift,
                      help="uint8 levels: the largest mean colour shift of a channel on a photograph, at most")
    gate.add_argument("--max-mean-drop", type=float, default=t.max_mean_drop,
                      help="dB: mean PSNR below the baseline (the newest blessed version), at most")
    gate.add_argument("--max-photo-drop", type=float, default=t.max_photo_drop,
                      help="dB: PSNR below the baseline on any one photograph, at most")
    gate.add_argument("--min-niqe-gain", type=float, default=t.min_niqe_gain,
                      help="perception: mean NIQE below the PSNR baseline's by at least this")
    gate.add_argument("--perceptual-min-worst-gain", type=float, default=t.perceptual_min_worst_gain,
                      help="perception: dB, the worst photograph's PSNR gain over bicubic, at least")
    gate.add_argument("--max-niqe-rise", type=float, default=t.max_niqe_rise,
                      help="perception: mean NIQE above the newest blessed perceptual version's, at most")
    gate.add_argument("--perceptual-max-mean-drop", type=float, default=t.perceptual_max_mean_drop,
                      help="perception: dB of mean PSNR below the newest blessed perceptual version, at most")
    gate.add_argument("--psnr-baseline", type=Path,
                      help="perception: the PSNR model (a model folder or a version) whose NIQE the candidate must "
                           "beat (default: the newest blessed distortion version in --repository)")
    gate.add_argument("--infra-timeout", type=float, default=d.infra_timeout,
                      help="seconds a real server may take to load the version and answer")
    args = vars(p.parse_args(argv))
    thresholds = Thresholds(**{f.name: args.pop(f.name) for f in dataclasses.fields(Thresholds)})
    return ExportConfig(**args, thresholds=thresholds)


def _versions() -> dict:
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx
    return {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


@exit_on_user_error
def export(config: ExportConfig) -> tuple[Path, dict]:
    """Write the version; returns where it lies (published, or under .rejected/) and the parity report."""
    from core.cli import UserError
    from export import onnx_model
    from export.repository import check_model_name, check_version, export_turn, next_version
    from export.tiles import Tiling

    if config.tile < 0:
        raise UserError(f"--tile must be a number of pixels (0: no tiling), got {config.tile}.")
    if config.int8_float_layers < 0:
        raise UserError(f"--int8-float-layers must be 0 or more, got {config.int8_float_layers}.")
    if config.version is not None:
        check_version(config.version)
    check_model_name(config.model_name)
    opset = onnx_model.choose_opset(config.opset)
    trained, interpolation = _trained_generator(config)
    evaluation = None
    if config.bless:
        from export.bless import evaluation_set
        evaluation = evaluation_set(config.eval_images)
        if not evaluation.pairs:
            raise UserError(f"no photographs to evaluate the version on in {evaluation.source}; pass "
                            "--eval-images DIR, or --no-bless to publish without the gate.")
    model_path = config.repository / config.model_name
    tiling = Tiling.for_spec(trained.spec, config.tile) if config.tile else None
    metadata = {"scale": trained.spec.scale, "source_checkpoint": str(Path(trained.checkpoint).resolve()),
                "step": trained.step, "model_spec": trained.spec.to_json(), "opset": opset}
    with export_turn(model_path):
        version = check_version(config.version or next_version(model_path))
        blend = f" blended with {interpolation['gan_weights']} at α = {interpolation['alpha']:g}" if interpolation else ""
        log.info("exporting %s (step %d)%s, a %s model, as %s/%d", trained.checkpoint, trained.step, blend,
                 trained.objective, model_path, version)
        return _write_version(config, trained, model_path, version, tiling, metadata, opset, evaluation,
                              interpolation)


def _trained_generator(config: ExportConfig):
    """(the generator to export, its objective, the interpolation record or None), from a run or shipped
    weights, blended when --interpolate is given; a UserError for flags that do not go together."""
    from core.cli import UserError
    from export.checkpoint import find_checkpoint, load_generator, load_weights
    if (config.interpolate is None) != (config.alpha is None):
        raise UserError("--interpolate GAN_WEIGHTS and --alpha A go together (with --weights as the PSNR model).")
    if config.interpolate is not None:
        if config.weights is None:
            raise UserError("--interpolate needs --weights: the PSNR model it blends with.")
        from training.interpolation import interpolate
        gan = load_weights(config.interpolate)  # loaded once: its weights and its objective
        trained = interpolate(load_weights(config.weights), gan, config.alpha)
        trained = dataclasses.replace(trained, objective=gan.objective if config.alpha >= 0.5 else trained.objective)
        interpolation = {"alpha": config.alpha, "psnr_weights": str(config.weights),
                         "gan_weights": str(config.interpolate)}
    elif config.weights is not None:
        trained, interpolation = load_weights(config.weights), None
    else:
        trained, interpolation = load_generator(find_checkpoint(config.run_dir, config.checkpoint)), None
    if config.objective != "auto":
        trained = dataclasses.replace(trained, objective=config.objective)
    return trained, interpolation


def _write_version(config: ExportConfig, trained, model_path: Path, version: int, tiling, metadata: dict,
                   opset: int, evaluation, interpolation: dict | None) -> tuple[Path, dict]:
    from export import int8, onnx_model, parity, saved_model
    from export.repository import staged_version
    with staged_version(model_path, version, config.overwrite) as stage:
        staging = stage.path
        log.info("writing the SavedModel (in %s)", staging.name)
        saved_model.write_saved_model(trained.model, tiling, staging, config.model_name)
        log.info("writing the ONNX files (opset %d)", opset)
        onnx_paths = onnx_model.write_onnx_models(trained.model, staging, opset, metadata, config.prelu_nodes)
        if config.fp16:
            onnx_paths["fp16"] = onnx_model.write_float16_model(onnx_paths["uint8"], staging / ONNX_FP16)
        int8_report = None
        if config.int8:
            log.info("quantising to INT8 (calibration on the training photographs)")
            int8_report = int8.write_int8_model(
                onnx_paths["uint8"], staging / int8.FILE_NAME, trained.spec.scale,
                int8.Int8Settings(config.int8_max_loss, config.int8_float_layers))
        log.info("measuring parity")
        held_out = None if config.weights else Path(trained.checkpoint).parent.parent / "test_images" / "lr"
        cases = parity.parity_cases(held_out)
        reference = parity.keras_backend(trained.model)
        tolerance = parity.Tolerance(config.max_abs, config.min_identical, config.max_uint8_diff)
        # The graph-mode rows load the version as tensorflow_model_server does: if it cannot, the export fails.
        groups = {"float32": parity.compare(
            reference, [parity.saved_model_backend(staging), *parity.graph_saved_model_backends(staging),
                        *parity.onnx_backends(onnx_paths["uint8"], onnx_paths["float"])], cases, tolerance)}
        if config.fp16:
            groups["float16"] = parity.compare(
                reference, parity.onnx_backends(onnx_paths["fp16"], None, label="onnx-fp16"), cases,
                parity.Tolerance(float("inf"), config.fp16_min_identical, config.fp16_max_uint8_diff))
        header = (f"# Parity of {config.model_name} version {version}\n\nSource: {trained.checkpoint} "
                  f"(step {trained.step}); opset {opset}; cases: "
                  + ", ".join(c.name for c in cases) + ".")
        log.info("writing the reports")
        table = parity.write_report(groups, staging, header)
        report = json.loads((staging / PARITY_REPORT).read_text())
        ExportRecord(
            model_spec=trained.spec, version=version, step=trained.step,
            source_checkpoint=metadata["source_checkpoint"], opset=opset,
            saved_model_tiling=tiling.to_json() if tiling else None,
            exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            files=tuple(sorted(p.name for p in staging.iterdir())), versions=_versions(),
            parity_passed=report["passed"], int8=int8_report, objective=trained.objective,
            interpolation=interpolation).save(staging)
        blessing = _gate(config, stage, model_path, version, report["passed"], evaluation, reference, tolerance,
                         trained.objective)
    log.info("%s %s", "kept out of the served folder:" if stage.rejected else "published", stage.final)
    print(table)
    _print_gate(blessing, stage)
    if int8_report:
        verdict = f"kept as {int8_report['file']}" if int8_report["kept"] else "NOT kept"
        print(f"INT8 {verdict}: {int8_report['reason']}; "
              f"{len(int8_report['float_layers'])} convolution(s) left in float (export.json: int8)")
    return stage.final, report


def _gate(config: ExportConfig, stage, model_path: Path, version: int, parity_passed: bool, evaluation, reference,
          tolerance, objective: str) -> dict:
    """The deployment gate on the staged version; rejects the stage unless it may be published. The blessing."""
    import time

    from export import bless, infra
    if not parity_passed:  # never published, judged or not
        blessing = bless.unevaluated("parity failed (parity.md)")
    elif not config.bless:
        blessing = bless.unevaluated("exported with --no-bless: published without evaluation")
    else:
        started = time.monotonic()
        log.info("deployment gate: infra validation (a server loads the version and answers over gRPC)")
        first = evaluation.pairs[0]
        outcome = infra.validate(stage.path, version, config.model_name, (first.name, first.lr), reference,
                                 tolerance, config.infra_timeout)
        log.info("deployment gate: scoring on %d photographs", len(evaluation.pairs))
        blessing = bless.bless(stage.path, model_path, evaluation, config.thresholds, outcome, objective,
                               config.psnr_baseline or config.repository)
        blessing["gate_seconds"] = round(time.monotonic() - started, 1)
    bless.write_blessing(stage.path, blessing)
    if not blessing["blessed"] and (config.bless or not parity_passed):
        stage.reject()
    return blessing


def _print_gate(blessing: dict, stage) -> None:
    from export.bless import table
    if blessing.get("skipped"):
        print(f"deployment gate skipped: {blessing['reasons'][0]}")
        return
    baseline = blessing["baseline"]
    against = f"against version {baseline['version']}" if baseline else "no blessed version to compare with"
    print(f"\ndeployment gate, {blessing['objective']} model ({len(blessing['evaluation']['images'])} photographs, "
          f"{against}; "
          f"{blessing['gate_seconds']:.1f} s):\n{table(blessing)}")
    if not blessing["blessed"]:
        print(f"NOT BLESSED: kept in {stage.final}, where no server loads it")


def main(argv=None) -> int:
    setup_logging()
    config = parse_args(argv)
    version_dir, report = export(config)
    if not report["passed"]:
        print(f"PARITY FAILED: the version is kept in {version_dir}, never published")
        return 1
    from export.bless import read_blessing
    blessing = read_blessing(version_dir)
    if config.bless and not blessing["blessed"]:
        return 3
    print(f"published {version_dir}" + ("" if blessing["blessed"] else " (not blessed: --no-bless)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
