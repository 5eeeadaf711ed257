"""`charrnn classify`: a character-level RNN that reads a text and names its label
(many-to-one), a product of its own beside the language models, reusing their corpus
reading, checkpoint files and runtime.

    result = train.train_classifier(Path("data/names"), ClassifierSettings(), out=Path("checkpoints/names"))
    clf = predict.load_classifier(result.checkpoint)
    clf.predict(["Dostoevsky", "Nakamura"], top=3)      # [[("Russian", 0.97), ...], ...]
    report = evaluate.evaluate_classifier(result.checkpoint, Path("data/names-test"))

`config` holds its options and its network's shape, `data` reads labelled examples, `model`
is the network, `train`, `predict` and `evaluate` use it, `scores` measures it, and
`checkpoint` is its file.
"""
