"""`python -m stages.pilot`: the pilot stage (stages/pilot/__init__.py)."""
from stages.pilot import main

if __name__ == "__main__":
    main()
