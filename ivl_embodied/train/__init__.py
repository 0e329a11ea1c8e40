"""Cascade RL: one module per stage (data, sft, mpo, gspo, vico, router), the trainer under
them, losses, and the typed recipes that chain stages (:mod:`.recipe`)."""
