# protoseg-train, protoseg-eval, protoseg-infer: the example trainers (the main
# job). They share examples/common/ (configuration, evaluation, pictures).
#
# Each program's source is compiled twice: once by the host compiler for the
# cpu policy (with main()), and once with PROTOSEG_EXAMPLE_CUDA_PART as the
# program's cuda half (`--device cuda`), by nvcc where it is found. Without
# nvcc, common/no_cuda.cpp stands in and refuses --device cuda by name.
# protoseg-train-omp (tests only, not installed) links the cuda half built by
# g++ on Thrust's OpenMP system, so CI trains with --device cuda on a machine
# without a GPU.
set(_protoseg_cuda_flags -std=c++20 -O3 --expt-relaxed-constexpr -Xcompiler=-fopenmp -diag-suppress=20012)
if(PROTOSEG_NATIVE)
  list(APPEND _protoseg_cuda_flags -Xcompiler=-march=native)
endif()
foreach(_prog train eval infer)
  set(_src ${CMAKE_CURRENT_LIST_DIR}/protoseg_${_prog}.cpp)
  add_library(protoseg_${_prog}_cpu OBJECT ${_src})
  target_link_libraries(protoseg_${_prog}_cpu PRIVATE protoseg_build_flags)
  target_include_directories(protoseg_${_prog}_cpu PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  if(PROTOSEG_NVCC)
    set(_cu ${CMAKE_CURRENT_BINARY_DIR}/protoseg_${_prog}_cuda.cu)
    configure_file(${_src} ${_cu} COPYONLY)
    add_library(protoseg_${_prog}_cuda OBJECT ${_cu})
    target_compile_definitions(protoseg_${_prog}_cuda PRIVATE PROTOSEG_EXAMPLE_CUDA_PART)
    target_include_directories(protoseg_${_prog}_cuda PRIVATE ${CMAKE_CURRENT_LIST_DIR})
    target_link_libraries(protoseg_${_prog}_cuda PRIVATE protoseg::protoseg)
    target_compile_options(protoseg_${_prog}_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${_protoseg_cuda_flags}>)
    # The cpu object comes first on the link line: the cpu policy's inline
    # functions, which both halves instantiate, are then the host compiler's
    # copies (the linker keeps the first), so the cpu path is the same code,
    # and gives the same bits, as in a build without nvcc.
    add_executable(protoseg-${_prog} $<TARGET_OBJECTS:protoseg_${_prog}_cpu> $<TARGET_OBJECTS:protoseg_${_prog}_cuda>)
    target_link_libraries(protoseg-${_prog} PRIVATE protoseg_build_flags CUDA::cublas CUDA::cudart)
  else()
    add_executable(protoseg-${_prog} $<TARGET_OBJECTS:protoseg_${_prog}_cpu> ${CMAKE_CURRENT_LIST_DIR}/common/no_cuda.cpp)
    target_link_libraries(protoseg-${_prog} PRIVATE protoseg_build_flags)
  endif()
  set_target_properties(protoseg-${_prog} PROPERTIES LINKER_LANGUAGE CXX)
  install(TARGETS protoseg-${_prog} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endforeach()

if(PROTOSEG_HAVE_CUDA AND PROTOSEG_BUILD_TESTS)
  add_library(protoseg_train_cuda_omp OBJECT ${CMAKE_CURRENT_LIST_DIR}/protoseg_train.cpp)
  target_compile_definitions(protoseg_train_cuda_omp PRIVATE PROTOSEG_EXAMPLE_CUDA_PART)
  target_link_libraries(protoseg_train_cuda_omp PRIVATE protoseg_build_flags protoseg::cuda_omp)
  target_include_directories(protoseg_train_cuda_omp PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  add_executable(protoseg-train-omp $<TARGET_OBJECTS:protoseg_train_cpu> $<TARGET_OBJECTS:protoseg_train_cuda_omp>)
  target_link_libraries(protoseg-train-omp PRIVATE protoseg_build_flags protoseg::cuda_omp)
endif()
