"""Steps 3-4 of the meme-abuse pipeline: one module per DVC stage (`python -m stages.<name>`).

Importing the package, or any module of it, changes nothing in the process: the CPU thread
policy (stages/threads.py) is applied by each entry point itself (stages/cli.py).
"""
