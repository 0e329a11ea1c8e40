"""ivl_embodied.export"""
