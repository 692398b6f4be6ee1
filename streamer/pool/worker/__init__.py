"""The render worker's side, in its own process or Ray actor: the render loop (renderer, templates,
EDF queue), the scheduler, and the two ways it is hosted (`main.py` a process, `ray_actor.py`)."""
