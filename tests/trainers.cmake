# test_trainers runs the example trainers (examples/protoseg-train.cmake):
# it gets their paths and is built after them. Where the cuda policy is built,
# it also gets protoseg-train-omp (the trainer whose --device cuda runs on
# Thrust's OpenMP system).
if(PROTOSEG_BUILD_EXAMPLES AND TARGET test_trainers)
  target_compile_definitions(test_trainers PRIVATE PROTOSEG_TRAIN_EXE="$<TARGET_FILE:protoseg-train>"
                             PROTOSEG_EVAL_EXE="$<TARGET_FILE:protoseg-eval>"
                             PROTOSEG_INFER_EXE="$<TARGET_FILE:protoseg-infer>")
  add_dependencies(test_trainers protoseg-train protoseg-eval protoseg-infer)
  if(PROTOSEG_HAVE_CUDA)
    target_compile_definitions(test_trainers PRIVATE PROTOSEG_TRAIN_OMP_EXE="$<TARGET_FILE:protoseg-train-omp>")
    add_dependencies(test_trainers protoseg-train-omp)
  endif()
  if(PROTOSEG_NVCC)
    target_compile_definitions(test_trainers PRIVATE PROTOSEG_TRAINERS_NVCC=1)
  endif()
endif()
