# test_trainers runs the example trainers (examples/protoseg-train.cmake):
# it gets their paths and is built after them.
if(PROTOSEG_BUILD_EXAMPLES AND TARGET test_trainers)
  target_compile_definitions(test_trainers PRIVATE PROTOSEG_TRAIN_EXE="$<TARGET_FILE:protoseg-train>"
                             PROTOSEG_EVAL_EXE="$<TARGET_FILE:protoseg-eval>"
                             PROTOSEG_INFER_EXE="$<TARGET_FILE:protoseg-infer>")
  add_dependencies(test_trainers protoseg-train protoseg-eval protoseg-infer)
endif()
