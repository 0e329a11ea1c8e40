"""ivl_embodied.sim: the MuJoCo tabletop world, task suite, oracle, skills and evaluation.

MuJoCo picks its OpenGL backend when it is first imported, so the headless default (EGL, Mesa on
the CPU) is set here, before any submodule can import it. Set ``MUJOCO_GL=osmesa`` to override.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
