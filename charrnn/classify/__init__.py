"""The character-level classifier, a product of its own: its data, model, training,
prediction and evaluation, reusing the corpus, checkpoint and runtime of the rest."""
