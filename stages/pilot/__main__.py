"""`python -m stages.pilot`: the pilot stage (stages/pilot/__init__.py)."""
if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

from stages.pilot import main  # noqa: E402

if __name__ == "__main__":
    from stages import cli
    cli.run("pilot", main)
