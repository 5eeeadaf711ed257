"""Text -> symbols -> the id store: decoding, sources and documents, the vocabulary and its
tokens, preprocessing, and the corpora that come with charrnn."""
