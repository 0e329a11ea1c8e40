"""The DvD contract between the two sides: visual embeddings and their wire payload.

The vision side produces :class:`~ivl_embodied.embeddings.payload.VisualEmbeddings`, the language
side consumes them; neither imports the other."""
