"""The file registry of model versions (store) and its blessing gate (a pure decision)."""
