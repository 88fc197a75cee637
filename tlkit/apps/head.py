"""The classifier head put on a frozen base, from a short text spec.

``"gap,dense:256,dropout:0.5"`` -> GlobalAveragePooling2D, Dense(256, relu), Dropout(0.5);
the final Dense(num_classes, softmax) is always appended.
"""
from tlkit.engine import layers as L

_HELP = ("Head spec items: gap | gmp | flatten | dense:UNITS | dropout:RATE | bn, separated by commas, "
         "e.g. 'gap,dense:256,dropout:0.5'.")


def parse_head(spec):
    """[(kind, value or None), ...]; raises ValueError with what was wrong."""
    items = []
    for raw in (s.strip() for s in str(spec).split(",")):
        if not raw:
            continue
        kind, _, value = raw.partition(":")
        kind = kind.lower()
        if kind in ("gap", "gmp", "flatten", "bn"):
            if value:
                raise ValueError(f"Head item '{raw}' takes no value. {_HELP}")
            items.append((kind, None))
        elif kind == "dense":
            if not value.isdigit() or int(value) <= 0:
                raise ValueError(f"Head item '{raw}': dense needs a positive number of units. {_HELP}")
            items.append((kind, int(value)))
        elif kind == "dropout":
            try:
                rate = float(value)
            except ValueError:
                rate = -1
            if not 0 <= rate < 1:
                raise ValueError(f"Head item '{raw}': dropout needs a rate in [0, 1). {_HELP}")
            items.append((kind, rate))
        else:
            raise ValueError(f"Unknown head item '{raw}'. {_HELP}")
    if not any(kind in ("gap", "gmp", "flatten") for kind, _ in items):
        items.insert(0, ("gap", None))  # the base's output is 4-D: pool it first
    return items


def build_head(feature_shape, num_classes, spec, name="head"):
    """A Sequential head taking the base's output (batch, h, w, c)."""
    from tlkit.engine.layers.input_layer import Input
    from tlkit.engine.sequential import Sequential

    model = Sequential([Input(tuple(feature_shape))], name=name)
    for i, (kind, value) in enumerate(parse_head(spec)):
        if kind == "gap":
            model.add(L.GlobalAveragePooling2D(name=f"head_gap_{i}"))
        elif kind == "gmp":
            model.add(L.GlobalMaxPooling2D(name=f"head_gmp_{i}"))
        elif kind == "flatten":
            model.add(L.Flatten(name=f"head_flatten_{i}"))
        elif kind == "dense":
            model.add(L.Dense(value, activation="relu", name=f"head_dense_{i}"))
        elif kind == "dropout":
            model.add(L.Dropout(value, name=f"head_dropout_{i}"))
        elif kind == "bn":
            model.add(L.BatchNormalization(name=f"head_bn_{i}"))
    model.add(L.Dense(num_classes, activation="softmax", name="predictions"))
    return model
