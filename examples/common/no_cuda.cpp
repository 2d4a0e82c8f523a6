// The cuda half of the example programs in a build without the CUDA toolkit
// (or without nvcc): --device cuda stops with a message naming the cause.
#include <protoseg/error.hpp>

namespace protoseg::examples {
int cuda_main(int, char**);
}

int protoseg::examples::cuda_main(int, char**) {
  throw protoseg::error(
      "--device cuda: this build of protoseg has no CUDA support (it was configured without nvcc and the CUDA "
      "toolkit; install them and configure again, see docs/cuda.md); use --device cpu");
}
