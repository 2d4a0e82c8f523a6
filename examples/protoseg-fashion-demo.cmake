# protoseg-fashion-demo: the prototype classifier on real Fashion-MNIST images
# (the interim main job until the segmentation trainer lands).
add_executable(protoseg-fashion-demo ${CMAKE_CURRENT_LIST_DIR}/fashion_demo.cpp)
target_link_libraries(protoseg-fashion-demo PRIVATE protoseg_build_flags)
install(TARGETS protoseg-fashion-demo RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
