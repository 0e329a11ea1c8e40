"""ivl_embodied.rl"""
