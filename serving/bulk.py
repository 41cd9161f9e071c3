"""`python -m serving.bulk`: upscale many photographs ×4 with Apache Beam's RunInference, on this machine or on
Dataflow, Flink or Spark.

    python -m serving.bulk 'photos/*.jpg' 'scans/**/*.png' --out upscaled/ --model-dir models/srgan
    python -m serving.bulk 'gs://bucket/in/*' --out gs://bucket/out --model-dir models/srgan/3 \\
        --runner DataflowRunner --project P --region R --temp_location gs://bucket/tmp …   # Beam's own options

Files are matched on any Beam file system (local, gs://, s3:// where installed), read by the same reader as
serving.upscale (EXIF, 16-bit, grey, alpha; the header's pixel count checked before decoding), cut into the
version's fixed-size windows with the receptive-field overlap (serving.tiling), upscaled by RunInference with our
ModelHandler (the model loaded once per worker process; batches of same-shape windows), grouped back per image,
stitched (whole-image inference's answer, within the parity tolerance) and written as `<out>/<name>_x4.png` under a
temporary name, then renamed. A file that cannot be read or upscaled goes to `<out>/dead_letter.jsonl` with the
reason and the others go on; `<out>/manifest.jsonl` has one line per input. A re-run skips the outputs that exist
(--overwrite redoes them). Without --runner the pipeline runs on Beam's in-process runner (the engine of its Python
direct runner; the DirectRunner itself would first try Prism, whose binary it downloads).
"""

import dataclasses
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path, PurePosixPath

import numpy as np

from core.cli import UserError, exit_on_user_error, find_version, parser, setup_logging
from core.images import DEFAULT_MAX_PIXELS
from core.model_spec import DEFAULT_TILE

log = logging.getLogger("serving.bulk")
MANIFEST, DEAD_LETTER = "manifest.jsonl", "dead_letter.jsonl"


@dataclasses.dataclass(frozen=True)
class BulkConfig:
    inputs: tuple[str, ...]  # file patterns on any Beam file system
    out: str
    model_dir: str = "models/srgan"  # a model folder (its newest version) or a version; gs://…/<version> too
    backend: str = "onnx"  # onnx (CUDA where present, else CPU) | savedmodel (as TF Serving runs it)
    tile: int = DEFAULT_TILE
    min_batch: int = 1
    max_batch: int = 8  # windows per model call
    model_copies: int | None = None  # models per machine (GPUs: one per GPU); default: one per worker process
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    threads: int = 0  # ONNX Runtime threads per worker process; 0: timed, or the cores shared by local processes
    pipeline_args: tuple[str, ...] = ()  # Beam's options, passed through


def parse_args(argv=None) -> BulkConfig:
    d = BulkConfig((), "")
    p = parser("python -m serving.bulk", __doc__)
    p.add_argument("inputs", nargs="+", help="file patterns (Beam file systems: local, gs://, s3://)")
    p.add_argument("-o", "--out", required=True, help="output folder (a Beam file system path)")
    p.add_argument("--model-dir", default=d.model_dir,
                   help="a model folder (newest version) or a version folder; on a cluster, a version on a file "
                        "system the workers reach (gs://bucket/models/srgan/3): each worker copies it once")
    p.add_argument("--backend", choices=["onnx", "savedmodel"], default=d.backend)
    p.add_argument("--tile", type=int, default=d.tile, help="input pixels per window side (plus the overlap)")
    p.add_argument("--min-batch", type=int, default=d.min_batch)
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="windows per model call")
    p.add_argument("--model-copies", type=int, help="models per machine, shared by its processes (GPU workers)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="refuse larger files from their header")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist (default: skip them)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="ONNX Runtime threads per worker process (0: timed, or the cores the local processes share)")
    args, beam_args = p.parse_known_args(argv)
    # By name: a field added to BulkConfig must never shift Beam's options into another one.
    return BulkConfig(**{**vars(args), "inputs": tuple(args.inputs)}, pipeline_args=tuple(beam_args))


def output_name(path: str, scale: int) -> str:
    """As serving.upscale names it: `<stem>_x<scale>.png`."""
    return f"{PurePosixPath(path).stem}_x{scale}.png"


def _record(path: str, status: str, **fields) -> dict:
    return {"input": path, "status": status, **fields}


# -- the model --------------------------------------------------------------------------------------------------
def local_copy(version: str) -> Path:
    """A version on any Beam file system, copied into a local temporary folder (ONNX Runtime and TensorFlow's
    loader read local files); a local folder is used where it is."""
    if "://" not in version:
        return Path(version)
    import tempfile

    from apache_beam.io.filesystems import FileSystems
    local = Path(tempfile.mkdtemp(prefix="srgan-version-"))
    root = version.rstrip("/")
    for metadata in FileSystems.match([root + "/**"])[0].metadata_list:
        target = local / metadata.path[len(root) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileSystems.open(metadata.path) as source, open(target, "wb") as sink:
            sink.write(source.read())
    return local


def model_handler(version: str, config: BulkConfig):
    """Our ModelHandler (Beam's extension point): windows of one shape are stacked into one call; a batch of
    mixed shapes (small images are one window of their own size) is run shape by shape."""
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class WindowModelHandler(ModelHandler):
        def __init__(self):
            super().__init__(min_batch_size=config.min_batch, max_batch_size=config.max_batch,
                             model_copies=config.model_copies)

        def load_model(self):  # once per worker process (or per machine with --model-copies)
            from serving.local import batch_upscaler
            return batch_upscaler(local_copy(version), config.backend, config.threads)

        def run_inference(self, batch, model, inference_args=None):
            outputs = [None] * len(batch)
            by_shape = {}
            for i, window in enumerate(batch):
                by_shape.setdefault(window.shape, []).append(i)
            for indices in by_shape.values():
                for i, sr in zip(indices, model(np.stack([batch[i] for i in indices]))):
                    outputs[i] = sr
            return [PredictionResult(window, sr) for window, sr in zip(batch, outputs)]

        def get_metrics_namespace(self):
            return "serving.bulk"

    return WindowModelHandler()


# -- the pipeline's steps ---------------------------------------------------------------------------------------
def _read_and_cut(path: str, config: BulkConfig, spec, existing: bool):
    """(path, plan) and its windows ((path, index), pixels); or a record for the manifest (skipped or failed)."""
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    from core.images import UnreadableImage, decode_picture
    from serving.tiling import cut, tile_plan
    if existing and not config.overwrite:
        yield beam.pvalue.TaggedOutput("records", _record(path, "skipped", reason="output exists"))
        return
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as file:
            picture = decode_picture(file, config.max_pixels)
    except UnreadableImage as error:
        yield beam.pvalue.TaggedOutput("failed", _record(path, "failed", reason=error.reason))
        return
    except Exception as error:  # noqa: BLE001 - a file system error: this file fails, the others go on
        yield beam.pvalue.TaggedOutput("failed", _record(path, "failed", reason=f"cannot read: {error}"))
        return
    h, w = picture.rgb.shape[:2]
    plan = tile_plan(h, w, config.tile, spec.receptive_radius)
    yield beam.pvalue.TaggedOutput("plans", (path, (picture, plan)))
    for index, window in enumerate(plan):
        yield (path, index), np.ascontiguousarray(cut(picture.rgb, window))


def _stitch_and_write(item, config: BulkConfig, scale: int, progress):
    """The upscaled windows of one image, pasted, written atomically; a manifest record either way."""
    import io

    from apache_beam.io.filesystems import FileSystems

    from serving.tiling import paste
    from serving.upscale import as_file_image
    path, grouped = item
    (picture, plan), = grouped["plans"]
    windows = dict(grouped["windows"])
    if len(windows) != len(plan):
        reasons = sorted({r for r in grouped["failures"]}) or ["windows missing"]
        return _record(path, "failed", reason=f"{len(plan) - len(windows)} of {len(plan)} windows not upscaled: "
                                              + "; ".join(reasons)[:300])
    h, w = picture.rgb.shape[:2]
    out = np.empty((h * scale, w * scale, 3), np.uint8)
    for index, window in enumerate(plan):
        paste(out, windows[index], window, scale)
    target = FileSystems.join(config.out, output_name(path, scale))
    temporary = FileSystems.join(config.out, f".{uuid.uuid4().hex[:16]}.partial")  # short: the name may be long
    try:
        buffer = io.BytesIO()
        as_file_image(out, picture).save(buffer, format="PNG")
        with FileSystems.create(temporary) as file:
            file.write(buffer.getvalue())
        if FileSystems.exists(target):
            FileSystems.delete([target])
        FileSystems.rename([temporary], [target])
    except Exception as error:  # noqa: BLE001 - this output fails, the others go on
        return _record(path, "failed", reason=f"cannot write {target}: {error}")
    progress.tick()
    return _record(path, "ok", output=target, input_size=[w, h], output_size=[w * scale, h * scale],
                   windows=len(plan))


class Progress:
    """Images written, with rate and ETA, logged every few seconds (per worker process)."""

    def __init__(self, total: int):
        self.total, self.done, self.started, self.shown = total, 0, time.monotonic(), 0.0

    def tick(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.shown >= 5 or self.done == self.total:
            self.shown = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            log.info("upscaled %d/%d images (%.2f img/s, ETA %.0f s)", self.done, self.total, rate, eta)


def _normalised(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def _name_clashes(item, out: str, inputs: frozenset):
    """Inputs that would be written to one output, or whose output is itself an input, are refused (as
    serving.upscale refuses them). A file matched by two patterns is one input."""
    name, paths = item
    paths = sorted(set(paths))
    target = _normalised(_join(out, name))
    for path in paths:
        if len(paths) > 1:
            yield "clash", _record(path, "failed", reason=f"{', '.join(paths)} would all be written as {name}")
        elif target in inputs:
            yield "clash", _record(path, "failed", reason=f"its output {target} is one of the inputs; choose "
                                                          "another -o folder")
        else:
            yield "ok", path


def _join(*parts: str) -> str:
    from apache_beam.io.filesystems import FileSystems  # late, as everywhere here: the module loads without Beam
    return FileSystems.join(*parts)


def build(pipeline, config: BulkConfig, version: str, existing: set[str], total: int, inputs: frozenset = frozenset()):
    """The pipeline: match → read and cut → RunInference → group per image → stitch and write → manifest."""
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    from core.export_record import ExportRecord
    spec = ExportRecord.load(local_copy(version)).model_spec
    scale, progress = spec.scale, Progress(total)
    named = (pipeline
             | "patterns" >> beam.Create(list(config.inputs))
             | "match" >> fileio.MatchAll(fileio.EmptyMatchTreatment.ALLOW)
             | "paths" >> beam.Map(lambda metadata: metadata.path)
             | "by output name" >> beam.Map(lambda path: (output_name(path, scale), path))
             | beam.GroupByKey()
             | beam.FlatMap(_name_clashes, config.out, inputs))
    unique = named | "unique" >> beam.Filter(lambda kv: kv[0] == "ok") | beam.Map(lambda kv: kv[1])
    clashes = (named | "clashes" >> beam.Filter(lambda kv: kv[0] == "clash")
               | "clash records" >> beam.Map(lambda kv: kv[1]))
    cut = unique | "read and cut" >> beam.FlatMap(
        lambda path: _read_and_cut(path, config, spec, output_name(path, scale) in existing)
    ).with_outputs("plans", "failed", "records", main="windows")
    inferred, dead = (cut.windows | "upscale" >> RunInference(
        KeyedModelHandler(model_handler(version, config))).with_exception_handling())
    upscaled = inferred | "by image" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1].inference)))
    failures = (dead.failed_inferences
                | "failed windows" >> beam.FlatMap(
                    lambda failed: [(key[0], f"inference failed: {failed[1]}") for key, _ in failed[0]]))
    written = ({"plans": cut.plans, "windows": upscaled, "failures": failures}
               | "group per image" >> beam.CoGroupByKey()
               | "stitch and write" >> beam.Map(_stitch_and_write, config, scale, progress))
    records = (written, cut.failed, cut.records, clashes) | "all records" >> beam.Flatten()
    json_lines = records | "as JSON" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
    json_lines | "manifest" >> beam.io.WriteToText(FileSystems.join(config.out, MANIFEST), shard_name_template="")
    (records | "failed only" >> beam.Filter(lambda r: r["status"] == "failed")
     | "failed as JSON" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
     | "dead letter" >> beam.io.WriteToText(FileSystems.join(config.out, DEAD_LETTER), shard_name_template=""))


def _existing_outputs(out: str) -> set[str]:
    from apache_beam.io.filesystems import FileSystems
    try:
        found = FileSystems.match([FileSystems.join(out, "*_x*.png")])[0].metadata_list
    except Exception:  # noqa: BLE001 - no folder yet
        return set()
    return {PurePosixPath(m.path).name for m in found}


def _matched_inputs(patterns) -> frozenset:
    """Every file the patterns match, once, normalised (a local path made absolute)."""
    from apache_beam.io.filesystems import FileSystems
    return frozenset(_normalised(m.path) for r in FileSystems.match(list(patterns)) for m in r.metadata_list)


@exit_on_user_error
def run(config: BulkConfig) -> dict:
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
    model_dir = str(config.model_dir)
    version = model_dir if "://" in model_dir else str(find_version(Path(model_dir)))
    if config.min_batch < 1 or config.max_batch < config.min_batch or config.tile < 1:
        raise UserError("--tile, --min-batch must be positive and --max-batch at least --min-batch.")
    options = PipelineOptions(list(config.pipeline_args))
    direct = options.view_as(DirectOptions)
    if not config.threads and direct.direct_running_mode == "multi_processing" and direct.direct_num_workers > 1:
        # Worker processes on this machine share its cores instead of each taking all of them.
        config = dataclasses.replace(config, threads=max(1, (os.cpu_count() or 1) // direct.direct_num_workers))
    runner = None
    if "runner" not in options.get_all_options(drop_default=True):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        runner = FnApiRunner()  # in-process; the DirectRunner would try to download Prism first
    if not FileSystems.exists(config.out):
        FileSystems.mkdirs(config.out)
    existing = _existing_outputs(config.out)
    inputs = _matched_inputs(config.inputs)
    started = time.monotonic()
    with beam.Pipeline(runner=runner, options=options) as pipeline:
        build(pipeline, config, version, existing, len(inputs), inputs)
    seconds = time.monotonic() - started
    with FileSystems.open(FileSystems.join(config.out, MANIFEST)) as file:
        records = [json.loads(line) for line in file.read().decode().splitlines() if line.strip()]
    counts = {status: sum(r["status"] == status for r in records) for status in ("ok", "skipped", "failed")}
    pixels = sum(r["input_size"][0] * r["input_size"][1] for r in records if r["status"] == "ok")
    return {"records": records, "counts": counts, "seconds": seconds, "input_megapixels": pixels / 1e6}


def main(argv=None) -> int:
    setup_logging()
    config = parse_args(argv)
    result = run(config)
    c = result["counts"]
    rate = c["ok"] / result["seconds"] if result["seconds"] else 0.0
    print(f"upscaled {c['ok']} of {len(result['records'])} images into {config.out} in {result['seconds']:.1f} s "
          f"({rate:.2f} img/s, {result['input_megapixels'] / result['seconds']:.3f} input MP/s); "
          f"{c['skipped']} skipped (output exists), {c['failed']} failed"
          + (f" (reasons in {config.out}/{DEAD_LETTER})" if c["failed"] else ""))
    return 1 if c["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
