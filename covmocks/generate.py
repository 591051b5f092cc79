"""``python -m covmocks.generate``: the same as ``covmocks generate``."""

import argparse
import sys

from covmocks.cli import add_generate_arguments, run, run_generate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m covmocks.generate", description="Populate one halo catalog with galaxies."
    )
    add_generate_arguments(parser)
    return run(run_generate, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
