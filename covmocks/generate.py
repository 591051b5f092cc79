"""``python -m covmocks.generate``: the same as ``covmocks generate``."""

import sys

from covmocks.cli.main import generate_parser, run, run_generate


def main(argv=None) -> int:
    parser = generate_parser("python -m covmocks.generate", "Populate one halo catalog.")
    return run(run_generate, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
