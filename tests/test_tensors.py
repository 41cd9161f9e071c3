import numpy as np
import pytest
import tensorflow as tf

from serving import tensors


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float16, np.int64, np.float64])
@pytest.mark.parametrize("shape", [(1,), (2, 3), (2, 5, 7, 3)])
def test_round_trip_and_tensorflows_own_encoding(dtype, shape):
    array = (np.random.default_rng(0).uniform(0, 100, shape)).astype(dtype)
    proto = tensors.to_proto(array)
    assert proto.tensor_content  # raw bytes, no per-element fields
    np.testing.assert_array_equal(tensors.to_numpy(proto), array)
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)
    # TensorFlow's encoder (typed value fields for small tensors) decodes to the same array.
    np.testing.assert_array_equal(tensors.to_numpy(tf.make_tensor_proto(array)), array)


def test_strings_and_a_single_value_broadcast():
    blobs = np.array([b"png-1", b"png-22"], dtype=object)
    np.testing.assert_array_equal(tensors.to_numpy(tensors.to_proto(blobs)), blobs)
    filled = tf.make_tensor_proto(7, dtype=tf.uint8, shape=[2, 2])
    np.testing.assert_array_equal(tensors.to_numpy(filled), np.full((2, 2), 7, np.uint8))


def test_inconsistent_tensors_are_refused():
    proto = tensors.to_proto(np.zeros((2, 2), np.uint8))
    proto.tensor_content = b"\x00"
    with pytest.raises(tensors.TensorError):
        tensors.to_numpy(proto)
    bad = tf.make_tensor_proto(np.arange(3, dtype=np.float32))
    bad.tensor_shape.dim[0].size = 5
    with pytest.raises(tensors.TensorError):
        tensors.to_numpy(bad)
    assert tensors.dtype_name(tensors.to_proto(np.zeros(1, np.float32)).dtype) == "float"
