#!/usr/bin/env python3
"""Small .npy files written by numpy for tests/test_npy.cpp.

Writes into tests/fixtures/npy/:
  f4_2x3.npy      float32 [[0, 1.5, -2], [3.25, 4, -5.5]]           (version 1.0)
  f8_4.npy        float64 [0.1, -0.2, 1e300, -1e-300]                 (version 1.0)
  i8_2x2x2.npy    int64 arange(8) - 3 reshaped 2 x 2 x 2              (version 1.0)
  f4_v2.npy       float32 arange(6) reshaped 3 x 2, version 2.0 header
  f8_scalar.npy   float64 0-d array 2.5
  f4_empty.npy    float32 of shape (0, 3)
  f4_fortran.npy  float32 2 x 3 in Fortran order            (must be rejected)
  f4_bigendian.npy  >f4 array                               (must be rejected)
  i4_3.npy        int32 array                                (must be rejected)
Run: /usr/bin/python3 tools/gen_npy_fixtures.py
"""
import os

import numpy as np
from numpy.lib import format as npf

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "npy")


def main():
    os.makedirs(OUT, exist_ok=True)
    p = lambda n: os.path.join(OUT, n)
    np.save(p("f4_2x3.npy"), np.array([[0, 1.5, -2], [3.25, 4, -5.5]], dtype=np.float32))
    np.save(p("f8_4.npy"), np.array([0.1, -0.2, 1e300, -1e-300], dtype=np.float64))
    np.save(p("i8_2x2x2.npy"), (np.arange(8, dtype=np.int64) - 3).reshape(2, 2, 2))
    with open(p("f4_v2.npy"), "wb") as f:
        npf.write_array(f, np.arange(6, dtype=np.float32).reshape(3, 2), version=(2, 0))
    np.save(p("f8_scalar.npy"), np.array(2.5, dtype=np.float64))
    np.save(p("f4_empty.npy"), np.zeros((0, 3), dtype=np.float32))
    np.save(p("f4_fortran.npy"), np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    np.save(p("f4_bigendian.npy"), np.arange(3, dtype=">f4"))
    np.save(p("i4_3.npy"), np.arange(3, dtype=np.int32))


if __name__ == "__main__":
    main()
