"""Bridges to the tools people already use: CIFF export (PISA, BMP, Anserini, JASS) and a
PyTerrier transformer. Above the pipeline: they read collections and wrap retrievers."""
