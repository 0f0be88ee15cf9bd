# Data-parallel training (native/core/distributed): which c10d groups the core can create. Only
# native/core/distributed/c10d_group.cpp sees their headers, outside the precompiled header; the symbols it uses
# are libtorch's.
#   Gloo: where libtorch ships the Gloo group and gloo's headers are installed (Debian: libgloo-dev).
#   NCCL: CUDA builds where a translation unit using ProcessGroupNCCL compiles here (its headers need NCCL's
#         nccl.h: NCCL_INCLUDE_DIR, the CUDA toolkit's, or PyTorch's nvidia-nccl wheel).
function(pace_attach_distributed target source)
  set_source_files_properties("${source}" PROPERTIES SKIP_PRECOMPILE_HEADERS ON)

  find_path(PACE_GLOO_INCLUDE gloo/algorithm.h HINTS ${TORCH_INCLUDE_DIRS})
  find_path(PACE_C10D_GLOO_INCLUDE torch/csrc/distributed/c10d/ProcessGroupGloo.hpp HINTS ${TORCH_INCLUDE_DIRS})
  if(PACE_GLOO_INCLUDE AND PACE_C10D_GLOO_INCLUDE)
    set_property(SOURCE "${source}" APPEND PROPERTY COMPILE_DEFINITIONS PACE_WITH_GLOO USE_C10D_GLOO)
    message(STATUS "pace-peft: distributed training with c10d's Gloo group")
  else()
    message(STATUS "pace-peft: no gloo headers, Gloo training disabled (Debian: apt-get install libgloo-dev)")
  endif()

  if(NOT PACE_TORCH_HAS_CUDA)
    return()
  endif()
  set(_hints ${TORCH_INCLUDE_DIRS} $ENV{NCCL_INCLUDE_DIR} $ENV{CUDA_HOME}/include /usr/local/cuda/include)
  if(PACE_PYTHON3)
    execute_process(
      COMMAND "${PACE_PYTHON3}" -c "import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], 'include'))"
      OUTPUT_VARIABLE _wheel RESULT_VARIABLE _rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE TIMEOUT 60)
    if(_rc EQUAL 0)
      list(APPEND _hints "${_wheel}")
    endif()
  endif()
  find_path(PACE_NCCL_INCLUDE nccl.h HINTS ${_hints})
  if(NOT PACE_NCCL_INCLUDE)
    message(STATUS "pace-peft: nccl.h not found, NCCL training disabled (set NCCL_INCLUDE_DIR)")
    return()
  endif()
  # The check compiles (no link) a file constructing the group, with libtorch's own flags and include folders.
  # The folders are named, not taken from libtorch's targets: PyTorch's torch_cpu lists protobuf::libprotobuf,
  # which a try_compile project does not define, so naming the targets fails the configure.
  set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
  set(_includes ${PACE_NCCL_INCLUDE} ${TORCH_INCLUDE_DIRS} ${CUDAToolkit_INCLUDE_DIRS} ${CUDA_INCLUDE_DIRS})
  list(REMOVE_DUPLICATES _includes)
  try_compile(PACE_NCCL_COMPILES "${CMAKE_BINARY_DIR}/pace-nccl-check"
    SOURCES "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/PaceNcclCheck.cpp"
    CMAKE_FLAGS "-DINCLUDE_DIRECTORIES:STRING=${_includes}"
    COMPILE_DEFINITIONS -DUSE_C10D_NCCL ${TORCH_CXX_FLAGS}
    CXX_STANDARD 17
    OUTPUT_VARIABLE _log)
  if(PACE_NCCL_COMPILES)
    set_property(SOURCE "${source}" APPEND PROPERTY COMPILE_DEFINITIONS PACE_WITH_NCCL USE_C10D_NCCL)
    if(NOT PACE_NCCL_INCLUDE STREQUAL "/usr/include")
      set_property(SOURCE "${source}" APPEND PROPERTY INCLUDE_DIRECTORIES "${PACE_NCCL_INCLUDE}")
    endif()
    message(STATUS "pace-peft: distributed training with c10d's NCCL group (nccl.h in ${PACE_NCCL_INCLUDE})")
  else()
    message(STATUS "pace-peft: the NCCL group does not compile here, NCCL training disabled")
  endif()
endfunction()
