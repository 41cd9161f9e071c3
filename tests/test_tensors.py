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


def test_integer_values_out_of_their_dtypes_range_are_refused_not_wrapped():
    """int_val carries int32s: 300 or -5 in a uint8 tensor used to become 44 and 251 silently."""
    from tensorflow.core.framework import tensor_pb2, types_pb2
    for bad in (300, -5):
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, int_val=[7, bad])
        proto.tensor_shape.dim.add(size=2)
        with pytest.raises(tensors.TensorError, match=f"value {bad} is out of range for uint8"):
            tensors.to_numpy(proto)
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, int_val=[0, 255])
    proto.tensor_shape.dim.add(size=2)
    np.testing.assert_array_equal(tensors.to_numpy(proto), [0, 255])


def test_one_value_for_a_huge_shape_costs_no_memory_and_the_request_is_refused_before_expanding():
    """58 bytes of DT_STRING with shape [1e9] and one string_val: refused from its shape, and even read as an
    array it is a view of one element, not a billion."""
    from tensorflow.core.framework import tensor_pb2, types_pb2

    from serving.errors import ServingError
    from serving.servable import InputSpec
    from serving.service import Limits, _check_inputs
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"])
    proto.tensor_shape.dim.add(size=1_000_000_000)
    view = tensors.to_numpy(proto)
    assert view.shape == (1_000_000_000,) and view.base is not None and view.base.nbytes < 100
    specs = {"image_bytes": InputSpec("image_bytes", "string", 1, None)}
    with pytest.raises(ServingError) as refused:
        _check_inputs({"image_bytes": proto}, specs, None, Limits())
    assert refused.value.code.name == "INVALID_ARGUMENT" and "1000000000 images" in refused.value.message


def test_an_animated_image_is_refused_from_its_header_whatever_its_first_frame():
    """A GIF whose first frame is 16×16 and whose second is far larger: TensorFlow's decoder reads every frame."""
    import io

    from PIL import Image

    from serving.errors import ServingError
    from serving.service import Limits, _check_encoded_images
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="GIF", save_all=True,
                                    append_images=[Image.new("RGB", (16, 16), "red")])
    with pytest.raises(ServingError) as refused:
        _check_encoded_images("image_bytes", np.array([buffer.getvalue()], dtype=object), Limits())
    assert refused.value.code.name == "INVALID_ARGUMENT" and "animated" in refused.value.message
    still = io.BytesIO()
    Image.new("RGB", (16, 16)).save(still, format="GIF")
    assert _check_encoded_images("image_bytes", np.array([still.getvalue()], dtype=object), Limits()) == [(16, 16)]
