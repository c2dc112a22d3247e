"""catdog: a reproducible cat-vs-dog image classifier pipeline (the map: README, "Layout")."""
