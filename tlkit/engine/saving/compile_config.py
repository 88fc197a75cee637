"""A model file's compile arguments (tlkit's ``training_config`` or Keras 3's ``compile_config``)
turned back into ``model.compile(...)``: one loss object or name, or one per output (list or dict),
metrics likewise, custom classes and functions from ``custom_objects`` or the registry."""
from tlkit.engine import losses, metrics, optimizers
from tlkit.utils.registration import with_registered


def _is_object(spec):
    return isinstance(spec, dict) and "class_name" in spec


def _per_output(spec, one):
    if spec is None or isinstance(spec, str) or _is_object(spec):
        return None if spec is None else one(spec)
    if isinstance(spec, dict):
        return {k: _per_output(v, one) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_per_output(v, one) for v in spec]
    return spec


def compile_from_config(model, training, custom_objects=None):
    objects = with_registered(custom_objects)
    loss = _per_output(training.get("loss"), lambda s: losses.get(losses.deserialize(s, objects)))
    metric_specs = _per_output(training.get("metrics"),  # names stay names: "accuracy" depends on the loss
                                lambda s: objects.get(s, s) if isinstance(s, str) else metrics.deserialize(s, objects))
    model.compile(optimizer=optimizers.deserialize(_optimizer_spec(training["optimizer"]), objects), loss=loss,
                  metrics=metric_specs, loss_weights=training.get("loss_weights"))


def _optimizer_spec(spec):
    return {"class_name": spec, "config": {}} if isinstance(spec, str) else spec
