"""model.summary(): a Keras-style table of layers, output shapes and parameter counts."""
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


def summarize(model, line_length=None, print_fn=None):
    print_fn = print_fn or print
    rows = model._summary_rows()
    connected = any(r[3] for r in rows)
    widths = [34, 26, 12] + ([28] if connected else [])
    if line_length:
        widths[0] = max(20, line_length - sum(widths[1:]))
    total = sum(widths)
    headers = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if connected else [])

    def line(cells):
        return "".join(str(c)[: w - 1].ljust(w) for c, w in zip(cells, widths)).rstrip()

    print_fn(f'Model: "{model.name}"')
    print_fn("_" * total)
    print_fn(line(headers))
    print_fn("=" * total)
    for i, (name, shape, params, inbound) in enumerate(rows):
        print_fn(line([name, _shape(shape), params] + ([inbound[0] if inbound else ""] if connected else [])))
        for extra in (inbound[1:] if connected else []):
            print_fn(line(["", "", "", extra]))
        print_fn(("_" if i < len(rows) - 1 else "=") * total)
    trainable = sum(v.size for v in model.trainable_weights)
    everything = sum(v.size for v in model.weights)
    print_fn(f"Total params: {everything:,} ({_bytes(everything)})")
    print_fn(f"Trainable params: {trainable:,} ({_bytes(trainable)})")
    print_fn(f"Non-trainable params: {everything - trainable:,} ({_bytes(everything - trainable)})")
    print_fn("_" * total)
