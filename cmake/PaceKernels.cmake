# CUDA kernels (native/kernels/*.cu): plain CUDA behind a C++ launch interface.
# With a CUDA libtorch they are compiled and linked into the core (for sm_90 at least); without one
# they are still compile-checked by nvcc when it is on the PATH, so a CPU-only machine catches errors.
file(GLOB PACE_KERNEL_SOURCES CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/native/kernels/*.cu")
set(PACE_CUDA_ARCHITECTURES "90" CACHE STRING "GPU architectures the kernels are built for")

if(PACE_TORCH_HAS_CUDA AND PACE_KERNEL_SOURCES)
  enable_language(CUDA)
  add_library(pace_kernels STATIC ${PACE_KERNEL_SOURCES})
  # The shared CUDA runtime: the one libtorch loads, so kernels and libtorch share one runtime and its streams.
  set_target_properties(pace_kernels PROPERTIES CUDA_ARCHITECTURES "${PACE_CUDA_ARCHITECTURES}"
    POSITION_INDEPENDENT_CODE ON CUDA_RUNTIME_LIBRARY Shared)
  target_include_directories(pace_kernels PUBLIC "${CMAKE_CURRENT_SOURCE_DIR}/native/kernels")
  message(STATUS "pace-peft: CUDA kernels built for sm_${PACE_CUDA_ARCHITECTURES}")
elseif(PACE_KERNEL_SOURCES)
  find_program(PACE_NVCC nvcc HINTS /usr/local/cuda/bin)
  if(PACE_NVCC)
    set(_pace_kernel_checks "")
    foreach(_src ${PACE_KERNEL_SOURCES})
      get_filename_component(_name "${_src}" NAME_WE)
      set(_stamp "${CMAKE_CURRENT_BINARY_DIR}/kernel-check/${_name}.o")
      add_custom_command(OUTPUT "${_stamp}"
        COMMAND "${CMAKE_COMMAND}" -E make_directory "${CMAKE_CURRENT_BINARY_DIR}/kernel-check"
        COMMAND "${PACE_NVCC}" -std=c++17 -arch=sm_${PACE_CUDA_ARCHITECTURES} -Werror all-warnings
                -I "${CMAKE_CURRENT_SOURCE_DIR}/native/kernels" -c "${_src}" -o "${_stamp}"
        DEPENDS "${_src}"
        COMMENT "nvcc compile-check ${_name}.cu (libtorch has no CUDA: not linked)")
      list(APPEND _pace_kernel_checks "${_stamp}")
    endforeach()
    add_custom_target(pace_kernels_check ALL DEPENDS ${_pace_kernel_checks})
    message(STATUS "pace-peft: libtorch has no CUDA; kernels are compile-checked by ${PACE_NVCC}")
  else()
    message(STATUS "pace-peft: libtorch has no CUDA and nvcc is absent; kernels are skipped")
  endif()
endif()

function(pace_attach_kernels target)
  if(TARGET pace_kernels)
    target_link_libraries(${target} PUBLIC pace_kernels)
    target_compile_definitions(${target} PUBLIC PACE_WITH_CUDA_KERNELS=1)
  endif()
endfunction()
