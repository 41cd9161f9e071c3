"""numpy ⇄ TensorProto without per-element Python loops, for the client and the server alike."""

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

_TO_NUMPY = {types_pb2.DT_UINT8: np.uint8, types_pb2.DT_FLOAT: np.float32, types_pb2.DT_HALF: np.float16,
             types_pb2.DT_DOUBLE: np.float64, types_pb2.DT_INT32: np.int32, types_pb2.DT_INT64: np.int64,
             types_pb2.DT_INT8: np.int8, types_pb2.DT_UINT16: np.uint16, types_pb2.DT_INT16: np.int16,
             types_pb2.DT_BOOL: np.bool_}
_FROM_NUMPY = {np.dtype(v): k for k, v in _TO_NUMPY.items()}
# Where a TensorProto keeps its values when `tensor_content` is not used.
_VALUE_FIELD = {types_pb2.DT_UINT8: "int_val", types_pb2.DT_INT8: "int_val", types_pb2.DT_INT16: "int_val",
                types_pb2.DT_UINT16: "int_val", types_pb2.DT_INT32: "int_val", types_pb2.DT_INT64: "int64_val",
                types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val", types_pb2.DT_HALF: "half_val",
                types_pb2.DT_BOOL: "bool_val"}


class TensorError(ValueError):
    """The TensorProto cannot be read as an array (unknown dtype, wrong number of values)."""


def dtype_name(dtype: int) -> str:
    """TensorFlow's name for a DataType enum: 'uint8', 'float', …"""
    name = types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)
    return name.removeprefix("DT_").lower()


def numpy_dtype(dtype: int) -> np.dtype | None:
    """The numpy dtype of a DataType enum, None for those we do not carry (strings among them)."""
    return np.dtype(_TO_NUMPY[dtype]) if dtype in _TO_NUMPY else None


def shape_of(proto: tensor_pb2.TensorProto) -> list[int]:
    return [d.size for d in proto.tensor_shape.dim]


def to_proto(array) -> tensor_pb2.TensorProto:
    """An ndarray as a TensorProto, its bytes in `tensor_content` (strings/bytes in `string_val`)."""
    array = np.asarray(array)
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s)
                                                   for s in array.shape])
    if array.dtype.kind in "SUO":
        values = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel().tolist()]
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=values)
    if array.dtype not in _FROM_NUMPY:
        raise TensorError(f"cannot send a {array.dtype} array")
    return tensor_pb2.TensorProto(dtype=_FROM_NUMPY[array.dtype], tensor_shape=shape,
                                  tensor_content=np.ascontiguousarray(array).tobytes())


def to_numpy(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """A TensorProto as an ndarray, from `tensor_content` or the typed value field (one value broadcasts)."""
    shape = shape_of(proto)
    if any(s < 0 for s in shape):
        raise TensorError(f"tensor shape {shape} has a negative dimension")
    count = int(np.prod(shape, dtype=np.int64))
    if proto.dtype == types_pb2.DT_STRING:
        values = np.array(list(proto.string_val), dtype=object)
        return _fill(values, shape, count)
    if proto.dtype not in _TO_NUMPY:
        raise TensorError(f"tensors of type {dtype_name(proto.dtype)} are not supported")
    dtype = np.dtype(_TO_NUMPY[proto.dtype])
    if proto.tensor_content:
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise TensorError(f"tensor_content holds {len(proto.tensor_content)} bytes, shape {shape} of "
                              f"{dtype_name(proto.dtype)} needs {count * dtype.itemsize}")
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    values = getattr(proto, _VALUE_FIELD[proto.dtype])
    if proto.dtype == types_pb2.DT_HALF:
        array = np.asarray(values, dtype=np.uint16).view(np.float16)
    elif dtype.kind in "iu":  # int_val holds int32s: 300 or -5 must not wrap into a uint8 silently
        wide = np.asarray(values, dtype=np.int64)
        limits = np.iinfo(dtype)
        if wide.size and (wide.min() < limits.min or wide.max() > limits.max):
            bad = wide[(wide < limits.min) | (wide > limits.max)][0]
            raise TensorError(f"value {bad} is out of range for {dtype_name(proto.dtype)} "
                              f"({limits.min} to {limits.max})")
        array = wide.astype(dtype)
    else:
        array = np.asarray(values, dtype=dtype)
    return _fill(array, shape, count)


def _fill(values: np.ndarray, shape: list[int], count: int) -> np.ndarray:
    if values.size == count:
        return values.reshape(shape)
    if values.size == 1:  # one value for the whole shape: a read-only view, no memory per element
        return np.broadcast_to(values.reshape(()), shape)
    if values.size == 0 and count == 0:
        return values.reshape(shape)
    raise TensorError(f"tensor has {values.size} values for shape {shape} ({count} expected)")
