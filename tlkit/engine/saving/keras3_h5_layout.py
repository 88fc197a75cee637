"""The Keras 3 weight layout inside HDF5 (``model.save_weights("m.weights.h5")``, and the
``model.weights.h5`` member of a ``.keras`` zip), read with the same checks as the Keras 2 layout.

Keras 3 stores each object's variables at ``<path>/vars/0, 1, ...`` where the path follows the
object tree: ``layers/<auto name>/vars`` for a model's layers, ``layers/<sub model>/layers/...``
for nested models, and the layer's real name in the ``vars`` group's ``name`` attribute.
"""
import numpy as np

from tlkit.engine.saving.errors import WeightFileError
from tlkit.engine.saving.keras_h5_layout import decode_text, read_dataset

# Training state and bookkeeping, not model weights.
NOT_WEIGHTS = {"optimizer", "compile_metrics", "compile_loss", "metrics", "loss_tracker", "tlkit_optimizer"}


def is_keras3_layout(root):
    return "layers" in root or "vars" in root or "_layer_checkpoint_dependencies" in root


def read_keras3_layers(root, path):
    """([(layer name, [weight name, ...], [array, ...]), ...], {layer name: path in the file})."""
    import h5py  # on first use: tlkit.zoo loads without h5py

    layers, paths = {}, {}

    def visit(group, h5_path, name_prefix):
        for key in group:
            if key == "vars" or key in NOT_WEIGHTS:
                continue
            child = group[key]
            child_path = f"{h5_path}/{key}" if h5_path else key
            if not isinstance(child, h5py.Group):
                raise WeightFileError(path, f"'{child_path}' is a {type(child).__name__}; expected a group")
            if "vars" not in child:  # a container such as "layers": its children share our prefix
                visit(child, child_path, name_prefix)
                continue
            name = name_prefix + _vars_name(child["vars"], key)
            if name in layers:  # two objects with one name: fall back to the unique file path
                name = child_path
            names, arrays = _read_vars(child["vars"], f"{child_path}/vars", path)
            if arrays:
                layers[name], paths[name] = (names, arrays), child_path
            visit(child, child_path, name + "/")

    if "vars" in root:  # the model's own variables (rare)
        names, arrays = _read_vars(root["vars"], "vars", path)
        if arrays:
            name = _vars_name(root["vars"], "top_level_model_weights")
            layers[name], paths[name] = (names, arrays), ""
    visit(root, "", "")
    return [(name, names, arrays) for name, (names, arrays) in layers.items()], paths


def _vars_name(vars_group, fallback):
    name = decode_text(vars_group.attrs.get("name", fallback))
    return name if isinstance(name, str) and name else fallback


def _read_vars(vars_group, vars_path, path):
    import h5py  # on first use, as above

    if not isinstance(vars_group, h5py.Group):
        raise WeightFileError(path, f"'{vars_path}' should be a group of numbered arrays")
    keys = list(vars_group)
    if any(not k.isdigit() for k in keys) or sorted(int(k) for k in keys) != list(range(len(keys))):
        raise WeightFileError(path, f"'{vars_path}' should hold arrays named 0, 1, 2, ..., found {keys[:10]}")
    names = [str(i) for i in range(len(keys))]  # numeric order: "10" comes after "9"
    return names, [read_dataset(vars_group, n, path, f"'{vars_path}/{n}'") for n in names]


def keras3_keys(layers):
    """The group names Keras 3 gives a model's layers: the class in snake case, numbered in model order
    (dense, dense_1, ...); a functional model is "functional"."""
    from tlkit.utils.text import snake_case

    counts, keys = {}, []
    for layer in layers:
        class_name = type(layer).__name__
        if class_name == "Model" and getattr(layer, "_graph", None) is not None:
            class_name = "Functional"
        base = snake_case(class_name)
        keys.append(base if base not in counts else f"{base}_{counts[base]}")
        counts[base] = counts.get(base, 0) + 1
    return keys


def _nested_model(layer):
    return isinstance(getattr(layer, "layers", None), list) and getattr(layer, "_graph", None) is not None or \
        type(layer).__name__ == "Sequential"


def arrays_in_model_order(layers, paths, stored):
    """The file's arrays per model layer with weights, found where Keras 3 puts them: ``layers/<key>`` (see
    ``keras3_keys``), whatever the layers' names and the file's alphabetical order; a nested model's arrays
    come from its own ``layers/<key>/layers/...`` in its layers' order. A layer holding several variable
    groups (Bidirectional's forward and backward layers) gets them in the order its ``keras3_subpaths``
    names (else by path). None when the file's keys are not those of the model's layers."""
    by_path = {paths[name]: arrays for name, arrays in stored}
    found = _arrays_under(layers, by_path, "layers")
    return None if found is None else [(layer.name, arrays) for layer, arrays in found if layer.weights]


def _arrays_under(layers, by_path, container):
    out = []
    for layer, key in zip(layers, keras3_keys(layers)):
        if not layer.weights:
            continue
        prefix = f"{container}/{key}"
        if _nested_model(layer):
            inner = _arrays_under(layer.layers, by_path, prefix + "/layers")
            if inner is None:
                return None
            out.append((layer, [a for _, arrays in inner for a in arrays]))
            continue
        found = sorted(p for p in by_path if p == prefix or p.startswith(prefix + "/"))
        if not found:
            return None
        order = getattr(layer, "keras3_subpaths", ())

        def rank(path, prefix=prefix, order=order):
            rest = path[len(prefix) + 1:]
            return next((i for i, sub in enumerate(order) if rest.startswith(sub)), len(order)), path

        out.append((layer, [a for p in sorted(found, key=rank) for a in by_path[p]]))
    return out


# Layers whose variables Keras 3 keeps in a sub-object (a recurrent layer's cell), not in the layer's own vars.
_KERAS3_VARS_PATH = {"LSTM": "cell/vars", "GRU": "cell/vars", "SimpleRNN": "cell/vars"}
# Wrappers whose variables Keras 3 keeps in their inner layers' groups, named by the wrapper's attributes.
_KERAS3_INNER_LAYERS = {"Bidirectional": ("forward_layer", "backward_layer"), "TimeDistributed": ("layer",)}


def write_keras3_layers(root, model):
    """``model``'s weights in Keras 3's layout under ``root`` (what ``arrays_in_model_order`` reads)."""
    root.create_group("vars").attrs["name"] = model.name
    for layer, key in zip(model.layers, keras3_keys(model.layers)):
        group = root.create_group(f"layers/{key}")
        if _nested_model(layer):
            write_keras3_layers(group, layer)
            continue
        for path, owner in _keras3_variable_groups(layer):
            variables = group.create_group(path)
            variables.attrs["name"] = owner.name
            for i, weight in enumerate(owner.weights):
                variables.create_dataset(str(i), data=np.asarray(weight.value))


def _keras3_variable_groups(layer):
    """[(path under the layer's group, the layer owning those variables)] as Keras 3 writes them: a
    recurrent layer's in its cell, a wrapper's in its inner layers' groups (in the wrapper's weight order)."""
    inner = _KERAS3_INNER_LAYERS.get(type(layer).__name__)
    if inner is None:
        return [(_KERAS3_VARS_PATH.get(type(layer).__name__, "vars"), layer)]
    return [(f"{attribute}/{path}", owner) for attribute in inner
            for path, owner in _keras3_variable_groups(getattr(layer, attribute))]
