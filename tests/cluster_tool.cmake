# CTest cases for the protoseg-cluster tool (examples/protoseg_cluster.cpp).
#
# Included by tests/CMakeLists.txt, this file registers the tests; run with
# `cmake -P` (which the tests do), it is the checker: it runs the tool, checks
# the exit status, the files written and the message on stderr.
#   -DTOOL=... -DWORK=dir -DARGS="a|b|c" -DEXPECT=ok|refuse
#   [-DCOMPARE="written|reference|..."] [-DSTDERR_REGEX=...] [-DSIZES="file|bytes|..."]

if(CMAKE_SCRIPT_MODE_FILE)
  file(REMOVE_RECURSE "${WORK}")
  file(MAKE_DIRECTORY "${WORK}")
  string(REPLACE "|" ";" _args "${ARGS}")
  execute_process(COMMAND "${TOOL}" ${_args}
                  WORKING_DIRECTORY "${WORK}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "exit status: ${rc}\nstdout:\n${out}\nstderr:\n${err}")
  if(NOT rc MATCHES "^[0-9]+$")
    message(FATAL_ERROR "protoseg-cluster crashed: ${rc}")
  endif()
  if(EXPECT STREQUAL "ok")
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "expected success, got exit status ${rc}")
    endif()
    if(NOT out MATCHES "sinkhorn [0-9.]+ ms")
      message(FATAL_ERROR "the tool did not print the time taken")
    endif()
    string(REPLACE "|" ";" _cmp "${COMPARE}")
    while(_cmp)
      list(POP_FRONT _cmp written reference)
      execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${WORK}/${written}" "${reference}" RESULT_VARIABLE same)
      if(NOT same EQUAL 0)
        message(FATAL_ERROR "${written} differs from ${reference}")
      endif()
    endwhile()
    string(REPLACE "|" ";" _sizes "${SIZES}")
    while(_sizes)
      list(POP_FRONT _sizes file bytes)
      file(SIZE "${WORK}/${file}" n)
      if(NOT n EQUAL bytes)
        message(FATAL_ERROR "${file}: ${n} bytes, expected ${bytes}")
      endif()
      file(READ "${WORK}/${file}" head OFFSET 10 LIMIT 118)  # after the binary preamble
      if(NOT head MATCHES "'descr': '<f4', 'fortran_order': False")
        message(FATAL_ERROR "${file}: not a float32 C-order .npy file")
      endif()
    endwhile()
  else()
    if(rc EQUAL 0)
      message(FATAL_ERROR "expected a refusal (non-zero exit status), got 0")
    endif()
    if(NOT err MATCHES "${STDERR_REGEX}")
      message(FATAL_ERROR "stderr does not match '${STDERR_REGEX}'")
    endif()
  endif()
  file(REMOVE_RECURSE "${WORK}")
  return()
endif()

if(PROTOSEG_BUILD_EXAMPLES)
  set(_fx ${CMAKE_CURRENT_SOURCE_DIR}/fixtures)
  set(_work ${CMAKE_CURRENT_BINARY_DIR}/cluster_tool)
  set(_self ${CMAKE_CURRENT_LIST_FILE})
  function(protoseg_cluster_test name expect)
    cmake_parse_arguments(T "" "STDERR_REGEX" "ARGS;COMPARE;SIZES" ${ARGN})
    string(REPLACE ";" "|" _a "${T_ARGS}")
    string(REPLACE ";" "|" _c "${T_COMPARE}")
    string(REPLACE ";" "|" _s "${T_SIZES}")
    add_test(NAME cluster_tool/${name}
             COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:protoseg-cluster> -DWORK=${_work}/${name}
                     "-DARGS=${_a}" -DEXPECT=${expect} "-DCOMPARE=${_c}" "-DSIZES=${_s}"
                     "-DSTDERR_REGEX=${T_STDERR_REGEX}" -P ${_self})
  endfunction()

  # Round trips: the labels equal numpy's argmax of Algorithm 1 (PyTorch
  # transcription, tools/gen_sinkhorn_fixtures.py) byte for byte; the
  # assignment is a float32 K x N .npy file.
  protoseg_cluster_test(round_trip_scores ok
    ARGS --scores ${_fx}/sinkhorn/default_scores.npy --assignment Q.npy --labels I.npy
    COMPARE I.npy ${_fx}/sinkhorn/default_labels.npy
    SIZES Q.npy 720)  # 128-byte header + 4 x 37 float32
  protoseg_cluster_test(round_trip_embeddings ok
    ARGS --embeddings ${_fx}/sinkhorn/online_X_rows.npy --prototypes ${_fx}/sinkhorn/online_P_rows.npy
         --labels I.npy --assignment Q.npy --log-domain --threads 1
    COMPARE I.npy ${_fx}/sinkhorn/online_labels.npy
    SIZES Q.npy 788)  # 128 + 5 x 33 x 4
  protoseg_cluster_test(round_trip_float32_tolerance ok
    ARGS --scores ${_fx}/npy/f4_2x3.npy --labels I.npy --iterations 50 --tolerance 1e-4)

  # Refusals: a clear message on stderr and a non-zero exit, never a crash.
  protoseg_cluster_test(refuses_fortran_order refuse
    ARGS --scores ${_fx}/npy/f4_fortran.npy STDERR_REGEX "f4_fortran.npy: unsupported layout: fortran_order is True")
  protoseg_cluster_test(refuses_int32 refuse
    ARGS --scores ${_fx}/npy/i4_3.npy STDERR_REGEX "i4_3.npy: unsupported dtype '<i4'")
  protoseg_cluster_test(refuses_missing_file refuse
    ARGS --scores ${_fx}/npy/no_such_file.npy STDERR_REGEX "no_such_file.npy: cannot open")
  protoseg_cluster_test(refuses_not_a_matrix refuse
    ARGS --scores ${_fx}/npy/f8_4.npy STDERR_REGEX "f8_4.npy: got shape \\(4,\\), expected a matrix")
  protoseg_cluster_test(refuses_not_npy refuse
    ARGS --scores ${CMAKE_CURRENT_SOURCE_DIR}/test_npy.cpp STDERR_REGEX "not a .npy file")
  protoseg_cluster_test(refuses_bad_kappa refuse
    ARGS --scores ${_fx}/sinkhorn/default_scores.npy --kappa 0 STDERR_REGEX "options.kappa: got 0, expected a finite value > 0")
  protoseg_cluster_test(refuses_bad_iterations refuse
    ARGS --scores ${_fx}/sinkhorn/default_scores.npy --iterations 0 STDERR_REGEX "options.iterations: got 0")
  protoseg_cluster_test(refuses_bad_number refuse
    ARGS --scores ${_fx}/sinkhorn/default_scores.npy --kappa 0.05x STDERR_REGEX "--kappa: got '0.05x', expected a number")
  protoseg_cluster_test(refuses_unknown_argument refuse
    ARGS --frobnicate STDERR_REGEX "unknown argument '--frobnicate'")
  protoseg_cluster_test(refuses_mismatched_d refuse
    ARGS --embeddings ${_fx}/sinkhorn/online_X_rows.npy --prototypes ${_fx}/sinkhorn/default_scores.npy
    STDERR_REGEX "D differs")
  protoseg_cluster_test(refuses_overflow_without_log_domain refuse
    ARGS --scores ${_fx}/sinkhorn/small_kappa_scores.npy --kappa 0.0005 STDERR_REGEX "set options.log_domain = true")
  protoseg_cluster_test(refuses_unwritable_output refuse
    ARGS --scores ${_fx}/sinkhorn/default_scores.npy --labels no_such_dir/I.npy STDERR_REGEX "I.npy: cannot open the temporary file")
endif()
