"""``plot_model``: a picture of a model's layer graph, as Keras's ``keras.utils.plot_model``, drawn with
matplotlib (no graphviz needed): one box per layer, rows by depth in the graph, arrows along the data.

The model is read through what every tlkit model exposes (``layers``, and a functional model's
``_graph`` of nodes), so this module needs nothing from the engine.
"""
from tlkit.utils.figures import new_figure, save_figure
from tlkit.utils.text import format_shape


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False, show_layer_names=True,
               rankdir="TB", expand_nested=False, dpi=200, show_layer_activations=False, show_trainable=False,
               **kwargs):
    """Write a picture of ``model``'s layers and connections to ``to_file`` (.png, .jpg, .pdf, .svg).

    ``rankdir``: "TB" (top to bottom) or "LR" (left to right). A nested model is drawn as one box
    (``expand_nested`` is accepted for Keras's signature)."""
    if rankdir not in ("TB", "LR"):
        raise ValueError(f"plot_model(rankdir=...) takes 'TB' or 'LR', got {rankdir!r}.")
    layers, edges = _layer_graph(model)
    if not layers:
        raise ValueError(f"plot_model: model '{model.name}' has no layers yet; build it (call it on data or give it "
                         "an Input) first.")
    depth = _depths(layers, edges)
    rows = {}
    for layer in layers:
        rows.setdefault(depth[id(layer)], []).append(layer)
    width = max(len(r) for r in rows.values())
    labels = {id(layer): _label(layer, show_shapes, show_dtype, show_layer_names, show_layer_activations,
                                show_trainable) for layer in layers}
    lines = max(label.count("\n") + 1 for label in labels.values())
    if rankdir == "TB":
        size = (max(3.0, 2.8 * width), max(2.0, (0.5 + 0.3 * lines) * len(rows)))
    else:
        size = (max(3.0, 2.8 * len(rows)), max(2.0, (0.5 + 0.3 * lines) * width))
    fig = new_figure(size, dpi=min(int(dpi), 300))
    ax = fig.add_subplot()
    ax.set_axis_off()
    position = {}
    for d, row in rows.items():
        for i, layer in enumerate(row):
            across = (i + 0.5) / len(row) * width
            position[id(layer)] = (across, -d) if rankdir == "TB" else (d, -across)
    for layer in layers:
        x, y = position[id(layer)]
        ax.text(x, y, labels[id(layer)], ha="center", va="center", fontsize=8, zorder=2,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": "#eef3fb", "edgecolor": "#34557a"})
    for source, target in edges:
        # An arrow skipping rows (a residual connection) bends, so it doesn't hide behind the straight ones.
        bend = 0.0 if depth[id(target)] - depth[id(source)] <= 1 else 0.5
        ax.annotate("", xy=position[id(target)], xytext=position[id(source)], zorder=1,
                    arrowprops={"arrowstyle": "-|>", "color": "#34557a", "shrinkA": 14, "shrinkB": 14,
                                "connectionstyle": f"arc3,rad={bend}"})
    xs, ys = zip(*position.values())
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
    save_figure(fig, to_file)


def _layer_graph(model):
    """(layers in order, [(source layer, target layer)]) of a functional model's graph, or the chain of a
    Sequential or subclassed model's layers."""
    graph = getattr(model, "_graph", None)
    if graph is None:
        layers = list(getattr(model, "layers", []))
        return layers, list(zip(layers, layers[1:]))
    edges = []
    for node in graph.nodes:
        for tensor in node.inputs:
            pair = (tensor.node.layer, node.layer)
            if pair not in edges:
                edges.append(pair)
    return list(graph.layers), edges


def _depths(layers, edges):
    depth = {id(layer): 0 for layer in layers}
    for _ in layers:  # longest path from an input; at most len(layers) passes over an acyclic graph
        changed = False
        for source, target in edges:
            if depth[id(target)] < depth[id(source)] + 1:
                depth[id(target)] = depth[id(source)] + 1
                changed = True
        if not changed:
            break
    return depth


def _label(layer, show_shapes, show_dtype, show_names, show_activations, show_trainable):
    kind = type(layer).__name__
    lines = [f"{layer.name} ({kind})" if show_names else kind]
    activation = getattr(layer, "activation", None)
    if show_activations and activation is not None:
        lines.append(f"activation: {getattr(activation, '__name__', activation)}")
    if show_shapes:
        lines.append(f"out: {_shape_text(layer)}")
    if show_dtype:
        lines.append(f"dtype: {getattr(layer, 'dtype', 'float32')}")
    if show_trainable:
        lines.append(f"trainable: {bool(getattr(layer, 'trainable', True))}")
    return "\n".join(lines)


def _shape_text(layer):
    try:
        shape = layer.output_shape if hasattr(layer, "output_shape") else layer.output.shape
    except (AttributeError, ValueError, TypeError, RuntimeError):
        return "?"
    if isinstance(shape, list):
        return ", ".join(format_shape(s) for s in shape)
    return format_shape(shape)
