# The cuda policy's tests (CTest names contain "cuda").
#  test_cuda_omp: tests/cuda/test_cuda.cpp with g++ on Thrust's OpenMP device
#                 system, compared with the cpu policy; runs everywhere.
#  test_cuda_gpu: the same source compiled by nvcc for the GPU; built in CI so
#                 CUDA-only code cannot rot, run only where a GPU is present.
if(NOT PROTOSEG_HAVE_CUDA OR PROTOSEG_SANITIZE_SUBSET)
  return()
endif()
add_executable(test_cuda_omp cuda/test_cuda.cpp)
target_link_libraries(test_cuda_omp PRIVATE protoseg_build_flags protoseg::cuda_omp doctest::doctest)
doctest_discover_tests(test_cuda_omp TEST_PREFIX "test_cuda_omp/" ADD_LABELS 0)

if(PROTOSEG_NVCC)
  configure_file(cuda/test_cuda.cpp ${CMAKE_CURRENT_BINARY_DIR}/test_cuda_gpu.cu COPYONLY)
  add_executable(test_cuda_gpu ${CMAKE_CURRENT_BINARY_DIR}/test_cuda_gpu.cu)
  target_link_libraries(test_cuda_gpu PRIVATE protoseg::protoseg doctest::doctest CUDA::cublas CUDA::cudart)
  target_compile_options(test_cuda_gpu PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 -O3 --expt-relaxed-constexpr -Xcompiler=-fopenmp>)
endif()

# The layer primitives and modules (tests/cuda/test_cuda_nn.cpp), built the same two ways.
add_executable(test_cuda_nn_omp cuda/test_cuda_nn.cpp)
target_link_libraries(test_cuda_nn_omp PRIVATE protoseg_build_flags protoseg::cuda_omp doctest::doctest)
doctest_discover_tests(test_cuda_nn_omp TEST_PREFIX "test_cuda_nn_omp/" ADD_LABELS 0)

if(PROTOSEG_NVCC)
  configure_file(cuda/test_cuda_nn.cpp ${CMAKE_CURRENT_BINARY_DIR}/test_cuda_nn_gpu.cu COPYONLY)
  add_executable(test_cuda_nn_gpu ${CMAKE_CURRENT_BINARY_DIR}/test_cuda_nn_gpu.cu)
  target_link_libraries(test_cuda_nn_gpu PRIVATE protoseg::protoseg doctest::doctest CUDA::cublas CUDA::cudart)
  target_compile_options(test_cuda_nn_gpu PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 -O3 --expt-relaxed-constexpr -Xcompiler=-fopenmp>)
endif()
