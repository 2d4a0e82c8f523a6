# cmake -DDIR=<tests dir> -P check_test_names.cmake
# doctest_discover_tests hands CTest a list of test-case names, and CMake
# lists split at ';': a test case whose name holds one becomes two CTest
# entries that match nothing, and doctest passes a filter that matches
# nothing. This check fails on such names.
file(GLOB sources ${DIR}/test_*.cpp ${DIR}/cuda/test_*.cpp)
set(bad "")
foreach(src IN LISTS sources)
  file(STRINGS ${src} lines REGEX "TEST_CASE[A-Z_]*\\(\"")
  foreach(line IN LISTS lines)
    # A ';' inside the quoted name (file(STRINGS) keeps it escaped; should a
    # list split it anyway, the name is left unclosed).
    if(line MATCHES "TEST_CASE[A-Z_]*\\(\"[^\"]*;" OR line MATCHES "TEST_CASE[A-Z_]*\\(\"[^\"]*$")
      get_filename_component(f ${src} NAME)
      string(APPEND bad "\n  ${f}: ${line}")
    endif()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "test-case names with ';' (CTest would run none of them):${bad}")
endif()
message(STATUS "test-case names: no ';' in ${DIR}/test_*.cpp and ${DIR}/cuda/test_*.cpp")
