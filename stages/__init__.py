"""Steps 3-4 of the meme-abuse pipeline: one module per DVC stage (`python -m stages.<name>`).

Importing the package sets the CPU thread policy (stages/threads.py) before any stage loads
torch or numpy: it must run first, so it lives here.
"""
from stages.threads import apply_thread_policy

apply_thread_policy()
