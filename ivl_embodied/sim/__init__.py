"""ivl_embodied.sim"""
