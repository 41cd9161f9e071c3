"""The command-line layer every entry point shares: one-sentence user errors, a parser that shows its
defaults, finding a model version, timestamped logging, and TensorFlow kept quiet.

It lives in `core`, under every other package, and imports neither TensorFlow nor gRPC, so the TensorFlow-free
paths (the clients, ONNX Runtime on a GPU machine) can use it.

TensorFlow 2.21 prints its start-up lines from C++ straight to file descriptor 2 while it is being imported
(absl's "All log messages before absl::InitializeLog()", oneDNN, cudart; cuInit's error at the first op),
before any Python setting can stop them. `quiet_tensorflow()`, called by each package's `__init__`, makes
the first `import tensorflow` run with descriptor 2 captured and passes on everything but those log lines;
TF_CPP_MIN_LOG_LEVEL=3 keeps the C++ side quiet afterwards, and absl's Python logger shows errors only.
SRGAN_VERBOSE=1 (or a TF_CPP_MIN_LOG_LEVEL of your own) leaves TensorFlow's output as it is.
"""

import argparse
import functools
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

VERBOSE_VARIABLE = "SRGAN_VERBOSE"
# absl's line format (severity, MMDD or 0000, time, thread, file:line]) and its pre-initialisation warning.
TENSORFLOW_LOG_LINE = re.compile(rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] |"
                                 rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")


class UserError(Exception):
    """Something the user can fix (a path, a flag, a missing file); the message says what to do."""

    exit_status = 2  # a subclass may name another (export.push: 3 for a version that is not blessed)


def exit_on_user_error(main):
    """Wrap a command's `main` so a `UserError` prints its sentence and exits with its status (2)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(error.exit_status) from None

    return wrapper


def parser(prog: str | None, doc: str | None, **kwargs) -> argparse.ArgumentParser:
    """An argument parser whose --help shows every default, described by the first paragraph of `doc`."""
    return argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)


def find_version(path: Path) -> Path:
    """A version folder as given, or the newest under a model folder; a UserError when there is none."""
    from core.repository import resolve_version_dir
    try:
        return resolve_version_dir(Path(path))
    except FileNotFoundError as error:
        raise UserError(f"{error}; export one with python -m export.to_onnx.") from None


OUR_LOGGERS = ("core", "training", "export", "serving", "workflows")


def setup_logging() -> None:
    """Timestamped log lines on stderr for what happens over time (versions loaded, requests refused, export
    stages); `print` stays for results. Our loggers say INFO, the libraries' (tf2onnx, TensorFlow) only
    warnings; SRGAN_VERBOSE=1: everything."""
    import logging
    logging.basicConfig(level=logging.DEBUG if verbose() else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose() else logging.INFO)


def verbose() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "") not in ("", "0")


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the first import of tensorflow it wraps the real loader's `exec_module` in
    `_run_with_fd2_filtered`, then steps aside."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once, and out of the way of the real finders
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module
            spec.loader.exec_module = lambda module: _run_with_fd2_filtered(execute, module)
        return spec


def _run_with_fd2_filtered(function, *args):
    """Run `function` with descriptor 2 in a temporary file, then write back the lines TensorFlow did not log."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            return function(*args)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = b"".join(line for line in captured if not TENSORFLOW_LOG_LINE.match(line))
            if kept:
                os.write(2, kept)
            _quiet_absl()


def _quiet_absl() -> None:
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up and log lines off the terminal (module docstring). Idempotent."""
    if verbose() or ("TF_CPP_MIN_LOG_LEVEL" in os.environ and not _set_by_us()):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["_SRGAN_SET_TF_LOG_LEVEL"] = "1"  # children inherit both: they are quiet too
    if "tensorflow" in sys.modules:
        _quiet_absl()
    elif not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def _set_by_us() -> bool:
    return os.environ.get("_SRGAN_SET_TF_LOG_LEVEL") == "1"
