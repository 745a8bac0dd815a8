"""Step 3 entry point (the seed's command line): `python Step_3/pack_examples.py --help`.

A thin wrapper around stages/pack.py, the `pack` stage of dvc.yaml.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

from stages.pack import main  # noqa: E402

if __name__ == "__main__":
    from stages import cli
    cli.run("pack", main)
