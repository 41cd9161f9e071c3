"""TF Serving's REST JSON at the speed of its bytes: orjson parses requests and writes answers.

Python's `json` took 14 ms to write a 128×128×3 answer from nested lists and 24 ms to read one back (both
sides walk Python lists); orjson writes numpy arrays directly (2.5 ms) and parses in C. The JSON is TF Serving's
(util/json_tensor.cc) and the same bytes as Python's `json` wrote, except where TF Serving's writer differs from
Python's too: text is UTF-8 as RapidJSON writes it (not \\uXXXX escapes), and a float is written with the fewest
digits that read back as the same value (0.2 for a float32 0.2, as TF Serving writes it, where Python wrote
0.20000000298023224; TF Serving writes %g's six digits, or nine where six do not read back: 0.123456791 where we
write 0.12345679; both read back as the same float32). NaN and ±Infinity are written as TF Serving writes them
(NaN, Infinity, -Infinity).
"""

import contextlib
import gc
import json

import numpy as np
import orjson


def loads(data: bytes):
    """The parsed document. orjson refuses a few that Python's `json` and TF Serving's parser read (NaN and
    Infinity literals, lone surrogates): those are parsed by `json`, so that they get the answers they got."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


_OUTPUTS = b'{"outputs":'
_BRACKETS_AS_BLANKS = bytes.maketrans(b"[]", b"  ")


def outputs_array(document: bytes, dtype) -> np.ndarray | None:
    """The array of a compact answer `{"outputs": [[…]]}` of whole numbers without a sign (images: uint8), as our
    server writes it, read straight into numpy, about three times as fast as through lists; None for any other
    document, which the caller reads with `loads`: pretty-printed (TF Serving's writer: orjson steps over its
    blanks faster than numpy here), floats, negative numbers, several outputs, … Dense tensors only: the
    brackets and commas must be exactly the skeleton of the shape its commas give, with one run of digits in
    each place of a number and none anywhere else."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or not document.startswith(_OUTPUTS + b"[") or not document.endswith(b"]}"):
        return None
    text = document[len(_OUTPUTS):-1]
    chars = np.frombuffer(text, np.uint8)
    marks = np.flatnonzero((chars - ord("0")) >= 10)  # everything but digits (uint8 arithmetic wraps below "0")
    skeleton = chars[marks].tobytes()
    if skeleton.translate(None, b"[],"):
        return None  # blanks, signs, points, letters, …
    shape = _shape(skeleton)
    if shape is None or _skeleton(shape) != skeleton:
        return None
    # Digits between two marks exactly where a number belongs ("[" or "," before it, "," or "]" after it): no
    # list or number left empty, no digits beside a list.
    before, after = chars[marks[:-1]], chars[marks[1:]]
    places = ((before == ord("[")) | (before == ord(","))) & ((after == ord(",")) | (after == ord("]")))
    if not np.array_equal(np.diff(marks) > 1, places):
        return None
    values = np.fromstring(text.translate(_BRACKETS_AS_BLANKS), dtype=np.int64, sep=",")
    if values.size != np.prod(shape) or values.min() < 0 or values.max() > np.iinfo(dtype).max:  # < 0: overflow
        return None
    return values.astype(dtype).reshape(shape)


def _shape(skeleton: bytes) -> list[int] | None:
    """The sizes of nested lists whose brackets and commas are `skeleton`: at each depth, the commas inside its
    lists over their number, plus one."""
    chars = np.frombuffer(skeleton, np.uint8)
    opens, commas = chars == ord("["), chars == ord(",")
    depth = np.cumsum(opens.astype(np.int64) - (chars == ord("]")))  # after each character
    shape = []
    for level in range(1, len(skeleton) - len(skeleton.lstrip(b"[")) + 1):
        lists = np.count_nonzero(opens & (depth == level))
        if not lists:
            return None
        shape.append(int(np.count_nonzero(commas & (depth == level))) // lists + 1)
    return shape


def _skeleton(shape: list[int]) -> bytes:
    inner = b"[" + b"," * (shape[-1] - 1) + b"]"
    for size in reversed(shape[:-1]):
        inner = b"[" + b",".join([inner] * size) + b"]"
    return inner


def dumps(payload) -> bytes:
    """Compact JSON; numpy arrays and scalars inside `payload` written by orjson."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def tensor(array: np.ndarray):
    """A numeric array as a value for `dumps`."""
    if array.dtype.kind in "biu" or (array.dtype in (np.float32, np.float64) and np.isfinite(array).all()):
        return np.ascontiguousarray(array) if array.ndim else array.item()
    if array.dtype.kind == "f":  # NaN or ±Infinity (orjson would write null), float16: each value's fewest digits,
        # written by Python's json, which writes TF Serving's literals
        fewest = np.array([float(str(value)) for value in array.ravel()]).reshape(array.shape)
        return orjson.Fragment(json.dumps(fewest.tolist(), separators=(",", ":")))
    return array.tolist()


@contextlib.contextmanager
def collector_paused():
    """Python's garbage collector off for a block that makes and frees a document's nested lists. Tens of
    thousands of lists alive at once set off collections that promote them, and every few answers a full pass
    over every object of the process: ~0.2 s where TensorFlow is imported. Freed within the block, they are
    never counted. Left as found when the process (or another thread) had it off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
