"""The ``tlkit`` command line."""
import click

from tlkit import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tlkit")
def main():
    """tlkit: transfer learning and image augmentation on the CPU."""


if __name__ == "__main__":  # pragma: no cover
    main()
