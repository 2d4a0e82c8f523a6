# protoseg-cluster: Sinkhorn-Knopp online clustering of .npy files (issue 3, item 6).
add_executable(protoseg-cluster ${CMAKE_CURRENT_LIST_DIR}/protoseg_cluster.cpp)
target_link_libraries(protoseg-cluster PRIVATE protoseg_build_flags)
install(TARGETS protoseg-cluster RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
