"""Stage 3, inference: one engine per method (`engine`: MAP, ADVI, NUTS), the MAP
kernels (`map_kernel`, `map_kernel_numba`), minibatch ADVI (`minibatch`), stopping
rules (`stopping`); every engine returns the DataTree built by `assemble`.
"""
