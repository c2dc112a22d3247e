"""catdog: a reproducible cat-vs-dog image classifier pipeline."""

LABELS = ("cat", "dog")  # index 1 is the positive class: the model outputs p(dog)
