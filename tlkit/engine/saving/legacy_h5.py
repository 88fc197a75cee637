"""The Keras 2 weight layout inside an HDF5 group: attr ``layer_names``; per layer a group
with attr ``weight_names`` listing its datasets in order. Shared by model files and weight files."""
import numpy as np


def _decode(names):
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def write_layer_weights(group, layers):
    """``layers``: [(layer_name, [(weight_name, array), ...]), ...] in model order."""
    group.attrs["layer_names"] = np.array([name.encode("utf8") for name, _ in layers])
    for layer_name, weights in layers:
        g = group.create_group(layer_name)
        names, seen = [], set()
        for i, (weight_name, value) in enumerate(weights):
            # Dataset names must be unique inside the group; fall back to an index.
            name = weight_name if weight_name not in seen else f"{weight_name}_{i}"
            seen.add(name)
            names.append(name)
            g.create_dataset(name, data=np.asarray(value))
        g.attrs["weight_names"] = np.array([n.encode("utf8") for n in names])


def read_layer_weights(group, where="file"):
    """[(layer_name, [array, ...]), ...] in the stored order, going by attrs, never by dataset names."""
    if "layer_names" not in group.attrs:
        raise ValueError(f"{where} has no 'layer_names' attribute: it is not a Keras/tlkit HDF5 weight file.")
    out = []
    for layer_name in _decode(group.attrs["layer_names"]):
        if layer_name not in group:
            raise ValueError(f"{where} lists layer '{layer_name}' but has no group for it: the file is damaged.")
        g = group[layer_name]
        arrays = []
        for weight_name in _decode(g.attrs.get("weight_names", [])):
            if weight_name not in g:
                raise ValueError(f"{where}: layer '{layer_name}' lists weight '{weight_name}' that is missing.")
            arrays.append(np.asarray(g[weight_name][()], dtype=np.float32))
        out.append((layer_name, arrays))
    return out


def model_layer_weights(model):
    """The model's weights in the layout above, one entry per layer in ``model.layers`` order."""
    layers = []
    for layer in model.layers:
        layers.append((layer.name, [(v.name.split("/", 1)[-1] if v.name.startswith(layer.name + "/") else v.name,
                                     v.value) for v in layer.weights]))
    return layers
