"""ivl_embodied.sim: the MuJoCo tabletop world, task suite, oracle, the simulated
robot and controllers, episodes and evaluation. MuJoCo only: the executor, skills and IK are in
``ivl_embodied.robot``, which never imports this package.

MuJoCo picks its OpenGL backend when it is first imported, so the headless default (EGL, Mesa on
the CPU) is set here, before any submodule can import it. Set ``MUJOCO_GL=osmesa`` to override.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
