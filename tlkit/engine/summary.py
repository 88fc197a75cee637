"""model.summary(): a Keras-style table of layers, output shapes and parameter counts."""
import re

from tlkit.utils.text import format_shape


def _shape(shape):
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(_shape(s) for s in shape)
    return format_shape(shape)


def _bytes(n_params):
    size = n_params * 4.0
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"
        size /= 1024


def _layer_bounds(names, layer_range):
    """Keras's `layer_range`: the first layer matching the start pattern to the last matching the end one."""
    if layer_range is None:
        return 0, len(names)
    if len(layer_range) != 2 or not all(isinstance(p, str) for p in layer_range):
        raise ValueError(f"layer_range must be two layer names (start, end), got {layer_range!r}")
    lower = [i for i, name in enumerate(names) if re.match(layer_range[0], name)]
    upper = [i for i, name in enumerate(names) if re.match(layer_range[1], name)]
    if not lower or not upper:
        raise ValueError(f"layer_range {list(layer_range)} matches no layer of this model: "
                         f"use names from model.layers ({', '.join(names[:5])}, ...)")
    if min(lower) > max(upper):
        return min(upper), max(lower) + 1
    return min(lower), max(upper) + 1


def _trainable_mark(layer):
    """Keras's Trainable column: Y or N for a layer with weights, '-' for one without."""
    if not layer.weights:
        return "-"
    return "Y" if layer.trainable else "N"


def _widths(defaults, line_length, positions):
    """Column widths: Keras's ``positions`` are the columns' right edges, relative to the line (all <= 1)
    or in characters; without them the default widths, the first column stretched to ``line_length``."""
    if positions is None:
        widths = list(defaults)
        if line_length:
            widths[0] = max(20, line_length - sum(widths[1:]))
        return widths
    positions = list(positions)
    if len(positions) != len(defaults):
        raise ValueError(f"positions needs one right edge per column ({len(defaults)} here), got {positions!r}")
    if positions[-1] <= 1:
        positions = [int((line_length or sum(defaults)) * p) for p in positions]
    widths = [b - a for a, b in zip([0] + positions[:-1], positions)]
    if any(w < 2 for w in widths):
        raise ValueError(f"positions must increase, each column at least 2 characters wide; got {positions!r}")
    return widths


def _nested_rows(rows, layers, connected, show_trainable, expand_nested, depth=0):
    """The table's rows (cells, extra 'Connected to' lines): with expand_nested, a nested model's layers
    follow its row, their names indented one step per level."""
    out = []
    for (name, shape, params, inbound), layer in zip(rows, layers):
        cells = ["  " * depth + ("└ " if depth else "") + name, _shape(shape), params]
        cells += [inbound[0] if inbound else ""] if connected else []
        cells += [_trainable_mark(layer)] if show_trainable else []
        out.append((cells, inbound[1:] if connected else []))
        inner = getattr(layer, "_summary_rows", None)
        if expand_nested and inner is not None and getattr(layer, "layers", None):
            out += _nested_rows(inner(), list(layer.layers), connected, show_trainable, True, depth + 1)
    return out


def summarize(model, line_length=None, print_fn=None, show_trainable=False, layer_range=None, positions=None,
              expand_nested=False):
    print_fn = print_fn or print
    rows = model._summary_rows()
    layers = list(model.layers)
    start, stop = _layer_bounds([layer.name for layer in layers], layer_range)
    rows, layers = rows[start:stop], layers[start:stop]
    connected = any(r[3] for r in rows)
    widths = _widths([34, 26, 12] + ([28] if connected else []) + ([11] if show_trainable else []), line_length,
                     positions)
    total = sum(widths)
    headers = (["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if connected else [])
               + (["Trainable"] if show_trainable else []))

    def line(cells):
        return "".join(str(c)[: w - 1].ljust(w) for c, w in zip(cells, widths)).rstrip()

    print_fn(f'Model: "{model.name}"')
    print_fn("_" * total)
    print_fn(line(headers))
    print_fn("=" * total)
    table = _nested_rows(rows, layers, connected, show_trainable, expand_nested)
    for i, (cells, extra_inbound) in enumerate(table):
        print_fn(line(cells))
        for extra in extra_inbound:
            print_fn(line(["", "", "", extra]))
        print_fn(("_" if i < len(table) - 1 else "=") * total)
    trainable = sum(v.size for v in model.trainable_weights)
    everything = sum(v.size for v in model.weights)
    print_fn(f"Total params: {everything:,} ({_bytes(everything)})")
    print_fn(f"Trainable params: {trainable:,} ({_bytes(trainable)})")
    print_fn(f"Non-trainable params: {everything - trainable:,} ({_bytes(everything - trainable)})")
    print_fn("_" * total)
