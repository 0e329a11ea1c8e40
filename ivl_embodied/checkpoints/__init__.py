"""Checkpoints: InternVL3.5 ``-HF`` / Flash loading and splitting into a vision and a language
half (:mod:`.internvl`), the released remote-code (Flash) layout's key and config map
(:mod:`.released`), the default planner and serial vision+language planning
(:mod:`.planner`), tiny random configs of the same architecture for tests (:mod:`.tiny`)."""
