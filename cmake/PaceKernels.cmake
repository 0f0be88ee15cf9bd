# CUDA kernels (native/kernels/*.cu): plain CUDA behind a C++ launch interface.
# With a CUDA libtorch they are compiled and linked into the core; without one they are still compile-checked
# by nvcc (for sm_90) when it is on the PATH, so a CPU-only machine catches errors.
file(GLOB PACE_KERNEL_SOURCES CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/native/kernels/*.cu")

# The architectures: PACE_CUDA_ARCHITECTURES (a CMake cache entry or the environment variable, in CMake's
# syntax: "80;90" or "90-real;90-virtual"), else every architecture the found libtorch was built for (its
# torch.cuda.get_arch_list(), asked of python3 when libtorch is that torch's) as machine code, plus PTX of the
# newest for GPUs that came later. A libtorch without python gets the architectures PyTorch's CUDA 12/13
# wheels cover.
function(pace_default_cuda_architectures out)
  set(_archs "")
  if(PACE_PYTHON3 AND _pace_python_torch AND Torch_DIR MATCHES "^${_pace_python_torch}")
    execute_process(
      COMMAND "${PACE_PYTHON3}" -c
              "import torch; print(';'.join(a[3:] for a in torch.cuda.get_arch_list() if a.startswith('sm_')))"
      OUTPUT_VARIABLE _archs RESULT_VARIABLE _rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE TIMEOUT 120)
    if(NOT _rc EQUAL 0)
      set(_archs "")
    endif()
  endif()
  if(NOT _archs)
    set(_archs 75 80 86 89 90)
  endif()
  list(SORT _archs COMPARE NATURAL)
  list(GET _archs -1 _newest)
  list(TRANSFORM _archs APPEND "-real")
  list(APPEND _archs "${_newest}-virtual")
  set(${out} "${_archs}" PARENT_SCOPE)
endfunction()

if(PACE_TORCH_HAS_CUDA AND PACE_KERNEL_SOURCES)
  if(NOT PACE_CUDA_ARCHITECTURES AND DEFINED ENV{PACE_CUDA_ARCHITECTURES})
    set(PACE_CUDA_ARCHITECTURES "$ENV{PACE_CUDA_ARCHITECTURES}" CACHE STRING "GPU architectures of the kernels")
  elseif(NOT PACE_CUDA_ARCHITECTURES)
    pace_default_cuda_architectures(_pace_default_archs)
    set(PACE_CUDA_ARCHITECTURES "${_pace_default_archs}" CACHE STRING "GPU architectures of the kernels")
  endif()
  enable_language(CUDA)
  add_library(pace_kernels STATIC ${PACE_KERNEL_SOURCES})
  # The shared CUDA runtime: the one libtorch loads, so kernels and libtorch share one runtime and its streams.
  set_target_properties(pace_kernels PROPERTIES CUDA_ARCHITECTURES "${PACE_CUDA_ARCHITECTURES}"
    POSITION_INDEPENDENT_CODE ON CUDA_RUNTIME_LIBRARY Shared)
  target_include_directories(pace_kernels PUBLIC "${CMAKE_CURRENT_SOURCE_DIR}/native/kernels")
  message(STATUS "pace-peft: CUDA kernels built for ${PACE_CUDA_ARCHITECTURES}")
  # The epilogue kernels' bandwidth benchmark (bench/device.sh): built on demand, only in a checkout.
  if(EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/bench/native/epilogue_bench.cu")
    add_executable(pace_epilogue_bench EXCLUDE_FROM_ALL "${CMAKE_CURRENT_SOURCE_DIR}/bench/native/epilogue_bench.cu")
    target_link_libraries(pace_epilogue_bench PRIVATE pace_kernels)
    set_target_properties(pace_epilogue_bench PROPERTIES CUDA_ARCHITECTURES "${PACE_CUDA_ARCHITECTURES}"
      CUDA_RUNTIME_LIBRARY Shared RUNTIME_OUTPUT_DIRECTORY "${PACE_OUTPUT_DIR}")
  endif()
elseif(PACE_KERNEL_SOURCES AND EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/native/core-tests")
  # (a checkout only: an installed package without CUDA has nothing to gain from the check)
  find_program(PACE_NVCC nvcc HINTS /usr/local/cuda/bin)
  if(PACE_NVCC)
    set(_pace_kernel_checks "")
    file(GLOB _pace_kernel_benches "${CMAKE_CURRENT_SOURCE_DIR}/bench/native/*.cu")
    foreach(_src ${PACE_KERNEL_SOURCES} ${_pace_kernel_benches})
      get_filename_component(_name "${_src}" NAME_WE)
      set(_stamp "${CMAKE_CURRENT_BINARY_DIR}/kernel-check/${_name}.o")
      add_custom_command(OUTPUT "${_stamp}"
        COMMAND "${CMAKE_COMMAND}" -E make_directory "${CMAKE_CURRENT_BINARY_DIR}/kernel-check"
        COMMAND "${PACE_NVCC}" -std=c++17 -arch=sm_90 -Werror all-warnings
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
