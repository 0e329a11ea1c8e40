"""ivl_embodied.transport"""
