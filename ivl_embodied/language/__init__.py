"""Workstation side: the language model alone. Prompt with visual placeholders, the Qwen3
planner on ``inputs_embeds`` (:mod:`.planner`) and plan-constrained decoding (:mod:`.constrained`)."""
