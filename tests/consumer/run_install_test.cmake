# Installs the build tree into a fresh prefix, then configures, builds and
# runs tests/consumer against it with find_package(protoseg); then builds the
# same consumer with add_subdirectory(<source tree>). EXPECT_CUDA_OMP: the
# build has the cuda policy, so the package must export protoseg::cuda_omp.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
if(NOT EXISTS ${prefix}/share/cmake/protoseg/protosegConfigVersion.cmake)
  message(FATAL_ERROR "the install has no protosegConfigVersion.cmake")
endif()
run(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/find_package -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/find_package)
run(${WORK_DIR}/find_package/consumer)
# With the CUDA toolkit, the installed package also exports protoseg::cuda_omp.
if(EXPECT_CUDA_OMP)
  if(NOT EXISTS ${WORK_DIR}/find_package/consumer_cuda_omp)
    message(FATAL_ERROR "the installed package has no protoseg::cuda_omp target, though this build has the cuda policy")
  endif()
  run(${WORK_DIR}/find_package/consumer_cuda_omp)
endif()
run(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${WORK_DIR}/add_subdirectory -DPROTOSEG_SOURCE_DIR=${SOURCE_DIR}
    -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/add_subdirectory)
run(${WORK_DIR}/add_subdirectory/consumer)
