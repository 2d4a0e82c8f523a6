# The cuda policy's tests (CTest names contain "cuda"). Each parity suite in
# tests/cuda/ is built twice:
#  <name>_omp: with g++ on Thrust's OpenMP device system, compared with the
#              cpu policy; registered with CTest, runs everywhere.
#  <name>_gpu: the same source compiled by nvcc for the GPU; built in CI so
#              CUDA-only code cannot rot, run only where a GPU is present.
if(NOT PROTOSEG_HAVE_CUDA OR PROTOSEG_SANITIZE_SUBSET)
  return()
endif()

function(protoseg_add_cuda_suite source name)
  add_executable(${name}_omp cuda/${source})
  target_include_directories(${name}_omp PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})  # op_cases.hpp
  target_link_libraries(${name}_omp PRIVATE protoseg_build_flags protoseg::cuda_omp doctest::doctest)
  doctest_discover_tests(${name}_omp TEST_PREFIX "${name}_omp/" ADD_LABELS 0)
  if(PROTOSEG_NVCC)
    configure_file(cuda/${source} ${CMAKE_CURRENT_BINARY_DIR}/${name}_gpu.cu COPYONLY)
    add_executable(${name}_gpu ${CMAKE_CURRENT_BINARY_DIR}/${name}_gpu.cu)
    target_include_directories(${name}_gpu PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/cuda ${CMAKE_CURRENT_SOURCE_DIR})
    target_link_libraries(${name}_gpu PRIVATE protoseg::protoseg doctest::doctest CUDA::cublas CUDA::cudart)
    target_compile_options(${name}_gpu PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 -O3 --expt-relaxed-constexpr -Xcompiler=-fopenmp>)
  endif()
endfunction()

protoseg_add_cuda_suite(test_cuda.cpp test_cuda)        # every tensor primitive, op and solver
protoseg_add_cuda_suite(test_cuda_nn.cpp test_cuda_nn)  # the layer primitives and modules
