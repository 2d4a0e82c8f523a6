# protoseg-train, protoseg-eval, protoseg-infer: the example trainers (the main
# job). They share examples/common/ (configuration, evaluation, pictures).
foreach(_prog train eval infer)
  add_executable(protoseg-${_prog} ${CMAKE_CURRENT_LIST_DIR}/protoseg_${_prog}.cpp)
  target_link_libraries(protoseg-${_prog} PRIVATE protoseg_build_flags)
  target_include_directories(protoseg-${_prog} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  install(TARGETS protoseg-${_prog} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endforeach()
