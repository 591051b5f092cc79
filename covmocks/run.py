"""``python -m covmocks.run campaign.yaml``: the same as ``covmocks run campaign.yaml``."""

import sys

from covmocks.cli.main import main as cli_main


def main(argv=None) -> int:
    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
