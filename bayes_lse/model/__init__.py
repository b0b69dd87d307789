"""Stage 2, model: every term of the model once in numpy and PyTensor (`terms`), the
PyMC graph and the model spec (`graph`), and the forward simulator (`simulate`).
"""
