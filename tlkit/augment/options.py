"""The augmentation flags of ``tlkit finetune`` and ``tlkit augment``: declared, parsed, checked and
mapped to ``ImageDataGenerator`` arguments in one place.

    @augmentation_options(flip_default="horizontal")
    @click.command()
    def cmd(rotation, shift, zoom, shear, flip, brightness, fill_mode): ...

    generator_arguments(rotation=20, flip="horizontal", brightness="0.8,1.2")
    -> {"rotation_range": 20.0, ..., "horizontal_flip": True, "brightness_range": [0.8, 1.2]}
"""
import math

import click

FLIPS = ("none", "horizontal", "vertical", "both")
FILL_MODES = ("nearest", "constant", "reflect", "wrap")
# option: (lowest, highest, what the number means); zoom 1 would allow a zero scale.
RANGES = {"rotation": (0.0, 180.0, "degrees"), "shift": (0.0, 1.0, "a fraction of the size"),
          "zoom": (0.0, 0.99, "0.2 means scales in [0.8, 1.2]"), "shear": (0.0, 90.0, "degrees"),
          "channel_shift": (0.0, 255.0, "pixel values")}
_BRIGHTNESS_HELP = "give LOW,HIGH factors (e.g. 0.8,1.2) or one spread below 1 (0.2 means 0.8,1.2)"


def check_number(option, value):
    """``value`` as a float inside the option's range; ValueError naming ``--option`` otherwise."""
    low, high, meaning = RANGES[option]
    flag = "--" + option.replace("_", "-")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{flag} {value}: give a number from {low:g} to {high:g} ({meaning}).")
    return number


def parse_brightness(value, option="--brightness"):
    """'LOW,HIGH' or one spread 's' (= 1-s,1+s), a string or numbers -> (low, high); None -> None."""
    if value is None:
        return None
    try:
        parts = [float(v) for v in (value.split(",") if isinstance(value, str) else value)]
    except (TypeError, ValueError):
        raise ValueError(f"{option} {value!r}: {_BRIGHTNESS_HELP}.") from None
    shown = value if isinstance(value, str) else ",".join(f"{p:g}" for p in parts)
    if not all(math.isfinite(p) for p in parts):
        raise ValueError(f"{option} {shown}: {_BRIGHTNESS_HELP}.")
    if len(parts) == 1:
        if not 0 <= parts[0] < 1:
            raise ValueError(f"{option} {shown}: one number is a spread below 1 (0.2 means 0.8,1.2); for another "
                             "range give LOW,HIGH, e.g. 0.5,1.5.")
        return (1 - parts[0], 1 + parts[0])
    if len(parts) != 2 or not 0 <= parts[0] <= parts[1]:
        raise ValueError(f"{option} {shown}: {_BRIGHTNESS_HELP}, with 0 <= LOW <= HIGH.")
    return (parts[0], parts[1])


def generator_arguments(rotation=0.0, shift=0.0, zoom=0.0, shear=0.0, flip="none", brightness=None,
                        fill_mode="nearest", channel_shift=0.0):
    """ImageDataGenerator keyword arguments for the command-line flags, every value checked first."""
    if flip not in FLIPS:
        raise ValueError(f"--flip {flip!r}: choose one of {', '.join(FLIPS)}.")
    if fill_mode not in FILL_MODES:
        raise ValueError(f"--fill-mode {fill_mode!r}: choose one of {', '.join(FILL_MODES)}.")
    shift = check_number("shift", shift)
    brightness = parse_brightness(brightness)
    return {"rotation_range": check_number("rotation", rotation), "width_shift_range": shift,
            "height_shift_range": shift, "zoom_range": check_number("zoom", zoom),
            "shear_range": check_number("shear", shear), "fill_mode": fill_mode,
            "horizontal_flip": flip in ("horizontal", "both"), "vertical_flip": flip in ("vertical", "both"),
            "brightness_range": list(brightness) if brightness is not None else None,
            "channel_shift_range": check_number("channel_shift", channel_shift)}


def _checked(parse):
    def callback(ctx, param, value):
        try:
            return parse(value)
        except ValueError as e:  # click names the option itself
            message = str(e)
            flag = param.opts[0] + " " if param is not None else ""
            raise click.BadParameter(message[len(flag):] if flag and message.startswith(flag) else message, ctx,
                                     param) from None

    return callback


def augmentation_options(flip_default, channel_shift=False):
    """The click options of the augmentation flags, with one help text each."""
    def number(option, default, help_text):
        return click.option(f"--{option.replace('_', '-')}", default=default, show_default=True, help=help_text,
                            callback=_checked(lambda v: check_number(option, v)))

    options = [
        number("rotation", 0.0, "Random rotation up to this many degrees (0-180)."),
        number("shift", 0.0, "Random shift up to this fraction of the width and height (0-1)."),
        number("zoom", 0.0, "Random zoom: 0.2 means scales in [0.8, 1.2]."),
        number("shear", 0.0, "Random shear up to this many degrees (0-90)."),
        click.option("--flip", type=click.Choice(FLIPS), default=flip_default, show_default=True),
        click.option("--brightness", default=None, callback=_checked(parse_brightness),
                     help="Brightness factors LOW,HIGH (e.g. 0.8,1.2), or one spread below 1 (0.2 = 0.8,1.2)."),
        click.option("--fill-mode", type=click.Choice(FILL_MODES), default="nearest", show_default=True,
                     help="How pixels moved in from outside the picture are filled."),
    ]
    if channel_shift:
        options.append(number("channel_shift", 0.0, "Random shift of each colour channel, in pixel values."))

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate
