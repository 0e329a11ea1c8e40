"""The robot side, independent of any simulator: the Robot seam and command types
(:mod:`.interface`), the arm's description (:mod:`.arm`), inverse kinematics (:mod:`.kinematics`),
pick/place/push skills (:mod:`.skills`) and the plan executor (:mod:`.executor`).
Imports nothing from ``ivl_embodied.sim``: the simulator is one Robot among others."""
