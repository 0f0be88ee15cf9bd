# Finds libtorch in the order the design states:
#   1. LIBTORCH (environment or -DLIBTORCH=...) or CMAKE_PREFIX_PATH,
#   2. the torch package of `python3`, when it imports,
#   3. Debian's libtorch-dev.
set(_pace_torch_prefixes "")
if(LIBTORCH)
  list(APPEND _pace_torch_prefixes "${LIBTORCH}")
elseif(DEFINED ENV{LIBTORCH})
  list(APPEND _pace_torch_prefixes "$ENV{LIBTORCH}")
endif()
list(APPEND _pace_torch_prefixes ${CMAKE_PREFIX_PATH})
if(DEFINED ENV{CMAKE_PREFIX_PATH})
  string(REPLACE ":" ";" _pace_env_prefixes "$ENV{CMAKE_PREFIX_PATH}")
  list(APPEND _pace_torch_prefixes ${_pace_env_prefixes})
endif()

find_program(PACE_PYTHON3 python3)
if(PACE_PYTHON3)
  execute_process(
    COMMAND "${PACE_PYTHON3}" -c "import sys, torch.utils; sys.stdout.write(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _pace_python_torch RESULT_VARIABLE _pace_python_rc ERROR_QUIET TIMEOUT 120)
  if(_pace_python_rc EQUAL 0 AND _pace_python_torch)
    list(APPEND _pace_torch_prefixes "${_pace_python_torch}")
  endif()
endif()

if(CMAKE_LIBRARY_ARCHITECTURE)
  list(APPEND _pace_torch_prefixes "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/cmake")
endif()
list(APPEND _pace_torch_prefixes "/usr/lib/x86_64-linux-gnu/cmake" "/usr/lib/aarch64-linux-gnu/cmake")

# A LIBTORCH the user named is the only place looked: another libtorch found instead would be used without a word.
if(LIBTORCH OR DEFINED ENV{LIBTORCH})
  list(GET _pace_torch_prefixes 0 _pace_named)
  find_package(Torch CONFIG PATHS "${_pace_named}" "${_pace_named}/share/cmake" NO_DEFAULT_PATH)
  if(NOT Torch_FOUND)
    message(FATAL_ERROR "pace-peft: LIBTORCH=${_pace_named} holds no libtorch (no TorchConfig.cmake under it or "
      "its share/cmake); unset LIBTORCH to search elsewhere.")
  endif()
endif()
find_package(Torch CONFIG PATHS ${_pace_torch_prefixes} NO_DEFAULT_PATH)
if(NOT Torch_FOUND)
  message(FATAL_ERROR
    "pace-peft: libtorch was not found (looked in: ${_pace_torch_prefixes}).\n"
    "Install it with `apt-get install libtorch-dev libopenblas0-openmp` (Debian/Ubuntu), or point "
    "LIBTORCH at an unpacked libtorch, or make `python3 -c 'import torch'` work.")
endif()
message(STATUS "pace-peft: libtorch ${Torch_VERSION} from ${Torch_DIR}")

# Debian's TorchConfig adds nothing for the C++ ABI when it is the default; PyTorch's sets it in TORCH_CXX_FLAGS.
separate_arguments(_pace_torch_cxx_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
add_compile_options(${_pace_torch_cxx_flags})

set(PACE_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda OR TARGET c10_cuda)
  set(PACE_TORCH_HAS_CUDA ON)
endif()
