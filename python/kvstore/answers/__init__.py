"""The real-model answers benchmark (`make answers`): a real decoder and a real vision encoder
that PyPI packages ship, photos and prose documents, every policy's answers through
`kvstore.eval`. `model` assembles the model, `items` builds the items, `benchmark` runs it.
Needs the answers venv (`bash scripts/python-env.sh answers`)."""
