"""Writing PyTorch-format files without torch, for tests that must run where torch is absent.

``write_torch_zip(path, obj)`` lays out a zip exactly as ``torch.save`` does (``<prefix>/data.pkl``,
``<prefix>/data/<key>``, ``byteorder``, ``version``) and pickles ``obj`` with the same opcodes:
numpy arrays become ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
calls on ``('storage', torch.FloatStorage, key, 'cpu', numel)`` persistent ids.
``TorchGlobal("os", "system")`` emits any global, so hostile files are easy to make too.
Test modules get these through the ``torch_files`` fixture.
"""
import collections
import io
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

STORAGE_TYPES = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage", np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage", np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


class TorchGlobal:
    """Pickled as the GLOBAL opcode ``module name``; nothing is imported while writing."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that a reduce function be callable
        raise AssertionError("only for pickling")


class TensorView:
    """A tensor over ``storage`` (1-D numpy array, shared by identity) with explicit geometry."""

    def __init__(self, storage, offset, size, stride, parameter=False):
        self.storage, self.offset, self.size, self.stride, self.parameter = storage, offset, size, stride, parameter

    def __reduce__(self):
        tensor = (TorchGlobal("torch._utils", "_rebuild_tensor_v2"),
                  (StorageRef(self.storage), self.offset, tuple(self.size), tuple(self.stride), False,
                   collections.OrderedDict()))
        if not self.parameter:
            return tensor
        return TorchGlobal("torch._utils", "_rebuild_parameter"), (_Reduced(tensor), True, collections.OrderedDict())


class _Reduced:
    def __init__(self, reduce_value):
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


class StorageRef:
    def __init__(self, array):
        self.array = array


class Payload:
    """An object whose unpickling calls ``function(*args)``: the shape of every pickle exploit."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class _TorchLikePickler(pickle._Pickler):  # the pure-Python pickler: its save() can be extended
    def __init__(self, file, legacy=False):
        super().__init__(file, protocol=2)
        self.storages = {}  # id(array) -> (key, array)
        self.legacy = legacy  # legacy persistent ids carry a sixth item, the view metadata (None)

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, TorchGlobal):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        if isinstance(obj, np.ndarray):
            obj = contiguous_tensor(obj)
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if not isinstance(obj, StorageRef):
            return None
        key, array = self.storages.setdefault(id(obj.array), (str(len(self.storages)), obj.array))
        pid = "storage", TorchGlobal("torch", STORAGE_TYPES[array.dtype]), key, "cpu", array.size
        return pid + (None,) if self.legacy else pid


def contiguous_tensor(array, parameter=False):
    array = np.asarray(array, order="C")  # ascontiguousarray would make 0-d arrays 1-d
    stride = [s // array.itemsize for s in array.strides] if array.size else [1] * array.ndim
    return TensorView(array.reshape(-1), 0, array.shape, stride, parameter)


def write_torch_zip(path, obj, prefix="archive", pickle_bytes=None, byteorder="little"):
    """``torch.save(obj, path)`` look-alike; ``pickle_bytes`` replaces data.pkl verbatim."""
    buffer = io.BytesIO()
    pickler = _TorchLikePickler(buffer)
    pickler.dump(obj)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{prefix}/data.pkl", pickle_bytes if pickle_bytes is not None else buffer.getvalue())
        archive.writestr(f"{prefix}/byteorder", byteorder)
        for key, array in pickler.storages.values():
            order = "<" if byteorder == "little" else ">"
            archive.writestr(f"{prefix}/data/{key}", array.astype(array.dtype.newbyteorder(order)).tobytes())
        archive.writestr(f"{prefix}/version", "3\n")
    return path


def hostile_payloads(marker):
    """(module, name, args): each call creates ``marker`` when a plain unpickler runs it."""
    python = f"open({str(marker)!r}, 'w').close()"
    return [
        ("os", "system", (f"touch '{marker}'",)),
        ("posix", "system", (f"touch '{marker}'",)),
        ("builtins", "eval", (python,)),
        ("builtins", "exec", (python,)),
        ("subprocess", "check_call", (["touch", str(marker)],)),
        ("subprocess", "Popen", ([sys.executable, "-c", python],)),
    ]



def sample_state_dict(rng):
    """Tensors of every kind a state dict holds: float32/16/64, int64 counter, bool mask, empty."""
    return collections.OrderedDict([
        ("conv.weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
        ("conv.bias", rng.standard_normal(4).astype(np.float32)),
        ("half", rng.standard_normal((2, 5)).astype(np.float16)),
        ("double", rng.standard_normal(3)),
        ("bn.num_batches_tracked", np.array(7, np.int64)),
        ("mask", np.array([True, False, True])),
        ("empty", np.zeros((0, 3), np.float32)),
    ])


LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C


def write_torch_legacy(path, obj, pickle_bytes=None, little_endian=True, records=None):
    """``torch.save(obj, path, _use_new_zipfile_serialization=False)`` look-alike: magic number,
    protocol 1001, sys info, the object pickle, the storage keys, then each storage as an 8-byte
    element count and its bytes. ``records`` replaces the three header records (raw pickles)."""
    buffer = io.BytesIO()
    pickler = _TorchLikePickler(buffer, legacy=True)
    pickler.dump(obj)
    order = "<" if little_endian else ">"
    header = records or [pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2), pickle.dumps(1001, protocol=2),
                         pickle.dumps({"protocol_version": 1001, "little_endian": little_endian,
                                       "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2)]
    keys = [key for key, _ in pickler.storages.values()]
    with open(path, "wb") as f:
        f.write(b"".join(header) + (pickle_bytes if pickle_bytes is not None else buffer.getvalue()))
        f.write(pickle.dumps(keys, protocol=2))
        for _, array in pickler.storages.values():
            f.write(np.array(array.size, order + "i8").tobytes())
            f.write(array.astype(array.dtype.newbyteorder(order)).tobytes())
    return path


@pytest.fixture
def torch_files():
    """These helpers (fixtures are how test modules share code here): ``torch_files.write(path, obj)``,
    ``torch_files.write_legacy(path, obj)``, ``torch_files.Global``, ``torch_files.Payload``, ``torch_files.TensorView``."""
    return types.SimpleNamespace(write=write_torch_zip, write_legacy=write_torch_legacy, Global=TorchGlobal,
                                 Payload=Payload, TensorView=TensorView, hostile_payloads=hostile_payloads,
                                 sample_state_dict=sample_state_dict,
                                 contiguous_tensor=contiguous_tensor)


# --- made-up zoo weights, in Keras's published layout and in torchvision's -------------------


def made_up_weights(shapes, rng):
    """[(layer, [kernel, bias])] for ``shapes`` = [(layer, [kernel shape, bias shape])], He-scaled so
    activations neither vanish nor explode through 13+ relu layers."""
    layers = []
    for name, (kernel_shape, bias_shape) in shapes:
        fan_in = int(np.prod(kernel_shape[:-1]))
        kernel = (rng.standard_normal(kernel_shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
        layers.append((name, [kernel, (0.1 * rng.standard_normal(bias_shape)).astype(np.float32)]))
    return layers


def write_keras_published_layout(path, layers, all_layer_names):
    """Exactly the layout of Keras's vgg16_weights_tf_dim_ordering_tf_kernels*.h5: root attrs
    layer_names (weightless layers too), per-layer weight_names, datasets <layer>_W_1:0 / _b_1:0."""
    import h5py

    weights = dict(layers)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in all_layer_names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.8"
        for name in all_layer_names:
            group = f.create_group(name)
            arrays = weights.get(name, [])
            names = [f"{name}_W_1:0", f"{name}_b_1:0"][: len(arrays)]
            group.attrs["weight_names"] = np.array([n.encode() for n in names]) if names else np.array([], np.float64)
            for dataset_name, array in zip(names, arrays):
                group.create_dataset(dataset_name, data=array)
    return path


CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
TORCH_MEAN_RGB = np.array([0.485, 0.456, 0.406])
TORCH_STD_RGB = np.array([0.229, 0.224, 0.225])


def to_torchvision(arch_module, layers, fold_preprocessing=False):
    """The same network as a torchvision state dict (torch layouts; fc1 columns in C, H, W order).

    ``fold_preprocessing``: rewrite the first conv so that the network computes the same function
    of the raw image under torch preprocessing as the Keras one does under caffe preprocessing
    (exact away from the image border, where the two zero paddings stand for different pixels).
    """
    state = collections.OrderedDict()
    shapes = dict(layers)
    for i, (name, (kernel, bias)) in enumerate(layers):
        prefix = arch_module.TORCHVISION_NAMES[name]
        if kernel.ndim == 4:
            weight = kernel.transpose(3, 2, 0, 1)
            if i == 0 and fold_preprocessing:
                # caffe input, BGR channel j = 255 * std[c] * t[c] + (255 * mean[c] - caffe_mean[j]), c = 2 - j
                rgb_kernel = kernel[:, :, ::-1, :].astype(np.float64)  # (kh, kw, c, out)
                offset = 255 * TORCH_MEAN_RGB - CAFFE_MEAN_BGR[::-1]
                bias = (bias + np.einsum("hwco,c->o", rgb_kernel, offset)).astype(np.float32)
                weight = (rgb_kernel * (255 * TORCH_STD_RGB)[None, None, :, None]).transpose(3, 2, 0, 1)
        elif name in arch_module.FLATTENED_BEFORE:
            channels = shapes[arch_module.FLATTENED_BEFORE[name]][1].shape[0]
            inputs, out = kernel.shape
            weight = kernel.reshape(inputs // channels, channels, out).transpose(2, 1, 0).reshape(out, inputs)
        else:
            weight = kernel.T
        state[f"{prefix}.weight"] = np.ascontiguousarray(weight, np.float32)
        state[f"{prefix}.bias"] = bias
    return state


def made_up_bn_network(shapes, rng):
    """{layer: arrays} for ``shapes`` = weight_shapes() of a network with BatchNormalization (4 arrays:
    gamma, beta, mean, positive variance) and He-scaled kernels (biases zero)."""
    layers = {}
    for name, layer_shapes in shapes:
        if len(layer_shapes) == 4:
            n = layer_shapes[0][0]
            arrays = [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 2, n)]
        else:
            kernel = layer_shapes[0]
            fan_in = kernel[0] * kernel[1] if len(kernel) == 4 and kernel[-1] == 1 else int(np.prod(kernel[:-1]))
            arrays = [rng.standard_normal(kernel) * np.sqrt(2.0 / fan_in)] + [np.zeros(s) for s in layer_shapes[1:]]
        layers[name] = [np.asarray(a, np.float32) for a in arrays]
    return layers


def write_keras2_weights(path, model, layers, weight_names):
    """Keras 2's save_weights layout, as in the published keras-applications files (mobilenet_v2_*,
    resnet50_*): root attrs layer_names (every layer), backend, keras_version; per layer weight_names
    "<layer>/<weight>:0", datasets under <layer>/<layer>/<weight>:0."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in model.layers])
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.2.4-tf"
        for layer in model.layers:
            group = f.create_group(layer.name)
            arrays = layers.get(layer.name, [])
            names = [f"{layer.name}/{w}:0" for w in weight_names(layer.name, len(arrays))]
            group.attrs["weight_names"] = np.array([n.encode() for n in names])
            for name, array in zip(names, arrays):
                group.create_dataset(name, data=array)
    return path


KERAS_APPLICATION = r'''
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import h5py, numpy as np, keras
factory, path, kwargs, x_path, out_path = sys.argv[1:6]
model = getattr(keras.applications, factory)(weights=None, **json.loads(kwargs))
with h5py.File(path, "r") as f:
    for layer in model.layers:
        if layer.weights:
            group = f[layer.name]
            layer.set_weights([np.asarray(group[n]) for n in group.attrs["weight_names"]])
np.save(out_path, model.predict(np.load(x_path), verbose=0))
'''


def keras_application_outputs(tmp_path, factory, weights_path, x, **kwargs):
    """keras.applications.<factory>(weights=None, **kwargs) given the file's weights by layer name, run
    on ``x`` in the peers' Python (TLKIT_PEERS_PYTHON); skips the test when Keras is not there."""
    import json
    import os
    import subprocess

    python = os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python")
    if not os.path.exists(python):
        pytest.skip(f"no peers Python with Keras at {python}")
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run([python, "-c", KERAS_APPLICATION, factory, str(weights_path), json.dumps(kwargs),
                             str(tmp_path / "x.npy"), str(tmp_path / "keras.npy")],
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0 and "No module named" in result.stderr:
        pytest.skip(f"Keras is not importable in {python}")
    assert result.returncode == 0, result.stderr[-2000:]
    return np.load(tmp_path / "keras.npy")


@pytest.fixture
def zoo_files():
    """Helpers for made-up zoo weights: ``made_up``, ``write_keras``, ``to_torchvision`` (VGG16/SqueezeNet);
    ``made_up_bn``, ``write_keras2``, ``keras_outputs`` (networks with BatchNormalization)."""
    return types.SimpleNamespace(made_up=made_up_weights, write_keras=write_keras_published_layout,
                                 to_torchvision=to_torchvision, made_up_bn=made_up_bn_network,
                                 write_keras2=write_keras2_weights, keras_outputs=keras_application_outputs)
