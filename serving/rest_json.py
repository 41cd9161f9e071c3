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
import re

import numpy as np
import orjson


def loads(data: bytes):
    """The parsed document. orjson refuses a few that Python's `json` and TF Serving's parser read (NaN and
    Infinity literals, lone surrogates): those are parsed by `json`, so that they get the answers they got."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


_DIGITS = b"0123456789"
_BLANK = b" \t\n\r"
_BRACKETS_AS_BLANKS = bytes.maketrans(b"[]", b"  ")
_SPLIT_NUMBER = re.compile(rb"[0-9][ \t\n\r]+[0-9]")


def outputs_array(document: bytes, dtype) -> np.ndarray | None:
    """The array of an answer `{"outputs": [[…]]}` of whole numbers without a sign (images: uint8), compact or
    pretty-printed as TF Serving writes it, read straight into numpy, several times faster than through lists;
    None for any other document (floats, negative numbers, several outputs, …), which the caller reads with
    `loads`. Dense tensors only: the skeleton of brackets and commas must be exactly the one of the shape its
    commas give, and every number one unbroken run of digits."""
    dtype = np.dtype(dtype)
    start, end = document.find(b"["), document.rfind(b"]")
    if dtype.kind not in "iu" or start < 0 or document[:start].translate(None, _BLANK) != b'{"outputs":' \
            or document[end + 1:].translate(None, _BLANK) != b"}":
        return None
    text = document[start:end + 1]
    compact = text.translate(None, _BLANK)
    skeleton = compact.translate(None, _DIGITS)
    if skeleton.translate(None, b"[],") or any(gap in compact for gap in (b"[]", b"[,", b",,", b",]")) \
            or (len(compact) != len(text) and _SPLIT_NUMBER.search(text)):
        return None  # anything but digits, a list or a number left empty, or digits split by blanks
    shape = _shape(skeleton)
    if shape is None or _skeleton(shape) != skeleton:
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
